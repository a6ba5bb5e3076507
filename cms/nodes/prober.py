"""Probing many nodes' health at once: one asyncio loop, one kept-alive connection per node.

The probe cycle is I/O: thousands of small requests per interval. Threads with
`requests` spend their time waiting for the interpreter lock and open a new
connection per probe; one event loop with aiohttp (its HTTP parser is compiled)
keeps each node's connection open from one cycle to the next and needs no thread
per request. The loop runs in a
background thread of the worker process, so the (synchronous) Celery task calls
`probe_all()` and gets plain results back.

Every node is untrusted and isolated: each request of a probe (/info, the SCRAM login,
the request) ends within the probe timeout, body included, and a probe makes at most
seven; before each login a node whose serial is not the one the server was added with
gets nothing but the public ``GET /info`` (``identity_changed``), and one that cannot
finish the SCRAM exchange as the real node would gets no request with a token;
bodies are capped and depth-checked before parsing and then validated against
``protocol.messages``; and one probe's exception is turned into that node's result,
never into the cycle's.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import yarl
from pydantic import BaseModel

from protocol import BadAnswer, parse, scram
from protocol.limits import MAX_ANSWER_BYTES
from protocol.messages import Config, Health, Info, ScramFinishAnswer, ScramStartAnswer
from protocol.parsing import too_large

from . import watch
from .client import API, TOKEN_MARGIN, normalize_fingerprint

log = logging.getLogger(__name__)

# What each probed path must answer.
ANSWERS: dict[str, type[BaseModel]] = {"/health": Health, "/config": Config}


@dataclass(frozen=True)
class Target:
    """One node to probe; `key` is the caller's id for it (the server's pk)."""

    key: int
    host: str
    port: int
    https: bool
    username: str
    password: str = field(repr=False)  # never in a log line or a traceback
    fingerprint: str = ""  # pinned; empty: pin the one seen now
    want_info: bool = False  # also read /info (model, serial, version) this time
    serial: str = ""  # the identity fixed when the server was added; checked first
    timeout: float | None = None  # this probe's deadline, if not the batch's (its team's)
    # The SaltedPassword kept from an earlier login (scram.dump_salted), as a Secret
    # revealed only when a login is needed: a restarted process logs in without PBKDF2.
    scram_cache: Any = field(default=None, repr=False, compare=False)
    # The session token an earlier process kept (session_blob), also a Secret: a
    # restarted process probes with it at once, and logs in only when it is refused.
    session: Any = field(default=None, repr=False, compare=False)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.https else 'http'}://{host}:{self.port}{API}"

    @property
    def endpoint(self) -> tuple[str, int, bool, str, str]:
        digest = hashlib.sha256(self.password.encode()).hexdigest()[:16]
        return (self.host, self.port, self.https, self.username, digest)


@dataclass
class HealthResult:
    key: int
    answer: Any = None  # the validated answer: a Health, or a Config for /config
    # "", "unreachable", "auth_failed", "certificate_changed", "identity_changed" (another
    # serial), "bad_response" (an HTTP refusal), "bad_answer" (against the protocol),
    # "internal" (a fault of the prober)
    error: str = ""
    message: str = ""
    latency_ms: float | None = None
    fingerprint: str = ""  # the certificate seen, for a first pin
    info: Info | None = None
    # A SaltedPassword computed by this probe's login, to keep (encrypted) for the next
    # process; empty when none was computed.
    scram_cache: str = field(default="", repr=False)
    # The session token this probe's login got, to keep (encrypted) for the next
    # process; empty when it did not log in.
    session: str = field(default="", repr=False)


class _Refused(Exception):
    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


class _Progress:
    """How far a probe got, so that a deadline can say "no answer" or "answer too slow"."""

    def __init__(self) -> None:
        self.path = ""
        self.answering = False  # the status line and headers of `path` arrived


class HealthProber:
    """Long-lived: keep one per process (see `prober()`)."""

    def __init__(self, concurrency: int = 512) -> None:
        self.concurrency = concurrency
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="health-prober")  # fmt: skip
        self._thread.start()
        self._session: aiohttp.ClientSession | None = None
        self._tokens: dict[tuple, tuple[str, float]] = {}
        self.watcher: Any = None  # watch.Watcher on this loop, once a cycle ran
        # Per node and path, the last body and its validated answer: a node whose answer
        # did not change since the last probe costs a bytes comparison, not a validation.
        self._answers: dict[tuple[int, str], tuple[bytes, Any]] = {}
        # Parsed URLs: parsing one per request costs more than its share of a probe.
        self._urls: dict[str, yarl.URL] = {}

    def probe_all(
        self, targets: list[Target], timeout: float, path: str = "/health"
    ) -> list[HealthResult]:
        """GET `path` (authenticated) from every target once, concurrently; results in the
        order of `targets`, the validated answer in `.answer` (see ANSWERS). `timeout` is
        each probe's overall deadline, unless the target has its own. `/config` reads the
        snapshots."""
        future = asyncio.run_coroutine_threadsafe(
            self._probe_all(targets, timeout, path), self._loop
        )
        return future.result()

    def close(self) -> None:
        async def close_session() -> None:
            if self.watcher is not None:
                await self.watcher.close()
                self.watcher = None
            if self._session is not None:
                await self._session.close()
                self._session = None

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(close_session(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)

    async def _probe_all(
        self, targets: list[Target], timeout: float, path: str
    ) -> list[HealthResult]:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.concurrency,
                limit_per_host=1,  # one kept-alive connection per node
                keepalive_timeout=600,
                ttl_dns_cache=300,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # nodes set no cookies; none are kept
                trust_env=False,
                auto_decompress=False,  # nodes send plain JSON; a gzip bomb stays small
            )
            self.watcher = watch.create(self)
        # A fixed set of runners takes the targets in turn: at most `concurrency` probes
        # in flight, without a coroutine and a semaphore wait per node.
        outcomes: list[HealthResult | BaseException | None] = [None] * len(targets)
        queue = iter(enumerate(targets))

        async def runner() -> None:
            for index, target in queue:
                try:
                    outcomes[index] = await self._probe(target, target.timeout or timeout, path)
                except Exception as exc:  # one probe's fault must not stop the others
                    outcomes[index] = exc

        await asyncio.gather(*(runner() for _ in range(min(self.concurrency, len(targets)))))
        results = []
        for target, outcome in zip(targets, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.error(
                    "probe of %s:%s failed unexpectedly", target.host, target.port,
                    exc_info=(type(outcome), outcome, outcome.__traceback__),
                )  # fmt: skip
                outcome = HealthResult(
                    target.key, error="internal", message=f"probe failed: {type(outcome).__name__}"
                )
            results.append(outcome)
        return results

    async def _probe(self, target: Target, timeout: float, path: str) -> HealthResult:
        started = time.monotonic()
        result = HealthResult(target.key)
        progress = _Progress()
        limit = aiohttp.ClientTimeout(total=timeout)
        try:
            await self._exchange(target, path, result, limit, progress)
            if self.watcher is not None and path == "/health":
                self.watcher.want(target, timeout)  # answered normally: watch it too
        except _Refused as exc:
            result.answer, result.error, result.message = None, exc.error, exc.message
        except TimeoutError:
            result.answer = None
            if progress.answering:
                result.error = "bad_answer"
                result.message = (
                    f"bad answer to {progress.path}: it did not finish within {timeout:g} s"
                )
            else:
                result.error = "unreachable"
                result.message = f"no answer from {target.host}:{target.port} within {timeout:g} s"
        except aiohttp.ServerFingerprintMismatch as exc:
            result.error = "certificate_changed"
            result.fingerprint = exc.got.hex()
            result.message = (
                f"the certificate of {target.host}:{target.port} changed (pinned "
                f"{target.fingerprint[:16]}…, now {result.fingerprint[:16]}…): replaced "
                "hardware, or someone in between; check, then clear the pin"
            )
        except (aiohttp.ClientResponseError, aiohttp.ClientPayloadError) as exc:
            # The node answered, but not in HTTP a client can read (oversized headers,
            # a broken chunked body).
            result.answer, result.error = None, "bad_answer"
            result.message = f"bad answer to {progress.path}: malformed HTTP ({type(exc).__name__})"
        except (aiohttp.ClientError, OSError) as exc:
            result.answer, result.error = None, "unreachable"
            result.message = f"cannot reach {target.host}:{target.port}: {type(exc).__name__}"
        result.latency_ms = round((time.monotonic() - started) * 1000, 1)
        return result

    async def _exchange(
        self, target: Target, path: str, result: HealthResult,
        limit: aiohttp.ClientTimeout, progress: _Progress,
    ) -> None:  # fmt: skip
        for attempt in (1, 2):
            token = await self._token(target, result, limit, progress, kept=attempt == 1)
            status, body = await self._call(
                target, "GET", path, result, limit, progress,
                headers={"Authorization": f"Bearer {token}"},
            )  # fmt: skip
            if status == 401 and attempt == 1:
                self._tokens.pop(target.endpoint, None)  # expired: log in again once
                continue
            if status != 200:
                raise _Refused("bad_response", f"{path} answered {status}")
            result.answer = self._answer(target, path, body)
            break
        if target.want_info:
            status, body = await self._call(target, "GET", "/info", result, limit, progress)
            result.info = _parsed(Info, body, "/info") if status == 200 else None

    def _url(self, text: str) -> yarl.URL:
        url = self._urls.get(text)
        if url is None:
            if len(self._urls) >= 200_000:
                self._urls.clear()
            url = self._urls[text] = yarl.URL(text)
        return url

    def _answer(self, target: Target, path: str, body: bytes) -> Any:
        """The validated answer of `body`; the same bytes as this node's last answer to
        `path` give the same (immutable) answer without parsing them again."""
        key = (target.key, path)
        last = self._answers.get(key)
        if last is not None and last[0] == body:
            return last[1]
        answer = _parsed(ANSWERS[path], body, path)
        self._answers[key] = (body, answer)
        return answer

    async def _call(
        self, target: Target, method: str, path: str, result: HealthResult,
        limit: aiohttp.ClientTimeout, progress: _Progress, **kwargs: Any,
    ) -> tuple[int, bytes]:  # fmt: skip
        """One request, ended by ``limit.total`` whatever the node does; the body
        (bounded) only when the status is 200."""
        assert self._session is not None
        progress.path, progress.answering = path, False
        headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
        headers.update(kwargs.pop("headers", {}))
        ssl_arg = ssl_for(target)
        # The deadline covers the body too, read here: a node that drips its body must
        # not hold the probe past it, whatever aiohttp's own timers count.
        async with (
            asyncio.timeout(limit.total),
            self._session.request(
                method, self._url(target.base_url + path), ssl=ssl_arg, timeout=limit,
                headers=headers, **kwargs,
            ) as response,
        ):  # fmt: skip
            progress.answering = True
            if target.https and not target.fingerprint and response.connection is not None:
                ssl_object = response.connection.transport.get_extra_info("ssl_object")
                der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
                if der:
                    result.fingerprint = hashlib.sha256(der).hexdigest()
            if response.status != 200:
                return response.status, b""  # unread: aiohttp closes the connection
            return response.status, await _read_bounded(response, path)

    async def _check_identity(
        self, target: Target, result: HealthResult, limit: aiohttp.ClientTimeout,
        progress: _Progress,
    ) -> None:  # fmt: skip
        """Before a login: the node must have the serial the server was added with. A node
        replaced at the address does not know the session token, so the next probe logs
        in again and gets here."""
        status, body = await self._call(target, "GET", "/info", result, limit, progress)
        if status != 200:
            raise _Refused("bad_response", f"/info answered {status}; is this a cms-node?")
        info = _parsed(Info, body, "/info")
        if info.serial != target.serial:
            raise _Refused("identity_changed", _identity_message(target, info.serial))
        result.info = info  # read anyway: what the node says it is, fresh at each login

    async def _token(
        self, target: Target, result: HealthResult, limit: aiohttp.ClientTimeout,
        progress: _Progress, kept: bool = True,
    ) -> str:  # fmt: skip
        cached = self._tokens.get(target.endpoint)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        stored = _kept_session(target) if kept else None
        if stored is not None:
            self._tokens[target.endpoint] = stored
            return stored[0]
        if target.serial:
            await self._check_identity(target, result, limit, progress)
        known = _known_salted(target)
        while True:
            exchange = scram.ScramLogin(target.username, target.password, known=known)
            login = await self._login(target, exchange, result, limit, progress)
            if login is not None:
                break
            known = None  # the kept key was refused: compute it again, once
        if not exchange.used_known:
            result.scram_cache = exchange.salted_blob()
        lifetime = login.expires_in - TOKEN_MARGIN
        self._tokens[target.endpoint] = (login.token, time.monotonic() + lifetime)
        result.session = session_blob(target, login.token, time.time() + lifetime)
        return login.token

    async def _login(
        self, target: Target, exchange: scram.ScramLogin, result: HealthResult,
        limit: aiohttp.ClientTimeout, progress: _Progress,
    ) -> ScramFinishAnswer | None:  # fmt: skip
        """One SCRAM exchange; None when a kept SaltedPassword was refused (the node's
        password changed with its salt kept, or the kept key is wrong)."""
        status, body = await self._call(
            target, "POST", "/auth/scram/start", result, limit, progress, json=exchange.start()
        )  # fmt: skip
        _login_status(target, status, "/auth/scram/start")
        start = _parsed(ScramStartAnswer, body, "/auth/scram/start")
        if target.serial and start.serial not in (None, target.serial):
            raise _Refused("identity_changed", _identity_message(target, start.serial))
        try:
            if (
                exchange.known is not None
                and scram.announced(start.server_first) == exchange.known[:2]
            ):
                final = exchange.finish(start.session, start.server_first)  # no PBKDF2
            else:
                # PBKDF2 (once per node, then kept in the database) off the event loop:
                # the other probes go on meanwhile, and it is outside every deadline.
                final = await asyncio.to_thread(exchange.finish, start.session, start.server_first)
        except scram.ScramFailed as exc:
            raise _Refused("bad_answer", f"bad answer to /auth/scram/start: {exc}") from None
        status, body = await self._call(
            target, "POST", "/auth/scram/finish", result, limit, progress, json=final
        )  # fmt: skip
        if status == 401 and exchange.used_known:
            return None
        _login_status(target, status, "/auth/scram/finish")
        login = _parsed(ScramFinishAnswer, body, "/auth/scram/finish")
        try:
            exchange.verify(login.server_final)
        except scram.ScramFailed as exc:
            raise _Refused(
                "auth_failed", f"{target.host}:{target.port} is not the node it claims: {exc}"
            ) from None
        return login


def session_blob(target: Target, token: str, until: float) -> str:
    """A session token to keep for the next process: only for this endpoint (address,
    user and password), and only until its end (wall clock)."""
    return json.dumps({"v": 1, "token": token, "until": until, "endpoint": _endpoint_id(target)})


def _endpoint_id(target: Target) -> str:
    return hashlib.sha256(repr(target.endpoint).encode()).hexdigest()


def _kept_session(target: Target) -> tuple[str, float] | None:
    """(token, monotonic end) from the kept blob, if it is for this endpoint and alive."""
    if target.session is None:
        return None
    blob = target.session if isinstance(target.session, str) else target.session.reveal()
    try:
        data = json.loads(blob) if blob else None
        token, until, endpoint = str(data["token"]), float(data["until"]), str(data["endpoint"])
    except (ValueError, KeyError, TypeError):
        return None
    left = until - time.time()
    if left <= 0 or not token or not hmac.compare_digest(endpoint, _endpoint_id(target)):
        return None
    return token, time.monotonic() + left


def _known_salted(target: Target) -> tuple[bytes, int, bytes] | None:
    if target.scram_cache is None:
        return None
    blob = (
        target.scram_cache if isinstance(target.scram_cache, str) else target.scram_cache.reveal()
    )
    return scram.load_salted(blob, target.password)


def ssl_for(target: Target) -> Any:
    """aiohttp's ``ssl`` argument for ``target``: its pinned certificate, if any."""
    if not target.https:
        return None
    if not target.fingerprint:
        return False  # first contact: take the certificate, pin what was seen
    return aiohttp.Fingerprint(bytes.fromhex(normalize_fingerprint(target.fingerprint)))


