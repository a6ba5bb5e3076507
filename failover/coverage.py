"""Coverage per camera: which server recorded a recording server's cameras when, and
every stretch that no server recorded.

Read from the nodes' recording indexes, never from the CMS's own idea of what should
have happened: the recording server's own files (those a restoration put there are
"restored"), and what each failover server that acted for it still holds under its
node tag. Work is bounded per request: the period is at most ``MAX_SPAN`` and each
node is read for at most ``PAGES`` pages; a period that holds more is cut where the
reading stopped, and ``next`` says where the following request starts.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db.models import Q
from django.utils import timezone

from cms.inventory.models import Server
from cms.nodes.client import client_for
from cms.nodes.errors import NodeBadResponse

from .choices import FileState
from .models import ConfigSnapshot, FailoverEvent, FailoverSettings, RestorationFile
from .restoration import target_path

log = logging.getLogger(__name__)

MAX_SPAN = dt.timedelta(days=1)
DEFAULT_SPAN = dt.timedelta(hours=1)
PAGE_ITEMS = 500
PAGES = 4  # per node and request: at most 2,000 files, a few seconds of work
# Closing one file and opening the next takes a few milliseconds (more on a busy disk):
# a shorter stretch between two files is not footage lost.
TOLERANCE = dt.timedelta(seconds=0.5)

EVENT_MARGIN = dt.timedelta(seconds=10)  # around an event: the footage on either side
OWN, FAILOVER, RESTORED = "own", "failover", "restored"


class BadPeriod(ValueError):
    """The asked period cannot be read: the message says why."""


@dataclass
class Segment:
    start: dt.datetime
    end: dt.datetime
    source: str  # OWN, FAILOVER or RESTORED
    server: str  # the server that holds the file
    camera: str


@dataclass
class Source:
    """One node read for the period: ``ok`` False when it did not answer."""

    server_id: int | None
    server: str
    role: str  # "recording" or "failover"
    ok: bool = True
    error: str = ""
    files: int = 0


@dataclass
class CameraCoverage:
    camera: str
    spans: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def gap_seconds(self) -> float:
        return round(sum(g["seconds"] for g in self.gaps), 3)


@dataclass
class Coverage:
    server: Server
    since: dt.datetime
    until: dt.datetime  # where this answer ends (cut by MAX_SPAN, PAGES or now)
    next: dt.datetime | None  # where the next request starts, None when done
    cameras: list[CameraCoverage]
    sources: list[Source]

    @property
    def complete(self) -> bool:
        """False when a node did not answer: its footage may fill what shows as a gap."""
        return all(s.ok for s in self.sources)

    def as_dict(self) -> dict[str, Any]:
        return {
            "server": {"id": self.server.pk, "name": self.server.name},
            "since": iso(self.since),
            "until": iso(self.until),
            "next": iso(self.next) if self.next else None,
            "complete": self.complete,
            "sources": [asdict(s) for s in self.sources],
            "cameras": [
                {"camera": c.camera, "spans": c.spans, "gaps": c.gaps, "gap_seconds": c.gap_seconds}
                for c in self.cameras
            ],
        }


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: str | None, name: str) -> dt.datetime | None:
    """An ISO 8601 time (UTC when no offset is given), or None for an empty value."""
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadPeriod(
            f"{name} must be a time in ISO 8601, such as 2026-01-31T08:00:00Z"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def period(since: str | None, until: str | None) -> tuple[dt.datetime, dt.datetime]:
    """The asked period from request text: the last hour by default; ``since`` before
    ``until``. A period longer than MAX_SPAN is read a day at a time (see ``next``)."""
    now = timezone.now()
    end = parse_time(until, "until") or now
    start = parse_time(since, "since") or end - DEFAULT_SPAN
    if start >= end:
        raise BadPeriod("since must be before until")
    return start, end


def event_period(event: FailoverEvent) -> tuple[dt.datetime, dt.datetime]:
    """The failover period of an event: from a little before its server failed (its last
    own file overlaps it) until a little after the event's end, or until now."""
    settings = FailoverSettings.for_team(event.team_id)
    detect = settings.failures_before_failover * settings.probe_interval + settings.probe_timeout
    start = event.detected_at - dt.timedelta(seconds=detect) - EVENT_MARGIN
    end = event.ended_at or event.failed_back_at
    return start, (end + EVENT_MARGIN if end else timezone.now())


