"""Failover's operator actions: manual failover, fail back, stop restoration, replace;
and its duties towards the inventory's servers (an acting failover server that is
disabled, edited or deleted stops its failover, once the user confirmed).

The admin and the API call these alone: each checks its permission, raises
`ConfirmationRequired` with the product's consequences where it asks for them, and
`ActionRefused` with the engine's reason when the event's state does not allow it.
The engine's transitions record the actor in each event's timeline.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cms.actions import ActionRefused, confirm, require
from cms.audit import actor_name
from cms.inventory.actions import Change
from cms.inventory.choices import Role
from cms.inventory.models import Server, Team

from . import engine, guard, planner, replace, restoration
from .choices import EventState
from .models import FailoverEvent


@contextmanager
def _refused_as_action() -> Iterator[None]:
    try:
        yield
    except engine.FailoverError as exc:
        raise ActionRefused(str(exc)) from None


class ServerDuties:
    """What stopping an acting failover server costs, and the stop itself; a recording
    server's open event is closed before the server is deleted."""

    def consequences(self, server: Server, change: Change) -> list[str]:
        if server.role != Role.FAILOVER:
            return []
        event = engine.acting_event(server)
        if event is None:
            return []
        return [
            f"{server.name} has taken over for {event.recording_server_name}: if it is "
            f"{change}, its failover stops and the recordings and snapshots it made during "
            "the failover are removed."
        ]

    def before(self, server: Server, change: Change, *, actor: str) -> None:
        if server.role == Role.FAILOVER:
            engine.stop_failover(server, actor=actor, reason=f"{server.name} was {change}")
        elif change == "deleted":
            engine.before_deleting_recording_server(server, actor=actor)


def manual_failover(user: Any, server: Server) -> FailoverEvent:
    """Maintenance: a failover server records a healthy recording server's cameras."""
    require(user, "trigger_failover")
    with _refused_as_action():
        return engine.manual_failover(server, actor=actor_name(user))


def fail_back(user: Any, event: FailoverEvent | None) -> FailoverEvent:
    """Fail back now, without waiting for the failback mode's time."""
    require(user, "fail_back")
    with _refused_as_action():
        if event is None:
            raise engine.FailoverError("it has not failed over.")
        engine.fail_back_now(event, actor=actor_name(user))
    return event


def release_guard(user: Any, servers: list[Server] | None,
                  teams: list[Team]) -> list[guard.Released]:  # fmt: skip
    """Release the mass-failure guard for `servers` (None: every server it holds in
    `teams`); each one still down fails over now, with the user in its timeline. The
    caller has scoped `servers` and `teams` to what the user may see."""
    require(user, "trigger_failover")
    done: list[guard.Released] = []
    for team in teams:
        mine = None if servers is None else [s for s in servers if s.team_id == team.pk]
        if mine == []:
            continue
        done += guard.release(team, mine, actor=actor_name(user))
    return done


def stop_restoration_consequences(events: list[FailoverEvent]) -> list[str]:
    return [
        f"Event #{e.pk} ({e.recording_server_name}): the recordings and snapshots taken "
        f"during the failover that are still on {e.failover_server_name} are removed and "
        "will not be restored."
        for e in events
        if e.state == EventState.RESTORING
    ]


def stop_restoration(user: Any, event: FailoverEvent, *, confirmed: bool) -> int:
    """Stop restoring recordings; what is left on the failover server is removed. The
    number of files removed."""
    require(user, "stop_restoration")
    confirm(stop_restoration_consequences([event]), confirmed)
    with _refused_as_action():
        return restoration.stop_restoration(event, actor=actor_name(user))


def replace_plan(user: Any, event: FailoverEvent, replacement: Server) -> replace.ReplacePlan:
    """What replacing would do (a preview: nothing changes)."""
    require(user, "replace_server")
    with _refused_as_action():
        return replace.plan(event, replacement)


def replace_protected_server(user: Any, event: FailoverEvent, replacement: Server, *,
                             confirmed: bool) -> replace.ReplacePlan:  # fmt: skip
    """Replace the protected server for good, once its plan's consequences are confirmed."""
    the_plan = replace_plan(user, event, replacement)
    confirm(the_plan.consequences(), confirmed, "Replacing has these consequences.")
    with _refused_as_action():
        return replace.replace_protected_server(event, replacement, actor=actor_name(user))


def confirm_protection(recording_server: Server, failover_servers: list[Server], *,
                       confirmed: bool) -> None:  # fmt: skip
    """Before saving `failover_servers` as `recording_server`'s protectors: none of them
    able to carry it whole is said first (a failover it would never get)."""
    confirm(
        planner.protection_warnings(recording_server, failover_servers),
        confirmed,
        "No failover server protecting it can carry it.",
    )
