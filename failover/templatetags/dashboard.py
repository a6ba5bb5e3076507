"""The admin index as a dashboard: servers by status, open events, latest failovers."""

from __future__ import annotations

from typing import Any

from django import template
from django.db.models import Count
from django.utils import timezone

from cms.inventory.choices import HealthStatus, Role
from cms.inventory.models import Server, WorkerHeartbeat
from failover.models import FailoverEvent

register = template.Library()


@register.inclusion_tag("admin/failover/dashboard.html", takes_context=True)
def cms_dashboard(context: dict[str, Any]) -> dict[str, Any]:
    user = context["request"].user
    servers = Server.objects.for_user(user)
    counts = {
        (row["role"], row["status"], row["enabled"]): row["n"]
        for row in servers.values("role", "status", "enabled").annotate(n=Count("pk"))
    }
    by_role = []
    for role in Role:
        rows = []
        for status in HealthStatus:
            n = sum(v for (r, s, _), v in counts.items() if r == role and s == status)
            if n:
                rows.append({"status": status, "label": status.label, "count": n})
        disabled = sum(v for (r, _, e), v in counts.items() if r == role and not e)
        by_role.append({"role": role, "label": role.label + "s", "rows": rows,
                        "disabled": disabled})  # fmt: skip
    events = FailoverEvent.objects.for_user(user)
    beat = WorkerHeartbeat.objects.order_by("-last_beat").first()
    return {
        "by_role": by_role,
        "open_events": list(events.open().order_by("-detected_at")[:10]),
        "latest": list(events.exclude(taken_over_at=None).order_by("-detected_at")[:10]),
        "worker_age": (timezone.now() - beat.last_beat).total_seconds() if beat else None,
    }
