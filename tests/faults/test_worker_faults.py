"""Faults of the CMS's own processes and of the acting failover server, through a real
Celery worker and beat on the real broker, against real agents, on the clock.

Invariants: a worker killed with SIGKILL mid-takeover holds the cameras unrecorded for
at most 5 s more before another worker goes on, with the same failover server and
epoch; an acting failover server killed is replaced by the next one within the
detection bound; a recording server whose volume flaps fails over once and fails back
only after it has been stable for the whole hold-down.
"""

from __future__ import annotations

import random
import re
import signal
import time

import pytest
from django.db.models import F

from cms.inventory.models import Server
from failover.choices import EventState
from failover.models import EventTransition, FailoverEvent, FailoverSettings, Protection
from tests.faults.helpers import acting_nodes
from tests.fixtures.celery import SESSION_QUEUE, purge, start_beat, start_worker
from tests.fixtures.fleet import register
from tests.fixtures.nodes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def processes():
    started = []

    def track(process):
        started.append(process)
        return process

    yield track
    for process in started:
        process.stop(signal.SIGKILL if process.process.poll() is None else signal.SIGTERM)


def the_event() -> FailoverEvent | None:
    return FailoverEvent.objects.order_by("pk").first()


def normal(server: Server) -> bool:
    return Server.objects.get(pk=server.pk).status == "normal"


def running_advance(worker) -> bool:
    """Whether the worker has started an advance it has not finished (a solo pool runs
    one task at a time, so this is the one that holds the event)."""
    log = worker.log()
    received = set(re.findall(r"advance_event\[([0-9a-f-]+)\] received", log))
    done = set(re.findall(r"advance_event\[([0-9a-f-]+)\] (?:succeeded|raised)", log))
    return bool(received - done)


def holder(workers: list) -> object | None:
    """The one worker still running an advance a moment later: a duplicated delivery
    finds the lease held and returns at once, the holder works for seconds."""
    busy = [w for w in workers if running_advance(w)]
    time.sleep(0.3)
    still = [w for w in busy if running_advance(w)]
    return still[0] if len(still) == 1 else None


def test_a_worker_killed_mid_takeover_adds_at_most_5_s(start_node, team, failover_settings,
                                                       processes, tmp_path):  # fmt: skip
    from failover.engine import refresh_snapshot

    recording_node = start_node(mode="recording", name="lobby", cameras=2)
    recording = register(recording_node, team, "recording", "Lobby")
    failover_nodes = []
    for i in (1, 2):
        # Segments of 3 s: a takeover lasts until each camera has written one, long
        # enough to kill the worker while it is in progress.
        node = start_node(mode="failover", name=f"standby{i}", segment_seconds=3)
        server = register(node, team, "failover", f"Standby {i}")
        Protection.objects.create(recording_server=recording, failover_server=server,
                                  priority=i)  # fmt: skip
        failover_nodes.append(node)
    refresh_snapshot(recording)
    purge(SESSION_QUEUE)
    # The default lease: what production runs with.
    workers = []
    for name in ("a", "b"):  # each its own folder: the log is named after the queue
        (tmp_path / name).mkdir()
        workers.append(processes(start_worker(tmp_path / name, queue=SESSION_QUEUE)))
    processes(start_beat(tmp_path))
    wait_until(lambda: normal(recording), timeout=30, message="the first probe")

    recording_node.kill()
    wait_until(lambda: (e := the_event()) is not None and e.state == EventState.TAKING_OVER,
               timeout=60, interval=0.02, message="the takeover to start")  # fmt: skip
    taking_over = wait_until(lambda: holder(workers), timeout=10, interval=0.02,
                             message="the worker taking over")  # fmt: skip
    taking_over.stop(signal.SIGKILL)
    killed = time.time()
    claimed = the_event()
    assert claimed.state == EventState.TAKING_OVER, "the takeover ended before the kill"

    wait_until(lambda: the_event().state == EventState.ACTIVE, timeout=60,
               message="the takeover resumed by the other worker")  # fmt: skip
    event = the_event()
    timeline = [(t.at.timestamp() - killed, t.from_state, t.to_state, t.reason[:80])
                for t in event.transitions.all()]  # fmt: skip
    resumed = event.transitions.filter(reason__startswith="Resuming the takeover").first()
    assert resumed is not None, "\n".join(map(str, timeline))
    added = resumed.at.timestamp() - killed
    print(f"worker killed mid-takeover: another went on after {added:.2f} s")
    assert added <= 5.0
    assert (event.failover_server_id, event.epoch) == (claimed.failover_server_id, claimed.epoch)
    assert event.transitions.filter(to_state="taking_over").exclude(
        from_state="taking_over").count() == 1  # fmt: skip
    assert acting_nodes(failover_nodes, event.node_tag) == [0]


