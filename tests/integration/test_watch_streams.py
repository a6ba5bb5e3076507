"""The prober's watch streams (cms/nodes/watch.py) against real agents and fake ones.

The evidence callback is the one seam: it collects here what it would send to the
engine. The agents are real processes; the faults are the real ones (a fault file
written by ``cms-node fault``, SIGKILL, SIGSTOP) and the attacker is a fake node on
loopback that logs in and answers ``/health`` well but sends a broken stream.
"""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest

from cms.nodes.prober import HealthProber, Target
from cms.nodes.watch import Watcher, WatchSettings
from tests.fixtures.hostile import GOOD_HEALTH, PASSWORD, as_json, event_stream
from tests.fixtures.nodes import wait_until

pytestmark = [pytest.mark.integration]


class Collected:
    def __init__(self) -> None:
        self.items: list[tuple[int, str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, key: int, status: str, message: str) -> None:
        with self.lock:
            self.items.append((key, status, message))

    def statuses(self) -> list[str]:
        with self.lock:
            return [status for _, status, _ in self.items]


@pytest.fixture
def watched():
    """A prober whose watcher hands its evidence to a list: (prober, collected)."""
    prober = HealthProber()
    prober.probe_all([], 1.0)  # the session exists from here
    collected = Collected()
    prober.watcher = Watcher(prober, WatchSettings(), collected)  # the defaults
    yield prober, collected
    prober.close()


def target_of(node, key: int = 1) -> Target:
    return Target(key=key, host=node.host, port=node.port, https=False, username="admin",
                  password=node.password)  # fmt: skip


def fake_target(fake, key: int = 1) -> Target:
    return Target(key=key, host="127.0.0.1", port=fake.port, https=False, username="admin",
                  password=PASSWORD)  # fmt: skip


def probe_and_watch(prober: HealthProber, target: Target) -> None:
    [result] = prober.probe_all([target], 5.0)
    assert result.error == "", result.message
    wait_until(lambda: streaming(prober, target.key), timeout=10, message="the stream to open")


def streaming(prober: HealthProber, key: int) -> bool:
    stream = prober.watcher.streams.get(key)
    return stream is not None and stream.events > 0


def test_a_volume_fault_is_evidence_at_once(start_node, watched):
    prober, collected = watched
    node = start_node(mode="recording", cameras=1)
    probe_and_watch(prober, target_of(node))
    assert collected.statuses() == []

    assert node.cli("fault", "volume").returncode == 0
    wait_until(lambda: collected.statuses(), timeout=10, message="the volume fault")
    assert collected.statuses() == ["volume_abnormal"]
    assert "volume crashed" in collected.items[0][2]
    # said once, not at every heartbeat
    assert node.cli("fault", "service").returncode == 0  # volume stays crashed
    wait_until(lambda: streaming(prober, 1), timeout=5, message="the stream")
    assert collected.statuses() == ["volume_abnormal"]


def test_a_killed_agent_is_disconnected_by_its_refused_port(start_node, watched):
    prober, collected = watched
    node = start_node(mode="recording")
    probe_and_watch(prober, target_of(node))
    node.kill()
    wait_until(lambda: collected.statuses(), timeout=10, message="the evidence")
    assert collected.statuses() == ["disconnected"]
    assert "refuses connections" in collected.items[0][2]
    assert 1 not in prober.watcher.streams  # polling decides from here


def test_a_stream_ended_by_its_token_reconnects_without_evidence(start_node, watched):
    """A stream that ends (the token expired) and reconnects: nothing happened."""
    prober, collected = watched
    node = start_node(mode="recording", token_ttl=2)
    probe_and_watch(prober, target_of(node))
    first = prober.watcher.streams[1].events
    # several token lifetimes: the stream ends and is opened again each time
    wait_until(lambda: prober.watcher.streams[1].events > first + 40, timeout=20,
               message="heartbeats across reconnections")  # fmt: skip
    assert collected.statuses() == []


def test_a_stopped_agent_is_declared_silent_by_phi(start_node, watched):
    prober, collected = watched
    node = start_node(mode="recording")
    probe_and_watch(prober, target_of(node))
    os.kill(node.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: collected.statuses(), timeout=10, message="the silence")
        assert collected.statuses() == ["disconnected"]
        assert "silent for" in collected.items[0][2] and "phi" in collected.items[0][2]
    finally:
        os.kill(node.pid, signal.SIGCONT)
    # once per silence; the stream goes on when the agent does
    events = prober.watcher.streams[1].events
    wait_until(lambda: prober.watcher.streams[1].events > events + 4, timeout=10,
               message="heartbeats after SIGCONT")  # fmt: skip
    assert collected.statuses() == ["disconnected"]


def test_an_agent_without_watch_is_polled_only(hostile_node, watched):
    prober, collected = watched
    fake = hostile_node({})  # answers 404 to /watch, like an older agent
    target = fake_target(fake)
    [result] = prober.probe_all([target], 5.0)
    assert result.error == ""
    wait_until(lambda: prober.watcher.unsupported, timeout=10, message="the 404")
    for _ in range(3):
        assert prober.probe_all([target], 5.0)[0].error == ""
    assert fake.seen("/watch") == 1  # remembered: asked once
    assert collected.statuses() == []


HEALTH = b"event: health\ndata: " + json.dumps(GOOD_HEALTH).encode() + b"\n\n"


def closes_at_once(conn, stop) -> bool:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                 b"Content-Length: 0\r\n\r\n")  # fmt: skip
    return False


BROKEN = {
    "closed before any event": closes_at_once,
    "not JSON": event_stream(HEALTH, b"event: heartbeat\ndata: {not json\n\n"),
    "against the schema": event_stream(HEALTH, b'event: health\ndata: {"volume": "ok"}\n\n'),
    "oversized event": event_stream(HEALTH, b"event: health\ndata: " + b"x" * (2 << 20)),
    "never-ending line": event_stream(HEALTH, endless=b"y" * 65536, every=0.01),
    "dripping line": event_stream(HEALTH, b"data: ", endless=b"z", every=0.05),
    "not an event stream": as_json({}),
}


@pytest.mark.parametrize("how", list(BROKEN))
def test_a_broken_stream_is_closed_and_is_no_evidence(hostile_node, watched, how):
    prober, collected = watched
    fake = hostile_node({"/watch": BROKEN[how]})
    target = fake_target(fake)
    assert prober.probe_all([target], 5.0)[0].error == ""
    wait_until(lambda: 1 in prober.watcher.paused_until, timeout=15, message="the stream closed")
    assert 1 not in prober.watcher.streams
    # polling goes on as before, and the stream is not reopened at every probe
    for _ in range(3):
        assert prober.probe_all([target], 5.0)[0].error == ""
    assert fake.seen("/watch") <= 3  # never in a loop
    assert collected.statuses() == []
