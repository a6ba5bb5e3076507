from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "cms.inventory"
    label = "inventory"
    verbose_name = "Inventory"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import pre_save

        from cms import audit
        from cms.api.tokens import revoke_tokens_on_password_change

        from . import checks  # noqa: F401  (registers the deploy checks)
        from .models import FailoverServer, License, RecordingServer, Server, Team, TeamMembership

        pre_save.connect(revoke_tokens_on_password_change, sender=get_user_model(),
                         dispatch_uid="revoke-tokens-on-password-change")  # fmt: skip
        # The secret never enters the trail; its change shows as password_changed_at. The
        # name's uniqueness key follows the name, which the trail already shows. Signals
        # name the instance's own class, so the admin tabs' proxies are registered too.
        audit.register(Server, RecordingServer, FailoverServer, scoped=True,
                       exclude_fields=["admin_password", "pairing_key", "name_key"])  # fmt: skip
        audit.register(License, scoped=True)
        audit.register(Team, TeamMembership)
