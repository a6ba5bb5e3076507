"""The failover event's lifecycle as data: every state set and every allowed move.

`events.transition()` refuses any move that `TRANSITIONS` does not list, so this
table is the whole graph; `engine.py` tells the story in prose. Who makes each move:

- PROBE: a probe cycle's result (the recording server came back);
- ENGINE: a worker's step (`engine.advance`, `restoration.restore`);
- OPERATOR: a person, through the admin or the API (fail back now, replace, stop).

The main road (MOVES below has every move, with who makes it and why):

    detected           -> taking_over | no_failover_server | recovered
    no_failover_server -> taking_over | recovered
    taking_over        -> active | detected (not confirmed: the next server is tried)
    active             -> waiting_failback | failing_back (fail back now)
    waiting_failback   -> failing_back
    failing_back       -> restoring | completed | waiting_failback (postponed)
    restoring          -> completed

Faults during faults go back along the road, on the same event (one event per
incident, so a server that keeps failing fails over once):

    active             -> detected (the acting failover server failed: cascade)
    waiting_failback   -> active (a new fault: the hold-down starts again)
    waiting_failback   -> failing_back (the acting failover server failed)
    restoring          -> detected (the recording server failed again)

and the endings an operator or a deletion chooses: stopped (from any open state),
replaced (active or waiting_failback; from restoring once restored to the
replacement), restoration_stopped; failed when restoration has nothing left to work
with.
"""

from __future__ import annotations

from dataclasses import dataclass

from .choices import EventState

PROBE = "probe"
ENGINE = "engine"
OPERATOR = "operator"

OPEN_STATES = frozenset(
    {
        EventState.DETECTED,
        EventState.NO_FAILOVER_SERVER,
        EventState.TAKING_OVER,
        EventState.ACTIVE,
        EventState.WAITING_FAILBACK,
        EventState.FAILING_BACK,
        EventState.RESTORING,
    }
)
FINAL_STATES = frozenset(set(EventState) - OPEN_STATES)
# The failover server records for the recording server: its takeover was confirmed.
CONFIRMED_ACTING_STATES = frozenset(
    {EventState.ACTIVE, EventState.WAITING_FAILBACK, EventState.FAILING_BACK}
)
# The failover server records, or may already record (a takeover in progress).
ACTING_STATES = CONFIRMED_ACTING_STATES | {EventState.TAKING_OVER}
# A worker works on the event under a lease; one whose lease expired was left by a
# worker that died, and any worker may resume it.
RESUMABLE_STATES = frozenset(
    {
        EventState.DETECTED,
        EventState.TAKING_OVER,
        EventState.FAILING_BACK,
        EventState.RESTORING,
    }
)
# Waiting for the outside world: nothing for a worker to do until the wait ends
# (see engine.wait_is_over).
WAITING_STATES = frozenset(
    {EventState.NO_FAILOVER_SERVER, EventState.ACTIVE, EventState.WAITING_FAILBACK}
)
# A protected server may be replaced while its failover is active.
REPLACEABLE_STATES = frozenset({EventState.ACTIVE, EventState.WAITING_FAILBACK})
# What a failover server that is edited, disabled or deleted stops.
STOPPABLE_STATES = ACTING_STATES | {EventState.RESTORING}


@dataclass(frozen=True)
class Move:
    source: str
    target: str
    by: str  # PROBE, ENGINE or OPERATOR
    why: str