def _identity_message(target: Target, serial: str) -> str:
    return (
        f"{target.host}:{target.port} answers as serial {serial!r}, not {target.serial!r}, "
        "the server added at this address; nothing was sent to it. If the node was "
        "replaced on purpose, add it again."
    )


def _login_status(target: Target, status: int, path: str) -> None:
    if status in (401, 429):
        raise _Refused("auth_failed", f"{target.host}:{target.port} refused the credentials "
                       f"of {target.username!r} ({status})")  # fmt: skip
    if status != 200:
        raise _Refused("bad_response", f"{path} answered {status}; is this a cms-node?")


async def _read_bounded(response: aiohttp.ClientResponse, path: str) -> bytes:
    """The body, refused past MAX_ANSWER_BYTES (declared or counted) or when compressed."""
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise _Refused("bad_answer", f"bad answer to {path}: compressed ({encoding[:20]})")
    if response.content_length is not None and response.content_length > MAX_ANSWER_BYTES:
        raise _Refused("bad_answer", f"bad answer to {path}: {too_large(MAX_ANSWER_BYTES)}")
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise _Refused("bad_answer", f"bad answer to {path}: {too_large(MAX_ANSWER_BYTES)}")
    return bytes(body)


def _parsed(model: type[Any], body: bytes, path: str) -> Any:
    try:
        return parse(model, body)
    except BadAnswer as exc:
        raise _Refused("bad_answer", f"bad answer to {path}: {exc}") from None


_prober: HealthProber | None = None
_prober_pid: int | None = None
_lock = threading.Lock()


def prober() -> HealthProber:
    """The process's prober (a forked worker child starts its own)."""
    import os

    global _prober, _prober_pid
    with _lock:
        if _prober is None or _prober_pid != os.getpid():
            _prober, _prober_pid = HealthProber(), os.getpid()
            atexit.register(_prober.close)  # close kept-alive connections cleanly
        return _prober
