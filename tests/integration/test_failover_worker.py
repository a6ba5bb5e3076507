"""Failover through the real processes: Celery beat, workers on the real broker, agents."""

from __future__ import annotations

import signal

import pytest
from django.db.models import F

from failover.choices import EventState
from failover.models import FailoverEvent
from tests.fixtures.celery import SESSION_QUEUE, purge, start_beat, start_worker
from tests.fixtures.nodes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def processes(tmp_path):
    started = []

    def track(process):
        started.append(process)
        return process

    yield track
    for process in started:
        process.stop(signal.SIGKILL if process.process.poll() is None else signal.SIGTERM)


def event_state() -> str | None:
    event = FailoverEvent.objects.first()
    return event.state if event else None


def test_it_fails_over_and_back_with_two_beats_and_a_worker(make_fleet, processes, tmp_path):
    fleet = make_fleet(failovers=1)
    purge(SESSION_QUEUE)
    worker = processes(start_worker(tmp_path, queue=SESSION_QUEUE, concurrency=2))
    processes(start_beat(tmp_path, "beat1"))
    processes(start_beat(tmp_path, "beat2"))  # a second beat must not double anything

    wait_until(lambda: fleet.recording.__class__.objects.get(pk=fleet.recording.pk).status
               == "normal", timeout=30, message="the first probe")  # fmt: skip
    fleet.recording_node.kill()
    wait_until(lambda: event_state() == EventState.ACTIVE, timeout=60,
               message=f"failover\n{worker.log()[-3000:]}")  # fmt: skip
    event = FailoverEvent.objects.get()
    assert event.failover_server == fleet.failovers[0]
    assert event.transitions.filter(to_state="taking_over").count() == 1

    fleet.recording_node.restart()
    wait_until(lambda: event_state() == EventState.COMPLETED, timeout=90,
               message=f"failback and restoration\n{worker.log()[-3000:]}")  # fmt: skip
    event.refresh_from_db()
    assert event.restoration.state == "completed"
    assert FailoverEvent.objects.count() == 1
    states = list(event.transitions.exclude(from_state=F("to_state")).values_list(
        "to_state", flat=True))  # fmt: skip
    assert states == [
        "detected", "taking_over", "active", "waiting_failback", "failing_back",
        "restoring", "completed",
    ]  # fmt: skip


def test_a_worker_killed_mid_takeover_is_resumed_by_another(make_fleet, processes, tmp_path):
    fleet = make_fleet(failovers=2)
    purge(SESSION_QUEUE)
    env = {"CMS_EVENT_LEASE_SECONDS": "2", "CMS_TAKEOVER_CONFIRM_SECONDS": "20"}
    first = processes(start_worker(tmp_path, queue=SESSION_QUEUE, **env))
    processes(start_beat(tmp_path, **env))
    wait_until(lambda: fleet.recording.__class__.objects.get(pk=fleet.recording.pk).status
               == "normal", timeout=30, message="the first probe")  # fmt: skip

    # A takeover lasts at least until the failover server has written a segment (1 s
    # here), long enough to kill the worker while it is in progress.
    fleet.recording_node.kill()
    wait_until(lambda: event_state() == EventState.TAKING_OVER, timeout=60, interval=0.02,
               message=f"takeover to start\n{first.log()[-3000:]}")  # fmt: skip
    first.stop(signal.SIGKILL)
    claimed = FailoverEvent.objects.get()
    assert claimed.failover_server is not None

    second = processes(start_worker(tmp_path, queue=SESSION_QUEUE, **env))
    wait_until(lambda: event_state() == EventState.ACTIVE, timeout=90,
               message=f"resumed takeover\n{second.log()[-3000:]}")  # fmt: skip
    event = FailoverEvent.objects.get()
    assert (event.failover_server_id, event.epoch) == (claimed.failover_server_id, claimed.epoch)
    # One claim; the resumption is a note on the timeline, not a second move.
    assert event.transitions.filter(to_state="taking_over").exclude(
        from_state="taking_over").count() == 1  # fmt: skip
    assert event.transitions.filter(reason__startswith="Resuming the takeover").exists()
    health = [n.client().health()["recording"]["on_behalf_of"] for n in fleet.failover_nodes]
    assert sum(1 for h in health if h and h["id"] == event.node_tag) == 1
