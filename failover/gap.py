"""The recording gap of a failover: how long a camera recorded nowhere.

Per camera, from the end of the recording server's last own segment before the
takeover to the start of the failover server's first segment on its behalf; the
event's gap is the worst camera's. Measured at failback, when both servers answer and
before restoration moves the failover server's files away.

A figure is given only when it is sure: every camera the failover server recorded
must have an own segment in the window, and the listing must be complete; otherwise
the gap is "not measured" rather than a wrong number.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from cms.nodes.client import client_for

from .models import FailoverEvent, FailoverSettings

log = logging.getLogger(__name__)

PAGES = 20  # 500 files a page; the window holds far fewer unless segments are tiny
MARGIN = dt.timedelta(seconds=60)  # a segment in progress when the server failed


class Incomplete(Exception):
    """More files than the pages read: the figure would be a guess."""


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _files(client: Any, **filters: Any) -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = []
    cursor = None
    for _ in range(PAGES):
        page = client.recordings_page(cursor, 500, kind="recording", **filters)
        files += page["items"]
        cursor = page.get("next")
        if not cursor:
            return files
    raise Incomplete


def window(event: FailoverEvent) -> dt.timedelta:
    """How far before detection the last own segment can have ended."""
    settings = FailoverSettings.for_team(event.team_id)
    detect = settings.failures_before_failover * settings.probe_interval + settings.probe_timeout
    return dt.timedelta(seconds=detect) + MARGIN


def measure(event: FailoverEvent) -> float | None:
    """The worst camera's gap in seconds, or None when it cannot be known for sure.

    Never raises: a gap that cannot be measured must not hold up the failback.
    """
    if not (event.recording_server and event.failover_server and event.taken_over_at):
        return None
    try:
        return _measure(event)
    except Exception as exc:  # any failure means "not measured", never a stuck failback
        log.info("event %s: recording gap not measured: %s", event.pk, exc)
        return None


def _measure(event: FailoverEvent) -> float | None:
    gaps = camera_gaps(event)
    if gaps is None:
        return None
    return max(gaps.values())


def camera_gaps(event: FailoverEvent) -> dict[str, float] | None:
    """Each camera's gap in seconds (0 when the recordings overlap), or None when one
    camera lacks a segment on either side; raises when a node cannot be read."""
    before = window(event)
    own = _files(
        client_for(event.recording_server),
        origin="own",
        since=(event.detected_at - before).isoformat(),
        until=event.taken_over_at.isoformat(),
    )
    taken = _files(
        client_for(event.failover_server),
        origin="failover",
        on_behalf_of=event.node_tag,
        since=event.detected_at.isoformat(),
        until=(event.taken_over_at + before).isoformat(),
    )
    first: dict[str, dt.datetime] = {}
    for item in taken:  # ordered by start
        first.setdefault(item["camera"], _time(item["start"]))
    last: dict[str, dt.datetime] = {}
    for item in own:
        camera = item["camera"]
        if camera in first and _time(item["start"]) < first[camera]:
            end = _time(item["end"])
            last[camera] = max(end, last.get(camera, end))
    if not first or set(last) != set(first):
        return None  # a camera without a segment on one side: no sure figure
    # Overlapping recordings (a planned failover) mean no gap, not a negative one.
    return {c: round(max((first[c] - last[c]).total_seconds(), 0.0), 3) for c in sorted(first)}
