"""LAN discovery responder: answers a UDP broadcast search with who this node is.

Why UDP broadcast and not mDNS/DNS-SD (zeroconf): the search must list nodes whose
CMS service is not enabled yet, with their CMS mode, in one round trip, on any
LAN segment, and it must work on the loopback interface in tests with several
agents on one machine. Linux delivers a broadcast datagram to *every* socket bound
to the port with ``SO_REUSEADDR`` (checked on 127.255.255.255 and 255.255.255.255),
so several agents share a port; multicast DNS needs a multicast-capable interface
(``lo`` has no MULTICAST flag) and a responder per host, and adds a dependency.

Wire format (one JSON object per datagram, UTF-8, at most 1 KiB each way)::

    search: {"type": "cms-node-search", "v": 1, "nonce": "<random>", "host": "<cms id>"}
    answer: {"type": "cms-node-here", "v": 1, "nonce": "<same>", "name", "model",
             "serial", "version", "address", "port", "https", "cms_mode", "cms_enabled",
             "paired_elsewhere", "locked"}

``paired_elsewhere`` is true when the node is paired with a CMS host other than the
searching one (``host``; any host when the search names none); ``locked`` is its
security lock. Booleans only: the pairing key and the other host's id are not told.

``address`` is null when the agent listens on every address: the searcher then
uses the source address of the answer.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from protocol.messages import DiscoveryAnswer, DiscoverySearch

log = logging.getLogger("node.discovery")

DEFAULT_PORT = 19997
MAX_DATAGRAM = 1024


class DiscoveryResponder(threading.Thread):
    def __init__(self, port: int, describe: Callable[[str | None], dict[str, Any]]) -> None:
        super().__init__(name="discovery", daemon=True)
        self.port = port
        self.describe = describe
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # SO_REUSEADDR (not SO_REUSEPORT, which load-balances unicast) lets several
        # agents on one host share the port; each gets its own copy of a broadcast.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("", port))
        self.sock.settimeout(0.5)
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                search = DiscoverySearch.model_validate_json(data)
            except ValidationError:
                continue  # not ours: ignore silently, never answer garbage
            try:
                answer = DiscoveryAnswer(
                    type="cms-node-here", v=1, nonce=search.nonce, **self.describe(search.host)
                ).to_json()
            except ValidationError as exc:  # our own identity does not fit the protocol
                log.warning("discovery answer not sent: %s", exc.errors()[0]["msg"])
                continue
            try:
                self.sock.sendto(json.dumps(answer).encode()[:MAX_DATAGRAM], peer)
            except OSError as exc:
                log.debug("discovery answer to %s failed: %s", peer, exc)

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()
