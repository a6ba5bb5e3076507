from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies: list = []

    operations = [
        migrations.CreateModel(
            name="QuickConnectEntry",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "qc_id",
                    models.CharField(max_length=63, unique=True, verbose_name="QuickConnect ID"),
                ),
                ("serial", models.CharField(max_length=64)),
                ("token_hash", models.CharField(editable=False, max_length=64)),
                ("host", models.CharField(max_length=253)),
                ("port", models.PositiveIntegerField()),
                ("registered_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={"ordering": ["qc_id"], "verbose_name": "QuickConnect registration"},
        ),
    ]
