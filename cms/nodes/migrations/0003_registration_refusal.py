"""Refused QuickConnect registrations, counted per client address for the rate limit."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("nodes", "0002_enrollment"),
    ]

    operations = [
        migrations.CreateModel(
            name="RegistrationRefusal",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("address", models.CharField(max_length=64)),
                ("at", models.DateTimeField(db_index=True)),
            ],
            options={
                "indexes": [
                    models.Index(fields=["address", "at"], name="nodes_regis_address_5a6a1a_idx")
                ],
            },
        ),
    ]
