from django.apps import AppConfig


class FailoverConfig(AppConfig):
    name = "failover"
    verbose_name = "Failover"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_migrate, post_save

        from cms import audit
        from cms.inventory import actions as inventory_actions

        from . import actions
        from .models import FailoverEvent, FailoverSettings, GuardHold, Protection

        # A hold's creation is the guard's (system), its deletion the releasing operator's.
        audit.register(FailoverEvent, Protection, GuardHold, scoped=True)
        audit.register(FailoverSettings)
        # Disabling, editing or deleting a server may stop a failover: the inventory's
        # actions ask failover what that means and let it act first.
        inventory_actions.extend(actions.ServerDuties())
        # The roles follow cms.permissions.ROLES after every migrate (and after a test
        # database flush), so a permission added there reaches the groups.
        post_migrate.connect(_sync_roles, sender=self)
        # However a protection is saved or deleted (admin, API, replace, a script), its
        # failover server is told to hold, or to forget, the recording server's
        # configuration (failover/standby.py), once the change has committed.
        post_save.connect(_protection_saved, sender=Protection)
        post_delete.connect(_protection_deleted, sender=Protection)


def _protection_saved(sender: object, instance: object, **kwargs: object) -> None:
    from . import standby

    standby.after_protection_saved(instance)  # type: ignore[arg-type]


def _protection_deleted(sender: object, instance: object, **kwargs: object) -> None:
    from . import standby

    standby.after_protection_deleted(instance)  # type: ignore[arg-type]


def _sync_roles(sender: object, **kwargs: object) -> None:
    from cms.permissions import sync_roles

    sync_roles()
