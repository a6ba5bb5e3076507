"""A failover server that dies while it acts is replaced by the next one: real agents.

Invariants: the acting failover server that fails is replaced within the detection bound
(N failed probes in a row, as for a recording server) by the next free failover server
in protection order, under a newer epoch; at most one server records for the recording
server once the CMS has acted; what the failed one recorded is restored when it is back.
"""

from __future__ import annotations

import time

import pytest
from django.db.models import F

from failover import engine
from failover.api.serializers import FailoverEventSerializer
from failover.choices import EventState
from failover.models import FailoverSettings
from tests.faults.helpers import acting_nodes, cycles, failover_files, own_files, recording_for
from tests.fixtures.nodes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_failover_server_that_dies_while_acting_is_replaced_by_the_next(make_fleet):
    fleet = make_fleet(failovers=2)
    first_node, second_node = fleet.failover_nodes
    event = fleet.fail_over("kill")
    assert (event.state, event.failover_server) == (EventState.ACTIVE, fleet.failovers[0])
    first_epoch, tag = event.epoch, event.node_tag
    wait_until(lambda: len(failover_files(first_node, tag)) >= 2, message="first recordings")
    recorded_by_first = {f["path"]: f["sha256"] for f in failover_files(first_node, tag)}

    first_node.kill()
    n = FailoverSettings.load().failures_before_failover
    cycles(n - 1)
    event.refresh_from_db()
    assert event.state == EventState.ACTIVE  # N - 1 failed probes are not a failure
    cycles(1)
    event.refresh_from_db()
    assert event.state == EventState.DETECTED

    started = time.monotonic()
    assert engine.advance(event.pk) == EventState.ACTIVE
    took = time.monotonic() - started
    event.refresh_from_db()
    assert event.failover_server == fleet.failovers[1]
    assert event.epoch > first_epoch  # the first is fenced off
    assert acting_nodes(fleet.failover_nodes, tag) == [1]
    assert took < 15  # the confirmation bound of make_fleet: one segment per camera
    [earlier] = event.earlier_failover_servers
    assert (earlier["name"], earlier["epoch"]) == ("Standby 1", first_epoch)
    moves = list(
        event.transitions.exclude(from_state=F("to_state")).values_list("to_state", "reason")
    )
    assert [m for m, _ in moves] == [
        "detected", "taking_over", "active", "detected", "taking_over", "active",
    ]  # fmt: skip
    assert "Standby 1 failed while acting" in moves[3][1]
    assert "Standby 2" in moves[4][1]
    shown = FailoverEventSerializer(event).data["earlier_failover_servers"]  # what the API says
    assert [(e["name"], e["epoch"]) for e in shown] == [("Standby 1", first_epoch)]

    # The first comes back: a node resumes its takeover on restart, and the CMS tells it
    # to stop with its old epoch, which never stops the second (it holds a newer one).
    first_node.restart()
    cycles(1)
    engine.advance(event.pk)  # what the probe task asks a worker to do
    assert acting_nodes(fleet.failover_nodes, tag) == [1]
    event.refresh_from_db()
    assert event.earlier_failover_servers[0]["released"] is True
    wait_until(lambda: len(failover_files(second_node, tag)) >= 2, message="second recordings")

    # Failback restores what both recorded, from both.
    fleet.recording_node.restart()
    cycles(2)
    assert engine.advance(event.pk) == EventState.COMPLETED
    job = event.restoration
    assert job.state == "completed" and job.files_done == job.files_total
    assert {f.source_id for f in job.files.all()} == {s.pk for s in fleet.failovers}
    assert failover_files(first_node, tag) == failover_files(second_node, tag) == []
    restored = own_files(fleet.recording_node)
    for path, sha in recorded_by_first.items():
        assert restored["own/" + path.split("/", 2)[2]]["sha256"] == sha


def test_no_second_failover_server_free_keeps_the_event_waiting_for_one(make_fleet):
    fleet = make_fleet(failovers=1)
    event = fleet.fail_over("kill")
    fleet.failover_nodes[0].kill()
    cycles(2)
    assert engine.advance(event.pk) == EventState.NO_FAILOVER_SERVER
    # It comes back: it is the free one again, and takes over under a newer epoch.
    fleet.failover_nodes[0].restart()
    cycles(2)
    wait_until(lambda: engine.advance(event.pk) == EventState.ACTIVE, timeout=30,
               message="the takeover once the failover server is back")  # fmt: skip
    event.refresh_from_db()
    assert recording_for(fleet.failover_nodes[0]) == event.node_tag


def test_stopping_the_restoration_of_a_cascaded_event_removes_it_from_every_server(make_fleet):
    from failover.restoration import stop_restoration

    fleet = make_fleet(failovers=2)
    first_node, second_node = fleet.failover_nodes
    event = fleet.fail_over("kill")
    wait_until(lambda: failover_files(first_node, event.node_tag), message="first recordings")
    first_node.kill()
    cycles(2)
    assert engine.advance(event.pk) == EventState.ACTIVE
    wait_until(lambda: failover_files(second_node, event.node_tag), message="second recordings")
    first_node.restart()
    fleet.recording_node.restart()
    cycles(2)
    assert engine.step(event.pk) == EventState.FAILING_BACK
    assert engine.step(event.pk) == EventState.RESTORING
    assert failover_files(first_node, event.node_tag)  # still there: nothing restored yet

    stop_restoration(event, actor="root")
    assert failover_files(first_node, event.node_tag) == []
    assert failover_files(second_node, event.node_tag) == []
