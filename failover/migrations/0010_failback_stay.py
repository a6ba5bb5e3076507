"""The failback setting may keep the failover server recording until an operator fails back."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("failover", "0009_drills"),
    ]

    operations = [
        migrations.AlterField(
            model_name="failoversettings",
            name="failback_mode",
            field=models.CharField(
                choices=[
                    ("automatic", "Automatically, after the hold-down"),
                    ("scheduled", "In the scheduled daily window"),
                    ("manual", "Manually (Fail back now)"),
                    ("stay", "Stay on the failover server until an operator fails back"),
                ],
                default="automatic",
                max_length=16,
            ),
        ),
    ]
