"""Node calls made while a web request waits: bounded in time and in number.

A web thread that waits for a node is a thread no other user can have. A node that
is slow, or hostile, could otherwise hold every thread of every web process (with
gunicorn's 2 workers x 4 threads, eight clicks on Test Connection would do). So a
web request that talks to nodes does it inside :func:`web_node_call`, which

* gives all its node calls together one deadline, at most ``WEB_DEADLINE`` seconds
  (``settings.CMS_WEB_NODE_DEADLINE`` may lower it), and
* lets at most one web request per process wait for the same node address at a
  time: a second one is refused at once with :class:`NodeBusy` ("busy, try again"),
  which the API answers as 503 ``node_busy`` and the admin shows as a message.

The limit is per process and needs no shared state: each process protects its own
threads, which is what runs out. Background work (probes, failover, restoration)
does not go through here; its calls have their own deadlines.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from cms.nodes.errors import NodeBusy
from cms.nodes.transport import deadline

WEB_DEADLINE = 10.0

_in_use: set[str] = set()
_lock = threading.Lock()


def address_of(server: Any) -> str:
    """The key a node is known by here: its address and port, or its QuickConnect ID."""
    if getattr(server, "connection_type", "address") == "quickconnect":
        return f"quickconnect:{server.quickconnect_id}"
    return f"{server.host}:{server.port}"


def web_deadline() -> float:
    try:
        from django.conf import settings

        configured = float(getattr(settings, "CMS_WEB_NODE_DEADLINE", WEB_DEADLINE))
    except Exception:  # Django not configured: the default
        configured = WEB_DEADLINE
    return min(configured, WEB_DEADLINE)


@contextlib.contextmanager
def web_node_call(*addresses: str) -> Iterator[None]:
    """Claim ``addresses`` for this request and bound its node calls in time.

    Raises :class:`NodeBusy` at once, claiming nothing, if another request of this
    process is already waiting for one of them.
    """
    wanted = set(addresses)
    with _lock:
        busy = sorted(wanted & _in_use)
        if not busy:
            _in_use.update(wanted)
    if busy:
        raise NodeBusy(
            f"{busy[0]} is busy with another request from this CMS; try again in a few seconds"
        )
    try:
        with deadline(web_deadline()):
            yield
    finally:
        with _lock:
            _in_use.difference_update(wanted)
