"""Recordings and snapshots on disk, their sqlite index, and resumable uploads.

Layout under the data folder::

    media/own/<camera>/<YYYY-MM-DD>/<HHMMSS.mmm>.<ext>             recorded here
    media/failover/<server>/<camera>/<YYYY-MM-DD>/<HHMMSS.mmm>.<ext> recorded on behalf of <server>
    index.sqlite3                                                   one row per file
    uploads/<id>.json + <id>.part                                   uploads in progress

API paths are relative to ``media/``. Every path that comes from outside goes
through :func:`safe_relpath` and :meth:`Storage.resolve`, which together make it
impossible to leave ``media/`` (``..``, absolute paths, encoded forms, odd
characters, symlinks).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.errors import ApiError, bad_request, not_found
from node.fsutil import fsync_dir, write_atomic
from node.timeutil import EARLIEST, LATEST, in_range, iso

log = logging.getLogger("node.storage")

# One path segment: no leading dot (so never "." or ".."), no "%", no "\", no NUL.
SEGMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
KINDS = ("recording", "snapshot")
ORIGINS = ("own", "failover")
MAX_UPLOAD_BYTES = 64 * 1024**3
HASH_CHUNK = 1024 * 1024
MAX_CURSOR_LENGTH = 1024
# Rows whose times a listing can show. An older version stored whatever start and end
# an upload declared (1e300 made every later listing fail); such rows are left out.
LISTABLE = f"start BETWEEN {EARLIEST!r} AND {LATEST!r} AND end BETWEEN {EARLIEST!r} AND {LATEST!r}"


def bad_path(message: str) -> ApiError:
    return ApiError(400, "bad_path", message)


def safe_relpath(path: object) -> str:
    """Check the *shape* of a media path; :meth:`Storage.resolve` checks where it lands."""
    if not isinstance(path, str) or not path or len(path) > 512:
        raise bad_path("path must be a non-empty string of at most 512 characters")
    if path.startswith("/") or "\\" in path or "\x00" in path:
        raise bad_path("path must be relative to the media folder")
    for part in path.split("/"):
        if not SEGMENT_RE.match(part):
            raise bad_path(
                f"path segment {part[:40]!r} is not allowed (letters, digits, '.', '-', '_'; "
                "no leading dot)"
            )
    return path


@dataclass
class FileMeta:
    path: str
    kind: str
    camera: str
    origin: str
    on_behalf_of: str | None
    start: float
    end: float
    size: int
    sha256: str

    def to_api(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "camera": self.camera,
            "origin": self.origin,
            "on_behalf_of": self.on_behalf_of,
            "start": iso(self.start),
            "end": iso(self.end),
            "size": self.size,
            "sha256": self.sha256,
        }


_COLUMNS = "path, kind, camera, origin, on_behalf_of, start, end, size, sha256"


class Storage:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.media = data_dir / "media"
        self.uploads_dir = data_dir / "uploads"
        self.media.mkdir(parents=True, exist_ok=True)
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        self._media_real = os.path.realpath(self.media)
        # One connection shared by the recorder threads and the HTTP thread pool,
        # serialised by a lock: writes are tiny, and sqlite would serialise them anyway.
        self._db = sqlite3.connect(
            data_dir / "index.sqlite3", check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS files (
                path TEXT PRIMARY KEY, kind TEXT NOT NULL, camera TEXT NOT NULL,
                origin TEXT NOT NULL, on_behalf_of TEXT, start REAL NOT NULL,
                end REAL NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
                created REAL NOT NULL);
            CREATE INDEX IF NOT EXISTS files_start ON files(start, path);
            CREATE INDEX IF NOT EXISTS files_camera ON files(camera, start);
            CREATE INDEX IF NOT EXISTS files_origin ON files(origin, on_behalf_of, start);
            """
        )
        self._db_lock = threading.Lock()
        self._upload_locks: dict[str, threading.Lock] = {}
        self._upload_locks_guard = threading.Lock()
        self._report_unlistable()

    def _report_unlistable(self) -> None:
        rows = self._db.execute(
            f"SELECT path FROM files WHERE NOT ({LISTABLE}) LIMIT 5"  # noqa: S608 (constant)
        ).fetchall()
        if rows:
            (count,) = self._db.execute(
                f"SELECT COUNT(*) FROM files WHERE NOT ({LISTABLE})"  # noqa: S608 (constant)
            ).fetchone()
            log.warning(
                "%d indexed file(s) have a start or end outside 1970-2100 (stored by an older "
                "version) and are left out of listings, e.g. %s",
                count,
                ", ".join(repr(r[0][:80]) for r in rows),
            )

    def close(self) -> None:
        with self._db_lock:
            self._db.close()

    # -- paths ---------------------------------------------------------------

    def resolve(self, rel: str) -> Path:
        """Absolute path of a media file; refuses anything that escapes ``media/``.

        ``realpath`` follows symlinks, so a link planted inside ``media/`` that points
        elsewhere is refused as well.
        """
        safe_relpath(rel)
        full = os.path.realpath(os.path.join(self._media_real, rel))
        if os.path.commonpath([full, self._media_real]) != self._media_real or full == (
            self._media_real
        ):
            raise bad_path("path leaves the media folder")
        return Path(full)

    def disk_usage(self) -> tuple[int, int]:
        usage = shutil.disk_usage(self.data_dir)
        return usage.free, usage.total

    # -- index ---------------------------------------------------------------

    def add(self, meta: FileMeta) -> None:
        with self._db_lock:
            self._db.execute(
                f"INSERT OR REPLACE INTO files ({_COLUMNS}, created) "  # noqa: S608 (constant)
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    meta.path,
                    meta.kind,
                    meta.camera,
                    meta.origin,
                    meta.on_behalf_of,
                    meta.start,
                    meta.end,
                    meta.size,
                    meta.sha256,
                    time.time(),
                ),
            )

    def get(self, rel: str) -> FileMeta | None:
        with self._db_lock:
            row = self._db.execute(
                "SELECT path, kind, camera, origin, on_behalf_of, start, end, size, sha256 "
                "FROM files WHERE path = ?",
                (rel,),
            ).fetchone()
        return FileMeta(*row) if row else None

    def store_bytes(self, meta: FileMeta, data: bytes) -> None:
        """Write a whole small file atomically and index it (used by the recorder)."""
        target = self.resolve(meta.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, data)
        self.add(meta)

    def store_file(self, meta: FileMeta, src: Path) -> None:
        """Move an already-written file (ffmpeg output) into place and index it."""
        target = self.resolve(meta.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, target)
        fsync_dir(target.parent)
        self.add(meta)

    def delete(self, rel: str) -> None:
        target = self.resolve(rel)
        with self._db_lock:
            cur = self._db.execute("DELETE FROM files WHERE path = ?", (rel,))
        if cur.rowcount == 0:
            raise not_found(f"no recording or snapshot at {rel!r}")
        with contextlib.suppress(FileNotFoundError):
            target.unlink()

    def list(
        self,
        *,
        camera: str | None = None,
        since: float | None = None,
        until: float | None = None,
        origin: str | None = None,
        on_behalf_of: str | None = None,
        kind: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[FileMeta], str | None]:
        """Keyset pagination on (start, path): stable while files are being added."""
        where, args = [LISTABLE], []
        for column, value in (
            ("camera", camera),
            ("origin", origin),
            ("on_behalf_of", on_behalf_of),
            ("kind", kind),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        # Overlap semantics: a segment that straddles ``since`` or ``until`` is included.
        if since is not None:
            where.append("end > ?")
            args.append(since)
        if until is not None:
            where.append("start < ?")
            args.append(until)
        if cursor:
            c_start, c_path = decode_cursor(cursor)
            where.append("(start > ? OR (start = ? AND path > ?))")
            args += [c_start, c_start, c_path]
        sql = f"SELECT {_COLUMNS} FROM files"  # noqa: S608 (only constant fragments)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start, path LIMIT ?"
        args.append(limit + 1)
        with self._db_lock:
            rows = self._db.execute(sql, args).fetchall()
        items = [FileMeta(*r) for r in rows[:limit]]
        nxt = encode_cursor(items[-1].start, items[-1].path) if len(rows) > limit else None
        return items, nxt

    def expire(self, camera: str, origin: str, older_than: float) -> int:
        """Retention: delete a camera's files that ended before ``older_than``."""
        with self._db_lock:
            rows = self._db.execute(
                "SELECT path FROM files WHERE camera = ? AND origin = ? AND end < ?",
                (camera, origin, older_than),
            ).fetchall()
        for (path,) in rows:
            with contextlib.suppress(ApiError):
                self.delete(path)
        return len(rows)

    def purge_failover(self, on_behalf_of: str) -> PurgeResult:
        """Delete every file recorded for ``on_behalf_of`` during failovers.

        Counts exactly: a file another request deleted meanwhile (a restoration that
        finished it) is counted by that request, not here; one that cannot be removed
        keeps its index row (a later purge tries again) and is reported with the reason.
        """
        with self._db_lock:
            rows = self._db.execute(
                "SELECT path FROM files WHERE origin = 'failover' AND on_behalf_of = ?",
                (on_behalf_of,),
            ).fetchall()
        result = PurgeResult()
        for (path,) in rows:
            try:
                target = self.resolve(path)
                with contextlib.suppress(FileNotFoundError):
                    target.unlink()
            except (ApiError, OSError) as exc:
                result.failed += 1
                result.error = result.error or f"{path}: {_why(exc)}"
                continue
            with self._db_lock:
                removed = self._db.execute("DELETE FROM files WHERE path = ?", (path,)).rowcount
            result.deleted += removed
        return result

    def counts(self) -> dict[tuple[str, str | None], int]:
        with self._db_lock:
            rows = self._db.execute(
                "SELECT camera, on_behalf_of, COUNT(*) FROM files "
                "WHERE kind = 'recording' GROUP BY camera, on_behalf_of"
            ).fetchall()
        return {(cam, obo): n for cam, obo, n in rows}

    # -- uploads -------------------------------------------------------------

    def _upload_paths(self, upload_id: str) -> tuple[Path, Path]:
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id or ""):
            raise not_found("no such upload")
        return self.uploads_dir / f"{upload_id}.json", self.uploads_dir / f"{upload_id}.part"

    def upload_lock(self, upload_id: str) -> threading.Lock:
        with self._upload_locks_guard:
            return self._upload_locks.setdefault(upload_id, threading.Lock())

    def load_upload(self, upload_id: str) -> dict[str, Any]:
        meta_path, part = self._upload_paths(upload_id)
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            raise not_found("no such upload (finished, aborted or never created)") from None
        meta["offset"] = part.stat().st_size if part.exists() else 0
        return meta

    def part_path(self, upload_id: str) -> Path:
        return self._upload_paths(upload_id)[1]

    def find_upload(self, rel: str) -> dict[str, Any] | None:
        for meta_path in self.uploads_dir.glob("*.json"):
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                continue
            if meta.get("path") == rel:
                return self.load_upload(meta["id"])
        return None

    def create_upload(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Start (or resume, if the same file is already half-sent) an upload."""
        rel = spec["path"]
        self.resolve(rel)
        existing = self.get(rel)
        if existing is not None:
            if existing.sha256 == spec["sha256"] and existing.size == spec["size"]:
                return {"id": None, "offset": existing.size, "complete": True, "path": rel}
            raise ApiError(409, "file_exists", f"{rel!r} already exists with other content")
        pending = self.find_upload(rel)
        if pending is not None:
            if pending["sha256"] == spec["sha256"] and pending["size"] == spec["size"]:
                return _upload_status(pending)
            self.abort_upload(pending["id"])  # a newer intent for the same path wins
        free, _ = self.disk_usage()
        if spec["size"] > free:
            raise ApiError(507, "insufficient_storage", "not enough free space for this file")
        upload_id = uuid.uuid4().hex
        meta = dict(spec, id=upload_id, created=time.time())
        meta_path, part = self._upload_paths(upload_id)
        part.touch()
        write_atomic(meta_path, json.dumps(meta).encode())
        meta["offset"] = 0
        if spec["size"] == 0:
            return self.finish_upload(upload_id)
        return _upload_status(meta)

    def abort_upload(self, upload_id: str) -> None:
        meta_path, part = self._upload_paths(upload_id)
        if not meta_path.exists():
            raise not_found("no such upload")
        part.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)

    def finish_upload(self, upload_id: str, received_sha256: str | None = None) -> dict[str, Any]:
        """Verify size and sha256, fsync, rename into place, index. Mismatch keeps nothing.

        ``received_sha256`` is the digest computed while the whole file arrived in one
        request (already fsynced); a resumed upload is read back and hashed here.
        """
        meta = self.load_upload(upload_id)
        meta_path, part = self._upload_paths(upload_id)
        if received_sha256 is not None:
            size, sha = part.stat().st_size, received_sha256
        else:
            digest = hashlib.sha256()
            size = 0
            with open(part, "rb") as fh:
                while chunk := fh.read(HASH_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                os.fsync(fh.fileno())
            sha = digest.hexdigest()
        if size != meta["size"] or sha != meta["sha256"]:
            part.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
            raise ApiError(
                422,
                "checksum_mismatch",
                f"received {size} bytes with sha256 {sha}, expected "
                f"{meta['size']} bytes with sha256 {meta['sha256']}; nothing was kept",
            )
        fm = FileMeta(
            path=meta["path"],
            kind=meta["kind"],
            camera=meta["camera"],
            origin=meta["origin"],
            on_behalf_of=meta["on_behalf_of"],
            start=meta["start"],
            end=meta["end"],
            size=size,
            sha256=meta["sha256"],
        )
        self.store_file(fm, part)
        meta_path.unlink(missing_ok=True)
        return {"id": upload_id, "offset": size, "complete": True, "path": fm.path}


@dataclass
class PurgeResult:
    deleted: int = 0
    failed: int = 0  # files that could not be removed (still indexed)
    error: str = ""  # the first of their reasons


def _why(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return exc.message
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


def _upload_status(meta: dict[str, Any]) -> dict[str, Any]:
    return {"id": meta["id"], "offset": meta["offset"], "complete": False, "path": meta["path"]}


def encode_cursor(start: float, path: str) -> str:
    raw = json.dumps([start, path]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    invalid = bad_request("cursor is not valid; use the 'next' value of a previous page")
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        start, path = json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        raise invalid from None
    if not in_range(start) or not isinstance(path, str):
        raise invalid
    return float(start), path


def validate_upload_spec(body: dict[str, Any], now: float) -> dict[str, Any]:
    """Check an upload request body; returns the metadata to store with the file."""
    from node.config import validate_id
    from node.timeutil import parse_time

    rel = safe_relpath(body.get("path"))
    size = body.get("size")
    sha = body.get("sha256")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_UPLOAD_BYTES:
        raise bad_request(f"size must be an integer between 0 and {MAX_UPLOAD_BYTES}")
    if not isinstance(sha, str) or not SHA256_RE.match(sha):
        raise bad_request("sha256 must be 64 lowercase hex digits")
    kind = body.get("kind", "recording")
    origin = body.get("origin", "own")
    if kind not in KINDS:
        raise bad_request(f"kind must be one of {KINDS}")
    if origin not in ORIGINS:
        raise bad_request(f"origin must be one of {ORIGINS}")
    obo = body.get("on_behalf_of")
    if obo is not None:
        obo = validate_id(obo, "on_behalf_of")
    camera = validate_id(body.get("camera", "unknown"), "camera")
    start = parse_time(body.get("start", now), "start")
    end = parse_time(body.get("end", start), "end")
    if end < start:
        raise bad_request("end must not be before start")
    return {
        "path": rel,
        "size": size,
        "sha256": sha,
        "kind": kind,
        "origin": origin,
        "on_behalf_of": obo,
        "camera": camera,
        "start": start,
        "end": end,
    }
