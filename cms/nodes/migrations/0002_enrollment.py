"""QuickConnect enrollment: entries wait for a CMS-issued secret before a node binds them.

Every entry that exists already was bound by its node: it stays bound, since it was
first registered.
"""

from django.db import migrations, models


def bound_since_registration(apps, schema_editor):
    entry = apps.get_model("nodes", "QuickConnectEntry")
    entry.objects.filter(bound_at__isnull=True).exclude(token_hash="").update(
        bound_at=models.F("registered_at")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("nodes", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="quickconnectentry",
            name="bound_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When the current node enrolled.",
                null=True,
                verbose_name="bound since",
            ),
        ),
        migrations.AddField(
            model_name="quickconnectentry",
            name="enrollment_hash",
            field=models.CharField(blank=True, editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name="quickconnectentry",
            name="enrollment_issued_at",
            field=models.DateTimeField(
                blank=True,
                help_text="Set while a secret waits for a node to present it; cleared once spent.",
                null=True,
                verbose_name="enrollment secret issued",
            ),
        ),
        migrations.AlterField(
            model_name="quickconnectentry",
            name="host",
            field=models.CharField(blank=True, max_length=253),
        ),
        migrations.AlterField(
            model_name="quickconnectentry",
            name="port",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="quickconnectentry",
            name="registered_at",
            field=models.DateTimeField(auto_now_add=True, verbose_name="created"),
        ),
        migrations.AlterField(
            model_name="quickconnectentry",
            name="serial",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AlterField(
            model_name="quickconnectentry",
            name="token_hash",
            field=models.CharField(blank=True, editable=False, max_length=64),
        ),
        migrations.AlterField(
            model_name="quickconnectentry",
            name="updated_at",
            field=models.DateTimeField(auto_now=True, verbose_name="updated"),
        ),
        migrations.RunPython(bound_since_registration, migrations.RunPython.noop),
    ]
