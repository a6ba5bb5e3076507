"""Failover settings per team.

The one existing row (row 1) gets no team: it becomes the CMS's defaults, which every
team follows until it saves settings of its own, so every existing team behaves as
before.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("failover", "0007_restoration_file_times"),
        ("inventory", "0009_server_pairing_identity"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="failoversettings",
            options={
                "ordering": [models.OrderBy(models.F("team__name"), nulls_first=True)],
                "verbose_name": "failover settings",
                "verbose_name_plural": "failover settings",
            },
        ),
        migrations.AddField(
            model_name="failoversettings",
            name="team",
            field=models.OneToOneField(
                blank=True,
                help_text="Empty for the CMS's defaults, which every team without its own settings follows.",
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="failover_settings",
                to="inventory.team",
            ),
        ),
    ]
