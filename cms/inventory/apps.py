from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "cms.inventory"
    label = "inventory"
    verbose_name = "Inventory"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import pre_save

        from cms.api.tokens import revoke_tokens_on_password_change

        from . import checks  # noqa: F401  (registers the deploy checks)

        pre_save.connect(revoke_tokens_on_password_change, sender=get_user_model(),
                         dispatch_uid="revoke-tokens-on-password-change")  # fmt: skip
