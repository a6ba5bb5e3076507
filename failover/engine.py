"""What happens when a recording server dies, and when it comes back: the whole story.

The moves are listed in lifecycle.TRANSITIONS and each one is a compare-and-set
through events.transition(), so every step is safe to run twice, from two workers,
or again after a worker was killed mid-way. Workers hold an event under a lease
(events.take_lease) while they talk to nodes.

1.  A probe says "down". probing.run_cycle() measures every enabled server, writes
    what changed, and hands the cycle to after_probe_cycle(), the engine's one entry
    point for probes; probing decides nothing.
2.  after_probe_cycle() -> wants_failover(): a protected recording server that failed N
    probes in a row with an enabled trigger wants an event; the gates (gates.admit) see
    all of a cycle's at once, and those they admit get one, DETECTED (open_failover()).
3.  The probe task (tasks.probe_tick) asks a worker to advance() every event that has
    work to do now (needs_worker()): a new one, one whose worker died (lease expired),
    and a waiting one whose wait is over (wait_is_over()). A waiting event is not
    touched until then: no failover server -> when one is free; waiting for failback
    -> when the hold-down is over or the window opens; manual failback -> when an
    operator clicks "Fail back now". The operator's entry points (manual failover,
    fail back now, replace) wake a worker themselves (wake()).
4.  advance() runs step() after step until the event waits or ends; no broker round
    trip between steps:
      DETECTED / NO_FAILOVER_SERVER -> take_over(): claim the first enabled, healthy,
        idle failover server in protection order (TAKING_OVER, a new fencing epoch),
        tell it to record the last configuration snapshot (in one step, by the version
        it holds already: failover/standby.py; else the whole configuration), wait
        until every camera's source is open -> ACTIVE. A server that does not confirm
        is released and the next one tried; nobody -> NO_FAILOVER_SERVER (one mail).
5.  A probe says "up" M times: decide() -> mark_recovered(): ACTIVE -> WAITING_FAILBACK
    (or RECOVERED when nobody had taken over yet). Probes never close a manual failover:
    its server was healthy all along; it ends by the operator's failback alone ("Fail
    back now", which also ends one that no failover server could take over).
6.  Failback due (failback_due(): automatic after the hold-down, scheduled in the
    window; manual and stay-on-the-failover-server never by themselves) or "Fail back
    now": begin_failback() -> FAILING_BACK -> fail_back(): the recording server records
    first, then the failover server releases (an overlap, nothing unrecorded); the
    recording gap is measured -> RESTORING, or COMPLETED when restoration is off, in the
    same advance() run. A recording server that does not record yet puts the event back to
    WAITING_FAILBACK, where the run stops until the next probe cycle.
7.  RESTORING -> restoration.restore(): every file recorded during the failover is
    copied to the recording server, verified, then deleted from the failover server;
    interrupted, it resumes where it stopped -> COMPLETED: restoration completed.

Operators may end an event on the way: stop_failover() (the failover server was
edited, disabled or deleted), end_for_removed_recording_server(), replace.py, and
restoration.stop_restoration().
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings as django_settings
from django.core.mail import mail_admins
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from cms import alerts
from cms.alerts.kinds import Kind
from cms.celery import app as celery_app
from cms.inventory.choices import HealthStatus, Role
from cms.inventory.models import Server
from cms.nodes.client import client_for
from cms.nodes.errors import EpochRefused, EpochUnproven, NodeError, NodeRefused
from cms.nodes.transport import deadline

from . import gap, gates
from .choices import EventState, FailbackMode, RestorationState, Trigger
from .errors import FailoverError
from .events import (
    SYSTEM,
    bump_attempts,
    holding,
    lease_expired,
    note,
    release_lease,
    renew_lease,
    take_lease,
    transition,
)
from .gates import Opening
from .lifecycle import (
    ACTING_STATES,
    OPEN_STATES,
    RESUMABLE_STATES,
    STOPPABLE_STATES,
    WAITING_STATES,
)
from .models import (
    ConfigSnapshot,
    Counter,
    FailoverEvent,
    FailoverSettings,
    Protection,
    TeamSettings,
)
from .restoration import restore
from .shards import Shard

__all__ = ["FailoverError"]

log = logging.getLogger(__name__)

# Not triggers: auth_failed, certificate_changed and bad_answer. The node answers, so
# its cameras are likely recording; what needs fixing is a password, a pin or the node.
TRIGGER_FOR_STATUS = {
    HealthStatus.DISCONNECTED: Trigger.DISCONNECTED,
    # Disconnected as far as the CMS can tell, but its failover servers reached it last
    # time they were asked: the gates ask them again every cycle (second_opinion.py).
    HealthStatus.UNREACHABLE_FROM_CMS: Trigger.DISCONNECTED,
    HealthStatus.VOLUME_ABNORMAL: Trigger.VOLUME_ABNORMAL,
    HealthStatus.SERVICE_ABNORMAL: Trigger.SERVICE_ABNORMAL,
}

# The Celery task that runs advance() (failover/tasks.py registers it under this name).
ADVANCE_TASK = "failover.tasks.advance_event"
# How long a takeover that failed waits to tell its server to stop before the next one.
UNCLAIM_RELEASE_SECONDS = 3.0
# A takeover is confirmed when the failover node's cameras are open: tens of ms after
# the call, so it is asked often (one small GET on one node, for a second at most).
CONFIRM_POLL_SECONDS = 0.05


def confirm_timeout() -> float:
    return float(getattr(django_settings, "CMS_TAKEOVER_CONFIRM_SECONDS", 20))


def wake(event_id: int) -> None:
    """Have a worker advance() the event once the current transaction has committed.

    For the operator's entry points (admin, API), which return before the work is done.
    By task name, so that the engine does not import the task module that drives it.
    """
    transaction.on_commit(lambda: celery_app.send_task(ADVANCE_TASK, args=[event_id]))


# -- the probe cycle's entry point -------------------------------------------------


def after_probe_cycle(
    servers: Iterable[Server],
    settings: FailoverSettings | TeamSettings,
    now: dt.datetime,
    shard: Shard | None = None,
) -> list[int]:
    """Decide on a probe cycle's results (`servers` carry their new health), each by its
    team's settings; returns the events a worker should advance now. One server's fault
    is logged and confined. With a `shard` (`servers` are that shard's), only the events
    that concern it are read, and only its own unprobed events are woken: each shard's
    task does its part, none does the whole fleet's."""
    teams = TeamSettings.wrap(settings)
    servers = list(servers)
    events = FailoverEvent.objects.open()
    protected_rows = Server.objects.filter(role=Role.RECORDING, protections__isnull=False)
    if shard is not None:
        ids = [server.pk for server in servers]
        events, in_shard = shard.marked(events, "recording_server_id")
        concern = in_shard | Q(failover_server_id__in=ids) | ~Q(earlier_failover_servers=[])
        if shard.index == 0:  # events of a deleted recording server: shard 0's
            concern |= Q(recording_server__isnull=True)
        events = events.filter(concern)
        protected_rows = protected_rows.filter(pk__in=ids)
    open_events = list(events)
    by_server = {e.recording_server_id: e for e in open_events if e.recording_server_id}
    protected = set(protected_rows.values_list("pk", flat=True))
    wake_now: list[int] = []
    decided: set[int] = set()
    # Failover servers first: an acting one that failed is replaced before its recording
    # server's own decision, which then sees the event as it is now.
    for server in servers:
        if server.role == Role.FAILOVER:
            try:
                wake_now += decide_failover_server(server, open_events, teams.of(server.team_id))
            except Exception:
                log.exception("server %s (%s): cascade decision failed", server.pk, server.name)
    openings: list[Opening] = []
    for server in servers:
        if server.role != Role.RECORDING:
            continue
        decided.add(server.pk)
        try:
            event = by_server.get(server.pk)
            settings = teams.of(server.team_id)
            if event is None:
                opening = wants_failover(server, settings, protected=server.pk in protected)
                if opening is not None:
                    openings.append(opening)
                continue
            event = decide(server, event, settings, protected=server.pk in protected)
            if event is not None and needs_worker(event, settings, now):
                wake_now.append(event.pk)
        except Exception:
            log.exception("server %s (%s): failover decision failed", server.pk, server.name)
    # The gates see every server that wants a failover in this cycle at once: whether a
    # whole site is down, or only unreachable from the CMS, shows in the set, not in one.
    for opening in gates.admit(openings, teams, now):
        try:
            event = open_failover(opening.server, opening.trigger, reason=opening.reason)
            if event is not None and needs_worker(event, teams.of(event.team_id), now):
                wake_now.append(event.pk)
        except Exception:
            log.exception("server %s (%s): opening its failover failed", opening.server.pk,
                          opening.server.name)  # fmt: skip
    # Events whose recording server was not probed (disabled, deleted, replaced).
    for event in open_events:
        mine = shard is None or (
            shard.holds(event.recording_server_id)
            if event.recording_server_id is not None
            else shard.index == 0
        )
        if (
            mine
            and event.recording_server_id not in decided
            and needs_worker(event, teams.of(event.team_id), now)
        ):
            wake_now.append(event.pk)
    return list(dict.fromkeys(wake_now))


def failed_by_probes(server: Server, settings: FailoverSettings) -> bool:
    """The detection rule, for either role: N failed probes in a row with a fault status."""
    return (
        server.status in TRIGGER_FOR_STATUS
        and server.consecutive_failures >= settings.failures_before_failover
    )


def decide_failover_server(
    server: Server, open_events: list[FailoverEvent], settings: FailoverSettings
) -> list[int]:
    """A failover server's probe outcome: the event it acts for goes on without it when it
    failed; events it acted for before are woken to stop it once it answers again."""
    wake_now = []
    for event in open_events:
        if event.failover_server_id == server.pk and failed_by_probes(server, settings):
            if replace_failed_failover_server(event, server):
                wake_now.append(event.pk)
        elif server.status == HealthStatus.NORMAL and any(
            e["id"] == server.pk and not e.get("released") for e in event.earlier_failover_servers
        ):
            wake_now.append(event.pk)  # a worker tells it to stop (release_earlier_servers)
    return wake_now


def _earlier_entry(event: FailoverEvent, server: Server, why: str) -> list[dict[str, Any]]:
    entry = {
        "id": server.pk, "name": server.name, "epoch": event.epoch,
        "until": timezone.now().isoformat(), "why": why[:300], "released": False,
    }  # fmt: skip
    return [*event.earlier_failover_servers, entry]


def replace_failed_failover_server(event: FailoverEvent, server: Server) -> bool:
    """Cascade: the failover server acting for `event` failed by the probes' rule.

    While the recording server is down the event goes back to DETECTED: the next free
    failover server in protection order takes over with a new epoch (fencing the failed
    one off). Once the recording server counts as recovered it fails back at once
    instead: it is the one server left that can record its cameras. Either way the
    failed server stays on the event, in `earlier_failover_servers` (or as the
    restoration's source), so what it recorded is restored once it answers again.
    """
    why = f"{server.name} failed while acting: {server.last_error or server.status} " \
        f"({server.consecutive_failures} probes in a row)"  # fmt: skip
    if event.state == EventState.ACTIVE:
        return transition(
            event,
            EventState.DETECTED,
            from_states=[EventState.ACTIVE],
            actor=SYSTEM,
            reason=f"{why}; the next failover server takes over",
            failover_server=None,
            failover_server_name="",
            earlier_failover_servers=_earlier_entry(event, server, why),
            lease_expires_at=None,  # free for the first worker
        )
    if event.state == EventState.WAITING_FAILBACK:
        return transition(
            event,
            EventState.FAILING_BACK,
            from_states=[EventState.WAITING_FAILBACK],
            actor=SYSTEM,
            reason=f"{why}; the recovered recording server records again now",
            lease_expires_at=None,
        )
    return False  # taking over: not confirmed in time, the next is tried; later: released


def release_earlier_servers(event: FailoverEvent) -> None:
    """Tell failover servers that acted for the event before, and answer again, to stop
    recording for it (a node resumes its takeover after a restart). Their epoch is older
    than the current one, so this never stops the acting server."""
    pending = [e for e in event.earlier_failover_servers if not e.get("released")]
    if not pending:
        return
    servers = Server.objects.in_bulk([e["id"] for e in pending])
    stopped = set()
    for entry in pending:
        server = servers.get(entry["id"])
        if server is None:
            stopped.add((entry["id"], entry["epoch"]))  # deleted: nothing to tell
            continue
        if server.status != HealthStatus.NORMAL:
            continue
        try:
            client_for(server).release(entry["epoch"])
        except EpochRefused:
            pass  # it took a newer command since: not recording for this epoch
        except NodeError:
            continue
        stopped.add((entry["id"], entry["epoch"]))
        note(event, f"{entry['name']} answers again and was told to stop (epoch {entry['epoch']})")
    if stopped:
        with transaction.atomic():
            fresh = FailoverEvent.objects.select_for_update().filter(pk=event.pk).first()
            if fresh is None:
                return
            entries = [
                dict(e, released=True) if (e["id"], e["epoch"]) in stopped else e
                for e in fresh.earlier_failover_servers
            ]
            FailoverEvent.objects.filter(pk=event.pk).update(earlier_failover_servers=entries)
        event.earlier_failover_servers = entries


def _fails_over(server: Server, settings: FailoverSettings, *, protected: bool) -> bool:
    """The detection rule with the team's switches: automatic failover on, the trigger
    enabled, the server protected, N failed probes in a row."""
    trigger = TRIGGER_FOR_STATUS.get(server.status)
    return bool(
        trigger
        and settings.auto_failover
        and trigger in settings.triggers()
        and protected
        and server.consecutive_failures >= settings.failures_before_failover
    )


def _why(server: Server) -> str:
    trigger = TRIGGER_FOR_STATUS.get(server.status)
    return f"{server.last_error or trigger} ({server.consecutive_failures} probes in a row)"


def wants_failover(
    server: Server, settings: FailoverSettings, *, protected: bool
) -> Opening | None:
    """A recording server without an open event that its probes say should be failed
    over; the gates (gates.admit) still have their say before the event opens."""
    if not _fails_over(server, settings, protected=protected):
        return None
    return Opening(server, TRIGGER_FOR_STATUS[server.status], _why(server))


def decide(
    server: Server, event: FailoverEvent, settings: FailoverSettings, *, protected: bool
) -> FailoverEvent | None:
    """One recording server's probe outcome while it has an open event: it failed again,
    or it recovered; returns its open event."""
    trigger = TRIGGER_FOR_STATUS.get(server.status)
    fails_over = _fails_over(server, settings, protected=protected)
    why = _why(server)
    if event.state == EventState.WAITING_FAILBACK and trigger:
        # One failed probe is enough: recovered means stable for the whole hold-down.
        transition(
            event,
            EventState.ACTIVE,
            from_states=[EventState.WAITING_FAILBACK],
            reason=f"The recording server failed again ({why}); the hold-down restarts "
            "once it has recovered",
            recovered_at=None,
            lease_expires_at=None,
        )
        return event
    if event.state == EventState.RESTORING and fails_over and event.replacement_id is None:
        failed_over_to = event.failover_server
        transition(
            event,
            EventState.DETECTED,
            from_states=[EventState.RESTORING],
            reason=f"The recording server failed again while restoring ({why}); it is "
            "failed over again, and restoration resumes once it is back",
            failover_server=None,
            failover_server_name="",
            earlier_failover_servers=(
                _earlier_entry(event, failed_over_to, "failed back before the new fault")
                if failed_over_to is not None
                else event.earlier_failover_servers
            ),
            lease_expires_at=None,
        )
        return event
    if (
        server.status == HealthStatus.NORMAL
        and server.consecutive_successes >= settings.successes_before_recovery
    ):
        mark_recovered(event)
    return event


def needs_worker(event: FailoverEvent, settings: FailoverSettings, now: dt.datetime) -> bool:
    """Whether a worker has something to do on the event now."""
    if event.state not in OPEN_STATES:
        return False
    if event.recording_server_id is None and event.replacement_id is None:
        return True  # the recording server was deleted: end the event
    if event.state in RESUMABLE_STATES:
        return lease_expired(event, now)  # new, handed over, or its worker died
    return event.state in WAITING_STATES and wait_is_over(event, settings, now)


def abandoned(now: dt.datetime) -> list[int]:
    """Events a worker held and stopped renewing (it died): their lease ran out while
    they had work in progress. A released lease (empty) is not one: those wait for the
    probe cycle (an interrupted restoration is retried once per cycle, not per tick)."""
    return list(
        FailoverEvent.objects.filter(
            state__in=RESUMABLE_STATES, lease_expires_at__isnull=False, lease_expires_at__lte=now
        ).values_list("pk", flat=True)
    )


def wait_is_over(event: FailoverEvent, settings: FailoverSettings, now: dt.datetime) -> bool:
    """A waiting event may go on: a failover server is free (and there is a configuration
    to give it), or failback is due."""
    if event.state == EventState.NO_FAILOVER_SERVER:
        # A manual failover reads the configuration at the takeover; any other needs
        # the snapshot taken while the server was up.
        has_config = (
            event.trigger == Trigger.MANUAL
            or ConfigSnapshot.objects.filter(server_id=event.recording_server_id).exists()
        )
        return lease_expired(event, now) and has_config and bool(candidates(event))
    if event.state == EventState.WAITING_FAILBACK:
        return failback_due(event, settings, now)
    return False  # ACTIVE waits for a probe (recovery) or an operator


# -- opening ----------------------------------------------------------------------


def open_failover(
    server: Server, trigger: str, *, actor: str = SYSTEM, reason: str = ""
) -> FailoverEvent | None:
    """Open an event for `server`; None if one is already open (the constraint decides).
    A server that flaps gets a damped event (see damping())."""
    damped = damping(server, trigger)
    try:
        with transaction.atomic():
            event = FailoverEvent.objects.create(
                team_id=server.team_id,
                recording_server=server,
                recording_server_name=server.name,
                node_tag=f"rs{server.pk}",
                trigger=trigger,
                state=EventState.DETECTED,
                lease_expires_at=None,  # free for any worker
                damped=damped,
            )
            event.transitions.create(
                from_state="",
                to_state=EventState.DETECTED,
                actor=actor,
                reason=reason or Trigger(trigger).label,
            )
            if damped:
                note(event, f"Flapping, {damped}: it fails over, but fails back only when an "
                     "operator confirms (Fail back now)")  # fmt: skip
                alerts.notify(
                    server.team_id, Kind.FLAPPING, f"Flapping: {server.name}",
                    f"{server.name} failed over again ({damped}). It is failed over as usual "
                    "but does not fail back by itself: once it is stable, an operator fails it "
                    "back with \"Fail back now\".",
                    url=reverse("admin:failover_failoverevent_change", args=[event.pk]),
                )  # fmt: skip
    except IntegrityError:
        return None
    return event


def damping(server: Server, trigger: str) -> str:
    """Why an automatic failover of `server` opening now is damped: it is the Nth within
    the team's flapping window (the one opening now included); "" when it is not."""
    if trigger == Trigger.MANUAL:
        return ""
    settings = FailoverSettings.for_team(server.team_id)
    if not settings.flap_failovers:
        return ""
    since = timezone.now() - dt.timedelta(seconds=settings.flap_window)
    earlier = (
        FailoverEvent.objects.filter(recording_server=server, detected_at__gte=since)
        .exclude(trigger=Trigger.MANUAL)
        .count()
    )
    if earlier + 1 < settings.flap_failovers:
        return ""
    return f"damped: {earlier + 1} failovers in {_duration(settings.flap_window)}"


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def manual_failover(server: Server, *, actor: str) -> FailoverEvent:
    """Maintenance: make a failover server record a healthy recording server's cameras."""
    if server.role != Role.RECORDING:
        raise FailoverError("Only a recording server can be failed over.")
    if not server.enabled:
        raise FailoverError(f"{server.name} is disabled.")
    if not Protection.objects.filter(recording_server=server).exists():
        raise FailoverError(f"No failover server protects {server.name}.")
    event = open_failover(server, Trigger.MANUAL, actor=actor, reason="Manual failover")
    if event is None:
        raise FailoverError(f"{server.name} already has an open failover event.")
    wake(event.pk)
    return event


# -- the driver --------------------------------------------------------------------


def advance(event_id: int) -> str | None:
    """Run the event's steps until it waits or ends; returns its state afterwards.

    Safe to call at any time from any worker: each step first takes the event's lease
    or wins a compare-and-set, and does nothing otherwise (then the run stops).
    """
    while True:
        before = FailoverEvent.objects.filter(pk=event_id).values_list("state", flat=True).first()
        after = step(event_id)
        if after is None or after == before or after not in OPEN_STATES:
            return after
        if after in WAITING_STATES:
            return after  # until a probe, a free failover server, the clock or an operator


def step(event_id: int) -> str | None:
    """Take the event one step further, if it has one to take now; returns its state."""
    event = FailoverEvent.objects.filter(pk=event_id).first()
    if event is None or not event.is_open:
        return event.state if event else None
    if event.recording_server_id is None and event.replacement_id is None:
        end_for_removed_recording_server(event)
        event.refresh_from_db()
        return event.state
    release_earlier_servers(event)
    state = event.state
    if state in TAKEOVER_STATES:
        if take_lease(event, state):
            with holding(event, TAKEOVER_STATES):
                take_over(event)
    elif state == EventState.WAITING_FAILBACK:
        if failback_due(event, FailoverSettings.for_team(event.team_id), timezone.now()):
            begin_failback(event, actor=SYSTEM, reason="Failback setting")
    elif state == EventState.FAILING_BACK:
        if take_lease(event, state):
            with holding(event, [state]):
                fail_back(event)
    elif state == EventState.RESTORING:
        if take_lease(event, state):
            with holding(event, [state]):
                restore(event)
    event.refresh_from_db()
    return event.state


# -- taking over -------------------------------------------------------------------

TAKEOVER_STATES = (EventState.DETECTED, EventState.NO_FAILOVER_SERVER, EventState.TAKING_OVER)


def candidates(event: FailoverEvent) -> list[Server]:
    """Failover servers that may take over, in protection order: enabled, healthy, idle."""
    busy = FailoverEvent.objects.open().exclude(pk=event.pk).exclude(failover_server=None)
    return [
        p.failover_server
        for p in Protection.objects.filter(recording_server_id=event.recording_server_id)
        .select_related("failover_server")
        .order_by("priority", "pk")
        if p.failover_server.enabled
        and p.failover_server.role == Role.FAILOVER
        and p.failover_server.status == HealthStatus.NORMAL
        and not busy.filter(failover_server=p.failover_server).exists()
    ]


def latest_snapshot(event: FailoverEvent) -> ConfigSnapshot | None:
    server = event.recording_server
    if server is None:
        return None
    if event.trigger == Trigger.MANUAL:
        # The server is up: take its configuration as it is now.
        try:
            refresh_snapshot(server)
        except NodeError as exc:
            note(event, f"Could not read the current configuration: {exc}")
    return ConfigSnapshot.objects.filter(server=server).order_by("-taken_at", "-pk").first()


def refresh_snapshot(server: Server, client: Any = None) -> ConfigSnapshot:
    """Store the server's configuration if its version is new."""
    client = client or client_for(server)
    config = client.get_config()
    version = str(config.get("version", ""))
    snapshot, _ = ConfigSnapshot.objects.get_or_create(
        server=server,
        version=version,
        defaults={"config": {"version": version, "cameras": config.get("cameras", [])}},
    )
    return snapshot


def take_over(event: FailoverEvent) -> bool:
    """Find a failover server for the event and make it record; True when ACTIVE."""
    bump_attempts(event)
    snapshot = latest_snapshot(event)
    if snapshot is None:
        _no_failover_server(
            event, "No configuration snapshot of the recording server is known yet."
        )
        return False

    if event.state == EventState.TAKING_OVER and event.failover_server_id:
        # A worker died mid-takeover: finish with the same server and epoch (idempotent).
        note(event, f"Resuming the takeover by {event.failover_server_name} (epoch "
             f"{event.epoch}) that a stopped worker left")  # fmt: skip
        if _push_and_confirm(event, event.failover_server, snapshot):
            return True
        _unclaim(event, "Resumed takeover did not confirm")

    errors = []
    for server in candidates(event):
        if not _claim(event, server):
            continue
        if _push_and_confirm(event, server, snapshot):
            return True
        errors.append(f"{server.name}: {event.last_error}")
        _unclaim(event, f"{server.name} did not take over: {event.last_error}")
    reason = "; ".join(errors) or "No enabled, healthy and idle failover server protects it."
    _no_failover_server(event, reason)
    return False


def _claim(event: FailoverEvent, server: Server) -> bool:
    """Compare-and-set the event onto `server`; the partial unique index refuses a busy one."""
    try:
        return transition(
            event,
            EventState.TAKING_OVER,
            from_states=[EventState.DETECTED, EventState.NO_FAILOVER_SERVER],
            reason=f"Claimed failover server {server.name}",
            failover_server=server,
            failover_server_name=server.name,
            epoch=Counter.next("epoch"),
            snapshot=None,
        )
    except IntegrityError:
        return False


def _unclaim(event: FailoverEvent, reason: str) -> None:
    if event.failover_server is not None:
        # It may be down, or take every byte and never answer: its epoch is fenced off by
        # the next claim anyway, so the next server must not wait a whole call deadline.
        with deadline(UNCLAIM_RELEASE_SECONDS):
            release_failover_server(event, event.failover_server, quiet=True)
    transition(
        event,
        EventState.DETECTED,
        from_states=[EventState.TAKING_OVER],
        reason=reason,
        failover_server=None,
        failover_server_name="",
    )


def _push_and_confirm(event: FailoverEvent, server: Server, snapshot: ConfigSnapshot) -> bool:
    # The node protocol calls the tag "on_behalf_of"; the name travels along for display.
    owner = {"id": event.node_tag, "name": event.recording_server_name[:64]}
    try:
        client = client_for(server)
        path = _take_over_on(client, event, owner, snapshot)
        renew_lease(event)
        _wait_until_open(client, event, len(snapshot.config.get("cameras", [])))
    except (NodeError, TimeoutError) as exc:
        event.last_error = str(exc)
        return False
    now = timezone.now()
    return transition(
        event,
        EventState.ACTIVE,
        from_states=[EventState.TAKING_OVER],
        # Which way it went stays on the timeline: "in one step", or "with the full
        # configuration" and why.
        reason=f"{server.name} records {owner['name']}'s cameras (epoch {event.epoch}); "
        f"taken over {path}, configuration version {snapshot.version}",
        taken_over_at=now,
        snapshot=snapshot,
        config=snapshot.config,
        last_error="",
    )


ONE_STEP = "in one step"
FULL_CONFIGURATION = "with the full configuration"


def _take_over_on(
    client: Any, event: FailoverEvent, owner: dict[str, str], snapshot: ConfigSnapshot
) -> str:
    """Tell the failover node to record for `owner` at the event's epoch; which way it went.

    One step first: the node records the standby configuration it holds for the owner
    (failover/standby.py) when it is the snapshot's version. When it holds another or
    none (409 standby_missing, standby_stale), or is an older agent that does not know
    the form (400), the whole configuration goes as before: a failover never depends on
    the standby copies being current. A fenced or unproven epoch is final either way."""
    try:
        client.takeover(event.epoch, owner, config_version=snapshot.version)
        return ONE_STEP
    except EpochUnproven:
        raise
    except NodeRefused as exc:
        why = exc.code
    client.takeover(event.epoch, owner, snapshot.config)
    return f"{FULL_CONFIGURATION} ({why})"


def _wait_until_open(client: Any, event: FailoverEvent, cameras: int) -> None:
    """Poll the node's health until every camera it records for the event (its owner and
    epoch) has its source open; an older agent, which does not say, by its first segment."""
    node_tag = event.node_tag

    def ready(camera: dict[str, Any]) -> bool:
        is_open = camera.get("open")
        return bool(camera.get("segments")) if is_open is None else bool(is_open)

    def missing(health: dict[str, Any]) -> str | None:
        recording = health.get("recording") or {}
        owner = (recording.get("on_behalf_of") or {}).get("id")
        epoch = recording.get("takeover_epoch")
        ours = [c for c in recording.get("cameras", []) if c.get("on_behalf_of") == node_tag]
        if (
            owner == node_tag
            and epoch in (None, event.epoch)
            and len(ours) >= cameras
            and all(ready(c) for c in ours)
        ):
            return None
        return (
            f"not recording after {confirm_timeout():.0f} s "
            f"({sum(1 for c in ours if ready(c))}/{cameras} cameras open)"
        )

    _poll_health(client, missing, interval=CONFIRM_POLL_SECONDS)


def _poll_health(
    client: Any, missing: Callable[[dict[str, Any]], str | None], interval: float = 0.25
) -> None:
    """Ask the node's health until `missing` finds nothing missing; TimeoutError with what
    it last found missing once the confirmation time is over."""
    deadline = time.monotonic() + confirm_timeout()
    while (lacking := missing(client.health())) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(lacking)
        time.sleep(interval)


def _no_failover_server(event: FailoverEvent, reason: str) -> None:
    moved = transition(
        event,
        EventState.NO_FAILOVER_SERVER,
        from_states=[EventState.DETECTED],
        reason=reason,
        last_error=reason,
    )
    release_lease(event)  # retried when a failover server is free (engine.wait_is_over)
    if moved:
        # One alert when the event first has nobody, not one per retry.
        mail_admins(
            f"No failover server available for {event.recording_server_name}",
            f"{event.recording_server_name} is down ({event.get_trigger_display()}) and no "
            f"failover server could take over.\n\n{reason}\n\nThe CMS tries again as soon as "
            "a failover server is enabled, healthy and idle.",
            fail_silently=True,
        )
    else:
        FailoverEvent.objects.filter(pk=event.pk).update(last_error=reason)


# -- recovery and failback ---------------------------------------------------------


def mark_recovered(event: FailoverEvent) -> None:
    """The recording server has passed M good probes.

    A manual failover is its own trigger: its server was healthy all along, so good
    probes say nothing about it. It stays until a failover server acts (or says that
    none can) and ends by the operator's failback alone."""
    if event.trigger == Trigger.MANUAL:
        return
    if event.state in (EventState.DETECTED, EventState.NO_FAILOVER_SERVER):
        if event.earlier_failover_servers:
            # A failover server recorded for it: the event goes on to a failback and a
            # restoration, through the next takeover, so that nothing it recorded is lost.
            return
        transition(
            event,
            EventState.RECOVERED,
            from_states=[EventState.DETECTED, EventState.NO_FAILOVER_SERVER],
            reason="The recording server came back before a failover server took over.",
            recovered_at=timezone.now(),
        )
    elif event.state == EventState.ACTIVE:
        transition(
            event,
            EventState.WAITING_FAILBACK,
            from_states=[EventState.ACTIVE],
            reason="The recording server is back.",
            recovered_at=timezone.now(),
        )


def failback_due(event: FailoverEvent, settings: FailoverSettings, now: dt.datetime) -> bool:
    """Whether the failback setting fails the event back by itself now: automatic after
    the hold-down, scheduled in its window; manual and stay-on-the-failover-server never
    (an operator's "Fail back now" alone, after which restoration runs as set)."""
    if event.state != EventState.WAITING_FAILBACK or event.recovered_at is None:
        return False
    if event.damped:
        return False  # a flapping server fails back when an operator confirms it
    if settings.failback_mode == FailbackMode.AUTOMATIC:
        return now - event.recovered_at >= dt.timedelta(seconds=settings.failback_hold_down)
    if settings.failback_mode == FailbackMode.SCHEDULED:
        return settings.in_failback_window(timezone.localtime(now))
    return False


def begin_failback(event: FailoverEvent, *, actor: str, reason: str) -> bool:
    moved = transition(
        event,
        EventState.FAILING_BACK,
        from_states=[EventState.ACTIVE, EventState.WAITING_FAILBACK],
        actor=actor,
        reason=reason,
        lease_expires_at=None,  # free for the worker to take
    )
    return moved


def fail_back_now(event: FailoverEvent, *, actor: str) -> None:
    event.refresh_from_db()
    server = event.recording_server
    if event.trigger == Trigger.MANUAL and event.state == EventState.NO_FAILOVER_SERVER:
        # Nobody took over: the recording server kept recording; failing back ends it.
        if not transition(
            event,
            EventState.RECOVERED,
            from_states=[EventState.NO_FAILOVER_SERVER],
            actor=actor,
            reason="Fail back now: no failover server had taken over; the recording server "
            "kept recording its cameras",
            recovered_at=timezone.now(),
        ):
            raise FailoverError("The event changed meanwhile; reload and try again.")
        return
    if event.state not in (EventState.ACTIVE, EventState.WAITING_FAILBACK):
        raise FailoverError(
            f"The event is {event.get_state_display().lower()}: nothing to fail back."
        )
    if server is None or server.status != HealthStatus.NORMAL:
        raise FailoverError(
            "The recording server is not back to normal yet; it cannot take over again."
        )
    if not begin_failback(event, actor=actor, reason="Fail back now"):
        raise FailoverError("The event changed meanwhile; reload and try again.")
    wake(event.pk)


def fail_back(event: FailoverEvent) -> bool:
    """The recording server records first, then the failover server releases: an overlap."""
    server = event.recording_server
    try:
        wait_until_records(server)
    except (NodeError, TimeoutError) as exc:
        FailoverEvent.objects.filter(pk=event.pk).update(last_error=f"Failback waits: {exc}")
        note(event, f"Failback postponed: the recording server does not record yet ({exc}).")
        # Back to waiting: the next probe cycle wakes it again while failback is due.
        transition(
            event,
            EventState.WAITING_FAILBACK,
            from_states=[EventState.FAILING_BACK],
            reason="The recording server does not record yet",
        )
        return False
    # A failover server that went away is noted: nothing records twice and the
    # recording server is recording; its files stay there until it can be reached.
    released = event.failover_server is not None and release_failover_server(
        event, event.failover_server
    )
    # Before restoration moves the failover server's files; skipped when it did not
    # answer, so an unreachable server does not hold up the failback twice.
    gap_seconds = gap.measure(event) if released else None
    restore = (
        FailoverSettings.for_team(event.team_id).restore_recordings
        and event.failover_server_id is not None
    )
    moved = transition(
        event,
        EventState.RESTORING if restore else EventState.COMPLETED,
        from_states=[EventState.FAILING_BACK],
        reason="Failed back; restoring recordings" if restore else "Failed back",
        failed_back_at=timezone.now(),
        recording_gap_seconds=gap_seconds,
        lease_expires_at=None,  # free for the restoring step
    )
    return moved


def wait_until_records(server: Server | None) -> None:
    """Poll until each of the recording server's own cameras has written a new segment.

    A node's segment counters count since its process started: after a volume or service
    fault (the process kept running) they are already above zero, so "non-zero" would
    pass before anything new is on disk. Each camera's counter is noted at the first read
    and must go up (a camera not listed then: reach 1). Counters, not the node's clock,
    which may differ from the CMS's.
    """
    if server is None:
        raise TimeoutError("the recording server was removed")
    first: dict[str, int] | None = None

    def missing(health: dict[str, Any]) -> str | None:
        nonlocal first
        own = {
            str(c.get("id")): int(c.get("segments") or 0)
            for c in (health.get("recording") or {}).get("cameras", [])
            if c.get("origin") == "own"
        }
        if first is None:
            first = own
        # A counter below its first reading means the camera's recorder was restarted:
        # whatever it counts now was written since.
        fresh = [cam for cam, n in own.items() if n >= 1 and n != first.get(cam, 0)]
        if (
            health.get("service", {}).get("state") == "running"
            and health.get("volume", {}).get("state") != "crashed"
            and own
            and len(fresh) == len(own)
        ):
            return None
        return f"its cameras have not written a new segment yet ({len(fresh)}/{len(own)})"

    _poll_health(client_for(server), missing)


def release_failover_server(
    event: FailoverEvent, server: Server, *, actor: str = SYSTEM, quiet: bool = False
) -> bool:
    """Tell `server` to stop what it records under the event's epoch; True when it has
    stopped (a newer command superseding this one counts). A node that cannot be told is
    noted on the event's timeline, unless `quiet`."""
    try:
        client_for(server).release(event.epoch)
    except EpochRefused:
        return True
    except NodeError as exc:
        if not quiet:
            note(event, f"The failover server could not be told to stop: {exc}", actor=actor)
        return False
    return True


def after_commit(node_work: Callable[[], None]) -> None:
    """Run `node_work` (calls to nodes) once the caller's transaction has committed, or at
    once when none is open.

    A node may take the client's whole timeout to answer, and a transaction held open
    meanwhile blocks every other writer (SQLite) or the rows it locked (PostgreSQL). The
    admin's change and delete views run save_model/delete_model inside one, so the state
    change is recorded there and the node is told afterwards; a save that rolls back
    tells no node anything. Robust: the change is committed by then, so a failure of the
    node work is logged (node errors are noted on the event by `node_work` itself) and
    does not turn the committed change into an error page.
    """
    transaction.on_commit(node_work, robust=True)


def end_for_removed_recording_server(event: FailoverEvent, *, actor: str = SYSTEM) -> None:
    """The recording server was deleted: nothing is left to protect. The failover server
    stops recording for it; what it recorded stays there (nothing is deleted)."""
    event.refresh_from_db()
    acting = event.failover_server if event.state in ACTING_STATES else None
    if not transition(
        event,
        EventState.STOPPED,
        from_states=OPEN_STATES - {EventState.RESTORING},  # restoring: the files stay
        actor=actor,
        reason="The recording server was deleted; recordings made during the failover "
        "stay on the failover server.",
    ):
        return  # another request or worker ended it, and told the node

    if acting is not None:
        after_commit(lambda: release_failover_server(event, acting, actor=actor))


def before_deleting_recording_server(server: Server, *, actor: str) -> None:
    """Close the server's open event first, while it still knows the failover server."""
    event = FailoverEvent.objects.open().filter(recording_server=server).first()
    if event is not None and event.state != EventState.RESTORING:
        end_for_removed_recording_server(event, actor=actor)


# -- a failover server edited, disabled or deleted while it acts ----------------


def acting_event(failover_server: Server) -> FailoverEvent | None:
    return (
        FailoverEvent.objects.open()
        .filter(failover_server=failover_server)
        .filter(state__in=STOPPABLE_STATES)
        .first()
    )


def stop_failover(failover_server: Server, *, actor: str, reason: str) -> FailoverEvent | None:
    """Stop what a failover server does for a recording server; its recordings from that
    failover are removed, as the product says. Callers ask for confirmation first.

    The stop is recorded first (a compare-and-set: whoever loses does nothing); the node
    is told after the caller's transaction commits (see `after_commit`).
    """
    event = acting_event(failover_server)
    if event is None:
        return None
    # The node that acts is the one the database knows now: an edit being saved may
    # already have changed `failover_server`'s address or password in memory.
    stored = Server.objects.get(pk=failover_server.pk)
    with transaction.atomic():
        if not transition(
            event,
            EventState.STOPPED,
            from_states=STOPPABLE_STATES,
            actor=actor,
            reason=reason,
        ):
            return None
        if hasattr(event, "restoration"):
            type(event.restoration).objects.filter(pk=event.restoration.pk).exclude(
                state=RestorationState.COMPLETED
            ).update(state=RestorationState.STOPPED, finished_at=timezone.now())

    def clean_up() -> None:
        try:
            client = client_for(stored)
            client.release(event.epoch)
            deleted = client.purge_failover(event.node_tag)
            note(event, f"Removed {deleted} file(s) recorded during the failover.", actor=actor)
        except NodeError as exc:
            note(event, f"The failover server could not be cleaned up: {exc}", actor=actor)

    after_commit(clean_up)
    return event
