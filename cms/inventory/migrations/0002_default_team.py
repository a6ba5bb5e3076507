from django.db import migrations


def create_default_team(apps, schema_editor):
    Team = apps.get_model("inventory", "Team")
    Team.objects.get_or_create(
        name="Default", defaults={"description": "Servers not assigned to another team."}
    )


class Migration(migrations.Migration):
    dependencies = [("inventory", "0001_initial")]

    operations = [migrations.RunPython(create_default_team, migrations.RunPython.noop)]
