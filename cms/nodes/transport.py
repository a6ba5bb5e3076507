"""The HTTP plumbing under the node client: pooled sessions, pinned TLS, deadlines.

Socket timeouts bound each read, not a call: a node that sends one byte a second
never trips a 15-second read timeout and would hold a worker (or a web thread)
forever. So every call also has an overall deadline, enforced two ways:

* the socket timeouts are cut to the time left, so the common slow cases end by
  themselves;
* a watchdog timer shuts the socket of the connection in use down when the deadline
  passes. The connection classes below tell the call which connection it uses each
  time urllib3 connects or sends; a blocked read then returns at once, and a retry
  that urllib3 would start after it is refused (:class:`DeadlinePassed`).

Deadlines nest (:func:`deadline`): a web request gives all its node calls 10 s, a
client method gives its login, request and re-login its own deadline, whichever
ends first wins.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry

from protocol import BadAnswer
from protocol.limits import MAX_ANSWER_BYTES
from protocol.parsing import too_large

READ_CHUNK = 64 * 1024

# (monotonic end, the seconds it was set to) of the innermost deadline, or None.
_end: ContextVar[tuple[float, float] | None] = ContextVar("node_call_end", default=None)


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Node calls made inside end within ``seconds`` (or an enclosing deadline, if sooner).

    ``None`` adds no deadline of its own (uploads: their length is the file's) but
    keeps an enclosing one.
    """
    outer = _end.get()
    current = outer
    if seconds is not None:
        end = time.monotonic() + seconds
        if outer is None or end < outer[0]:
            current = (end, seconds)
    token = _end.set(current)
    try:
        yield
    finally:
        _end.reset(token)


def time_left() -> float | None:
    """Seconds until the current deadline (0 when passed); None without one."""
    current = _end.get()
    return None if current is None else max(0.0, current[0] - time.monotonic())


def allowed() -> float:
    """The length of the current deadline in seconds (for messages); inf without one."""
    current = _end.get()
    return math.inf if current is None else current[1]


class DeadlinePassed(Exception):
    """The call's deadline passed; raised instead of starting (or retrying) a request.

    Not an ``OSError``: urllib3 retries those, and this must not be retried.
    """


def shutdown(sock: socket.socket | None) -> None:
    """Wake whatever thread is blocked on ``sock``; closing stays with its owner.

    ``socket.socket.shutdown`` is called on the base class so that a TLS socket's
    state is left alone: the blocked ``SSL_read`` sees end-of-file and returns.
    """
    if sock is None:
        return
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Watchdog:
    """Calls ``on_expire`` once, at monotonic time ``end``, unless stopped first."""

    def __init__(self, end: float | None, on_expire: Callable[[], None]) -> None:
        self._timer: threading.Timer | None = None
        if end is not None:
            self._timer = threading.Timer(max(0.0, end - time.monotonic()), on_expire)
            self._timer.daemon = True
            self._timer.name = "node-call-watchdog"
            self._timer.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


class Call:
    """One HTTP exchange with a node: its deadline and the connection it is using."""

    _current = threading.local()  # urllib3 runs the exchange in the caller's thread

    def __init__(self) -> None:
        current = _end.get()
        self.end = current[0] if current else None
        self.expired = False
        self._conn: HTTPConnection | None = None
        self._done = False
        self._lock = threading.Lock()
        self._watchdog: Watchdog | None = None

    def __enter__(self) -> Call:
        if self.end is not None and self.end <= time.monotonic():
            self.expired = True
            raise DeadlinePassed
        self._watchdog = Watchdog(self.end, self._expire)
        Call._current.call = self
        return self

    def __exit__(self, *exc: object) -> None:
        Call._current.call = None
        if self._watchdog is not None:
            self._watchdog.stop()
        with self._lock:
            self._done = True  # a late timer must not touch a connection back in the pool

    def timeouts(self, connect: float, read: float) -> tuple[float, float]:
        """The socket timeouts, cut to the time left (never zero: that means non-blocking)."""
        if self.end is None:
            return connect, read
        left = max(0.05, self.end - time.monotonic())
        return min(connect, left), min(read, left)

    @property
    def out_of_time(self) -> bool:
        """Expired, or so near the end that a socket timeout was the deadline's own: the
        timeouts above are cut to the time left, so they race the watchdog for one instant."""
        return self.expired or (self.end is not None and time.monotonic() >= self.end - 0.1)

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            conn = self._conn
        if conn is not None:
            shutdown(conn.sock)

    @classmethod
    def attach(cls, conn: HTTPConnection) -> None:
        """Called by the connection classes before they connect or send."""
        call: Call | None = getattr(cls._current, "call", None)
        if call is None:
            return
        with call._lock:
            if call.expired:
                raise DeadlinePassed
            call._conn = conn


