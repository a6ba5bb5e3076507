"""Failover drills: prove, on a healthy recording server, that failover still works.

A drill runs on chosen recording servers one after the other, in a worker: a manual
failover, confirmation that the failover server records every camera for a while, each
camera's recording gap, failback, restoration, then a report per server held to the
team's targets (DrillTargets). The engine does the work; a drill only drives the event
(engine.advance is safe from any worker) and watches the clock and the fleet.

A drill never competes with real work: it is refused on a server whose failover servers
are busy, and it stops on any real fault of the server or its failover servers, handing
a borrowed failover server back when its recording server is healthy.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from cms import alerts
from cms.actions import ActionRefused, require
from cms.alerts.kinds import Kind
from cms.audit import actor_name
from cms.celery import app as celery_app
from cms.inventory.choices import HealthStatus, Role
from cms.inventory.models import Server
from cms.nodes.client import client_for
from cms.nodes.errors import NodeError

from . import engine, gap
from .choices import DrillState, EventState
from .errors import FailoverError
from .events import note
from .lifecycle import FINAL_STATES
from .models import (
    DRILL_OPEN_STATES,
    Drill,
    DrillServer,
    DrillTargets,
    FailoverEvent,
    Protection,
)

log = logging.getLogger(__name__)

# The Celery task that runs run() (failover/tasks.py registers it under this name).
DRILL_TASK = "failover.tasks.run_drill"
POLL_SECONDS = 0.25
# Beyond the targets: how long a step may take before the drill gives up on it.
TAKEOVER_LIMIT_SECONDS = 120.0
# A drill no worker took within this, or whose worker stopped beating for this, is over.
QUEUED_LIMIT = dt.timedelta(minutes=15)
HEARTBEAT_LIMIT = dt.timedelta(minutes=2)


class Stop(Exception):
    """A real fault: the drill stops and says why."""


class Failed(Exception):
    """A step of the drill did not happen: the server fails the drill."""


# -- asking for a drill --------------------------------------------------------------


def refusal(server: Server, drill: Drill | None = None) -> str | None:
    """Why a drill (other than `drill`) cannot run on `server` now, or None."""
    if server.role != Role.RECORDING:
        return f"{server.name} is not a recording server."
    if not server.enabled:
        return f"{server.name} is disabled."
    if server.status != HealthStatus.NORMAL:
        return f"{server.name} is not healthy ({server.get_status_display()})."
    open_event = FailoverEvent.objects.open().filter(recording_server=server).first()
    if open_event is not None:
        return f"{server.name} already has an open failover event (#{open_event.pk})."
    protectors = [p.failover_server for p in _protections(server)]
    if not protectors:
        return f"No failover server protects {server.name}."
    for failover_server in protectors:
        acting = FailoverEvent.objects.open().filter(failover_server=failover_server).first()
        if acting is not None:
            return (
                f"Its failover server {failover_server.name} is busy: it acts for "
                f"{acting.recording_server_name} (event #{acting.pk})."
            )
    # Another drill waiting for or holding one of the same failover servers: the two
    # would compete for them, and each would take the other's failover for a real fault.
    sharing = (
        DrillServer.objects.filter(state__in=[DrillState.QUEUED, DrillState.RUNNING])
        .filter(drill__in=live_drills(timezone.now()))
        .filter(server__protections__failover_server__in=protectors)
        .exclude(drill=drill)
        .distinct()
        .first()
    )
    if sharing is not None:
        if sharing.server_id == server.pk:
            return f"{server.name} is already in drill #{sharing.drill_id}."
        return (
            f"Drill #{sharing.drill_id} on {sharing.server_name} uses the same failover "
            "servers; try again once it has ended."
        )
    return None


def request_drill(user: Any, servers: Iterable[Server]) -> Drill:
    """Record a drill on `servers` and hand it to a worker; servers that cannot be drilled
    now are refused in its report with the reason. The operator needs both failover
    permissions: a drill fails over and fails back."""
    require(user, "trigger_failover")
    require(user, "fail_back")
    return start_drill(servers, requested_by=actor_name(user))


def start_drill(servers: Iterable[Server], *, requested_by: str, scheduled: bool = False) -> Drill:
    """request_drill() once permitted; the schedule's entry point."""
    # As the database has them now: a caller's copy may predate the last probe.
    asked = [s.pk for s in servers]
    fresh = Server.objects.in_bulk(asked)
    servers = [fresh[pk] for pk in dict.fromkeys(asked) if pk in fresh]
    if not servers:
        raise ActionRefused("Choose at least one recording server.")
    teams = {s.team_id for s in servers}
    if len(teams) > 1:
        raise ActionRefused("A drill runs on the servers of one team: choose one team's.")
    targets = DrillTargets.for_team(servers[0].team_id)
    with transaction.atomic():
        drill = Drill.objects.create(
            team_id=servers[0].team_id,
            requested_by=requested_by,
            scheduled=scheduled,
            max_takeover_seconds=targets.max_takeover_seconds,
            max_gap_seconds=targets.max_gap_seconds,
            max_restoration_seconds=targets.max_restoration_seconds,
            recording_seconds=targets.recording_seconds,
        )
        refused = []
        for position, server in enumerate(servers):
            why = refusal(server, drill)
            DrillServer.objects.create(
                drill=drill,
                server=server,
                server_name=server.name,
                position=position,
                state=DrillState.REFUSED if why else DrillState.QUEUED,
                reason=why or "",
                finished_at=timezone.now() if why else None,
            )
            if why:
                refused.append(why)
        if len(refused) == len(servers):
            _finish(drill, DrillState.REFUSED, " ".join(refused))
        else:
            transaction.on_commit(lambda: celery_app.send_task(DRILL_TASK, args=[drill.pk]))
    return drill


