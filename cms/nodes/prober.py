"""Probing many nodes' health at once: one asyncio loop, one kept-alive connection per node.

The probe cycle is I/O: thousands of small requests per interval. Threads with
`requests` spend their time waiting for the interpreter lock and open a new
connection per probe; one event loop with aiohttp (its HTTP parser is compiled)
keeps each node's connection open from one cycle to the next and needs no thread
per request. The loop runs in a
background thread of the worker process, so the (synchronous) Celery task calls
`probe_all()` and gets plain results back.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from .client import API, TOKEN_MARGIN, normalize_fingerprint


@dataclass(frozen=True)
class Target:
    """One node to probe; `key` is the caller's id for it (the server's pk)."""

    key: int
    host: str
    port: int
    https: bool
    username: str
    password: str
    fingerprint: str = ""  # pinned; empty: pin the one seen now
    want_info: bool = False  # also read /info (model, serial, version) this time

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
    health: dict[str, Any] | None = None
    error: str = ""  # "", "unreachable", "auth_failed", "certificate_changed", "bad_response"
    message: str = ""
    latency_ms: float | None = None
    fingerprint: str = ""  # the certificate seen, for a first pin
    info: dict[str, Any] | None = None


class _Refused(Exception):
    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


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

    def probe_all(
        self, targets: list[Target], timeout: float, path: str = "/health"
    ) -> list[HealthResult]:
        """GET `path` (authenticated) from every target once, concurrently; results in the
        order of `targets`, the JSON body in `.health`. `/config` reads the snapshots."""
        future = asyncio.run_coroutine_threadsafe(
            self._probe_all(targets, timeout, path), self._loop
        )
        return future.result()

    def close(self) -> None:
        async def close_session() -> None:
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
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(target: Target) -> HealthResult:
            async with semaphore:
                return await self._probe(target, timeout, path)

        return list(await asyncio.gather(*(one(t) for t in targets)))

    async def _probe(self, target: Target, timeout: float, path: str) -> HealthResult:
        started = time.monotonic()
        result = HealthResult(target.key)
        limit = aiohttp.ClientTimeout(total=timeout)
        try:
            for attempt in (1, 2):
                token = await self._token(target, result, limit)
                status, body = await self._call(
                    target, "GET", path, result, limit,
                    headers={"Authorization": f"Bearer {token}"},
                )  # fmt: skip
                if status == 401 and attempt == 1:
                    self._tokens.pop(target.endpoint, None)  # expired: log in again once
                    continue
                if status != 200:
                    raise _Refused("bad_response", f"{path} answered {status}")
                if not isinstance(body, dict):
                    raise _Refused("bad_response", f"{path} is not a JSON object")
                result.health = body
                if target.want_info:
                    status, info = await self._call(target, "GET", "/info", result, limit)
                    result.info = info if status == 200 and isinstance(info, dict) else None
                break
        except _Refused as exc:
            result.health, result.error, result.message = None, exc.error, exc.message
        except aiohttp.ServerFingerprintMismatch as exc:
            result.error = "certificate_changed"
            result.fingerprint = exc.got.hex()
            result.message = (
                f"the certificate of {target.host}:{target.port} changed (pinned "
                f"{target.fingerprint[:16]}…, now {result.fingerprint[:16]}…): replaced "
                "hardware, or someone in between; check, then clear the pin"
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            result.error = "unreachable"
            result.message = f"cannot reach {target.host}:{target.port}: {type(exc).__name__}"
        result.latency_ms = round((time.monotonic() - started) * 1000, 1)
        return result

    async def _call(
        self, target: Target, method: str, path: str, result: HealthResult,
        limit: aiohttp.ClientTimeout, **kwargs: Any,
    ) -> tuple[int, Any]:  # fmt: skip
        assert self._session is not None
        ssl_arg: Any = None
        if target.https:
            ssl_arg = (
                aiohttp.Fingerprint(bytes.fromhex(normalize_fingerprint(target.fingerprint)))
                if target.fingerprint
                else False  # first contact: take the certificate, pin what was seen
            )
        async with self._session.request(
            method, target.base_url + path, ssl=ssl_arg, timeout=limit, **kwargs
        ) as response:
            if target.https and not target.fingerprint and response.connection is not None:
                ssl_object = response.connection.transport.get_extra_info("ssl_object")
                der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
                if der:
                    result.fingerprint = hashlib.sha256(der).hexdigest()
            try:
                body = await response.json(content_type=None)
            except ValueError:
                raise _Refused("bad_response", "the answer is not JSON: not a node?") from None
            return response.status, body

    async def _token(
        self, target: Target, result: HealthResult, limit: aiohttp.ClientTimeout
    ) -> str:
        cached = self._tokens.get(target.endpoint)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        status, body = await self._call(
            target, "POST", "/auth/login", result, limit,
            json={"username": target.username, "password": target.password},
        )  # fmt: skip
        if status in (401, 429):
            raise _Refused("auth_failed", f"{target.host}:{target.port} refused the credentials "
                           f"of {target.username!r} ({status})")  # fmt: skip
        token = body.get("token") if isinstance(body, dict) else None
        if status != 200 or not isinstance(token, str):
            raise _Refused("bad_response", "login answer has no token; is this a cms-node?")
        ttl = float(body.get("expires_in", 3600))
        self._tokens[target.endpoint] = (token, time.monotonic() + ttl - TOKEN_MARGIN)
        return token


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
