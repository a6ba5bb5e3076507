from django.apps import AppConfig


class FailoverConfig(AppConfig):
    name = "failover"
    verbose_name = "Failover"
    default_auto_field = "django.db.models.BigAutoField"
