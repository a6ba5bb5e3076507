"""Hostile answers during a takeover: the failover server first in protection order logs
the CMS in and reports good health, then answers the takeover command wrongly (wrong
types, not JSON, a huge body, a body that never ends, one byte at a time, nothing at
all), or takes it and then reports a health that never confirms.

Invariants: the event is ACTIVE on the next failover server (a real agent) within
TAKEOVER_BOUND of the recording server's death; its cameras record within that bound;
one takeover (one confirmed move to ACTIVE, one node recording on the recording
server's behalf).
"""

from __future__ import annotations

import time

import pytest

from failover.choices import EventState
from failover.models import Protection
from tests.faults.invariants import one_takeover, recorded_within, settles, timeline
from tests.faults.test_network import fail_over_with
from tests.fixtures.hostile import (
    GOOD_HEALTH,
    GOOD_INFO,
    as_json,
    black_hole,
    drip,
    endless,
    huge,
    invalid_json,
    not_an_object,
)

pytestmark = pytest.mark.django_db(transaction=True)

# The node call's deadline (20 s) bounds each wrong answer; detection adds 2 s.
TAKEOVER_BOUND = 45.0

FAILOVER_INFO = {**GOOD_INFO, "cms_mode": "failover"}
FAILOVER_HEALTH = {**GOOD_HEALTH, "cms_mode": "failover"}

TAKEOVER_ANSWERS = {
    "wrong_types": lambda: as_json({"epoch": "seven", "recording": 5, "accepted": "yes"}),
    "not_an_object": not_an_object,
    "invalid_json": invalid_json,
    "huge": huge,
    "endless": endless,
    "drip": drip,
    "black_hole": black_hole,
}


def with_hostile_first(fleet, hostile_node, behaviours):
    from cms.inventory.models import Server

    # It pairs like an agent (the answer to /cms/enable is its info), then misbehaves.
    paired = as_json({**FAILOVER_INFO, "paired": True})
    node = hostile_node({"/info": as_json(FAILOVER_INFO), "/health": as_json(FAILOVER_HEALTH),
                         "/cms/enable": paired, **behaviours})  # fmt: skip
    server = Server(team=fleet.recording.team, role="failover", name="Hostile",
                    host="127.0.0.1", port=node.port, admin_password="pw")  # fmt: skip
    server.full_clean()
    server.save()
    Protection.objects.filter(recording_server=fleet.recording).update(priority=1)
    Protection.objects.create(recording_server=fleet.recording, failover_server=server, priority=0)
    return node


@pytest.mark.parametrize("answer", sorted(TAKEOVER_ANSWERS))
def test_a_hostile_takeover_answer_passes_to_the_next_server(
    answer, make_fleet, hostile_node, fresh_tokens
):
    """Invariant: ACTIVE on Standby 1 (the real agent) within TAKEOVER_BOUND, its cameras
    recorded within it, one takeover, whatever the hostile server answered."""
    fleet = make_fleet(failovers=1)
    node = with_hostile_first(fleet, hostile_node, {"/takeover": TAKEOVER_ANSWERS[answer]()})
    event, died_at = fail_over_with(fleet, lambda: None)
    event = settles(event.pk, TAKEOVER_BOUND - (time.monotonic() - died_at))
    assert node.seen("/takeover") >= 1, f"not tried first: {node.requests}\n{timeline(event)}"
    assert event.state == EventState.ACTIVE, timeline(event)
    assert event.failover_server_id == fleet.failovers[0].pk, timeline(event)
    took = recorded_within(died_at, TAKEOVER_BOUND, fleet.failover_nodes[0], event.node_tag, 2)
    assert one_takeover(event, fleet.failover_nodes) == fleet.failover_nodes[0].name
    print(f"{answer}: cameras recorded again {took:.1f} s after the death")


def test_a_takeover_that_never_confirms_passes_to_the_next_server(
    make_fleet, hostile_node, fresh_tokens, settings
):
    """Invariant: the hostile server accepts the takeover and then reports, health after
    health, a recording that never starts: the next server is ACTIVE within the
    confirmation time plus TAKEOVER_BOUND, one takeover."""
    settings.CMS_TAKEOVER_CONFIRM_SECONDS = 5
    fleet = make_fleet(failovers=1)
    accepted = {"epoch": 1, "cameras": [], "on_behalf_of": None}
    node = with_hostile_first(fleet, hostile_node, {"/takeover": as_json(accepted)})
    event, died_at = fail_over_with(fleet, lambda: None)
    event = settles(event.pk, TAKEOVER_BOUND - (time.monotonic() - died_at))
    assert node.seen("/takeover") >= 1, f"not tried first: {node.requests}\n{timeline(event)}"
    assert event.state == EventState.ACTIVE, timeline(event)
    assert event.failover_server_id == fleet.failovers[0].pk, timeline(event)
    recorded_within(died_at, TAKEOVER_BOUND, fleet.failover_nodes[0], event.node_tag, 2)
    assert one_takeover(event, fleet.failover_nodes) == fleet.failover_nodes[0].name
