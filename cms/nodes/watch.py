"""Watch streams: failures seen as they happen, between the probes.

Polling sees a fault at the next probe and fails over after three; but the agent knows
at once when its volume crashes or its service stops, and a dead agent's connection
closes at once. So, next to the probes, the prober's event loop keeps one
``GET /watch`` stream (server-sent events, docs/node-api.md) open to every node that
answers its probes normally, and hands what the stream shows to a callback as
*evidence* ``(key, status, message)``:

* a ``health`` event that says the volume crashed or the service stopped: that status
  at once (the agent said it itself);
* the stream's connection closed or reset: it reconnects at once; if the node's port
  then refuses the connection twice, ~100 ms apart, the agent is gone:
  ``disconnected``. If the reconnection works, nothing happened;
* silence on an open connection (a hung agent, a power cut, a cut cable, a black
  hole): a phi-accrual detector (cms/nodes/phi.py) per stream, checked every 0.1 s,
  says when the silence is too unlikely for this node's own history:
  ``disconnected``, once per silence.

The evidence goes to the engine through a Celery task (``EVIDENCE_TASK``, sent by
name: this package does not import ``failover``), never to the database from this
loop's thread.

Streams follow the probes: a probe that answers normally wants its node's stream (same
token cache, same pinned certificate); a stream not wanted for three probe intervals
(the server was deleted, disabled, or another process probes it now) is closed. One
stream per node and process at most. A node answering 404 (an older agent) is
remembered and polled only; a stream that breaks the protocol (not an event stream,
an event over 1 MiB or against its schema, a line that never ends) is closed, logged,
and not opened again for a while: it changes no server's status, polling still says
what it is.

The cost (README, configuration): one connection per node and probing process, and a
heartbeat event of about 100 bytes every 0.25 s on it; on the node, one health read
per heartbeat. ``CMS_WATCH=0`` turns it off (polling only).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from protocol import BadAnswer, parse
from protocol.limits import MAX_ANSWER_BYTES
from protocol.messages import Health, Heartbeat

from .phi import PhiAccrual

if TYPE_CHECKING:
    from .prober import HealthProber, Target

log = logging.getLogger(__name__)

EVIDENCE_TASK = "failover.tasks.watch_evidence"
DISCONNECTED = "disconnected"
VOLUME_ABNORMAL = "volume_abnormal"
SERVICE_ABNORMAL = "service_abnormal"
MAX_EVENT_BYTES = MAX_ANSWER_BYTES  # an event is bounded like any answer
CHECK_EVERY = 0.1  # seconds between two looks at every stream's silence
REFUSAL_PAUSE = 0.1  # between the two connection attempts that must both be refused
UNWANTED_AFTER = 3  # probe intervals without a normal probe: the stream is closed
FIRST_INTERVAL = 60.0  # assumed probe interval until a second probe says what it is
BAD_STREAM_PAUSE = 300.0  # a stream that broke the protocol is not reopened before this
EMPTY_STREAMS = 3  # streams in a row closed before their first event: a broken stream

Evidence = Callable[[int, str, str], None]


@dataclass(frozen=True)
class WatchSettings:
    enabled: bool = True
    heartbeat: float = 0.25
    threshold: float = 8.0
    min_std: float = 0.1
    acceptable_pause: float = 0.5

    @classmethod
    def from_django(cls) -> WatchSettings:
        from django.conf import settings

        return cls(
            enabled=settings.CMS_WATCH,
            # within the node's bounds (docs/node-api.md)
            heartbeat=min(max(settings.CMS_WATCH_HEARTBEAT_SECONDS, 0.1), 5.0),
            threshold=settings.CMS_WATCH_PHI_THRESHOLD,
            min_std=settings.CMS_WATCH_MIN_STD_SECONDS,
            acceptable_pause=settings.CMS_WATCH_ACCEPTABLE_PAUSE_SECONDS,
        )


def send_evidence(key: int, status: str, message: str) -> None:
    """The default callback: the engine's task, by name, on the default queue."""
    from cms.celery import app

    app.send_task(EVIDENCE_TASK, args=[key, status, message])


class _Unsupported(Exception):
    """The node has no /watch (404): an older agent."""


class _BadStream(Exception):
    """The stream broke the protocol."""


