"""Health probing: every enabled server, concurrently, once per probe interval.

The database is written when something changes, not on every probe: counters
saturate at the thresholds (a server that has been fine for a week does not
count its millionth success), and last-seen is refreshed at a coarse grain.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q
from django.utils import timezone

from cms.inventory.choices import HealthStatus, Role
from cms.inventory.models import Server
from cms.nodes.client import client_for
from cms.nodes.errors import CertificateChanged, NodeAuthFailed, NodeError

from . import engine
from .choices import EventState
from .events import lease
from .models import ConfigSnapshot, FailoverEvent, FailoverSettings

log = logging.getLogger(__name__)

MAX_CONCURRENCY = 128
LAST_SEEN_GRAIN = dt.timedelta(seconds=60)
HEALTH_FIELDS = [
    "status",
    "consecutive_failures",
    "consecutive_successes",
    "last_seen",
    "last_error",
    "latency_ms",
    "model",
    "serial",
    "software_version",
    "cms_mode",
]


@dataclass
class ProbeResult:
    server_id: int
    status: str
    latency_ms: float | None = None
    error: str = ""
    health: dict[str, Any] | None = None


@dataclass
class CycleReport:
    ran: bool
    probed: int = 0
    written: int = 0
    changed: list[int] = field(default_factory=list)
    seconds: float = 0.0


def classify(health: dict[str, Any]) -> str:
    """A node's own health report, as one status."""
    if (health.get("volume") or {}).get("state") == "crashed":
        return HealthStatus.VOLUME_ABNORMAL
    if (health.get("service") or {}).get("state") != "running":
        return HealthStatus.SERVICE_ABNORMAL
    return HealthStatus.NORMAL


def probe(server: Server, timeout: float) -> ProbeResult:
    started = time.monotonic()
    try:
        health = client_for(server, timeout=(timeout, timeout), retries=0).health()
    except CertificateChanged as exc:
        return ProbeResult(server.pk, HealthStatus.CERTIFICATE_CHANGED, error=str(exc))
    except NodeAuthFailed as exc:
        return ProbeResult(server.pk, HealthStatus.AUTH_FAILED, error=str(exc))
    except NodeError as exc:
        return ProbeResult(server.pk, HealthStatus.DISCONNECTED, error=str(exc))
    latency = (time.monotonic() - started) * 1000
    status = classify(health)
    error = "" if status == HealthStatus.NORMAL else _describe(health)
    return ProbeResult(server.pk, status, round(latency, 1), error, health)


def _describe(health: dict[str, Any]) -> str:
    volume = (health.get("volume") or {}).get("state")
    service = (health.get("service") or {}).get("state")
    return f"volume {volume}, surveillance service {service}"


def apply_result(
    server: Server, result: ProbeResult, settings: FailoverSettings, now: dt.datetime
) -> bool:
    """Update the server's health fields in memory; True if they need writing."""
    before = tuple(getattr(server, f) for f in HEALTH_FIELDS)
    if result.status == HealthStatus.NORMAL:
        server.consecutive_successes = min(
            server.consecutive_successes + 1, settings.successes_before_recovery
        )
        server.consecutive_failures = 0
    else:
        if result.status != server.status:
            server.consecutive_failures = 0  # a different failure starts a new count
        server.consecutive_failures = min(
            server.consecutive_failures + 1, settings.failures_before_failover
        )
        server.consecutive_successes = 0
    server.status = result.status
    server.last_error = result.error[:1000]
    if result.health is not None:
        if server.last_seen is None or now - server.last_seen >= LAST_SEEN_GRAIN:
            server.last_seen = now
        if server.latency_ms is None or abs(server.latency_ms - (result.latency_ms or 0)) > 250:
            server.latency_ms = result.latency_ms  # only a big change is worth a write
        server.cms_mode = result.health.get("cms_mode", server.cms_mode) or server.cms_mode
    return tuple(getattr(server, f) for f in HEALTH_FIELDS) != before