def scheduled_drills(now: dt.datetime) -> list[Drill]:
    """The monthly drills due at `now` (local time): each team whose maintenance window
    is open and which has no scheduled drill this month yet drills every protected
    recording server it has. Beat asks every few minutes; once a month per team."""
    local = timezone.localtime(now)
    started = []
    for targets in DrillTargets.objects.filter(monthly_day=local.day).select_related("team"):
        opens = local.replace(
            hour=targets.window_start.hour, minute=targets.window_start.minute, second=0,
            microsecond=0,
        )  # fmt: skip
        if not opens <= local < opens + dt.timedelta(hours=targets.window_hours):
            continue
        month = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        if Drill.objects.filter(team=targets.team, scheduled=True, created_at__gte=month).exists():
            continue
        servers = list(
            Server.objects.filter(team=targets.team, role=Role.RECORDING, enabled=True,
                                  protections__isnull=False).distinct().order_by("name")
        )  # fmt: skip
        if servers:
            started.append(start_drill(servers, requested_by="schedule", scheduled=True))
    return started


def live_drills(now: dt.datetime) -> Any:
    """Drills a worker runs or will run: queued a short while ago, or running with a
    fresh heartbeat or an event a worker holds (a long restoration beats no heart)."""
    return Drill.objects.filter(
        Q(state=DrillState.QUEUED, created_at__gt=now - QUEUED_LIMIT)
        | Q(state=DrillState.RUNNING, heartbeat_at__gt=now - HEARTBEAT_LIMIT)
        | Q(state=DrillState.RUNNING, servers__event__lease_expires_at__gt=now)
    ).distinct()


def abandoned(now: dt.datetime) -> list[Drill]:
    """End the drills no worker took, or whose worker died, as failed (the schedule's
    tick asks): they hold no failover server any more, and their failure is recorded.
    A failover such a drill had started stays open until an operator fails it back."""
    stale = Drill.objects.filter(state__in=DRILL_OPEN_STATES).exclude(
        pk__in=live_drills(now).values("pk")
    )
    ended = []
    for drill in stale:
        why = (
            "No worker ran the drill."
            if drill.state == DrillState.QUEUED
            else "The worker running the drill stopped; fail back its open failover by hand."
        )
        if Drill.objects.filter(pk=drill.pk, state=drill.state).update(
            state=DrillState.FAILED, reason=why, finished_at=now
        ):
            drill.servers.filter(state__in=DRILL_OPEN_STATES).update(
                state=DrillState.FAILED, reason=why, finished_at=now
            )
            drill.refresh_from_db()
            drill_failed(drill)
            ended.append(drill)
    return ended


