"""Session tokens, SCRAM exchanges in progress, signed-request nonces and the login slow-down.

Tokens are random, held in memory only (a restart logs everybody out, which the
CMS client handles by logging in again once). Failed logins are counted per
client address: after ``FREE_ATTEMPTS`` failures, each further attempt must wait
an exponentially growing delay, answered 429 with ``Retry-After`` meanwhile. A
correct password during the wait is refused too; otherwise the wait would not
slow down guessing.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

FREE_ATTEMPTS = 3
MAX_DELAY = 60.0


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0


class TokenStore:
    def __init__(self, ttl: float = 3600.0) -> None:
        self.ttl = ttl
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def issue(self, username: str) -> str:
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            # Drop expired tokens here so the table cannot grow without bound.
            self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}
            self._tokens[token] = (username, now + self.ttl)
        return token

    def check(self, token: str) -> str | None:
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    def revoke(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def revoke_all(self) -> None:
        with self._lock:
            self._tokens.clear()


class LoginThrottle:
    def __init__(self) -> None:
        self._failures: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    def wait_needed(self, client: str) -> float:
        """Seconds this client must still wait before its next attempt (0 if none)."""
        with self._lock:
            f = self._failures.get(client)
            if f is None or f.count < FREE_ATTEMPTS:
                return 0.0
            delay = min(MAX_DELAY, 2.0 ** (f.count - FREE_ATTEMPTS))
            return max(0.0, f.last + delay - time.monotonic())

    def failed(self, client: str) -> None:
        with self._lock:
            f = self._failures.setdefault(client, _Failures())
            f.count += 1
            f.last = time.monotonic()
            if len(self._failures) > 10_000:  # bound memory under a spray of addresses
                oldest = sorted(self._failures.items(), key=lambda kv: kv[1].last)[:5_000]
                for key, _ in oldest:
                    self._failures.pop(key, None)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


class ScramSessions:
    """SCRAM exchanges between their two calls: short-lived and bounded in number, so a
    flood of ``/auth/scram/start`` cannot grow the table (the oldest are dropped)."""

    def __init__(self, ttl: float = 30.0, limit: int = 1024) -> None:
        self.ttl = ttl
        self.limit = limit
        self._sessions: dict[str, tuple[Any, str, float]] = {}
        self._lock = threading.Lock()

    def open(self, exchange: Any, client: str) -> str:
        session = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            live = {k: v for k, v in self._sessions.items() if v[2] > now}
            if len(live) >= self.limit:
                for key in sorted(live, key=lambda k: live[k][2])[: len(live) - self.limit + 1]:
                    live.pop(key)
            live[session] = (exchange, client, now + self.ttl)
            self._sessions = live
        return session

    def take(self, session: str, client: str) -> Any | None:
        """The exchange of ``session`` (once: a finish cannot be tried twice), or None."""
        with self._lock:
            entry = self._sessions.pop(session, None)
        if entry is None or entry[2] <= time.monotonic() or entry[1] != client:
            return None
        return entry[0]


class ReplayGuard:
    """Remembers the nonces of signed requests for as long as their time is accepted,
    so a captured request cannot be sent again."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_use(self, nonce: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._seen) > 50_000:
                self._seen = {n: t for n, t in self._seen.items() if t > now}
            if self._seen.get(nonce, 0.0) > now:
                return False
            # Kept twice the window: a request stamped at the window's far edge stays
            # refused until its time is out of the window anyway.
            self._seen[nonce] = now + 2 * self.window
            return True
