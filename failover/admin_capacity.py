"""The capacity planner's admin page (failover/planner.py decides; this only shows it):
which recording servers no failover server can carry whole, and the what-if."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from cms.inventory.choices import Role
from cms.inventory.models import Server

from . import planner


def capacity_view(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("inventory.view_failoverserver"):
        raise PermissionDenied
    visible = Server.objects.filter(role=Role.RECORDING).restrict(request.user, "view")
    rows = planner.capacity_table(visible)
    protected = {row.server.pk for row in rows}
    chosen = [
        int(raw) for raw in request.GET.getlist("fail") if raw.isdigit() and int(raw) in protected
    ]
    outcomes = planner.what_if(visible.filter(pk__in=chosen)) if chosen else None
    return TemplateResponse(
        request,
        "admin/failover/capacity.html",
        {
            **admin.site.each_context(request),
            "title": "Capacity planner",
            "rows": rows,
            "uncarried": [row for row in rows if row.carried is False],
            "chosen": chosen,
            "outcomes": outcomes,
            "uncovered": [o for o in outcomes or [] if o.covered_by is None],
        },
    )
