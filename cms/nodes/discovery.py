"""LAN search for nodes: one UDP broadcast, answers collected until a deadline.

Protocol and the reason for UDP broadcast (not mDNS): ``docs/node-api.md`` and
``node/discovery.py``. Nodes whose CMS service is not enabled answer too, so the
admin can enable them from the search results.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import time
from typing import Any

from cms.nodes.client import pairing_host_id
from cms.nodes.transport import time_left
from protocol import BadAnswer, loads_bounded, validate
from protocol.messages import DiscoveryAnswer, DiscoverySearch

DEFAULT_PORT = 19997
BROADCAST = "255.255.255.255"
MAX_DATAGRAM = 1024
FIELDS = (
    "name", "model", "serial", "version", "port", "https", "cms_mode", "cms_enabled",
    "paired_elsewhere", "locked",
)  # fmt: skip


def search(
    timeout: float = 2.0,
    port: int = DEFAULT_PORT,
    address: str = BROADCAST,
    repeats: int = 2,
) -> list[dict[str, Any]]:
    """Broadcast a search and return one dict per node that answered.

    ``address`` is the broadcast address (``255.255.255.255``, a subnet's broadcast
    such as ``192.168.1.255``, ``127.255.255.255`` on loopback) or one host's
    address to ask only that host. The search is sent ``repeats`` times because
    UDP may drop a datagram; answers are deduplicated by serial number.
    Each result: name, model, serial, version, address, port, https, cms_mode,
    cms_enabled, paired_elsewhere, locked (None when an older node does not say).
    """
    left = time_left()  # inside a web request: never past its deadline
    if left is not None:
        timeout = min(timeout, left)
    nonce = secrets.token_hex(8)
    search_msg = DiscoverySearch(type="cms-node-search", nonce=nonce, host=pairing_host_id())
    query = json.dumps(search_msg.to_json()).encode()
    found: dict[str, dict[str, Any]] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind(("", 0))
        deadline = time.monotonic() + timeout
        sends = [time.monotonic() + i * min(0.3, timeout / (repeats + 1)) for i in range(repeats)]
        while True:
            now = time.monotonic()
            while sends and sends[0] <= now:
                sends.pop(0)
                # No route for this broadcast address means nobody will answer: not an error.
                with contextlib.suppress(OSError):
                    sock.sendto(query, (address, port))
            remaining = deadline - now
            if remaining <= 0:
                break
            wake = min([remaining, *(s - now for s in sends)])
            sock.settimeout(max(0.01, wake))
            try:
                data, (peer_ip, _) = sock.recvfrom(MAX_DATAGRAM)
            except TimeoutError:
                continue
            answer = _parse(data, nonce, peer_ip)
            if answer and answer["serial"] not in found:
                found[answer["serial"]] = answer
    return sorted(found.values(), key=lambda a: (a["name"], a["address"], a["port"]))


def _parse(data: bytes, nonce: str, peer_ip: str) -> dict[str, Any] | None:
    """Keep only well-formed answers to *this* search (``protocol.messages.DiscoveryAnswer``);
    anything else is ignored: a LAN search shows no garbage."""
    try:
        msg = validate(DiscoveryAnswer, loads_bounded(data, max_bytes=MAX_DATAGRAM))
    except BadAnswer:
        return None
    if msg.nonce != nonce:
        return None
    answer = {k: getattr(msg, k) for k in FIELDS}
    # A node listening on every address does not know which one we reached it on.
    answer["address"] = msg.address or peer_ip
    return answer