class _Declined(Exception):
    """The node refused the stream for now (429, a login refused, another status)."""


@dataclass
class _Stream:
    target: Target
    timeout: float
    detector: PhiAccrual
    wanted_at: float
    interval: float = FIRST_INTERVAL
    task: asyncio.Task | None = None
    connected: bool = False  # a stream was open at least once
    last_bytes: float = 0.0
    silence_reported: bool = False
    fault_reported: str = ""
    events: int = field(default=0)


def _same_node(a: Target, b: Target) -> bool:
    return (a.endpoint, a.base_url, a.fingerprint, a.serial) == (
        b.endpoint,
        b.base_url,
        b.fingerprint,
        b.serial,
    )


class Watcher:
    """The streams of one prober; every method runs on the prober's event loop."""

    def __init__(
        self,
        prober: HealthProber,
        settings: WatchSettings,
        evidence: Evidence = send_evidence,
    ) -> None:
        self.prober = prober
        self.settings = settings
        self.evidence = evidence
        self.streams: dict[int, _Stream] = {}
        self.unsupported: set[tuple] = set()  # endpoints that answered 404
        self.paused_until: dict[int, float] = {}  # key -> monotonic time
        self._session: aiohttp.ClientSession | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._next_tick = 0.0

    # -- following the probes ------------------------------------------------------

    def want(self, target: Target, timeout: float) -> None:
        """A probe of ``target`` answered normally: make sure its stream is open. Never
        raises: a fault here must not turn the probe's answer into an error."""
        try:
            self._want(target, timeout)
        except Exception:
            log.exception("watch stream of %s: not opened", target.key)

    def _want(self, target: Target, timeout: float) -> None:
        now = time.monotonic()
        if target.endpoint in self.unsupported or self.paused_until.get(target.key, 0) > now:
            return
        stream = self.streams.get(target.key)
        if stream is not None and not _same_node(stream.target, target):
            self._drop(target.key)  # moved, re-pinned or re-added: a new stream
            stream = None
        if stream is None:
            stream = _Stream(
                target,
                timeout,
                PhiAccrual(
                    self.settings.heartbeat,
                    min_std=self.settings.min_std,
                    acceptable_pause=self.settings.acceptable_pause,
                ),
                wanted_at=now,
            )
            self.streams[target.key] = stream
        else:
            gap = now - stream.wanted_at
            if gap > 0.5:  # a second look in the same cycle says nothing of the interval
                stream.interval = min(max(gap, 1.0), 600.0)
            stream.wanted_at, stream.timeout = now, timeout
        if stream.task is None or stream.task.done():
            stream.task = asyncio.get_running_loop().create_task(self._run(stream))
        self._schedule_tick()

    def _drop(self, key: int) -> None:
        stream = self.streams.pop(key, None)
        if stream is not None and stream.task is not None:
            stream.task.cancel()

    def _forget(self, stream: _Stream) -> None:
        """From its own task: this stream ends (a newer one for the key stays)."""
        if self.streams.get(stream.target.key) is stream:
            del self.streams[stream.target.key]

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        tasks = [s.task for s in self.streams.values() if s.task is not None]
        for key in list(self.streams):
            self._drop(key)
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the silence check ---------------------------------------------------------

    def _schedule_tick(self) -> None:
        if self._ticker is None:
            loop = asyncio.get_running_loop()
            self._next_tick = time.monotonic() + CHECK_EVERY
            self._ticker = loop.call_later(CHECK_EVERY, self._tick)

    def _tick(self) -> None:
        now = time.monotonic()
        # A loop that was held up (a large probe cycle parsing answers) has heartbeats
        # waiting in its sockets: they are read before the next look, not judged as
        # silence now.
        late = now - self._next_tick > 2 * CHECK_EVERY
        for key, stream in list(self.streams.items()):
            try:
                if now - stream.wanted_at > UNWANTED_AFTER * stream.interval:
                    self._drop(key)
                elif not late:
                    self._check_silence(stream, now)
            except Exception:
                log.exception("watch stream of %s: the silence check failed", key)
        self._ticker = None
        if self.streams:
            self._schedule_tick()

    def _check_silence(self, stream: _Stream, now: float) -> None:
        detector = stream.detector
        if stream.silence_reported or detector.last is None:
            return
        value = detector.phi(now)
        if value <= self.settings.threshold:
            return
        if now - stream.last_bytes < now - detector.last and now - stream.last_bytes < 1.0:
            # Bytes keep coming, but no event ends: not silence, a broken stream.
            self._give_up(stream, "bytes arrive but no event ends")
            return
        stream.silence_reported = True
        silent = detector.silent_for(now)
        self._report(
            stream, DISCONNECTED, f"the agent's watch stream was silent for {silent:.1f} s "
            f"(phi {value:.0f})",
        )  # fmt: skip

    def _give_up(self, stream: _Stream, why: str) -> None:
        target = stream.target
        log.warning(
            "watch stream of %s:%s closed: %s; polled only for %.0f s",
            target.host, target.port, why, BAD_STREAM_PAUSE,
        )  # fmt: skip
        self.paused_until[target.key] = time.monotonic() + BAD_STREAM_PAUSE
        self._forget(stream)
        if stream.task is not None and stream.task is not asyncio.current_task():
            stream.task.cancel()

    def _report(self, stream: _Stream, status: str, message: str) -> None:
        key = stream.target.key
        loop = asyncio.get_running_loop()
        # The broker is a network call: off the loop, so the streams go on meanwhile.
        future = loop.run_in_executor(None, self._send, key, status, message)
        future.add_done_callback(lambda _: None)

    def _send(self, key: int, status: str, message: str) -> None:
        try:
            self.evidence(key, status, message)
        except Exception:
            log.exception("watch evidence for %s (%s) was not sent", key, status)

    # -- one stream ----------------------------------------------------------------

    async def _run(self, stream: _Stream) -> None:
        """Keep the stream open while it is wanted; end on what polling must decide."""
        refused = False
        failures = 0
        empty = 0  # streams in a row that ended before their first event
        while True:
            try:
                seen = stream.events
                await self._follow(stream)
                refused, failures = False, 0  # closed by the node: reconnect at once
                empty = empty + 1 if stream.events == seen else 0
                if empty >= EMPTY_STREAMS:
                    raise _BadStream(f"{EMPTY_STREAMS} streams in a row ended without an event")
            except aiohttp.ClientConnectorError as exc:
                if not isinstance(exc.os_error, ConnectionRefusedError):
                    failures += 1
                    await asyncio.sleep(min(0.1 * 2**failures, 5.0))
                    continue
                if not stream.connected:
                    return  # never open: the probes say what the node is
                if not refused:
                    refused = True
                    await asyncio.sleep(REFUSAL_PAUSE)
                    continue
                self._report(
                    stream, DISCONNECTED,
                    "the agent's watch stream closed and its port refuses connections",
                )  # fmt: skip
                self._forget(stream)
                return
            except _Unsupported:
                self.unsupported.add(stream.target.endpoint)
                self._forget(stream)
                return
            except _BadStream as exc:
                self._give_up(stream, str(exc))
                return
            except (_Declined, aiohttp.ServerFingerprintMismatch) as exc:
                log.info("watch stream of %s: %s", stream.target.host, exc)
                self.paused_until[stream.target.key] = time.monotonic() + stream.interval
                self._forget(stream)
                return
            except (aiohttp.ClientError, OSError, TimeoutError):
                # Reset, or no answer in time: try again at once, then back off; a node
                # that stays silent meanwhile is the detector's to judge.
                failures += 1
                if failures > 1:
                    await asyncio.sleep(min(0.1 * 2 ** (failures - 1), 5.0))

    def _session_for_streams(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # Apart from the probes' connections (one per node, kept alive): a
                # stream holds its connection for hours. Never reused: a reconnection
                # must be a new connection to see whether the port refuses it.
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=2, force_close=True),
                trust_env=False,
                auto_decompress=False,
            )
        return self._session

    async def _follow(self, stream: _Stream) -> None:
        """One connection: log in if needed, open the stream, read events until the node
        closes it (returns) or a fault ends it (raises)."""
        from . import prober as probing

        target = stream.target
        for attempt in (1, 2):
            result = probing.HealthResult(target.key)
            limit = aiohttp.ClientTimeout(total=stream.timeout)
            try:
                token = await self.prober._token(target, result, limit, probing._Progress())
            except probing._Refused as exc:
                raise _Declined(f"login refused: {exc.message}") from None
            url = f"{target.base_url}/watch?heartbeat={self.settings.heartbeat:g}"
            headers = {
                "Authorization": f"Bearer {token}",
                "Accept": "text/event-stream",
                "Accept-Encoding": "identity",
            }
            session = self._session_for_streams()
            async with asyncio.timeout(stream.timeout):
                response = await session.get(
                    url,
                    ssl=probing.ssl_for(target),
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=stream.timeout),
                )
            try:
                if response.status == 401 and attempt == 1:
                    self.prober._tokens.pop(target.endpoint, None)
                    continue
                if response.status == 404:
                    raise _Unsupported
                if response.status != 200:
                    raise _Declined(f"/watch answered {response.status}")
                content_type = response.headers.get("Content-Type", "")
                if not content_type.startswith("text/event-stream"):
                    raise _BadStream(f"/watch answered {content_type[:40]!r}, not events")
                if response.headers.get("Content-Encoding", "identity") != "identity":
                    raise _BadStream("/watch answered compressed")
                now = time.monotonic()
                if not stream.connected:
                    log.info("watch stream of %s:%s open", target.host, target.port)
                stream.connected = True
                stream.detector.restart(now)
                stream.last_bytes = now
                await self._read(stream, response)
                return
            finally:
                response.close()

    async def _read(self, stream: _Stream, response: aiohttp.ClientResponse) -> None:
        buffer = bytearray()
        name, data = b"", bytearray()
        async for chunk in response.content.iter_any():
            stream.last_bytes = time.monotonic()
            start = len(buffer)  # only the new bytes can hold a new line's end
            buffer += chunk
            while (end := buffer.find(b"\n", start)) >= 0:
                line = bytes(buffer[:end]).rstrip(b"\r")
                del buffer[: end + 1]
                start = 0
                if not line:
                    if data or name:
                        self._dispatch(stream, name, bytes(data))
                    name, data = b"", bytearray()
                elif line.startswith(b"event:"):
                    name = line[6:].strip()
                elif line.startswith(b"data:"):
                    if data:
                        data += b"\n"
                    data += line[5:].removeprefix(b" ")
                    if len(data) > MAX_EVENT_BYTES:
                        raise _BadStream(f"an event larger than {MAX_EVENT_BYTES} bytes")
                # comments (":"), "id:", "retry:": nothing to act on
            if len(buffer) > MAX_EVENT_BYTES:
                raise _BadStream(f"a line longer than {MAX_EVENT_BYTES} bytes")

    def _dispatch(self, stream: _Stream, name: bytes, data: bytes) -> None:
        try:
            if name == b"heartbeat":
                parse(Heartbeat, data, max_bytes=MAX_EVENT_BYTES)
            elif name == b"health":
                self._health(stream, parse(Health, data, max_bytes=MAX_EVENT_BYTES))
            else:
                return  # an event a newer agent added: not a sign of life we know
        except BadAnswer as exc:
            raise _BadStream(f"bad {name[:20].decode(errors='replace')} event: {exc}") from None
        stream.events += 1
        stream.detector.heartbeat(time.monotonic())
        stream.silence_reported = False

    def _health(self, stream: _Stream, health: Health) -> None:
        if health.volume.state == "crashed":
            status, what = VOLUME_ABNORMAL, "its volume crashed"
        elif health.service.state != "running":
            status, what = SERVICE_ABNORMAL, f"its surveillance service is {health.service.state}"
        else:
            stream.fault_reported = ""
            return
        if stream.fault_reported != status:
            stream.fault_reported = status
            self._report(stream, status, f"the agent reported it on its watch stream: {what}")


def create(prober: HealthProber) -> Watcher | None:
    """The prober's watcher, or None when watch streams are off (``CMS_WATCH=0``)."""
    try:
        settings = WatchSettings.from_django()
    except Exception:  # no Django settings (a script using the prober alone)
        settings = WatchSettings(enabled=False)
    return Watcher(prober, settings) if settings.enabled else None


def describe(watcher: Watcher | None) -> dict[str, Any]:
    """What a watcher holds now (for logs and tests)."""
    if watcher is None:
        return {"enabled": False}
    return {
        "enabled": True,
        "streams": sorted(watcher.streams),
        "unsupported": len(watcher.unsupported),
    }