# -- running it (in a worker) --------------------------------------------------------


def run(drill_id: int) -> str | None:
    """Run a queued drill to its end; returns its state. Runs once: a second worker given
    the same drill finds it taken."""
    now = timezone.now()
    if not Drill.objects.filter(pk=drill_id, state=DrillState.QUEUED).update(
        state=DrillState.RUNNING, started_at=now, heartbeat_at=now
    ):
        return Drill.objects.filter(pk=drill_id).values_list("state", flat=True).first()
    drill = Drill.objects.get(pk=drill_id)
    stopped = ""
    for row in drill.servers.filter(state=DrillState.QUEUED).select_related("server"):
        if stopped:
            _row_done(row, DrillState.STOPPED, f"Not run: the drill stopped ({stopped})")
            continue
        _run_server(drill, row)
        if row.state == DrillState.STOPPED:
            stopped = row.reason
    rows = list(drill.servers.all())
    ran = [r for r in rows if r.state != DrillState.REFUSED]
    notes = [f"{r.server_name}: {r.reason}" for r in rows if r.state != DrillState.PASSED]
    if stopped:
        state = DrillState.STOPPED
    elif not ran:
        state = DrillState.REFUSED
    elif all(r.state == DrillState.PASSED for r in ran):
        state = DrillState.PASSED
    else:
        state = DrillState.FAILED
    _finish(drill, state, " ".join(notes))
    if state == DrillState.FAILED:
        drill_failed(drill)
    return state


def drill_failed(drill: Drill) -> None:
    """A drill failed: recorded on the drill (`failure_recorded_at`), logged, and the
    team's alert channels told (notify() only enqueues, after commit)."""
    Drill.objects.filter(pk=drill.pk).update(failure_recorded_at=timezone.now())
    drill.refresh_from_db()
    log.warning("drill #%s failed: %s", drill.pk, drill.reason)
    link = reverse("admin:failover_drill_change", args=[drill.pk])
    alerts.notify(drill.team_id, Kind.DRILL_FAILED, f"Drill failed: drill #{drill.pk}",
                  f"Failover drill #{drill.pk} failed. {drill.reason}".strip(),
                  url=link)  # fmt: skip


def _finish(drill: Drill, state: str, reason: str) -> None:
    Drill.objects.filter(pk=drill.pk).update(state=state, reason=reason, finished_at=timezone.now())
    drill.refresh_from_db()


def _row_done(row: DrillServer, state: str, reason: str = "", **fields: Any) -> None:
    fields.update(state=state, reason=reason, finished_at=timezone.now())
    DrillServer.objects.filter(pk=row.pk).update(**fields)
    for name, value in fields.items():
        setattr(row, name, value)


def _run_server(drill: Drill, row: DrillServer) -> None:
    server = row.server
    why = refusal(server, drill) if server is not None else "The server was deleted."
    if why:
        _row_done(row, DrillState.REFUSED, why)
        return
    DrillServer.objects.filter(pk=row.pk).update(state=DrillState.RUNNING)
    actor = f"drill #{drill.pk}"
    try:
        event = engine.manual_failover(server, actor=actor)
    except FailoverError as exc:
        _row_done(row, DrillState.FAILED, f"The manual failover was refused: {exc}")
        return
    DrillServer.objects.filter(pk=row.pk).update(event=event)
    row.event = event
    try:
        _drill_event(drill, row, server, event, actor)
    except Stop as exc:
        _hand_back(event, server, actor, str(exc))
        _row_done(row, DrillState.STOPPED, str(exc))
    except Failed as exc:
        _hand_back(event, server, actor, str(exc))
        _row_done(row, DrillState.FAILED, str(exc))