class _Tracked:
    """Makes the connection in use known to the current call, for its watchdog."""

    def connect(self) -> None:
        Call.attach(self)
        super().connect()  # type: ignore[misc]

    def request(self, *args: Any, **kwargs: Any) -> None:
        Call.attach(self)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _TrackedHTTPConnection(_Tracked, HTTPConnection):
    pass


class _TrackedHTTPSConnection(_Tracked, HTTPSConnection):
    pass


class _TrackedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _TrackedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


class _TrackedAdapter(HTTPAdapter):
    """An adapter whose pools use the tracked connections above."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _TrackedHTTPPool,
            "https": _TrackedHTTPSPool,
        }


class _PinnedAdapter(_TrackedAdapter):
    """Verifies the peer by its pinned fingerprint instead of a CA chain.

    Self-signed node certificates have no CA to check, so ``cert_reqs`` is off and
    urllib3's ``assert_fingerprint`` does the verification on every new connection.
    """

    def __init__(self, fingerprint: str, **kwargs: Any) -> None:
        self._fingerprint = fingerprint
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["assert_fingerprint"] = self._fingerprint
        kwargs["assert_hostname"] = False
        super().init_poolmanager(*args, **kwargs)


def _retry(retries: int) -> Retry:
    return Retry(
        total=retries,
        connect=retries,  # never sent: safe for every method
        read=retries,
        status=retries,
        other=0,
        allowed_methods=frozenset({"GET", "HEAD"}),  # read/status retries only for these
        status_forcelist=(502, 503, 504),
        backoff_factor=0.2,
        raise_on_status=False,
        respect_retry_after_header=False,
    )


_local = threading.local()


def session_for(
    scheme: str, host: str, port: int, fingerprint: str | None, retries: int
) -> requests.Session:
    """A kept-alive session per thread and node (sessions are not shared across threads)."""
    sessions: dict = getattr(_local, "sessions", None) or {}
    _local.sessions = sessions
    key = (scheme, host, port, fingerprint, retries)
    session = sessions.get(key)
    if session is None:
        if len(sessions) > 256:  # bound per-thread memory on a very large fleet
            for old in list(sessions)[:128]:
                sessions.pop(old).close()
        session = requests.Session()
        session.trust_env = False  # a node is on the LAN: never through an HTTP proxy
        adapter: HTTPAdapter
        if scheme == "https":
            assert fingerprint
            adapter = _PinnedAdapter(
                fingerprint, max_retries=_retry(retries), pool_connections=1, pool_maxsize=4
            )
            session.verify = False  # the pin replaces CA verification (see _PinnedAdapter)
        else:
            adapter = _TrackedAdapter(
                max_retries=_retry(retries), pool_connections=1, pool_maxsize=4
            )
        session.mount(f"{scheme}://", adapter)
        sessions[key] = session
    return session


def read_body(resp: requests.Response, cap: int = MAX_ANSWER_BYTES) -> bytes:
    """Read a streamed (``stream=True``) answer's body, refusing more than ``cap`` bytes.

    Compressed answers are refused rather than inflated: nodes send plain JSON, and a
    small gzip body can inflate to gigabytes.
    """
    encoding = resp.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise BadAnswer(f"answer is compressed ({encoding[:20]}); nodes send plain JSON")
    declared = resp.headers.get("Content-Length", "").strip()
    if declared.isdigit() and int(declared) > cap:
        raise too_large(cap)
    body = bytearray()
    for chunk in resp.raw.stream(READ_CHUNK, decode_content=False):
        body += chunk
        if len(body) > cap:
            raise too_large(cap)
    return bytes(body)
