"""The Prometheus endpoint's figures, computed from the database at each scrape.

Only the probe cycle's own timing is not in the database (writing it there would cost
a write per cycle on a steady fleet): the probe task leaves the last cycle's figures in
a small file under var/, which every process on the host reads.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Count, F, Sum
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from cms.inventory.models import Server

from .choices import RestorationState
from .lifecycle import OPEN_STATES
from .models import FailoverEvent, FailoverSettings, RestorationJob
from .shards import Shard

log = logging.getLogger(__name__)

# Seconds: a takeover takes a few probe intervals plus the node's confirmation.
TAKEOVER_BUCKETS = (5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0, 300.0)
GAP_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)


def stats_path() -> Path:
    return Path(settings.VAR_DIR) / "run" / "probe-cycle.json"


def shard_stats_path(index: int) -> Path:
    return Path(settings.VAR_DIR) / "run" / "probe-cycle" / f"shard-{index}.json"


def record_cycle(
    probed: int, seconds: float, shard: Shard | None = None, claimed: float | None = None
) -> None:
    """Leave the last probe cycle's figures for the scrape (atomic replace; a failure is
    logged and costs nothing else): one file per shard, or one for a whole-fleet cycle."""
    path = stats_path() if shard is None else shard_stats_path(shard.index)
    figures: dict[str, Any] = {"probed": probed, "seconds": seconds, "at": time.time()}
    if shard is not None:
        figures["shards"] = shard.count
    if claimed is not None:
        figures["claimed"] = claimed  # the time that chose the slot
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".probe-cycle-")
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(figures))
        os.replace(tmp, path)
    except OSError:
        log.warning("the probe cycle's figures were not written", exc_info=True)


def last_cycle() -> dict[str, float] | None:
    """The last cycle's figures: the newest whole-fleet cycle, or the shards' last
    cycles together (servers summed; the slowest shard's seconds; the oldest shard's
    time, so that one stalled shard shows in the age)."""
    whole = _read(stats_path())
    folder = stats_path().parent / "probe-cycle"
    parts = (
        [p for p in map(_read, sorted(folder.glob("shard-*.json"))) if p] if folder.is_dir() else []
    )
    if parts:
        total = max(parts, key=lambda p: p["at"]).get("shards", len(parts))
        parts = [p for p in parts if p.get("shards") == total]
    if parts and (whole is None or max(p["at"] for p in parts) > whole["at"]):
        return {
            "probed": sum(p["probed"] for p in parts),
            "seconds": max(p["seconds"] for p in parts),
            "at": min(p["at"] for p in parts),
        }
    return whole


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def histogram(name: str, doc: str, values: Iterable[float], buckets: tuple[float, ...]) -> Metric:
    values = sorted(values)
    cumulative = [(str(b), sum(1 for v in values if v <= b)) for b in buckets]
    cumulative.append(("+Inf", len(values)))
    return HistogramMetricFamily(name, doc, buckets=cumulative, sum_value=sum(values))


class DatabaseCollector:
    """Every figure read fresh from the database when Prometheus scrapes."""

    def collect(self) -> Iterator[Metric]:
        servers = GaugeMetricFamily(
            "cms_servers", "Servers by role and status", labels=["role", "status"]
        )
        rows = Server.objects.filter(enabled=True).values("role", "status").annotate(n=Count("pk"))
        for row in rows.order_by("role", "status"):
            servers.add_metric([row["role"], row["status"]], row["n"])
        yield servers

        events = GaugeMetricFamily("cms_open_events", "Open failover events by state",
                                   labels=["state"])  # fmt: skip
        counts = dict(
            FailoverEvent.objects.filter(state__in=OPEN_STATES)
            .values_list("state")
            .annotate(n=Count("pk"))
        )
        for state in sorted(OPEN_STATES):
            events.add_metric([state], counts.get(state, 0))
        yield events

        takeovers = FailoverEvent.objects.filter(taken_over_at__isnull=False).values_list(
            F("taken_over_at") - F("detected_at"), flat=True
        )
        yield histogram(
            "cms_time_to_take_over_seconds",
            "From detection to the failover server's confirmed recording, per event",
            (d.total_seconds() for d in takeovers),
            TAKEOVER_BUCKETS,
        )
        gaps = FailoverEvent.objects.filter(recording_gap_seconds__isnull=False).values_list(
            "recording_gap_seconds", flat=True
        )
        yield histogram(
            "cms_recording_gap_seconds",
            "The worst camera's time recorded nowhere, per event, measured at failback",
            gaps,
            GAP_BUCKETS,
        )

        running = RestorationJob.objects.filter(state=RestorationState.RUNNING)
        rate = running.aggregate(total=Sum("rate_bps"))["total"] or 0.0
        yield GaugeMetricFamily(
            "cms_restoration_bytes_per_second",
            "Bytes per second of every running restoration together",
            value=rate,
        )
        yield GaugeMetricFamily(
            "cms_restorations_running", "Restorations running now", value=running.count()
        )

        cycle = last_cycle()
        if cycle is not None:
            interval = max(FailoverSettings.load().probe_interval, 1)
            yield GaugeMetricFamily(
                "cms_probe_cycle_seconds",
                "How long the last probe cycle took",
                value=cycle["seconds"],
            )
            yield GaugeMetricFamily(
                "cms_probe_cycle_servers",
                "Servers probed by the last cycle",
                value=cycle["probed"],
            )
            yield GaugeMetricFamily(
                "cms_probes_per_second",
                "Probes per second: the last cycle's servers over the probe interval",
                value=cycle["probed"] / interval,
            )
            yield GaugeMetricFamily(
                "cms_probe_cycle_age_seconds",
                "Seconds since the last probe cycle ended (a stalled prober grows it)",
                value=max(time.time() - cycle["at"], 0.0),
            )


def allowed(request: HttpRequest) -> bool:
    """The scrape token (CMS_METRICS_TOKEN, as `Authorization: Bearer <token>`), or a
    staff login."""
    token = settings.CMS_METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return True
    user: Any = getattr(request, "user", None)
    return bool(user and user.is_authenticated and user.is_active and user.is_staff)


def view(request: HttpRequest) -> HttpResponse:
    if not allowed(request):
        response = HttpResponse("A metrics token or a staff login is needed.\n", status=401,
                                content_type="text/plain")  # fmt: skip
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