def test_an_acting_failover_server_killed_is_replaced_within_the_detection_bound(
    make_fleet, processes, tmp_path
):
    fleet = make_fleet(failovers=2)
    purge(SESSION_QUEUE)
    processes(start_worker(tmp_path, queue=SESSION_QUEUE, concurrency=2))
    processes(start_beat(tmp_path))
    wait_until(lambda: normal(fleet.recording), timeout=30, message="the first probe")
    fleet.recording_node.kill()
    wait_until(lambda: (e := the_event()) is not None and e.state == EventState.ACTIVE,
               timeout=60, message="the first takeover")  # fmt: skip
    tag = the_event().node_tag

    fleet.failover_nodes[0].kill()
    killed = time.time()
    settings = FailoverSettings.load()
    # N failed probes one interval apart, the last one's timeout, then a takeover that
    # waits for one segment per camera (1 s), with a second of slack for the processes.
    bound = (settings.failures_before_failover + 1) * settings.probe_interval \
        + settings.probe_timeout + 1 + 2  # fmt: skip
    seen_acting = []

    def replaced() -> bool:
        seen_acting.append(len(acting_nodes(fleet.failover_nodes, tag)))
        event = the_event()
        return event.state == EventState.ACTIVE and event.failover_server == fleet.failovers[1]

    wait_until(replaced, timeout=60, interval=0.1, message="the second takeover")
    took = time.time() - killed
    print(f"acting failover server killed: the next one records after {took:.2f} s "
          f"(bound {bound:.1f} s)")  # fmt: skip
    assert took <= bound
    assert max(seen_acting) <= 1  # never two at once
    assert acting_nodes(fleet.failover_nodes, tag) == [1]
    moves = list(the_event().transitions.exclude(from_state=F("to_state")).values_list(
        "to_state", flat=True))  # fmt: skip
    assert moves == ["detected", "taking_over", "active", "detected", "taking_over", "active"]


def test_a_flapping_volume_fails_over_once_and_back_only_after_a_stable_hold_down(
    make_fleet, failover_settings, processes, tmp_path
):
    failover_settings.failback_hold_down = 8
    failover_settings.save()
    fleet = make_fleet(failovers=1)
    purge(SESSION_QUEUE)
    processes(start_worker(tmp_path, queue=SESSION_QUEUE, concurrency=2))
    processes(start_beat(tmp_path))
    wait_until(lambda: normal(fleet.recording), timeout=30, message="the first probe")

    client = fleet.recording_node.client()
    rng = random.Random(12)
    end = time.time() + 24
    while time.time() < end:  # fault and clear every 2 to 3.5 s, as the field saw it
        client.set_fault("volume")
        time.sleep(rng.uniform(2, 3.5))
        client.set_fault("clear")
        stable_since = time.time()
        time.sleep(rng.uniform(2, 3.5))

    wait_until(lambda: the_event() is not None and the_event().state == EventState.COMPLETED,
               timeout=60, message="the failback once stable")  # fmt: skip
    assert FailoverEvent.objects.count() == 1
    event = the_event()
    failing_back = EventTransition.objects.get(event=event, to_state="failing_back").at
    assert failing_back.timestamp() >= stable_since + failover_settings.failback_hold_down
