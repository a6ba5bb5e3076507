from django.apps import AppConfig


class NodesConfig(AppConfig):
    name = "cms.nodes"
    label = "nodes"
    verbose_name = "Node connectivity"
    default_auto_field = "django.db.models.BigAutoField"
