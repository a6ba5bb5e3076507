"""Many emulated node agents in one process, for the probe benchmark.

    python bench/emulator.py --servers 5000 [--port 0]

One asyncio HTTP/1.1 keep-alive server listens on 0.0.0.0:PORT; emulated server i
is reached at its own loopback address ``address(i)`` (127.0.1.1, 127.0.1.2, ...:
Linux routes all of 127.0.0.0/8 to lo) and is told apart by the local address of
the connection. Connections to any non-loopback address are closed at once.

It serves what probing needs, in the node's shapes (docs/node-api.md):
the SCRAM-SHA-256 login (``POST /api/v1/auth/scram/start`` and ``/finish``, with the
password ``emulated``), ``GET /api/v1/health``, ``GET /api/v1/info`` and
``GET /api/v1/config``. Each emulated server has its own salt, at SCRAM's minimum
iteration count (4096) so that starting thousands costs seconds: a real agent uses
120,000, which the CMS pays once per node and process (it caches the salted password).
Control, on 127.0.0.1 only:
``POST /_emulator/mode {"servers": [i, ...], "mode": "ok|volume|service|down"}``,
``GET /_emulator/stats`` and ``POST /_emulator/reset``. Mode ``down`` resets every
connection of that server when a request arrives (the CMS sees it unreachable); mode
``slow`` answers /health after ``SLOW_SECONDS``. ``GET /_emulator/health-log`` gives,
per server, when its recent /health requests arrived and from which client port.

When ready it prints ``{"port": PORT, "servers": N}`` on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import signal
import sys
import time
from collections import Counter
from typing import Any

from scramp import ScramMechanism

MAX_HEADER = 64 * 1024
PASSWORD = "emulated"  # noqa: S105 (every emulated server's, bench/probe.py registers it)
ITERATIONS = 4096
SCRAM = ScramMechanism("SCRAM-SHA-256")
SLOW_SECONDS = 1.5
HEALTH_LOG = 200  # /health requests remembered per server


def address(index: int) -> str:
    """Emulated server `index` (0-based) -> its loopback address; up to 63,500 servers."""
    return f"127.0.{1 + index // 250}.{1 + index % 250}"


def index_of(addr: str) -> int | None:
    parts = addr.split(".")
    if len(parts) != 4 or parts[:2] != ["127", "0"]:
        return None
    third, fourth = int(parts[2]), int(parts[3])
    if third < 1 or not 1 <= fourth <= 250:
        return None
    return (third - 1) * 250 + fourth - 1


def _cameras(index: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"cam{c}",
            "name": f"Camera {c}",
            "source": "synthetic",
            "schedule": "always",
            "retention_days": 30,
        }
        for c in (1, 2)
    ]


def health_body(index: int, mode: str) -> bytes:
    """A plausible /health answer (about 900 bytes, like a real agent with two cameras)."""
    volume = "crashed" if mode == "volume" else "normal"
    service = "stopped" if mode == "service" else "running"
    paused = mode in ("volume", "service")
    cameras = [
        {
            "id": cam["id"],
            "name": cam["name"],
            "origin": "own",
            "on_behalf_of": None,
            "state": "paused" if paused else "recording",
            "error": None,
            "last_segment_at": "2026-01-01T00:00:05.000Z",
            "segments": 1234,
        }
        for cam in _cameras(index)
    ]
    return json.dumps(
        {
            "state": "abnormal" if paused else "normal",
            "volume": {"state": volume, "free_bytes": 4 * 1024**4, "total_bytes": 8 * 1024**4},
            "service": {"state": service},
            "faults": {"volume": mode == "volume", "service": mode == "service"},
            "recording": {"cameras": cameras, "on_behalf_of": None, "takeover_epoch": None},
            "epoch": 0,
            "cms_mode": "recording",
            "config_version": 1,
            "time": "2026-01-01T00:00:06.000Z",
        }
    ).encode()


class Fleet:
    def __init__(self, servers: int) -> None:
        self.servers = servers
        self.modes: dict[int, str] = {}  # only the servers that are not "ok"
        self.ok_health = [health_body(i, "ok") for i in range(servers)]
        self.stats: Counter[str] = Counter()
        self.open_connections = 0
        self.verifiers: dict[int, tuple[bytes, bytes, bytes, int]] = {}
        self.logins: dict[str, Any] = {}  # SCRAM session -> the exchange in progress
        self.health_log: dict[int, list[tuple[float, int]]] = {}

    def verifier(self, index: int) -> tuple[bytes, bytes, bytes, int]:
        if index not in self.verifiers:
            salt = hashlib.sha256(f"emulated-{index}".encode()).digest()[:16]
            self.verifiers[index] = SCRAM.make_auth_info(PASSWORD, ITERATIONS, salt)
        return self.verifiers[index]

    def scram_start(self, index: int, body: bytes) -> bytes:
        try:
            exchange = SCRAM.make_server(lambda _user: self.verifier(index))
            exchange.set_client_first(json.loads(body)["client_first"])
            server_first = exchange.get_server_first()
        except Exception:
            return _error(400, "bad_request", "not a SCRAM client-first message")
        session = f"{index}-{len(self.logins)}-{id(exchange)}"
        if len(self.logins) > 100_000:
            self.logins.clear()
        self.logins[session] = (index, exchange)
        answer = {"session": session, "server_first": server_first, "serial": f"EMU{index:08d}"}
        return _response(200, json.dumps(answer).encode())

    def scram_finish(self, index: int, body: bytes) -> bytes:
        try:
            request = json.loads(body)
            owner, exchange = self.logins.pop(request["session"])
            if owner != index:
                raise ValueError("another server's session")
            exchange.set_client_final(request["client_final"])
            server_final = exchange.get_server_final()
        except Exception:
            return _error(401, "auth_failed", "wrong username or password")
        answer = {"token": f"tok-{index}", "expires_in": 3600, "server_final": server_final}
        return _response(200, json.dumps(answer).encode())

    def health(self, index: int) -> bytes:
        mode = self.modes.get(index, "ok")
        return self.ok_health[index] if mode == "ok" else health_body(index, mode)

    def info(self, index: int) -> bytes:
        return json.dumps(
            {
                "name": f"EMU-{index}",
                "model": "EMU-NODE",
                "serial": f"EMU{index:08d}",
                "version": "0.1.0",
                "api_version": "1",
                "cms_mode": "recording",
                "cms_enabled": True,
                "paired": False,
                "locked": False,
                "https": False,
                "quickconnect_id": None,
            }
        ).encode()

    def config(self, index: int) -> bytes:
        return json.dumps({"version": 1, "cameras": _cameras(index)}).encode()


def _response(status: int, body: bytes, extra: str = "") -> bytes:
    reason = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
              404: "Not Found"}[status]  # fmt: skip
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def _error(status: int, code: str, message: str) -> bytes:
    return _response(status, json.dumps({"error": {"code": code, "message": message}}).encode())


class NodeProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive, enough for the prober (aiohttp) and the node client
    (requests), which reads the configurations."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.buffer = b""
        self.index: int | None = None
        self.control = False
        self.counted = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        local = transport.get_extra_info("sockname")[0]
        self.control = local == "127.0.0.1"
        self.index = index_of(local)
        if not self.control and (self.index is None or self.index >= self.fleet.servers):
            transport.abort()  # not one of ours (or not loopback at all)
            return
        if not self.control:  # the benchmark's own control calls are not probes
            self.counted = True
            self.fleet.stats["connections"] += 1
            self.fleet.open_connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted:
            self.fleet.open_connections -= 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None and not self.transport.is_closing():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER:
                    self.transport.abort()
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            method, target, _ = head[0].split(" ", 2)
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self.handle(method, target.split("?", 1)[0], headers, body)

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        assert self.transport is not None
        fleet = self.fleet
        if self.control:
            self.transport.write(self.control_request(method, path, body))
            return
        index = self.index
        assert index is not None
        fleet.stats[f"{method} {path}"] += 1
        if fleet.modes.get(index) == "down":
            fleet.stats["reset"] += 1
            self.transport.abort()
            return
        if method == "GET" and path == "/api/v1/info":
            out = _response(200, fleet.info(index))
        elif method == "POST" and path == "/api/v1/auth/scram/start":
            out = fleet.scram_start(index, body)
        elif method == "POST" and path == "/api/v1/auth/scram/finish":
            out = fleet.scram_finish(index, body)
        elif headers.get("authorization", "") != f"Bearer tok-{index}":
            out = _error(401, "token_invalid", "token expired or unknown")
        elif method == "GET" and path == "/api/v1/health":
            entries = fleet.health_log.setdefault(index, [])
            entries.append((time.time(), self.transport.get_extra_info("peername")[1]))
            if len(entries) > HEALTH_LOG:
                del entries[: HEALTH_LOG // 2]
            out = _response(200, fleet.health(index))
            if fleet.modes.get(index) == "slow":
                asyncio.get_running_loop().call_later(SLOW_SECONDS, self._write, out)
                return
        elif method == "GET" and path == "/api/v1/config":
            out = _response(200, fleet.config(index), 'ETag: "config-1"\r\n')
        else:
            out = _error(404, "not_found", "no such route in the emulator")
        self.transport.write(out)

    def _write(self, out: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def control_request(self, method: str, path: str, body: bytes) -> bytes:
        fleet = self.fleet
        if method == "GET" and path == "/_emulator/stats":
            stats = dict(fleet.stats) | {"open_connections": fleet.open_connections}
            return _response(200, json.dumps(stats).encode())
        if method == "GET" and path == "/_emulator/health-log":
            return _response(200, json.dumps(fleet.health_log).encode())
        if method == "POST" and path == "/_emulator/reset":
            fleet.stats.clear()
            return _response(200, b"{}")
        if method == "POST" and path == "/_emulator/mode":
            spec = json.loads(body)
            for index in spec["servers"]:
                if spec["mode"] == "ok":
                    fleet.modes.pop(int(index), None)
                else:
                    fleet.modes[int(index)] = spec["mode"]
            return _response(200, json.dumps({"not_ok": len(fleet.modes)}).encode())
        return _error(404, "not_found", "unknown control route")


async def serve(servers: int, port: int) -> None:
    loop = asyncio.get_running_loop()
    fleet = Fleet(servers)
    server = await loop.create_server(
        lambda: NodeProtocol(fleet), "0.0.0.0", port, backlog=4096, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": bound, "servers": servers}), flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    if not 1 <= args.servers <= 63_500:
        parser.error("--servers must be between 1 and 63500")
    asyncio.run(serve(args.servers, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
