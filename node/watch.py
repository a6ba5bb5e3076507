"""``GET /watch``: the node's health as a server-sent events stream.

The CMS polls ``/health`` every probe interval; a fault the agent knows about at once
(its volume crashed, its surveillance service stopped) would otherwise wait for the
CMS's next polls. On this stream the agent says it as it happens: a ``health`` event
(the body of ``/health``) when something the CMS acts on changes, and a small
``heartbeat`` event every heartbeat, so that the CMS sees silence (a hung agent, a
cut cable) as well as a closed connection (a dead agent).

Change detection costs one health read per heartbeat and stream (a ``stat`` of the
fault file, a copy of the state, the recorder's camera list): the fault file is
written by ``cms-node fault`` in another process, so it is looked at, at the
heartbeat's cadence and never faster. Streams are capped per agent
(``MAX_STREAMS``): a client that opens many gets 429 rather than the agent's threads.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.responses import StreamingResponse

from node.errors import ApiError, bad_request
from node.timeutil import iso
from protocol.messages import Heartbeat

MAX_STREAMS = 8
HEARTBEAT_DEFAULT = 0.25
HEARTBEAT_MIN = 0.1
HEARTBEAT_MAX = 5.0
_DECIMAL = re.compile(r"[0-9]{1,3}(\.[0-9]{1,6})?")


def parse_heartbeat(text: str | None) -> float:
    """The ``heartbeat`` query parameter in seconds (default 0.25), or 400."""
    if text is None:
        return HEARTBEAT_DEFAULT
    if not _DECIMAL.fullmatch(text) or not HEARTBEAT_MIN <= float(text) <= HEARTBEAT_MAX:
        raise bad_request(
            f"heartbeat must be a number of seconds between {HEARTBEAT_MIN:g} and "
            f"{HEARTBEAT_MAX:g} (ASCII digits, an optional decimal point)"
        )
    return float(text)


def significant(health: dict[str, Any]) -> tuple:
    """What of a health report the CMS acts on: a change here is a ``health`` event."""
    recording = health.get("recording") or {}
    owner = recording.get("on_behalf_of") or {}
    cameras = frozenset(
        c["id"] for c in recording.get("cameras", []) if c.get("state") == "recording"
    )
    return (
        health["volume"]["state"],
        health["service"]["state"],
        health.get("cms_mode"),
        owner.get("id"),
        recording.get("takeover_epoch"),
        health.get("epoch"),
        cameras,
    )


def event(name: str, data: dict[str, Any]) -> bytes:
    """One server-sent event; JSON has no raw newline, so ``data`` is one line."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class WatchSlots:
    """At most ``limit`` streams at once on this agent."""

    def __init__(self, limit: int = MAX_STREAMS) -> None:
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            if self.open >= self.limit:
                raise ApiError(
                    429,
                    "too_many_watches",
                    f"this node already serves {self.limit} watch streams; retry later",
                    headers={"Retry-After": "5"},
                )
            self.open += 1

    def give_back(self) -> None:
        with self._lock:
            self.open -= 1


async def stream(
    read_health: Callable[[], Awaitable[dict[str, Any]]],
    token_valid: Callable[[], bool],
    interval: float,
) -> AsyncIterator[bytes]:
    """The events of one stream until the client leaves or its token expires."""
    health = await read_health()
    last = significant(health)
    yield event("health", health)
    seq = 0
    while True:
        await asyncio.sleep(interval)
        if not token_valid():
            return  # the CMS logs in again and reconnects
        health = await read_health()
        now = significant(health)
        if now != last:
            last = now
            yield event("health", health)
        seq += 1
        yield event("heartbeat", Heartbeat(time=iso(time.time()), seq=seq).to_json())


class WatchResponse(StreamingResponse):
    """The stream's response; gives its slot back however it ends (the client left,
    the token expired, the agent stops), even when it never started sending."""

    def __init__(self, content: AsyncIterator[bytes], slots: WatchSlots) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self.slots = slots

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slots.give_back()
