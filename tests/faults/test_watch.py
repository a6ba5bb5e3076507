"""Failures seen between the probes: a real worker and beat keep watch streams to real
agents, with a probe interval so long (LONG_INTERVAL) that polling cannot be what
detects the fault.

Invariants: a volume fault, a killed agent (SIGKILL) and a stopped one (SIGSTOP: its
connection open, silent) each open a failover event that a failover server takes
over, with at most one probe cycle claimed since the fault (polling needs
``failures_before_failover`` = 2); the server's last error says the watch stream saw
it; one takeover. A fake node that sends a broken stream changes nothing: it stays as
polling says, and no event opens.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal

import pytest
from django.db.models import Max

from cms.inventory.models import Server
from failover.choices import EventState
from failover.models import FailoverEvent, FailoverSettings, ProbeShard
from tests.faults.invariants import one_takeover, settles
from tests.fixtures.fleet import register
from tests.fixtures.hostile import GOOD_HEALTH, PASSWORD, event_stream
from tests.fixtures.nodes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LONG_INTERVAL = 30
BOUND = 60.0  # generous: detection, the worker's queue, the takeover's confirmation


def watched_fleet(make_fleet, cms_host, failovers: int = 1):
    fleet = make_fleet(failovers=failovers, cameras=1)
    settings = FailoverSettings.load()
    settings.probe_interval = LONG_INTERVAL
    settings.save()
    worker, _ = cms_host(CMS_WATCH="1")
    for node in [fleet.recording_node, *fleet.failover_nodes]:
        opened = f"watch stream of {node.host}:{node.port} open"
        wait_until(lambda: opened in worker.log(), timeout=BOUND,  # noqa: B023
                   message=f"{opened}\n{worker.log()[-3000:]}")  # fmt: skip
    return fleet, worker


def claimed_slot() -> dt.datetime | None:
    """The newest probe slot any shard of the defaults claimed."""
    return ProbeShard.objects.filter(settings=FailoverSettings.load()).aggregate(
        newest=Max("last_cycle_at")
    )["newest"]


def at_most_one_cycle_since(before: dt.datetime | None) -> None:
    after = claimed_slot()
    assert before is not None and after is not None
    assert after - before <= dt.timedelta(seconds=LONG_INTERVAL), (before, after)


def takes_over(fleet, worker, expected_error: str) -> FailoverEvent:
    wait_until(FailoverEvent.objects.filter(recording_server=fleet.recording).exists,
               timeout=BOUND, message=f"an event\n{worker.log()[-3000:]}")  # fmt: skip
    event = FailoverEvent.objects.get(recording_server=fleet.recording)
    event = settles(event.pk, BOUND, [EventState.ACTIVE])
    fleet.recording.refresh_from_db()
    assert expected_error in fleet.recording.last_error, fleet.recording.last_error
    assert "watch stream" in fleet.recording.last_error
    one_takeover(event, fleet.failover_nodes)
    return event


@pytest.mark.parametrize("fault", ["volume", "kill"])
def test_a_fault_the_stream_sees_fails_over_before_polling_could(
    make_fleet, cms_host, fresh_tokens, fault
):
    fleet, worker = watched_fleet(make_fleet, cms_host)
    before = claimed_slot()
    if fault == "volume":
        assert fleet.recording_node.cli("fault", "volume").returncode == 0
        expected = "volume crashed"
    else:
        fleet.recording_node.kill()
        expected = "refuses connections"
    takes_over(fleet, worker, expected)
    at_most_one_cycle_since(before)


def test_a_silent_agent_is_declared_disconnected_by_phi(make_fleet, cms_host, fresh_tokens):
    fleet, worker = watched_fleet(make_fleet, cms_host)
    before = claimed_slot()
    pid = fleet.recording_node.pid
    os.kill(pid, signal.SIGSTOP)  # a black hole: the connection stays open, nothing comes
    try:
        takes_over(fleet, worker, "silent for")
        at_most_one_cycle_since(before)
        fleet.recording.refresh_from_db()
        assert fleet.recording.status == "disconnected"
    finally:
        os.kill(pid, signal.SIGCONT)


class FakeAgent:
    """What fleet.register needs of a node."""

    def __init__(self, port: int) -> None:
        self.host, self.port, self.https, self.password = "127.0.0.1", port, False, PASSWORD


HEALTH = b"event: health\ndata: " + json.dumps(GOOD_HEALTH).encode() + b"\n\n"


@pytest.mark.parametrize(
    "stream",
    [
        event_stream(HEALTH, b"event: heartbeat\ndata: {garbage\n\n"),
        event_stream(HEALTH, b"event: health\ndata: " + b"x" * (2 << 20)),
        event_stream(HEALTH, endless=b"y" * 65536, every=0.01),
    ],
    ids=["garbage", "oversized", "never-ending line"],
)
def test_a_broken_stream_is_closed_and_changes_nothing(
    make_fleet, cms_host, hostile_node, team, fresh_tokens, stream
):
    fake = hostile_node({"/watch": stream})
    server = register(FakeAgent(fake.port), team, "recording", "Fake")
    _, worker = watched_fleet(make_fleet, cms_host)
    closed = f"watch stream of 127.0.0.1:{fake.port} closed"
    wait_until(lambda: closed in worker.log(), timeout=BOUND,
               message=f"{closed}\n{worker.log()[-3000:]}")  # fmt: skip
    server.refresh_from_db()
    assert server.status == "normal", server.last_error  # as polling says
    assert fake.seen("/watch") == 1  # not reopened at once
    # the real agents' streams go on and nothing failed over
    assert not FailoverEvent.objects.exists()
    assert set(Server.objects.values_list("status", flat=True)) == {"normal"}
