from django.db import migrations, models


def blank_duplicate_serials(apps, schema_editor):
    """Before the constraint: a node added more than once keeps its serial on the server
    added first; the others are blanked (their probes then find the node is taken)."""
    Server = apps.get_model("inventory", "Server")
    seen: set[str] = set()
    for pk, serial in (
        Server.objects.exclude(serial="").order_by("created_at", "pk").values_list("pk", "serial")
    ):
        if serial in seen:
            Server.objects.filter(pk=pk).update(serial="")
        seen.add(serial)


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0009_server_pairing_identity"),
    ]

    operations = [
        migrations.RunPython(blank_duplicate_serials, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="server",
            constraint=models.UniqueConstraint(
                condition=models.Q(("serial", ""), _negated=True),
                fields=("serial",),
                name="unique_server_serial",
                violation_error_message="This node is already a server here (same serial).",
            ),
        ),
    ]
