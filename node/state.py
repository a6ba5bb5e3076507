"""The node's persistent state: identity, credentials, CMS pairing, epoch, config, licenses.

Everything lives in one small JSON document (``state.json``) replaced atomically on
every change, so a crash leaves either the old or the new state and a restart
resumes exactly where the node was (epoch, takeover, licenses, config).
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node.fsutil import read_json, write_json_atomic
from protocol.scram import salted_password, verifier_keys

MODES = ("recording", "failover", "standalone")
PBKDF2_ITERATIONS = 120_000


class AlreadyRunning(Exception):
    """Another agent holds the data folder's lock."""


class DataDirLock:
    """An exclusive ``fcntl`` lock on ``DIR/node.lock``: one agent per data folder.

    ``flock`` is released by the kernel when the process dies, so a crashed agent
    never leaves a stale lock behind (unlike a pid file).
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "node.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunning(
                f"another cms-node (pid {holder}) is already using the data folder "
                f"{self.path.parent}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def make_verifier(password: str, salt: bytes | None = None) -> dict[str, Any]:
    """The SCRAM-SHA-256 verifier kept instead of the password (salt, iterations,
    StoredKey, ServerKey): enough to check a login and prove the node's side of it,
    not enough to log in anywhere."""
    salt = salt or secrets.token_bytes(16)
    stored, server = verifier_keys(salted_password(password, salt, PBKDF2_ITERATIONS))
    return {
        "salt": salt.hex(),
        "iterations": PBKDF2_ITERATIONS,
        "stored_key": stored.hex(),
        "server_key": server.hex(),
    }


def migrate_admin(admin: dict[str, Any]) -> bool:
    """Turn an older state's password hash into the verifier, in place; True if changed.

    The old hash is PBKDF2-HMAC-SHA256(password, salt, iterations), which is SCRAM's
    SaltedPassword: the verifier follows from it without the password."""
    if "stored_key" in admin and "server_key" in admin:
        return False
    if "hash" not in admin:
        raise ValueError("state.json: the admin account has neither a verifier nor a hash")
    stored, server = verifier_keys(bytes.fromhex(admin.pop("hash")))
    admin["stored_key"], admin["server_key"] = stored.hex(), server.hex()
    admin["iterations"] = int(admin["iterations"])
    return True


def new_state(name: str, model: str, mode: str, password: str) -> dict[str, Any]:
    serial = uuid.uuid4().hex[:12].upper()
    return {
        "schema": 1,
        "serial": serial,
        "name": name,
        "model": model,
        "created_at": time.time(),
        "admin": {"username": "admin", **make_verifier(password)},
        "cms": {
            "enabled": mode != "standalone",
            "mode": mode,
            "host": None,
            "pairing_key": None,
            "refuse_other_hosts": False,
            "refuse_local_changes": False,
        },
        "epoch": 0,
        "last_command": None,
        "takeover": None,
        "config": {"version": 1, "cameras": []},
        "licenses": [],
        "quickconnect": {"id": None, "token": None},
    }


class StateStore:
    """Thread-safe access to ``state.json``; every mutation is persisted before it returns."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "state.json"
        self._lock = threading.RLock()
        self._state: dict[str, Any] = {}

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> None:
        with self._lock:
            self._state = json.loads(self.path.read_text())
            cms = self._state["cms"]
            changed = migrate_admin(self._state["admin"])
            if "pairing_key" not in cms:
                # Paired before pairing keys existed: the CMS pairs again to get one.
                cms["pairing_key"] = None
                changed = True
            if changed:  # the old hash leaves the disk now, not at the next change
                write_json_atomic(self.path, self._state)

    def create(self, state: dict[str, Any]) -> None:
        with self._lock:
            self._state = state
            write_json_atomic(self.path, state)

    def read(self) -> dict[str, Any]:
        """A deep copy: callers may look at it without holding the lock."""
        with self._lock:
            return copy.deepcopy(self._state)

    def update(self, mutate: Callable[[dict[str, Any]], Any]) -> Any:
        """Apply ``mutate`` to a copy, persist it, then publish it; all or nothing.

        ``mutate`` may raise to refuse the change: the stored state is untouched.
        """
        with self._lock:
            draft = copy.deepcopy(self._state)
            result = mutate(draft)
            write_json_atomic(self.path, draft)
            self._state = draft
            return result


def read_state_file(data_dir: Path) -> dict[str, Any] | None:
    """Read the state without the lock (``cms-node info`` on a running node)."""
    data = read_json(data_dir / "state.json")
    return data if isinstance(data, dict) else None


# Faults live in their own file so that ``cms-node fault`` (another process) can set
# them while the agent runs; the agent re-reads the file when its mtime changes.
FAULT_KINDS = ("volume", "service", "clear")


def write_fault(data_dir: Path, kind: str) -> dict[str, bool]:
    if kind not in FAULT_KINDS:
        raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}")
    path = data_dir / "faults.json"
    current = read_json(path, {}) or {}
    faults = {"volume": bool(current.get("volume")), "service": bool(current.get("service"))}
    if kind == "clear":
        faults = {"volume": False, "service": False}
    else:
        faults[kind] = True
    write_json_atomic(path, faults, mode=0o644)
    return faults


class FaultWatcher:
    """Cheap, always-fresh view of ``faults.json`` (stat per call, parse on change).

    Simulated faults make the CMS fail a server over, so an agent that was not started
    with ``--allow-fault-injection`` (``enabled=False``) never reads the file: a
    ``faults.json`` left by a demo or written by hand changes nothing.
    """

    def __init__(self, data_dir: Path, enabled: bool = True) -> None:
        self.path = data_dir / "faults.json"
        self.enabled = enabled
        self._stamp: tuple[int, int, int] | None = None
        self._faults = {"volume": False, "service": False}
        self._lock = threading.Lock()

    def current(self) -> dict[str, bool]:
        if not self.enabled:
            return {"volume": False, "service": False}
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                self._stamp, self._faults = None, {"volume": False, "service": False}
                return dict(self._faults)
            # The file is replaced atomically (new inode) on every write, so the inode
            # catches changes that a coarse mtime would miss.
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                data = read_json(self.path, {}) or {}
                self._faults = {
                    "volume": bool(data.get("volume")),
                    "service": bool(data.get("service")),
                }
                self._stamp = stamp
            return dict(self._faults)

    def any(self) -> bool:
        f = self.current()
        return f["volume"] or f["service"]
