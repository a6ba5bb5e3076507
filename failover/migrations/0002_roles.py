"""The groups Viewer, Operator and Administrator with their permissions."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations ran; the roles need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    from cms.permissions import sync_roles

    sync_roles(apps, strict=False)  # later permissions come with post_migrate


class Migration(migrations.Migration):
    dependencies = [
        ("failover", "0001_initial"),
        ("inventory", "0003_permissions"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auditlog", "__latest__"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
