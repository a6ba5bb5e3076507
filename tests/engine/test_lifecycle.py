"""The transition table is the whole graph, and the code moves only along it."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from failover.choices import EventState
from failover.lifecycle import (
    FINAL_STATES,
    MOVES,
    OPEN_STATES,
    START,
    TRANSITIONS,
    IllegalTransition,
    check,
)

FAILOVER = Path(__file__).resolve().parents[2] / "failover"


def reachable_from(state: str) -> set[str]:
    seen, todo = {state}, [state]
    while todo:
        for target in TRANSITIONS.get(todo.pop(), {}):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_every_state_is_reachable_from_detection():
    assert reachable_from(START) == set(EventState)


@pytest.mark.parametrize("state", sorted(OPEN_STATES))
def test_every_open_state_can_end(state):
    assert reachable_from(state) & FINAL_STATES


def test_a_final_state_has_no_way_out():
    assert not set(TRANSITIONS) & FINAL_STATES


def test_every_open_state_can_be_stopped_or_ended_by_an_operator():
    # Nothing may stay open for ever against an operator's will.
    for state in OPEN_STATES:
        assert any(m.source == state and m.by == "operator" for m in MOVES), state


def _possible(node: ast.expr, names: dict) -> set[str]:
    """The values an argument of a transition() call can take: a conditional gives both."""
    if isinstance(node, ast.IfExp):
        return _possible(node.body, names) | _possible(node.orelse, names)
    value = eval(compile(ast.Expression(node), "<call>", "eval"), names)  # noqa: S307
    return {value} if isinstance(value, str) else set(value)


def transition_calls() -> list[tuple[str, int, set[str], set[str]]]:
    """Every transition(...) call in failover/: (module, line, from-states, to-states)."""
    calls = []
    for path in sorted(FAILOVER.glob("*.py")):
        tree = ast.parse(path.read_text())
        module = importlib.import_module(f"failover.{path.stem}")
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "transition"
            ):
                continue
            kwargs = {k.arg: k.value for k in node.keywords}
            names = vars(module)
            to_states = _possible(node.args[1], names)
            from_states = _possible(kwargs["from_states"], names)
            calls.append((path.name, node.lineno, from_states, to_states))
    return calls


def test_every_transition_call_moves_along_the_table():
    calls = transition_calls()
    assert len(calls) >= 16  # the engine, replace and restoration all move events
    for module, line, sources, targets in calls:
        for target in targets:
            check(sources, target)  # raises IllegalTransition with the move it lacks
        assert sources and targets, (module, line)


def test_every_move_in_the_table_is_made_somewhere():
    made = {
        (s, t) for _, _, sources, targets in transition_calls() for s in sources for t in targets
    }
    unused = {(m.source, m.target) for m in MOVES} - made
    assert not unused, f"moves nothing makes: {sorted(unused)}"


def test_transition_refuses_a_move_the_table_lacks(make_server):
    from failover.events import transition
    from failover.models import FailoverEvent

    server = make_server(role="recording")
    event = FailoverEvent.objects.create(
        team=server.team, recording_server=server, recording_server_name=server.name,
        node_tag=f"rs{server.pk}", trigger="manual", state=EventState.ACTIVE,
    )  # fmt: skip
    with pytest.raises(IllegalTransition, match="active -> recovered"):
        transition(event, EventState.RECOVERED, from_states=[EventState.ACTIVE])
    # Refused whatever the event's state: a wrong call fails in every test that runs it.
    with pytest.raises(IllegalTransition, match="completed -> detected"):
        transition(event, EventState.DETECTED, from_states=[EventState.COMPLETED])
    event.refresh_from_db()
    assert event.state == EventState.ACTIVE
    assert not event.transitions.exists()


def test_the_road_in_the_docstring_is_in_the_table():
    import re

    import failover.lifecycle

    road = re.findall(r"^    (\w+) +-> (.+)$", failover.lifecycle.__doc__, re.MULTILINE)
    assert len(road) >= 7
    for source, targets in road:
        for target in re.findall(r"(?:^|\| )(\w+)", targets):
            assert target in TRANSITIONS[source], f"{source} -> {target}"


def test_the_failback_modes_that_wait_for_an_operator_have_the_operators_move():
    """Manual and stay-on-the-failover-server never fail back by themselves: the event
    waits for failback until an operator's "Fail back now", a move the table has."""
    import datetime as dt

    from failover.choices import FailbackMode
    from failover.engine import failback_due
    from failover.models import FailoverEvent, FailoverSettings

    long_ago = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    event = FailoverEvent(state=EventState.WAITING_FAILBACK, recovered_at=long_ago)
    now = long_ago + dt.timedelta(days=30)
    waiting = set()
    for mode in FailbackMode:
        settings = FailoverSettings(failback_mode=mode, failback_hold_down=0,
                                    failback_window_start=dt.time(0),
                                    failback_window_end=dt.time(23, 59))  # fmt: skip
        if not failback_due(event, settings, now):
            waiting.add(mode)
    assert waiting == {FailbackMode.MANUAL, FailbackMode.STAY}
    assert "operator" in TRANSITIONS[EventState.WAITING_FAILBACK][EventState.FAILING_BACK]
