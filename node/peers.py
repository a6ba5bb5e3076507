"""Probing another node on the CMS's behalf, and where this node listens on its site.

The CMS reaches a site through whatever lies between (NAT, a VPN, a relay); a failover
server reaches its recording servers over the site's own network. Before failing a
recording server over, the CMS asks its failover servers whether they still reach it
(``POST /peers/probe``): if one does, the fault is between the CMS and the site.

A peer probe is one ``GET /api/v1/info`` (public: nothing secret is ever sent to the
probed address), ended by the caller's timeout (at most ``MAX_PEER_PROBE_SECONDS``)
whatever the other side does, its body bounded like every answer the CMS reads.
"""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import logging
import socket
import struct
import time
from typing import Any

import aiohttp

from node.errors import ApiError, bad_request
from protocol import BadAnswer, parse
from protocol.limits import (
    MAX_ADDRESS_CHARS,
    MAX_ANSWER_BYTES,
    MAX_LAN_ADDRESSES,
    MAX_PEER_PROBE_SECONDS,
)
from protocol.messages import Info, PeerProbeAnswer

log = logging.getLogger("node.peers")

MAX_CONCURRENT_PROBES = 16
WILDCARDS = ("0.0.0.0", "::", "")  # noqa: S104 (names, not a bind)
_SIOCGIFADDR = 0x8915  # Linux: an interface's IPv4 address
_LAN_CACHE_SECONDS = 60.0


def parse_address(value: object) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as (host, port); 400 when it is not one."""
    if not isinstance(value, str) or not 3 <= len(value) <= MAX_ADDRESS_CHARS:
        raise bad_request("address must be host:port")
    host, sep, port_text = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise bad_request("address must be host:port") from None
    elif ":" in host:
        raise bad_request("address must be host:port (an IPv6 host in brackets)")
    if (
        not sep
        or not host
        or len(host) > 253
        or any(c in host for c in "/@ \\?#%")
        or not host.isascii()
        or not port_text.isdigit()
        or not 0 < int(port_text) < 65536
    ):
        raise bad_request("address must be host:port")
    return host, int(port_text)


def parse_probe(body: dict[str, Any]) -> tuple[str, int, bool, str, float]:
    """A peer-probe request: (host, port, https, serial, timeout); 400 when malformed."""
    host, port = parse_address(body.get("address"))
    https = body.get("https", False)
    if not isinstance(https, bool):
        raise bad_request("https must be true or false")
    serial = body.get("serial")
    if not isinstance(serial, str) or not 0 < len(serial) <= 64:
        raise bad_request("serial must be a string of 1 to 64 characters")
    timeout = body.get("timeout", MAX_PEER_PROBE_SECONDS)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_PEER_PROBE_SECONDS
    ):
        raise bad_request(f"timeout must be a number of seconds, above 0 and at most "
                          f"{MAX_PEER_PROBE_SECONDS:g}")  # fmt: skip
    return host, port, https, serial, float(timeout)


class PeerProber:
    """At most MAX_CONCURRENT_PROBES at once: a node is never a probing service for
    whoever holds a token."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.done = 0  # probes made since the agent started (shown in /health)

    async def probe(self, body: dict[str, Any]) -> dict[str, Any]:
        host, port, https, serial, timeout = parse_probe(body)
        if self.in_flight >= MAX_CONCURRENT_PROBES:
            raise ApiError(
                429, "too_many_probes", f"{MAX_CONCURRENT_PROBES} peer probes already running"
            )
        self.in_flight += 1
        try:
            answer = await probe_info(host, port, https, serial, timeout)
        finally:
            self.in_flight -= 1
            self.done += 1
        log.info("peer probe of %s:%s: %s", host, port,
                 "reachable" if answer.reachable else answer.error)  # fmt: skip
        return answer.to_json()


async def probe_info(
    host: str, port: int, https: bool, serial: str, timeout: float
) -> PeerProbeAnswer:
    """GET the public /info of host:port within `timeout`, whatever the other side does."""
    netloc = f"[{host}]" if ":" in host else host
    url = f"{'https' if https else 'http'}://{netloc}:{port}/api/v1/info"
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            # Certificates are not checked: the answer is public, and what the CMS
            # learns from it is only that something with this serial answers there.
            connector = aiohttp.TCPConnector(ssl=False, force_close=True)
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                session.get(
                    url, allow_redirects=False,
                    headers={"Accept": "application/json", "Accept-Encoding": "identity"},
                ) as response,
            ):  # fmt: skip
                if response.status != 200:
                    return PeerProbeAnswer(
                        reachable=False, error=f"/info answered {response.status}"
                    )
                body = await _read_bounded(response)
                if body is None:
                    return PeerProbeAnswer(reachable=False, error="/info answer too large")
    except TimeoutError:
        return PeerProbeAnswer(reachable=False, error=f"no answer within {timeout:g} s")
    except (aiohttp.ClientError, OSError) as exc:
        return PeerProbeAnswer(reachable=False, error=f"cannot reach it: {type(exc).__name__}")
    latency = round((time.monotonic() - started) * 1000, 1)
    try:
        info = parse(Info, body)
    except BadAnswer as exc:
        return PeerProbeAnswer(reachable=False, error=f"not a cms-node: {exc}"[:300])
    error = "" if info.serial == serial else "answers as another serial"
    return PeerProbeAnswer(reachable=True, serial=info.serial, latency_ms=latency, error=error)


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes | None:
    """The body, or None past MAX_ANSWER_BYTES (no answer a node gives is that large)."""
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


# -- where this node listens ----------------------------------------------------------


class LanAddresses:
    """The ``host:port`` this agent can be reached at on its site's network: the bound
    address, or every interface's address when it binds all of them (loopback last,
    and only when there is nothing else). Re-read at most once a minute."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._cached: list[str] = []
        self._read_at = -_LAN_CACHE_SECONDS

    def __call__(self) -> list[str]:
        if not self.port:
            return []
        if self.host not in WILDCARDS:
            return [_join(self.host, self.port)]
        now = time.monotonic()
        if now - self._read_at >= _LAN_CACHE_SECONDS:
            self._cached = [_join(a, self.port) for a in interface_addresses()]
            self._read_at = now
        return list(self._cached)


def interface_addresses() -> list[str]:
    """The IPv4 addresses of this host's interfaces (up to MAX_LAN_ADDRESSES)."""
    found: list[str] = []
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        names = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for name in names:
            try:
                packed = fcntl.ioctl(
                    sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15])
                )
            except OSError:
                continue  # no IPv4 address on this interface
            address = socket.inet_ntoa(packed[20:24])
            if address not in found:
                found.append(address)
    if not found:
        try:
            found = list(
                dict.fromkeys(
                    info[4][0]
                    for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
                )
            )
        except OSError:
            found = []
    found.sort(key=lambda a: ipaddress.ip_address(a).is_loopback)
    if any(not ipaddress.ip_address(a).is_loopback for a in found):
        found = [a for a in found if not ipaddress.ip_address(a).is_loopback]
    return found[:MAX_LAN_ADDRESSES]


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
