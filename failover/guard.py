"""The mass-failure guard: when too many of a team's recording servers go down at once,
automatic failover pauses for them until an operator releases it.

A whole site that goes dark at once is more often the CMS's own network (a router, a
firewall rule, an uplink) than every recording server dying together; failing them all
over would move every camera onto failover servers that reach the cameras no better,
and fail them all back minutes later. So when more than `mass_failure_share` percent
of a team's enabled recording servers (and at least `mass_failure_min_servers`) went
down within `mass_failure_window` seconds, the guard engages: the servers that want a
failover now, and those that follow while it stands, are held (a GuardHold each, no
event), the team is alerted once, and the dashboard says why. Events opened before it
engaged go on.

The decision is the database's, not the caller's: probe cycles come per shard and
watch streams report one server at a time, so the size of the list handed to admit()
says nothing. Every decision for a team locks the team's guard row; under the lock it
reads who is down (failing probes with a trigger status, or a failover opened within
the window), records what it admits, and decides, so two workers deciding for the same
team at once see each other's servers.

A held server that recovers is released by itself (no event). An operator releases one
server (its failover opens now, as the operator, if it is still down) or all; the
servers counted until then are spent, so the guard engages again only for failures
that come after the release.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from cms import alerts
from cms.alerts.kinds import Kind
from cms.inventory.choices import HealthStatus, Role
from cms.inventory.models import Server, Team

from .choices import Trigger
from .models import FailoverEvent, FailoverSettings, GuardHold, MassFailureGuard

if TYPE_CHECKING:
    from .gates import Opening
    from .models import TeamSettings

log = logging.getLogger(__name__)

# The statuses that make a recording server "down" for the guard: those that trigger a
# failover (engine.TRIGGER_FOR_STATUS), whichever triggers the team enabled.
DOWN_STATUSES = (
    HealthStatus.DISCONNECTED,
    HealthStatus.VOLUME_ABNORMAL,
    HealthStatus.SERVICE_ABNORMAL,
)


def enabled(settings: FailoverSettings) -> bool:
    """0 % turns the guard off; 100 % never trips ("more than all" cannot happen)."""
    return 0 < settings.mass_failure_share < 100


def admit(openings: Sequence[Opening], teams: TeamSettings, now: dt.datetime) -> list[Opening]:
    """The openings the guard lets through; the others are held."""
    release_recovered(teams)
    by_team: dict[int, list[Opening]] = defaultdict(list)
    admitted: list[Opening] = []
    for opening in openings:
        if opening.server.team_id is None or not enabled(teams.of(opening.server.team_id)):
            admitted.append(opening)
        else:
            by_team[opening.server.team_id].append(opening)
    for team_id, wanting in by_team.items():
        try:
            admitted += _decide(team_id, wanting, teams.of(team_id), now)
        except Exception:
            # The guard must not stop failover: a decision that fails lets them through.
            log.exception("team %s: the mass-failure guard could not decide", team_id)
            admitted += wanting
    _forget_admitted(admitted)
    return admitted


def _forget_admitted(admitted: list[Opening]) -> None:
    """A held server let through after all (its team turned the guard off meanwhile) is
    held no more."""
    holds = GuardHold.objects.filter(server__in=[o.server.pk for o in admitted])
    for team_id in set(holds.values_list("team_id", flat=True)):
        with transaction.atomic():
            guard = _locked_guard(team_id)
            holds.filter(team_id=team_id).delete()
            _stand_down_if_empty(guard, actor="")


def _locked_guard(team_id: int) -> MassFailureGuard:
    MassFailureGuard.objects.get_or_create(team_id=team_id)
    return MassFailureGuard.objects.select_for_update().get(team_id=team_id)


def _down_now(team_id: int, since: dt.datetime, wanting: Iterable[int]) -> set[int]:
    """The team's enabled recording servers that are down now: failing probes with a
    trigger status, or a non-manual failover opened since `since`, or wanting one."""
    servers = Server.objects.filter(team_id=team_id, role=Role.RECORDING, enabled=True)
    failing = servers.filter(status__in=DOWN_STATUSES, consecutive_failures__gte=1)
    opened = (
        FailoverEvent.objects.filter(team_id=team_id, detected_at__gte=since)
        .exclude(trigger=Trigger.MANUAL)
        .exclude(recording_server=None)
        .values_list("recording_server_id", flat=True)
    )
    # A server its failover servers reached (unreachable from the CMS only) is up: it
    # wants a failover every cycle only so that the second opinion is asked again.
    reached = set(
        servers.filter(status=HealthStatus.UNREACHABLE_FROM_CMS).values_list("pk", flat=True)
    )
    return {*failing.values_list("pk", flat=True), *opened, *(set(wanting) - reached)}


def _up(team_id: int, ids: Iterable[int]) -> set[int]:
    """Of `ids`, the servers seen up again (a good probe), disabled, moved or deleted. A
    server another worker counted but whose failing probes are not written yet is none
    of these: it stays counted."""
    ids = set(ids)
    still = Server.objects.filter(pk__in=ids, team_id=team_id, role=Role.RECORDING, enabled=True)
    up = still.filter(
        Q(status=HealthStatus.NORMAL, consecutive_successes__gte=1)
        | Q(status=HealthStatus.UNREACHABLE_FROM_CMS)
    )
    return (ids - set(still.values_list("pk", flat=True))) | set(up.values_list("pk", flat=True))


def _count(
    guard: MassFailureGuard, team_id: int, down: set[int], now: dt.datetime, window: int
) -> int:
    """Bring the guard's record of who is down up to date; the servers that count (down
    within the window, not spent by a release)."""
    record = {int(k): v for k, v in guard.down.items()}
    for pk in _up(team_id, set(record) - down):
        del record[pk]
    for pk in down - set(record):
        record[pk] = {"at": now.isoformat(), "spent": False}
    guard.down = {str(k): v for k, v in record.items()}
    since = now - dt.timedelta(seconds=window)
    return sum(
        1
        for entry in record.values()
        if not entry.get("spent") and dt.datetime.fromisoformat(entry["at"]) >= since
    )


def _decide(
    team_id: int, wanting: list[Opening], settings: FailoverSettings, now: dt.datetime
) -> list[Opening]:
    window = settings.mass_failure_window
    with transaction.atomic():
        guard = _locked_guard(team_id)
        since = now - dt.timedelta(seconds=window)
        down = _down_now(team_id, since, [o.server.pk for o in wanting])
        counted = _count(guard, team_id, down, now, window)
        size = Server.objects.filter(team_id=team_id, role=Role.RECORDING, enabled=True).count()
        if guard.engaged_at is None and _trips(counted, size, settings):
            guard.engaged_at = now
            guard.down_count, guard.team_size = counted, size
            _alert_engaged(team_id, guard, wanting, settings)
        guard.save(update_fields=["engaged_at", "down", "down_count", "team_size"])
        if guard.engaged_at is None:
            return wanting
        for opening in wanting:
            # The hold keeps the server's own fault; the guard's reason is the team's.
            _, created = GuardHold.objects.get_or_create(
                server=opening.server,
                defaults={"team_id": team_id, "since": now, "reason": opening.reason},
            )
            if created:
                log.warning("%s: automatic failover held by the mass-failure guard (%s of %s "
                            "recording servers down within %s s)", opening.server.name,
                            guard.down_count, guard.team_size, window)  # fmt: skip
        return []


def _trips(counted: int, size: int, settings: FailoverSettings) -> bool:
    return (
        counted >= settings.mass_failure_min_servers
        and counted * 100 > settings.mass_failure_share * size
    )


def _alert_engaged(
    team_id: int, guard: MassFailureGuard, wanting: list[Opening], settings: FailoverSettings
) -> None:
    team = Team.objects.filter(pk=team_id).values_list("name", flat=True).first() or ""
    names = ", ".join(sorted(o.server.name for o in wanting))
    alerts.notify(
        team_id, Kind.MASS_FAILURE_GUARD,
        f"Automatic failover paused for {team}: mass failure",
        f"{guard.down_count} of {guard.team_size} recording servers of {team} went down within "
        f"{settings.mass_failure_window} s (more than {settings.mass_failure_share} %). That is "
        "more often the CMS's own network than the servers themselves, so no failover opens "
        f"for them until an operator releases the guard. Held now: {names}.",
        url=reverse("admin:index"),
    )  # fmt: skip


# -- recovery and release ----------------------------------------------------------


def _still_down(server: Server) -> bool:
    return server.enabled and server.status in DOWN_STATUSES


def release_recovered(teams: TeamSettings) -> None:
    """Held servers that recovered (or were disabled) leave the guard without an event; a
    guard left holding nobody stands down."""
    holds = list(GuardHold.objects.select_related("server"))
    if not holds:
        return
    by_team: dict[int, list[GuardHold]] = defaultdict(list)
    for hold in holds:
        server = hold.server
        recovered = server.status == HealthStatus.NORMAL and server.consecutive_successes >= (
            teams.of(server.team_id).successes_before_recovery
        )
        if recovered or not server.enabled or server.team_id != hold.team_id:
            by_team[hold.team_id].append(hold)
    for team_id, gone in by_team.items():
        with transaction.atomic():
            guard = _locked_guard(team_id)
            GuardHold.objects.filter(pk__in=[h.pk for h in gone]).delete()
            for hold in gone:
                log.info("%s recovered: released by the mass-failure guard", hold.server.name)
            _stand_down_if_empty(guard, actor="")


def _stand_down_if_empty(guard: MassFailureGuard, *, actor: str) -> None:
    """Once the guard holds nobody it stands down; every server counted until now is
    spent, so only failures after this moment engage it again."""
    if GuardHold.objects.filter(team_id=guard.team_id).exists():
        return
    guard.engaged_at = None
    guard.released_at = timezone.now()
    guard.released_by = actor
    guard.down = {k: dict(v, spent=True) for k, v in guard.down.items()}
    guard.save(update_fields=["engaged_at", "released_at", "released_by", "down"])


@dataclass(frozen=True)
class Released:
    server: Server
    event: FailoverEvent | None  # None: it was up again, nothing to fail over


def release(team: Team, servers: Sequence[Server] | None, *, actor: str) -> list[Released]:
    """An operator releases the guard for `servers` of `team` (None: all it holds). Each
    server still down fails over now, with `actor` in its timeline."""
    from . import engine  # the engine calls the gates, which call the guard

    done: list[Released] = []
    with transaction.atomic():
        guard = _locked_guard(team.pk)
        holds = GuardHold.objects.filter(team=team).select_related("server")
        if servers is not None:
            holds = holds.filter(server__in=[s.pk for s in servers])
        holds = list(holds)
        for hold in holds:
            server = hold.server
            event = None
            if _still_down(server):
                trigger = engine.TRIGGER_FOR_STATUS[server.status]
                event = engine.open_failover(
                    server, trigger, actor=actor,
                    reason=f"Released from the mass-failure guard by {actor}: "
                    f"{server.last_error or Trigger(trigger).label}",
                )  # fmt: skip
                if event is not None:
                    engine.wake(event.pk)
            hold.delete()
            done.append(Released(server, event))
        _stand_down_if_empty(guard, actor=actor)
    return done


# -- what the dashboard and the API show ----------------------------------------------


@dataclass(frozen=True)
class GuardState:
    team: Team
    engaged_at: dt.datetime | None
    down_count: int
    team_size: int
    window: int
    share: int
    held: list[GuardHold]

    def as_dict(self) -> dict[str, Any]:
        return {
            "team": self.team.pk,
            "team_name": self.team.name,
            "engaged": self.engaged_at is not None,
            "engaged_at": self.engaged_at,
            "down": self.down_count,
            "recording_servers": self.team_size,
            "window_seconds": self.window,
            "share_percent": self.share,
            "held": [
                {"server": h.server_id, "name": h.server.name, "since": h.since, "reason": h.reason}
                for h in self.held
            ],
        }


def states(teams: Iterable[Team]) -> list[GuardState]:
    """The guard of each of `teams` (those the user may see)."""
    teams = list(teams)
    guards = {g.team_id: g for g in MassFailureGuard.objects.filter(team__in=teams)}
    holds: dict[int, list[GuardHold]] = defaultdict(list)
    for hold in GuardHold.objects.filter(team__in=teams).select_related("server"):
        holds[hold.team_id].append(hold)
    found = []
    for team in teams:
        settings = FailoverSettings.for_team(team.pk)
        guard = guards.get(team.pk)
        found.append(
            GuardState(
                team=team,
                engaged_at=guard.engaged_at if guard else None,
                down_count=guard.down_count if guard else 0,
                team_size=guard.team_size if guard else 0,
                window=settings.mass_failure_window,
                share=settings.mass_failure_share,
                held=holds.get(team.pk, []),
            )
        )
    return found
