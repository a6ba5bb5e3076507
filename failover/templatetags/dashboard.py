"""The admin index as a dashboard: servers by status, open events, latest failovers."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import template
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString

from cms.inventory.choices import HealthStatus, Role
from cms.inventory.models import Server, Team, WorkerHeartbeat
from cms.permissions import can
from failover import guard, timeline
from failover.admin_status import STATUSES, annotate_duty
from failover.models import FailoverEvent

register = template.Library()


@register.inclusion_tag("admin/failover/dashboard.html", takes_context=True)
def cms_dashboard(context: dict[str, Any]) -> dict[str, Any]:
    user = context["request"].user
    servers = Server.objects.for_user(user)
    events = FailoverEvent.objects.for_user(user)
    beat = WorkerHeartbeat.objects.order_by("-last_beat").first()
    return {
        "fleet": [recording_rows(servers), failover_rows(servers)],
        "open_events": list(events.open().order_by("-detected_at")[:10]),
        "latest": list(events.exclude(taken_over_at=None).order_by("-detected_at")[:10]),
        "worker_age": (timezone.now() - beat.last_beat).total_seconds() if beat else None,
        # The teams whose automatic failover the mass-failure guard pauses now.
        "guards": [state for state in guard.states(Team.objects.for_user(user)) if state.held],
        "may_release": can(user, "trigger_failover"),
    }


def recording_rows(servers: Any) -> dict[str, Any]:
    """Recording servers by health; disabled ones apart (they are not probed)."""
    url = reverse("admin:inventory_recordingserver_changelist")
    counts = dict(
        servers.filter(role=Role.RECORDING, enabled=True)
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    rows = [
        {"label": status.label, "count": counts[status], "url": f"{url}?status__exact={status}"}
        for status in HealthStatus
        if counts.get(status)
    ]
    disabled = servers.filter(role=Role.RECORDING, enabled=False).count()
    if disabled:
        rows.append({"label": "Disabled", "count": disabled, "url": f"{url}?enabled__exact=0"})
    return {"label": "Recording servers", "rows": rows}


def failover_rows(servers: Any) -> dict[str, Any]:
    """Failover servers by what they do (standby, acting, ...), as their tab's panel."""
    url = reverse("admin:inventory_failoverserver_changelist")
    counts = annotate_duty(servers.filter(role=Role.FAILOVER)).aggregate(
        **{key: Count("pk", filter=condition) for key, (_, condition) in STATUSES.items()}
    )
    rows = [
        {"label": label, "count": counts[key], "url": f"{url}?duty={key}"}
        for key, (label, _) in STATUSES.items()
        if counts[key]
    ]
    return {"label": "Failover servers", "rows": rows}


@register.filter
def ago(moment: dt.datetime | None) -> SafeString | str:
    """ "just now", "42 s ago", "5 min ago", "3 h 12 min ago"; the exact time as a tooltip."""
    if moment is None:
        return "-"
    seconds = max(int((timezone.now() - moment).total_seconds()), 0)
    if seconds < 5:
        text = "just now"
    elif seconds < 120:
        text = f"{seconds} s ago"
    elif seconds < 7200:
        text = f"{seconds // 60} min ago"
    elif seconds < 172800:
        text = f"{seconds // 3600} h {seconds % 3600 // 60} min ago"
    else:
        text = f"{seconds // 86400} days ago"
    return timeline.moment(moment, text)


@register.filter
def moment(value: dt.datetime | None) -> SafeString | str:
    """A time to the second, with the exact time as a tooltip."""
    return timeline.moment(value)
