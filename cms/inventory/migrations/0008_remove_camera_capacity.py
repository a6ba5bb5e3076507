"""Server.camera_capacity was never written by anything: removed."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0007_server_name_key"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="server",
            name="camera_capacity",
        ),
    ]