MOVES: tuple[Move, ...] = (
    # taking over
    Move(EventState.DETECTED, EventState.TAKING_OVER, ENGINE, "a failover server is claimed"),
    Move(EventState.NO_FAILOVER_SERVER, EventState.TAKING_OVER, ENGINE,
         "a failover server is free again and claimed"),
    Move(EventState.TAKING_OVER, EventState.ACTIVE, ENGINE,
         "the failover server confirms it records every camera"),
    Move(EventState.TAKING_OVER, EventState.DETECTED, ENGINE,
         "the claimed failover server did not confirm; try the next"),
    Move(EventState.DETECTED, EventState.NO_FAILOVER_SERVER, ENGINE,
         "no failover server could take over"),
    # recovery and failback
    Move(EventState.DETECTED, EventState.RECOVERED, PROBE, "back before a takeover"),
    Move(EventState.NO_FAILOVER_SERVER, EventState.RECOVERED, PROBE, "back before a takeover"),
    Move(EventState.NO_FAILOVER_SERVER, EventState.RECOVERED, OPERATOR,
         "fail back now: a manual failover that no failover server could take over ends"),
    Move(EventState.ACTIVE, EventState.WAITING_FAILBACK, PROBE, "the recording server is back"),
    Move(EventState.WAITING_FAILBACK, EventState.FAILING_BACK, ENGINE,
         "failback is due (hold-down over, or the window is open); never with the manual "
         "or stay-on-the-failover-server modes, which wait for an operator"),
    Move(EventState.WAITING_FAILBACK, EventState.FAILING_BACK, OPERATOR, "fail back now"),
    Move(EventState.ACTIVE, EventState.FAILING_BACK, OPERATOR, "fail back now"),
    Move(EventState.FAILING_BACK, EventState.WAITING_FAILBACK, ENGINE,
         "the recording server does not record yet; failback postponed"),
    Move(EventState.FAILING_BACK, EventState.RESTORING, ENGINE,
         "failed back; recordings to restore"),
    Move(EventState.FAILING_BACK, EventState.COMPLETED, ENGINE, "failed back; restoration off"),
    # faults during faults
    Move(EventState.ACTIVE, EventState.DETECTED, PROBE,
         "the acting failover server failed; the next one takes over with a new epoch"),
    Move(EventState.WAITING_FAILBACK, EventState.ACTIVE, PROBE,
         "the recording server failed again after it recovered; the hold-down restarts"),
    Move(EventState.WAITING_FAILBACK, EventState.FAILING_BACK, PROBE,
         "the acting failover server failed; the recovered recording server records again"),
    Move(EventState.RESTORING, EventState.DETECTED, PROBE,
         "the recording server failed again while restoring; it is failed over again and "
         "restoration resumes once it is back"),
    # restoration
    Move(EventState.RESTORING, EventState.COMPLETED, ENGINE, "every file restored"),
    Move(EventState.RESTORING, EventState.REPLACED, ENGINE,
         "every file restored to the replacement"),
    Move(EventState.RESTORING, EventState.FAILED, ENGINE,
         "the failover or the target server was removed"),
    Move(EventState.RESTORING, EventState.RESTORATION_STOPPED, OPERATOR, "stop restoration"),
    # replace protected server
    Move(EventState.ACTIVE, EventState.REPLACED, OPERATOR, "replaced by the acting server"),
    Move(EventState.WAITING_FAILBACK, EventState.REPLACED, OPERATOR,
         "replaced by the acting server"),
    Move(EventState.ACTIVE, EventState.RESTORING, OPERATOR,
         "replaced by another server; recordings to restore"),
    Move(EventState.WAITING_FAILBACK, EventState.RESTORING, OPERATOR,
         "replaced by another server; recordings to restore"),
    # stopped: the recording server deleted (any open state but restoring), or the
    # failover server edited, disabled or deleted while it acts or restores
    *(
        Move(state, EventState.STOPPED, OPERATOR,
             "the recording server was deleted, or the acting failover server changed")
        for state in sorted(OPEN_STATES - {EventState.RESTORING})
    ),
    Move(EventState.RESTORING, EventState.STOPPED, OPERATOR,
         "the failover server was edited, disabled or deleted"),
)  # fmt: skip

# from-state -> {to-state: who may make that move}
TRANSITIONS: dict[str, dict[str, frozenset[str]]] = {}
for _move in MOVES:
    _by = TRANSITIONS.setdefault(_move.source, {}).get(_move.target, frozenset())
    TRANSITIONS[_move.source][_move.target] = _by | {_move.by}
del _move, _by

START = EventState.DETECTED  # an event is created in this state (engine.open_failover)


class IllegalTransition(Exception):
    """A programming error: code asked for a move the lifecycle does not have."""


def check(from_states: frozenset[str] | set[str], to_state: str) -> None:
    """Raise IllegalTransition unless every one of `from_states` may move to `to_state`."""
    wrong = sorted(s for s in from_states if to_state not in TRANSITIONS.get(s, {}))
    if wrong:
        raise IllegalTransition(
            f"{', '.join(wrong)} -> {to_state} is not in failover.lifecycle.TRANSITIONS"
        )