def claim_cycle(settings: FailoverSettings, now: dt.datetime) -> bool:
    """One probe cycle per interval, whatever the number of beats or workers."""
    due = now - dt.timedelta(seconds=max(settings.probe_interval - 0.5, 0.5))
    return bool(
        FailoverSettings.objects.filter(pk=settings.pk)
        .filter(Q(last_probe_cycle_at__isnull=True) | Q(last_probe_cycle_at__lte=due))
        .update(last_probe_cycle_at=now)
    )


def run_cycle(*, force: bool = False) -> CycleReport:
    started = time.monotonic()
    settings = FailoverSettings.load()
    now = timezone.now()
    if not force and not claim_cycle(settings, now):
        return CycleReport(ran=False)
    servers = list(Server.objects.filter(enabled=True).select_related(None))
    report = CycleReport(ran=True, probed=len(servers))
    if servers:
        with ThreadPoolExecutor(max_workers=min(MAX_CONCURRENCY, len(servers))) as pool:
            results = list(pool.map(lambda s: probe(s, settings.probe_timeout), servers))
    else:
        results = []
    dirty = []
    for server, result in zip(servers, results, strict=True):
        if apply_result(server, result, settings, now):
            dirty.append(server)
    if dirty:
        Server.objects.bulk_update(dirty, HEALTH_FIELDS, batch_size=500)
    report.written = len(dirty)
    report.changed = [s.pk for s in dirty]
    by_id = {s.pk: (s, r) for s, r in zip(servers, results, strict=True)}
    evaluate(by_id, settings)
    report.seconds = time.monotonic() - started
    return report


def evaluate(by_id: dict[int, tuple[Server, ProbeResult]], settings: FailoverSettings) -> None:
    """Decisions after a cycle: open events, mark recoveries, retry, refresh snapshots."""
    open_events = {e.recording_server_id: e for e in FailoverEvent.objects.open()}
    protected = set(
        Server.objects.filter(role=Role.RECORDING, protections__isnull=False).values_list(
            "pk", flat=True
        )
    )
    latest_versions = dict(
        ConfigSnapshot.objects.filter(server_id__in=protected)
        .order_by("server_id", "taken_at", "pk")
        .values_list("server_id", "version")
    )  # the newest wins as dict() keeps the last value per server
    for server_id, (server, result) in by_id.items():
        if server.role != Role.RECORDING:
            continue
        event = open_events.get(server_id)
        trigger = engine.TRIGGER_FOR_STATUS.get(server.status)
        if event is None:
            if (
                trigger
                and settings.auto_failover
                and trigger in settings.triggers()
                and server_id in protected
                and server.consecutive_failures >= settings.failures_before_failover
            ):
                engine.open_failover(
                    server,
                    trigger,
                    reason=f"{server.last_error or trigger} "
                    f"({server.consecutive_failures} probes in a row)",
                )
            elif server_id in protected and result.status == HealthStatus.NORMAL:
                _refresh_snapshot_if_changed(server, result, latest_versions.get(server_id))
            continue
        if (
            server.status == HealthStatus.NORMAL
            and server.consecutive_successes >= settings.successes_before_recovery
        ):
            engine.mark_recovered(event)
            event.refresh_from_db()
        if event.state in (
            EventState.NO_FAILOVER_SERVER,
            EventState.WAITING_FAILBACK,
        ) or (event.state in _RESUMABLE and _lease_expired(event)):
            engine.enqueue_advance(event.pk)
    # Events whose recording server is no longer probed (disabled) still need driving.
    for event in open_events.values():
        if event.recording_server_id not in by_id and _lease_expired(event):
            engine.enqueue_advance(event.pk)


_RESUMABLE = {
    EventState.DETECTED,
    EventState.TAKING_OVER,
    EventState.FAILING_BACK,
    EventState.RESTORING,
}


def _lease_expired(event: FailoverEvent) -> bool:
    return event.worked_at is None or timezone.now() - event.worked_at > lease()


def _refresh_snapshot_if_changed(
    server: Server, result: ProbeResult, known_version: str | None
) -> None:
    reported = (result.health or {}).get("config_version")
    if reported is not None and str(reported) == known_version:
        return
    try:
        engine.refresh_snapshot(server)
    except NodeError as exc:
        log.warning("could not read the configuration of %s: %s", server.name, exc)
