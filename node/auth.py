"""Session tokens and the login slow-down.

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