def _drill_event(
    drill: Drill, row: DrillServer, server: Server, event: FailoverEvent, actor: str
) -> None:
    watch = Watch(drill, server, event)
    _drive(event, watch, {EventState.ACTIVE}, TAKEOVER_LIMIT_SECONDS, "the takeover")
    takeover = event.time_to_take_over.total_seconds()
    DrillServer.objects.filter(pk=row.pk).update(
        takeover_seconds=round(takeover, 3), failover_server_name=event.failover_server_name
    )
    _confirm_recording(event, watch, drill.recording_seconds)
    try:
        gaps = gap.camera_gaps(event)
    except (gap.Incomplete, NodeError) as exc:
        raise Failed(f"The recording gap could not be measured: {exc}") from None
    if gaps is None:
        raise Failed("The recording gap could not be measured: a camera has no segment.")
    DrillServer.objects.filter(pk=row.pk).update(camera_gaps=gaps)

    watch.check()
    try:
        engine.fail_back_now(event, actor=actor)
    except FailoverError as exc:
        watch.check()
        raise Failed(f"Failback was refused: {exc}") from None
    limit = drill.max_restoration_seconds + TAKEOVER_LIMIT_SECONDS
    _drive(event, watch, FINAL_STATES, limit, "the failback and restoration")
    if event.state != EventState.COMPLETED:
        raise Failed(f"The event ended {event.get_state_display().lower()}: {event.last_error}")
    restoration = None
    if event.failed_back_at and event.ended_at:
        restoration = round((event.ended_at - event.failed_back_at).total_seconds(), 3)
    misses = []
    if takeover > drill.max_takeover_seconds:
        misses.append(f"time to take over {takeover:.1f} s > {drill.max_takeover_seconds:g} s")
    worst = max(gaps.values())
    if worst > drill.max_gap_seconds:
        worst_camera = max(gaps, key=gaps.__getitem__)
        misses.append(
            f"recording gap of {worst_camera} {worst:.1f} s > {drill.max_gap_seconds:g} s"
        )
    if restoration is not None and restoration > drill.max_restoration_seconds:
        misses.append(f"restoration {restoration:.1f} s > {drill.max_restoration_seconds:g} s")
    _row_done(
        row,
        DrillState.FAILED if misses else DrillState.PASSED,
        ("Missed its targets: " + "; ".join(misses) + ".") if misses else "",
        camera_gaps=gaps,
        takeover_seconds=round(takeover, 3),
        failover_server_name=event.failover_server_name,
        restoration_seconds=restoration,
    )


class Watch:
    """The real faults a drill gives way to: its recording server or one of its failover
    servers failing, another event needing one of them, or the engine replacing the
    drill's failover server (a cascade)."""

    def __init__(self, drill: Drill, server: Server, event: FailoverEvent) -> None:
        self.drill_id = drill.pk
        self.server = server
        self.event = event
        self.protectors = [p.failover_server_id for p in _protections(server)]

    def check(self) -> None:
        Drill.objects.filter(pk=self.drill_id).update(heartbeat_at=timezone.now())
        faulty = Server.objects.filter(
            pk__in=[self.server.pk, *self.protectors], status__in=list(engine.TRIGGER_FOR_STATUS)
        ).first()
        if faulty is not None:
            raise Stop(
                f"Real fault: {faulty.name} failed during the drill "
                f"({faulty.last_error or faulty.get_status_display()})."
            )
        other = (
            FailoverEvent.objects.open()
            .exclude(pk=self.event.pk)
            .filter(failover_server_id__in=self.protectors)
            .first()
        ) or (
            FailoverEvent.objects.open()
            .exclude(pk=self.event.pk)
            .filter(recording_server__protections__failover_server_id__in=self.protectors)
            .distinct()
            .first()
        )
        if other is not None:
            raise Stop(
                f"Real fault: failover event #{other.pk} of {other.recording_server_name} "
                "needs the same failover servers."
            )
        self.event.refresh_from_db()
        if self.event.earlier_failover_servers:
            raise Stop("Real fault: the drill's failover server failed and was replaced.")


