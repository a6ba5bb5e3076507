"""The failover tab's status panel: what each failover server is doing, with counts."""

from __future__ import annotations

import zlib
from typing import Any

from django.contrib import admin
from django.db.models import (
    Case,
    CharField,
    Count,
    Exists,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from cms.inventory.choices import HealthStatus

from .choices import EventState
from .lifecycle import CONFIRMED_ACTING_STATES as ACTING
from .models import FailoverEvent, GuardHold

# status -> (label, condition on the annotated queryset)
STATUSES: dict[str, tuple[str, Q]] = {
    "standby": (
        "Standby",
        Q(enabled=True, duty_state__isnull=True, status=HealthStatus.NORMAL),
    ),
    "taking_over": ("Taking over", Q(duty_state=EventState.TAKING_OVER)),
    "acting": ("Acting for a recording server", Q(duty_state__in=ACTING)),
    "restoring": ("Restoring recordings", Q(duty_state=EventState.RESTORING)),
    # One status per server: a server on duty counts under its duty, not its health
    # (its label still shows the health when that is not normal).
    "abnormal": (
        "Abnormal (disconnected, volume, service, login, bad answer)",
        Q(enabled=True, duty_state__isnull=True)
        & ~Q(status__in=[HealthStatus.NORMAL, HealthStatus.UNKNOWN]),
    ),
    "unknown": (
        "Not probed yet",
        Q(enabled=True, duty_state__isnull=True, status=HealthStatus.UNKNOWN),
    ),
    "disabled": ("Disabled", Q(enabled=False, duty_state__isnull=True)),
}


def annotate_duty(queryset: QuerySet) -> QuerySet:
    """What each failover server does now: its open event's state and for whom."""
    open_event = FailoverEvent.objects.open().filter(failover_server=OuterRef("pk"))
    return queryset.annotate(
        duty_state=Subquery(open_event.values("state")[:1]),
        acting_for=Subquery(open_event.values("recording_server_name")[:1]),
    )


def annotate_status(queryset: QuerySet) -> QuerySet:
    """Each failover server's status key in STATUSES (`status_key`), by the same
    conditions as the panel's counts; None for a server in none of them."""
    return annotate_duty(queryset).annotate(
        status_key=Case(
            *[When(condition, then=Value(key)) for key, (_, condition) in STATUSES.items()],
            default=None,
            output_field=CharField(),
        )
    )


def filter_by_status(queryset: QuerySet, keys: list[str]) -> QuerySet:
    """The failover servers (annotated by annotate_duty) in any of the statuses `keys`."""
    condition = Q(pk__in=[])
    for key in keys:
        condition |= STATUSES[key][1]
    return queryset.filter(condition)


def duty_label(server: Any) -> str:
    """One word for the list: disabled, what it does for a recording server, or its health."""
    if not server.enabled:
        return "Disabled"
    if server.duty_state:
        label = EventState(server.duty_state).label
        if server.status not in (HealthStatus.NORMAL, HealthStatus.UNKNOWN):
            label += f" ({server.get_status_display()})"
        return label
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
            return filter_by_status(queryset, [self.value()])
        return queryset


# What an open event means for its recording server, by the event's state.
_FAILOVER_PHRASE = {
    EventState.DETECTED: "failing over",
    EventState.NO_FAILOVER_SERVER: "no failover server available",
    EventState.TAKING_OVER: "failing over to {}",
    EventState.ACTIVE: "failed over to {}",
    EventState.WAITING_FAILBACK: "failed over to {}",
    EventState.FAILING_BACK: "failing back from {}",
    EventState.RESTORING: "restoring recordings from {}",
}


def recording_label(server: Any) -> str:
    """A recording server's health, and where its failover stands."""
    label = "Disabled" if not server.enabled else server.get_status_display()
    phrase = _FAILOVER_PHRASE.get(getattr(server, "failover_state", None) or "")
    if phrase:
        label += f" ({phrase.format(server.failed_over_to or '')})".replace(" )", ")")
    elif getattr(server, "guard_held", False):
        label += " (Held by the mass-failure guard)"
    return label


def annotate_failed_over(queryset: QuerySet) -> QuerySet:
    open_event = FailoverEvent.objects.open().filter(recording_server=OuterRef("pk"))
    return queryset.annotate(
        failover_state=Subquery(open_event.values("state")[:1]),
        failed_over_to=Subquery(open_event.values("failover_server_name")[:1]),
        guard_held=Exists(GuardHold.objects.filter(server=OuterRef("pk"))),
    )


def label_token(label: str) -> str:
    """A short fingerprint of a label, for the page to tell which label it shows."""
    return f"{zlib.crc32(label.encode()):08x}"


def status_cell(pk: int, label: str, *, oob: bool = False, changed: bool = False) -> SafeString:
    """A server's status in a list: refreshed in place by the page's live form."""
    context = {"pk": pk, "label": label, "token": label_token(label), "oob": oob,
               "changed": changed}  # fmt: skip
    return SafeString(render_to_string("admin/failover/status_cell.html", context).strip())


def job_progress(job: Any, *, oob: bool = False) -> SafeString:
    """A restoration job's progress bar and figures, refreshed while it runs."""
    from .choices import RestorationState

    left = job.seconds_left
    context = {
        "job": job, "oob": oob,
        "mb_done": round(job.bytes_done / 1e6, 1), "mb_total": round(job.bytes_total / 1e6, 1),
        "rate": round(job.rate_bps / 1e6, 1),
        "seconds_left": round(left) if left is not None else None,
        "polling": job.state in (RestorationState.PENDING, RestorationState.RUNNING),
    }  # fmt: skip
    return SafeString(render_to_string("admin/failover/job_progress.html", context).strip())


def _server_labels(request: HttpRequest, pks: list[int]) -> dict[int, str]:
    from cms.inventory.choices import Role
    from cms.inventory.models import Server

    servers = annotate_failed_over(
        annotate_duty(Server.objects.for_user(request.user).filter(pk__in=pks))
    )
    return {s.pk: duty_label(s) if s.role == Role.FAILOVER else recording_label(s) for s in servers}


def live_updates(request: HttpRequest) -> HttpResponse:
    """What a list or event page's live form polls (htmx): the status cells whose label
    changed since the page showed them (``server-<pk>=<token>``) and the progress of the
    restoration jobs still running (``job=<pk>``), as out-of-band swaps."""
    from .models import RestorationJob

    shown = {}
    for key, token in request.GET.items():
        pk = key.removeprefix("server-")
        if key.startswith("server-") and pk.isdigit() and len(shown) < 500:
            shown[int(pk)] = token
    parts = [
        status_cell(pk, label, oob=True, changed=True)
        for pk, label in _server_labels(request, list(shown)).items()
        if label_token(label) != shown[pk]
    ]
    jobs = [int(x) for x in request.GET.getlist("job") if x.isdigit()][:100]
    parts += [
        job_progress(job, oob=True)
        for job in RestorationJob.objects.for_user(request.user).filter(pk__in=jobs)
    ]
    return HttpResponse("\n".join(parts))


def live_status(request: HttpRequest) -> JsonResponse:
    """The labels of the servers and jobs asked for, as JSON (for scripts; the admin's
    pages refresh with `live_updates`)."""
    from cms.inventory.choices import Role
    from cms.inventory.models import Server

    from .models import RestorationJob

    def ids(name: str) -> list[int]:
        raw = request.GET.get(name, "")
        return [int(x) for x in raw.split(",") if x.isdigit()][:500]

    servers = annotate_failed_over(
        annotate_duty(Server.objects.for_user(request.user).filter(pk__in=ids("servers")))
    )
    jobs = RestorationJob.objects.for_user(request.user).filter(pk__in=ids("jobs"))
    return JsonResponse({
        "servers": {
            str(s.pk): duty_label(s) if s.role == Role.FAILOVER else recording_label(s)
            for s in servers
        },
        "jobs": {
            str(j.pk): {
                "state": j.get_state_display(), "percent": j.percent,
                "files_done": j.files_done, "files_total": j.files_total,
                "bytes_done": j.bytes_done, "bytes_total": j.bytes_total,
                "rate_mbps": round(j.rate_bps / 1e6, 1),
                "seconds_left": round(j.seconds_left) if j.seconds_left is not None else None,
            }
            for j in jobs
        },
    })  # fmt: skip
