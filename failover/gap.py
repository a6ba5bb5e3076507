"""The recording gap of a failover: how long a camera recorded nowhere.

Per camera, from the end of the recording server's last own segment before the
takeover to the start of the failover server's first segment on its behalf; the
event's gap is the worst camera's. Measured at failback, when both servers answer and
before restoration moves the failover server's files away.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cms.nodes.client import client_for
from cms.nodes.errors import NodeError

from .models import FailoverEvent

# The last own segment is looked for this long before detection: a segment in progress
# when the server failed started at most a segment length earlier.
LOOKBACK = dt.timedelta(minutes=15)
PAGES = 20  # at 500 files a page: far more than the window holds


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
            break
    return files


def measure(event: FailoverEvent) -> float | None:
    """The worst camera's gap in seconds, or None when it cannot be known."""
    if not (event.recording_server and event.failover_server and event.taken_over_at):
        return None
    try:
        own = _files(
            client_for(event.recording_server),
            origin="own",
            since=(event.detected_at - LOOKBACK).isoformat(),
            until=event.taken_over_at.isoformat(),
        )
        taken = _files(
            client_for(event.failover_server),
            origin="failover",
            on_behalf_of=event.node_tag,
            since=event.detected_at.isoformat(),
            until=(event.taken_over_at + LOOKBACK).isoformat(),
        )
    except NodeError:
        return None
    first: dict[str, dt.datetime] = {}
    for item in taken:  # ordered by start
        first.setdefault(item["camera"], _time(item["start"]))
    last: dict[str, dt.datetime] = {}
    for item in own:
        camera = item["camera"]
        if camera in first and _time(item["start"]) < first[camera]:
            last[camera] = max(_time(item["end"]), last.get(camera, first[camera] - LOOKBACK))
    # Overlapping recordings (a planned failover) mean no gap, not a negative one.
    gaps = [max((first[c] - last[c]).total_seconds(), 0.0) for c in last]
    return round(max(gaps), 3) if gaps else None
