"""Standby configurations: the recording servers' configurations a failover node holds.

The CMS keeps here, per recording server it protects with this node (the *owner*, by
the tag a takeover names it with), the last configuration it knows. A takeover may
then name a version instead of carrying the whole configuration: the node records
what it already holds, and answers 409 when it holds another version or none.

One file per owner under ``DIR/standby/``, replaced atomically: a change rewrites one
small file, not the node's whole state, and a restart finds what was held. The count
and the total size are bounded, so a CMS (or anyone holding a token) cannot fill the
disk through this door.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

from node.config import validate_config, validate_id
from node.errors import ApiError, bad_request, not_found
from node.fsutil import fsync_dir, read_json, write_json_atomic

log = logging.getLogger("node.standby")

MAX_OWNERS = 256
MAX_TOTAL_BYTES = 32 * 1024 * 1024
VERSION_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def parse_version(value: object, what: str) -> str:
    """A configuration version: a non-negative integer or a short token, kept as text."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        return str(value)
    if isinstance(value, str) and VERSION_RE.match(value):
        return value
    raise bad_request(f"{what} must be a non-negative integer or 1-64 letters, digits, '.-_'")


def parse_name(body: dict[str, Any], default: str) -> str:
    name = body.get("name", default)
    if not isinstance(name, str) or not 1 <= len(name) <= 64:
        raise bad_request("name must be 1-64 characters")
    return name


class StandbyStore:
    """Thread-safe; every change is on disk before it returns."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / "standby"
        self.dir.mkdir(exist_ok=True)
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = {}
        self._sizes: dict[str, int] = {}
        self._load()

    def _load(self) -> None:
        for path in sorted(self.dir.glob("*.json")):
            owner = path.stem
            try:
                entry = read_json(path)
                validate_id(owner, "owner")
                if not isinstance(entry, dict):
                    raise ValueError("not an object")
                entry["cameras"] = validate_config({"cameras": entry.get("cameras")})
                entry["version"] = parse_version(entry.get("version"), "version")
                entry["name"] = parse_name(entry, owner)
            except (ValueError, OSError, ApiError) as exc:
                # A file this node cannot use is not a configuration it holds: the CMS
                # sees the owner missing in /health and sends it again.
                log.warning("standby configuration %s ignored: %s", path.name, exc)
                continue
            self._entries[owner] = entry
            self._sizes[owner] = _size(entry)

    def put(self, owner: str, body: dict[str, Any]) -> dict[str, Any]:
        owner = validate_id(owner, "owner id")
        name = parse_name(body, owner)
        config = body.get("config")
        cameras = validate_config(config)  # exactly what /takeover accepts
        assert isinstance(config, dict)
        if "version" not in config:
            raise bad_request("config.version is required: a takeover names it")
        version = parse_version(config["version"], "config.version")
        entry = {"name": name, "version": version, "cameras": cameras}
        size = _size(entry)
        with self._lock:
            if self._entries.get(owner) == entry:
                return _summary(owner, entry)
            if owner not in self._entries and len(self._entries) >= MAX_OWNERS:
                raise ApiError(
                    409, "standby_full", f"this node holds {MAX_OWNERS} standby configurations"
                )
            total = sum(self._sizes.values()) - self._sizes.get(owner, 0) + size
            if total > MAX_TOTAL_BYTES:
                raise ApiError(
                    409,
                    "standby_full",
                    f"standby configurations would take over {MAX_TOTAL_BYTES} bytes",
                )
            write_json_atomic(self.dir / f"{owner}.json", entry)
            self._entries[owner], self._sizes[owner] = entry, size
        return _summary(owner, entry)

    def delete(self, owner: str) -> None:
        owner = validate_id(owner, "owner id")
        with self._lock:
            if owner not in self._entries:
                raise not_found(f"no standby configuration for {owner}")
            (self.dir / f"{owner}.json").unlink(missing_ok=True)
            fsync_dir(self.dir)
            del self._entries[owner], self._sizes[owner]

    def cameras(self, owner: str, version: str) -> list[dict[str, Any]]:
        """The cameras held for ``owner`` at ``version``; 409 when missing or another."""
        with self._lock:
            entry = self._entries.get(owner)
        if entry is None:
            raise ApiError(
                409,
                "standby_missing",
                f"no standby configuration for {owner}: send the configuration",
            )
        if entry["version"] != version:
            raise ApiError(
                409,
                "standby_stale",
                f"the standby configuration for {owner} is version {entry['version']}, "
                f"not {version}: send the configuration",
                extra={"held_version": entry["version"]},
            )
        return [dict(c) for c in entry["cameras"]]

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [_summary(o, e) for o, e in sorted(self._entries.items())]

    def versions(self) -> dict[str, str]:
        with self._lock:
            return {owner: entry["version"] for owner, entry in self._entries.items()}


def _summary(owner: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {"id": owner, "name": entry["name"], "version": entry["version"]}


def _size(entry: dict[str, Any]) -> int:
    return len(json.dumps(entry, separators=(",", ":")).encode())
