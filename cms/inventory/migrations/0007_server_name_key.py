"""Server names are unique per role once normalised (NFKC): a key column and its constraint.

Servers that an older version let in with names equal after NFKC keep their names; the
second and later of them get a key of their own (the plain key with their id), so the
upgrade never fails, and a warning names them so that an admin can rename them.
"""

import hashlib
import unicodedata

from django.db import migrations, models


def _key(name):
    # A copy of cms.inventory.validators.name_key as of this migration.
    nfkc = unicodedata.normalize("NFKC", name)
    return hashlib.sha256(nfkc.encode("utf-8", "surrogatepass")).hexdigest()


def fill_keys(apps, schema_editor):
    Server = apps.get_model("inventory", "Server")
    seen = set()
    for server in Server.objects.order_by("pk").only("pk", "role", "name"):
        key = _key(server.name)
        if (server.role, key) in seen:
            print(
                f"\n  Warning: {server.role} server {server.pk} {server.name!r} has the same name "
                "as another once normalised (NFKC); rename it."
            )
            key = hashlib.sha256(f"{key}:{server.pk}".encode()).hexdigest()
        seen.add((server.role, key))
        Server.objects.filter(pk=server.pk).update(name_key=key)


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0006_server_status_bad_answer"),
    ]

    operations = [
        migrations.AddField(
            model_name="server",
            name="name_key",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(fill_keys, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="server",
            constraint=models.UniqueConstraint(
                fields=("role", "name_key"), name="unique_server_name_key_per_role"
            ),
        ),
    ]
