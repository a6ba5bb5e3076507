"""The Add Batch page of each server tab.

The page is a template and a script: it searches the LAN with the tab's search view,
enables CMS services with the tab's enable view, and adds the batch through the API's
``batch-add`` endpoint, so the admin and the API share one validation, one permission
check and one all-or-none service (`cms.inventory.batch.batch_add`).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from .models import Team
from .naming import NamingRule

API_NAMES = {"recording": "recording-server", "failover": "failover-server"}


def batch_add_view(request: HttpRequest, model_admin: Any, role: str) -> HttpResponse:
    if not model_admin.has_add_permission(request):
        raise PermissionDenied
    opts = model_admin.model._meta
    teams = Team.objects.for_user(request.user)
    return TemplateResponse(
        request,
        "admin/inventory/batch_add.html",
        {
            **model_admin.admin_site.each_context(request),
            "title": f"Add a batch of {opts.verbose_name_plural}",
            "opts": opts,
            "role": role,
            "teams": teams,
            "naming_rules": [(v, label) for v, label in NamingRule.choices if v != "custom"],
            "api_url": reverse(f"{API_NAMES[role]}-batch-add"),
        },
    )
