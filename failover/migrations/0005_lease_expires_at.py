"""worked_at (the last renewal, or a year-2000 date when free) becomes lease_expires_at
(when the holder's lease runs out, empty when free)."""

import datetime as dt

from django.conf import settings
from django.db import migrations

OLD_FREE_LEASE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def forwards(apps, schema_editor):
    events = apps.get_model("failover", "FailoverEvent").objects
    events.filter(lease_expires_at__lte=OLD_FREE_LEASE).update(lease_expires_at=None)
    held = dt.timedelta(seconds=settings.CMS_EVENT_LEASE_SECONDS)
    for event in events.exclude(lease_expires_at=None).only("pk", "lease_expires_at"):
        events.filter(pk=event.pk).update(lease_expires_at=event.lease_expires_at + held)


def backwards(apps, schema_editor):
    events = apps.get_model("failover", "FailoverEvent").objects
    held = dt.timedelta(seconds=settings.CMS_EVENT_LEASE_SECONDS)
    for event in events.exclude(lease_expires_at=None).only("pk", "lease_expires_at"):
        events.filter(pk=event.pk).update(lease_expires_at=event.lease_expires_at - held)
    events.filter(lease_expires_at=None).update(lease_expires_at=OLD_FREE_LEASE)


class Migration(migrations.Migration):
    dependencies = [("failover", "0004_settings_ranges")]

    operations = [
        migrations.RenameField("failoverevent", "worked_at", "lease_expires_at"),
        migrations.RunPython(forwards, backwards),
    ]