def cameras_of(server: Server) -> list[str]:
    """The cameras its latest configuration names, in that order."""
    snapshot = ConfigSnapshot.objects.filter(server=server).order_by("-taken_at").first()
    cameras = (snapshot.config.get("cameras", []) if snapshot else []) or []
    return [str(c.get("id")) for c in cameras if isinstance(c, dict) and c.get("id")]


def coverage(
    server: Server, since: dt.datetime, until: dt.datetime, camera: str | None = None
) -> Coverage:
    """What the nodes hold of ``server``'s cameras (or one camera) in [since, until)."""
    if since >= until:
        raise BadPeriod("since must be before until")
    now = timezone.now()
    limit = min(until, now)  # nothing is recorded in the future
    end = min(limit, since + MAX_SPAN)
    if end <= since:
        raise BadPeriod("the period has not begun yet")
    segments: list[Segment] = []
    sources: list[Source] = []
    cut = end
    restored = _restored_paths(server, since, end)
    readers = [(server, "recording", {"origin": "own"})] + [
        (fo, "failover", {"origin": "failover", "on_behalf_of": tag})
        for fo, tag in _failover_servers(server, since, end)
    ]
    for node, role, filters in readers:
        source = Source(node.pk, node.name, role)
        sources.append(source)
        try:
            items, stopped_at = _read(node, since, end, camera, filters)
        except Exception as exc:  # one node's fault must not hide the others' footage
            log.info("coverage of %s: %s did not answer: %s", server.name, node.name, exc)
            source.ok, source.error = False, str(exc)[:200]
            continue
        source.files = len(items)
        if stopped_at is not None:
            cut = min(cut, stopped_at)
        for item in items:
            kind = FAILOVER if role == "failover" else OWN
            if kind == OWN and item["path"] in restored:
                kind = RESTORED
            start, stop = _time(item["start"]), _time(item["end"])
            segments.append(Segment(start, stop, kind, node.name, str(item.get("camera", ""))))
    names = cameras_of(server) if camera is None else [camera]
    by_camera: dict[str, list[Segment]] = {name: [] for name in names}
    for segment in segments:
        by_camera.setdefault(segment.camera, []).append(segment)
    return Coverage(
        server=server,
        since=since,
        until=cut,
        next=cut if cut < limit else None,
        cameras=[
            _camera(name, segs, since, cut, live=cut == now) for name, segs in by_camera.items()
        ],
        sources=sources,
    )


def _restored_paths(server: Server, since: dt.datetime, until: dt.datetime) -> set[str]:
    """Where restorations put footage of the period on ``server``: its path on the
    failover server moved under ``own/``, or the other name a clash made it take."""
    rows = (
        RestorationFile.objects.filter(job__target_server=server, start__lt=until)
        .filter(Q(end__gt=since) | Q(end__isnull=True))
        .exclude(state=FileState.PENDING)
        .values_list("path", "restored_as", "job__event__node_tag")
    )
    paths = set()
    for path, restored_as, tag in rows:
        try:
            paths.add(restored_as or target_path(path, tag))
        except NodeBadResponse:  # a path restoration itself refused: never copied
            continue
    return paths