def _drive(
    event: FailoverEvent, watch: Watch, goal: Iterable[str], limit: float, what: str
) -> None:
    """Advance the event until it reaches `goal`, watching for real faults meanwhile."""
    goal = set(goal)
    deadline = time.monotonic() + limit
    while True:
        watch.check()
        engine.advance(event.pk)  # does nothing while another worker holds the event
        event.refresh_from_db()
        if event.state in goal:
            return
        if event.state == EventState.NO_FAILOVER_SERVER:
            raise Failed(f"No failover server took over: {event.last_error}")
        if event.state in FINAL_STATES:
            raise Failed(f"The event ended {event.get_state_display().lower()} during {what}.")
        if time.monotonic() > deadline:
            raise Failed(f"{what.capitalize()} did not end within {limit:g} s "
                         f"({event.get_state_display().lower()}).")  # fmt: skip
        time.sleep(POLL_SECONDS)


def _confirm_recording(event: FailoverEvent, watch: Watch, seconds: int) -> None:
    """The failover server keeps every camera's stream open for `seconds`, and writes new
    segments meanwhile (a takeover is confirmed when the streams open, before the first
    segment is written)."""
    cameras = len((event.config or {}).get("cameras", []))
    client = client_for(event.failover_server)
    first = _segments(client, event.node_tag)
    end = time.monotonic() + seconds
    while True:
        watch.check()
        now = _segments(client, event.node_tag)
        recording = sum(1 for _, is_open in now.values() if is_open)
        if len(now) < cameras or recording < len(now):
            raise Failed(f"{event.failover_server_name} stopped recording "
                         f"({recording}/{cameras} cameras).")  # fmt: skip
        if time.monotonic() >= end:
            break
        time.sleep(min(1.0, max(end - time.monotonic(), 0)))
    if seconds and cameras and not any(now[c][0] > first.get(c, (0, False))[0] for c in now):
        raise Failed(f"{event.failover_server_name} wrote no new segment in {seconds} s.")


def _segments(client: Any, node_tag: str) -> dict[str, tuple[int, bool]]:
    """Per camera recorded for `node_tag`: segments written, and whether its stream is
    open (an agent that does not say counts a camera as open once it wrote a segment)."""
    try:
        health = client.health()
    except NodeError as exc:
        raise Failed(f"The failover server did not answer: {exc}") from None
    recording = health.get("recording") or {}
    if (recording.get("on_behalf_of") or {}).get("id") != node_tag:
        return {}
    found = {}
    for camera in recording.get("cameras", []):
        if camera.get("on_behalf_of") == node_tag:
            segments = int(camera.get("segments") or 0)
            found[str(camera.get("id"))] = (segments, bool(camera.get("open", segments > 0)))
    return found


def _hand_back(event: FailoverEvent, server: Server, actor: str, why: str) -> None:
    """After a stop or a failure: a healthy recording server takes its cameras back, so
    the failover server is free for real work; a failed one keeps its failover."""
    event.refresh_from_db()
    if event.state in FINAL_STATES:
        return
    server.refresh_from_db()
    try:
        engine.fail_back_now(event, actor=actor)
    except FailoverError as exc:
        note(event, f"The drill ended ({why}); the failover stays with the engine: {exc}",
             actor=actor)  # fmt: skip
        return
    note(event, f"The drill ended ({why}); failing back.", actor=actor)


def _protections(server: Server) -> list[Protection]:
    return list(
        Protection.objects.filter(recording_server=server)
        .select_related("failover_server")
        .order_by("priority", "pk")
    )


def report_rows(drill: Drill) -> list[DrillServer]:
    return list(drill.servers.all())


__all__ = ["DRILL_TASK", "drill_failed", "refusal", "request_drill", "run"]
