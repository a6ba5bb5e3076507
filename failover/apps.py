from django.apps import AppConfig


class FailoverConfig(AppConfig):
    name = "failover"
    verbose_name = "Failover"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from cms.api.audit import register_models

        register_models()
        # The roles follow cms.permissions.ROLES after every migrate (and after a test
        # database flush), so a permission added there reaches the groups.
        post_migrate.connect(_sync_roles, sender=self)


def _sync_roles(sender: object, **kwargs: object) -> None:
    from cms.permissions import sync_roles

    sync_roles()