def _failover_servers(
    server: Server, since: dt.datetime, until: dt.datetime
) -> list[tuple[Server, str]]:
    """Each failover server that acted for ``server`` during the period, with the tag it
    files that footage under; the ones that acted earlier in an event hold footage too."""
    events = FailoverEvent.objects.filter(recording_server=server, detected_at__lt=until).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gt=since)
    )
    wanted: dict[tuple[int, str], None] = {}
    for event in events.order_by("detected_at"):
        ids = [e.get("id") for e in event.earlier_failover_servers if isinstance(e, dict)]
        for pk in [*ids, event.failover_server_id]:
            if isinstance(pk, int):
                wanted[(pk, event.node_tag)] = None
    found = Server.objects.in_bulk({pk for pk, _ in wanted})
    return [(found[pk], tag) for pk, tag in wanted if pk in found]


def _camera(
    name: str, segments: list[Segment], since: dt.datetime, until: dt.datetime, *, live: bool
) -> CameraCoverage:
    """Spans (touching files of one server and source, joined) and gaps (stretches of
    the period no file covers, longer than TOLERANCE). A gap that runs until now is
    ``ongoing``: the file being recorded is listed only when it is closed."""
    result = CameraCoverage(name)
    segments = sorted(
        (s for s in segments if s.end > since and s.start < until), key=lambda s: s.start
    )
    span: dict[str, Any] | None = None
    open_spans: list[dict[str, Any]] = []
    for seg in segments:
        start, end = max(seg.start, since), min(seg.end, until)
        span = next(
            (s for s in open_spans if (s["_server"], s["source"]) == (seg.server, seg.source)),
            None,
        )
        if span is not None and start - span["_end"] <= TOLERANCE:
            span["_end"] = max(span["_end"], end)
            span["files"] += 1
            continue
        if span is not None:
            open_spans.remove(span)
        span = {"_start": start, "_end": end, "_server": seg.server, "source": seg.source,
                "files": 1}  # fmt: skip
        open_spans.append(span)
        result.spans.append(span)
    for span in result.spans:
        span.update(_interval(span.pop("_start"), span.pop("_end")), server=span.pop("_server"))
    covered = since
    for seg in segments:
        if seg.start - covered > TOLERANCE:
            result.gaps.append({**_interval(covered, seg.start), "ongoing": False})
        covered = max(covered, seg.end)
    if until - covered > TOLERANCE:
        result.gaps.append({**_interval(covered, until), "ongoing": live})
    return result


def _interval(start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    return {"start": iso(start), "end": iso(end),
            "seconds": round((end - start).total_seconds(), 3)}  # fmt: skip


def _read(
    node: Server, since: dt.datetime, until: dt.datetime, camera: str | None, filters: dict
) -> tuple[list[dict[str, Any]], dt.datetime | None]:
    """The node's recordings overlapping the period, at most PAGES pages; when it holds
    more, also the start of the last file read: the answer must end there."""
    client = client_for(node)
    query = {**filters, "kind": "recording", "since": iso(since), "until": iso(until)}
    if camera:
        query["camera"] = camera
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(PAGES):
        page = client.recordings_page(cursor, PAGE_ITEMS, **query)
        items += page["items"]
        cursor = page.get("next")
        if not cursor:
            return items, None
    stop = _time(items[-1]["start"]) if items else until
    if stop <= since:  # thousands of files starting at one instant: show them anyway
        return items, None
    return [i for i in items if _time(i["start"]) < stop], stop


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


CSV_HEADER = ["camera", "row", "source", "server", "start", "end", "seconds", "files"]


def as_csv(found: Coverage) -> str:
    """One row per span (who recorded) and per gap (nobody did), by camera and time."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for cam in found.cameras:
        rows = [("recorded", s) for s in cam.spans] + [("gap", g) for g in cam.gaps]
        for row, item in sorted(rows, key=lambda r: r[1]["start"]):
            writer.writerow([
                cam.camera, row, item.get("source", ""), item.get("server", ""),
                item["start"], item["end"], item["seconds"], item.get("files", ""),
            ])  # fmt: skip
    return out.getvalue()


def csv_name(found: Coverage) -> str:
    stamp = found.since.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"coverage-{found.server.pk}-{stamp}.csv"
