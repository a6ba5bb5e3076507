"""``GET /watch``: the agent's health as server-sent events, on a real agent.

Met as the CMS meets it: the first event is the health ``/health`` returns, then
heartbeats; a fault injected by ``cms-node fault`` (another process) shows as a
``health`` event without waiting for a poll. Met as an attacker would: no token, a bad
heartbeat, more streams than the agent serves.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator

import pytest

from protocol import parse
from protocol.messages import Health, Heartbeat
from tests.fixtures.nodes import raw_request, token_of

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_tokens")]


class Stream:
    """A raw SSE client: one connection, events read line by line."""

    def __init__(self, node, token: str, query: str = "") -> None:
        self.conn = http.client.HTTPConnection(node.host, node.port, timeout=10)
        self.conn.request(
            "GET", f"/api/v1/watch{query}", headers={"Authorization": f"Bearer {token}"}
        )
        self.response = self.conn.getresponse()

    def events(self) -> Iterator[tuple[str, bytes]]:
        name, data = "", b""
        for raw in self.response:
            line = raw.rstrip(b"\r\n")
            if not line:
                yield name, data
                name, data = "", b""
            elif line.startswith(b"event: "):
                name = line[7:].decode()
            elif line.startswith(b"data: "):
                data = line[6:]

    def close(self) -> None:
        self.conn.close()


def test_the_stream_sends_health_then_heartbeats_and_a_fault_at_once(start_node):
    node = start_node(mode="recording", cameras=1)
    stream = Stream(node, token_of(node), "?heartbeat=0.1")
    try:
        assert stream.response.status == 200
        assert stream.response.getheader("content-type").startswith("text/event-stream")
        events = stream.events()
        name, data = next(events)
        assert name == "health"
        first = parse(Health, data)
        assert first.volume.state != "crashed" and first.service.state == "running"
        beats = []
        while len(beats) < 3:
            name, data = next(events)
            if name == "heartbeat":
                beats.append(parse(Heartbeat, data).seq)
        assert beats == sorted(beats) and len(set(beats)) == 3

        assert node.cli("fault", "volume").returncode == 0
        injected = time.monotonic()
        while True:  # (a camera that starts recording is a health event too)
            name, data = next(events)
            if name == "health" and parse(Health, data).volume.state == "crashed":
                break
            # "within a second", generously: the heartbeat is 0.1 s
            assert time.monotonic() - injected < 5, "no health event after the fault"
    finally:
        stream.close()


BAD_HEARTBEATS = ["0", "0.05", "6", "abc", "1e1", "-1", "0.25s", "", "%D9%A3", "nan"]


@pytest.mark.parametrize("value", BAD_HEARTBEATS)
def test_a_bad_heartbeat_is_a_400(start_node, value):
    node = start_node(mode="recording")
    token = token_of(node)
    status, _, body = raw_request(
        node,
        "GET",
        f"/api/v1/watch?heartbeat={value}",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert status == 400 and body["error"]["code"] == "bad_request"
    assert "heartbeat" in body["error"]["message"]


def test_no_token_no_stream(start_node):
    node = start_node(mode="recording")
    status, _, body = raw_request(node, "GET", "/api/v1/watch")
    assert status == 401 and body["error"]["code"] == "auth_required"
    status, _, body = raw_request(
        node, "GET", "/api/v1/watch", headers={"Authorization": "Bearer forged"}
    )
    assert status == 401 and body["error"]["code"] == "token_invalid"


def test_the_ninth_stream_is_refused_and_a_closed_one_frees_its_slot(start_node):
    node = start_node(mode="recording")
    token = token_of(node)
    streams = [Stream(node, token) for _ in range(8)]
    try:
        assert all(s.response.status == 200 for s in streams)
        status, headers, body = raw_request(
            node, "GET", "/api/v1/watch", headers={"Authorization": f"Bearer {token}"}
        )
        assert status == 429 and body["error"]["code"] == "too_many_watches"
        assert headers["retry-after"]
        # /health still answers while eight streams run
        status, _, _ = raw_request(
            node, "GET", "/api/v1/health", headers={"Authorization": f"Bearer {token}"}
        )
        assert status == 200

        streams.pop().close()
        deadline = time.monotonic() + 10
        while True:  # the agent notices the closed stream at its next heartbeat
            extra = Stream(node, token)
            if extra.response.status == 200:
                streams.append(extra)
                break
            extra.close()
            assert time.monotonic() < deadline, "the closed stream's slot was not given back"
            time.sleep(0.2)
    finally:
        for s in streams:
            s.close()


def test_an_expired_token_ends_the_stream(start_node):
    node = start_node(mode="recording", token_ttl=2)
    stream = Stream(node, token_of(node), "?heartbeat=0.1")
    try:
        names = [name for name, _ in stream.events()]  # ends when the agent closes
        assert names[0] == "health" and "heartbeat" in names
    finally:
        stream.close()


def test_a_stream_left_half_open_does_not_hold_a_slot(start_node):
    """A client that vanishes without a FIN (its socket just closed here) frees its
    slot once the agent's next write fails."""
    node = start_node(mode="recording")
    token = token_of(node)
    for _ in range(12):  # more than the cap, one after the other
        sock = socket.create_connection((node.host, node.port), timeout=5)
        sock.sendall(
            f"GET /api/v1/watch?heartbeat=0.1 HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        assert sock.recv(12).startswith(b"HTTP/1.1 200"), "refused: a slot was kept"
        sock.close()
        time.sleep(0.5)
    status, _, body = raw_request(
        node, "GET", "/api/v1/health", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 200, json.dumps(body)
