"""The failover tab's status panel: what each failover server is doing, with counts."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest

from cms.inventory.choices import HealthStatus

from .choices import EventState
from .models import FailoverEvent

ACTING = [EventState.ACTIVE, EventState.WAITING_FAILBACK, EventState.FAILING_BACK]

# status -> (label, condition on the annotated queryset)
STATUSES: dict[str, tuple[str, Q]] = {
    "standby": (
        "Standby",
        Q(enabled=True, duty_state__isnull=True, status=HealthStatus.NORMAL),
    ),
    "taking_over": ("Taking over", Q(duty_state=EventState.TAKING_OVER)),
    "acting": ("Acting for a recording server", Q(duty_state__in=ACTING)),
    "restoring": ("Restoring recordings", Q(duty_state=EventState.RESTORING)),
    "abnormal": (
        "Abnormal (disconnected, volume, service, login)",
        Q(enabled=True) & ~Q(status__in=[HealthStatus.NORMAL, HealthStatus.UNKNOWN]),
    ),
    "unknown": ("Not probed yet", Q(enabled=True, status=HealthStatus.UNKNOWN)),
    "disabled": ("Disabled", Q(enabled=False)),
}


def annotate_duty(queryset: QuerySet) -> QuerySet:
    """What each failover server does now: its open event's state and for whom."""
    open_event = FailoverEvent.objects.open().filter(failover_server=OuterRef("pk"))
    return queryset.annotate(
        duty_state=Subquery(open_event.values("state")[:1]),
        acting_for=Subquery(open_event.values("recording_server_name")[:1]),
    )


def duty_label(server: Any) -> str:
    """One word for the list: disabled, what it does for a recording server, or its health."""
    if not server.enabled:
        return "Disabled"
    if server.duty_state:
        return EventState(server.duty_state).label
    if server.status == HealthStatus.NORMAL:
        return "Standby"
    return server.get_status_display()


class FailoverStatusFilter(admin.SimpleListFilter):
    """The left panel: every status with its count; choosing one filters the list."""

    title = "status"
    parameter_name = "duty"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        base = annotate_duty(model_admin.get_queryset(request))
        counts = base.aggregate(
            **{key: Count("pk", filter=condition) for key, (_, condition) in STATUSES.items()}
        )
        return [(key, f"{label} ({counts[key]})") for key, (label, _) in STATUSES.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in STATUSES:
            return queryset.filter(STATUSES[self.value()][1])
        return queryset
