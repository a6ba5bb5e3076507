"""The admin site of the product: its name, and an index grouped by what operators do.

The index (and the navigation sidebar, built from the same list) shows first what
operators use every day, then accounts; the framework's own models (API tokens, login
attempts, node connectivity, ...) go to a "System" section that only superusers see.
Models are named by "app_label.ModelName" so that this module imports neither app.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

# (section, its models in order): what an operator looks for, in the order they use it.
SECTIONS: list[tuple[str, list[str]]] = [
    (
        "Failover CMS",
        [
            "inventory.RecordingServer",
            "inventory.FailoverServer",
            "failover.FailoverEvent",
            "failover.FailoverSettings",
            "inventory.License",
            "inventory.Team",
            "alerts.Channel",
            "alerts.Alert",
        ],
    ),
    # Viewers read the audit trail of their teams too: it is not a "System" table.
    ("Accounts and audit trail", ["auth.User", "auth.Group", "auditlog.LogEntry"]),
]
SYSTEM = "System"


class CmsAdminSite(admin.AdminSite):
    site_header = "Failover CMS"
    site_title = "Failover CMS"
    index_title = "Dashboard"
    # The header's links (templates/admin/base_site.html) take the sidebar's place: at
    # 1366 px its 300 px cut the lists' right-hand columns off.
    enable_nav_sidebar = False

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[Any]:
        apps = super().get_app_list(request, app_label)
        if app_label is not None:
            return apps  # an app's own index page lists that app, as Django does
        return group(apps, superuser=request.user.is_superuser)


def group(apps: list[dict[str, Any]], *, superuser: bool) -> list[dict[str, Any]]:
    """Django's per-app list regrouped into SECTIONS, the rest into System."""
    models = {f"{app['app_label']}.{m['object_name']}": m for app in apps for m in app["models"]}
    sections = []
    placed: set[str] = set()
    for name, wanted in SECTIONS:
        found = [models[key] for key in wanted if key in models]
        placed.update(key for key in wanted if key in models)
        if found:
            sections.append(_section(name, found))
    if superuser:
        rest = [m for key, m in models.items() if key not in placed]
        if rest:
            sections.append(_section(SYSTEM, rest))
    return sections


def _section(name: str, models: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "app_label": name.lower().replace(" ", "-"),
        "app_url": "",  # a section has no page of its own (templates/admin/app_list.html)
        "has_module_perms": True,
        "models": models,
    }
