"""Failover settings per team.

The one existing row (row 1) gets no team: it becomes the CMS's defaults, which every
team follows until it saves settings of its own, so every existing team behaves as
before.
"""

import django.db.models.deletion
from django.core.management.color import no_style
from django.db import migrations, models


def reset_id_sequence(apps, schema_editor):
    # Row 1 was written with its id chosen: PostgreSQL's sequence did not move, and the
    # first team's own row would get id 1 again.
    model = apps.get_model("failover", "FailoverSettings")
    ops = schema_editor.connection.ops
    for statement in ops.sequence_reset_sql(no_style(), [model]):
        schema_editor.execute(statement)


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
        migrations.RunPython(reset_id_sequence, migrations.RunPython.noop),
    ]
