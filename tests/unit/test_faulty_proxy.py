"""The faulty proxy's bad-but-working network: spikes, loss and stalls delay bytes and
never lose, duplicate or reorder one (the proxy runs in-process here, in front of an
echo server on a thread)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.fixtures.faulty_network import FaultyProxy


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    """A TCP server that sends back every byte it reads."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[:2]
    listener.close()


@pytest.fixture
def proxy(echo: tuple[str, int]) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(echo, seed=7)
    yield proxy
    proxy.close()


def round_trip(proxy: FaultyProxy, payload: bytes) -> bytes:
    with socket.create_connection((proxy.host, proxy.port), timeout=60) as conn:
        sender = threading.Thread(target=conn.sendall, args=(payload,))
        sender.start()
        received = bytearray()
        while len(received) < len(payload):
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
        sender.join()
    return bytes(received)


def eventually(predicate: Callable[[], bool], limit: float = 30.0) -> bool:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_spikes_and_loss_delay_chunks_and_lose_nothing(proxy: FaultyProxy) -> None:
    proxy.spikes = (0.5, 0.02)
    proxy.loss = 0.05
    payload = os.urandom(300_000)

    assert round_trip(proxy, payload) == payload
    assert proxy.delayed > 0
    # The last chunk is counted just after it was sent, so possibly after it arrived.
    assert eventually(lambda: proxy.bytes_out == 2 * len(payload))  # there and back
    assert proxy.bytes_in == proxy.bytes_out


def test_every_chunk_waits_when_spikes_are_certain(proxy: FaultyProxy) -> None:
    proxy.spikes = (1.0, 0.01)

    assert round_trip(proxy, b"ping") == b"ping"
    assert proxy.delayed == 2  # one chunk each way


def test_a_stall_pauses_open_connections_and_they_resume_intact(proxy: FaultyProxy) -> None:
    with socket.create_connection((proxy.host, proxy.port), timeout=30) as conn:
        conn.sendall(b"before")
        assert conn.recv(100) == b"before"

        proxy.stall(300)  # far longer than the test: only resume() ends it
        assert proxy.stalled
        conn.sendall(b"during")
        conn.settimeout(0.5)
        with pytest.raises(TimeoutError):
            conn.recv(100)  # held at the proxy, not lost

        proxy.resume()
        conn.settimeout(30)
        received = b""
        while len(received) < len(b"during"):
            received += conn.recv(100)
        assert received == b"during"
    assert not proxy.stalled


def test_a_stall_ends_by_itself(proxy: FaultyProxy) -> None:
    proxy.stall(0.05)

    assert round_trip(proxy, b"after") == b"after"
    assert not proxy.stalled
