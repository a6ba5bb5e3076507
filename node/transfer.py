"""Direct restoration between agents: the failover side's grants, the recording side's pulls.

On the failover agent, :class:`GrantDesk` redeems a grant signed by the paired CMS (see
``protocol.grants``) once, for a transfer token that opens exactly the files it names
(``GET /api/v1/transfer/files/<path>``, with Range). On the recording agent,
:class:`Pulls` downloads those files with the token: each one into an upload's
temporary file (resumed with Range after a broken connection), then the storage's own
check of size and sha256 before the rename, with the file's original camera, start and
end. The CMS watches ``GET /pulls/<id>`` and deletes each file on the failover agent
once the recording agent reports it verified.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import secrets
import ssl
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from node.errors import ApiError, bad_request, not_found
from node.storage import SHA256_RE, Storage, safe_relpath, validate_upload_spec
from protocol.grants import GrantInvalid, conflict_name, describe, verify_grant

log = logging.getLogger("node.transfer")

TRANSFER_TTL = 3600.0  # a transfer token's life once redeemed
CHUNK = 1024 * 1024
PULLS_AT_ONCE = 4  # files downloaded at once per pull
ATTEMPTS = 5  # per file, each resuming where the last one stopped
MAX_PULL_FILES = 10_000
KEEP_FINISHED = 64  # finished pulls kept for their status
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
MAX_WAIT = 5.0  # seconds a progress request may wait for a change


# -- the failover side ----------------------------------------------------------


@dataclass
class _Transfer:
    paths: frozenset[str]
    expires: float


class GrantDesk:
    """Grants redeemed here (each nonce once) and the transfer tokens they gave."""

    def __init__(self) -> None:
        self._used: dict[str, float] = {}  # nonce -> when the grant expires
        self._tokens: dict[str, _Transfer] = {}
        self._lock = threading.Lock()

    def redeem(self, key_hex: str | None, serial: str, storage: Storage, grant: object) -> dict:
        if not key_hex:
            raise ApiError(403, "grant_refused", "this agent is not paired with a CMS")
        try:
            body = verify_grant(bytes.fromhex(key_hex), grant, serial=serial)
        except GrantInvalid as exc:
            raise ApiError(403, "grant_refused", str(exc)) from None
        for path in body["paths"]:
            meta = storage.get(path)
            if meta is None:
                continue  # deleted meanwhile: its GET answers 404
            if meta.origin != "failover" or meta.on_behalf_of != body["on_behalf_of"]:
                raise ApiError(403, "grant_refused", f"{path!r} is not a file of this failover")
        now = time.time()
        with self._lock:
            self._used = {n: t for n, t in self._used.items() if t > now}
            if body["nonce"] in self._used:
                raise ApiError(403, "grant_refused", "this grant was already used")
            self._used[body["nonce"]] = float(body["expires"]) + 1.0
            self._tokens = {t: v for t, v in self._tokens.items() if v.expires > now}
            token = secrets.token_urlsafe(32)
            self._tokens[token] = _Transfer(frozenset(body["paths"]), now + TRANSFER_TTL)
        log.info("grant redeemed: %s", describe(body))
        return {"token": token, "expires_in": TRANSFER_TTL, "files": len(body["paths"])}

    def check(self, header: str, path: str) -> None:
        """A transfer token (``Authorization: Transfer <token>``) that opens ``path``."""
        scheme, _, token = header.partition(" ")
        with self._lock:
            entry = self._tokens.get(token.strip()) if scheme.lower() == "transfer" else None
        if entry is None or entry.expires <= time.time():
            raise ApiError(401, "token_invalid", "transfer token expired or unknown")
        if path not in entry.paths:
            raise ApiError(403, "not_granted", "the grant does not name this file")


# -- the recording side ---------------------------------------------------------


@dataclass
class _Source:
    host: str
    port: int
    https: bool
    fingerprint: str | None

    def connect(self, timeout: float = READ_TIMEOUT) -> http.client.HTTPConnection:
        if not self.https:
            return http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        context = ssl.create_default_context()
        context.check_hostname = False
        # The pin the CMS holds for the failover server replaces CA verification.
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=context)
        conn.connect()
        cert = conn.sock.getpeercert(binary_form=True) or b""  # type: ignore[union-attr]
        if hashlib.sha256(cert).hexdigest() != self.fingerprint:
            conn.close()
            raise OSError("the failover server's certificate is not the one the CMS pinned")
        return conn


@dataclass
class _File:
    source_path: str
    spec: dict[str, Any]
    state: str = "pending"  # pending, copying, done, failed
    bytes: int = 0
    stored_as: str = ""
    error: str = ""

    def to_api(self) -> dict[str, Any]:
        return {
            "path": self.source_path,
            "state": self.state,
            "bytes": self.bytes,
            "stored_as": self.stored_as,
            "error": self.error,
        }


@dataclass
class Pull:
    id: str
    source: _Source
    token: str
    files: list[_File]
    cancelled: threading.Event = field(default_factory=threading.Event)
    state: str = "running"
    # Moves on when a file ends or the pull does: a watcher waits on it, not on a clock.
    version: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)

    def bump(self) -> None:
        with self.changed:
            self.version += 1
            self.changed.notify_all()

    def wait(self, after: int, seconds: float) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.version > after, timeout=seconds)

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "files": [f.to_api() for f in self.files],
            "bytes": sum(f.bytes for f in self.files),
            "version": self.version,
        }


class Pulls:
    """Pulls this agent runs from failover agents (in memory: a restarted agent has none,
    and the CMS starts a new one; each file resumes from its upload's temporary file)."""

    def __init__(self, storage: Storage, volume_fault: Any) -> None:
        self.storage = storage
        self.volume_fault = volume_fault
        self._pulls: dict[str, Pull] = {}
        self._lock = threading.Lock()

    def start(self, body: dict[str, Any]) -> dict[str, Any]:
        source = _parse_source(body.get("source"))
        files = _parse_files(body.get("files"))
        if self.volume_fault():
            raise ApiError(503, "volume_fault", "the volume is crashed; cannot store files")
        grant = body.get("grant")
        if not isinstance(grant, str) or not grant:
            raise bad_request("grant must be a non-empty string")
        token = _redeem(source, grant)  # the probe: can this agent reach the failover one?
        pull = Pull(uuid.uuid4().hex, source, token, files)
        with self._lock:
            finished = [p for p in self._pulls.values() if p.state != "running"]
            for old in finished[: max(0, len(finished) - KEEP_FINISHED)]:
                self._pulls.pop(old.id, None)
            self._pulls[pull.id] = pull
        threading.Thread(target=self._run, args=(pull,), name="pull", daemon=True).start()
        return pull.to_api()

    def get(self, pull_id: str, after: int | None = None, wait: float = 0.0) -> dict[str, Any]:
        """Where the pull stands; with ``after``, once it moved past that version (a file
        ended, or the pull did) or ``wait`` seconds passed."""
        pull = self._find(pull_id)
        if after is not None and wait > 0:
            pull.wait(after, min(wait, MAX_WAIT))
        return pull.to_api()

    def cancel(self, pull_id: str) -> None:
        pull = self._find(pull_id)
        pull.cancelled.set()

    def _find(self, pull_id: str) -> Pull:
        with self._lock:
            pull = self._pulls.get(pull_id)
        if pull is None:
            raise not_found("no such pull (this agent restarted, or it never existed)")
        return pull

    def _run(self, pull: Pull) -> None:
        with ThreadPoolExecutor(PULLS_AT_ONCE, thread_name_prefix="pull") as pool:
            list(pool.map(lambda f: self._pull_file(pull, f), pull.files))
        if pull.cancelled.is_set():
            pull.state = "cancelled"
        else:
            pull.state = "failed" if any(f.state == "failed" for f in pull.files) else "done"
        pull.bump()

    def _pull_file(self, pull: Pull, item: _File) -> None:
        try:
            self._pull_one(pull, item)
        finally:
            pull.bump()

    def _pull_one(self, pull: Pull, item: _File) -> None:
        if pull.cancelled.is_set():
            return
        item.state = "copying"
        try:
            try:
                self._copy(pull, item, item.spec)
            except ApiError as exc:
                if exc.code != "file_exists":
                    raise
                # Other content under its name: both kept, this one under its sha256.
                other = dict(item.spec, path=conflict_name(item.spec["path"], item.spec["sha256"]))
                self._copy(pull, item, other)
                item.stored_as = other["path"]
            item.state = "done"  # verified and in place, even if a cancel came meanwhile
        except ApiError as exc:
            item.state, item.error = "failed", exc.message
        except (OSError, http.client.HTTPException) as exc:
            item.state, item.error = "failed", f"download interrupted: {exc}"
        except _Cancelled:
            item.state = "cancelled"
        except Exception:
            # A bug must not leave the pull running for ever: the CMS sees it fail.
            log.exception("pull of %s failed", item.source_path)
            item.state, item.error = "failed", "internal error; see the node's log"

    def _copy(self, pull: Pull, item: _File, spec: dict[str, Any]) -> None:
        status = self.storage.create_upload(spec)
        if status["complete"]:
            item.bytes = spec["size"]
            return
        upload_id = status["id"]
        lock = self.storage.upload_lock(upload_id)
        if not lock.acquire(blocking=False):
            raise ApiError(409, "upload_busy", "another request is writing this upload")
        try:
            digest = None
            for attempt in range(1, ATTEMPTS + 1):
                offset = self.storage.load_upload(upload_id)["offset"]
                item.bytes = offset
                # Sent whole from 0, the sha256 is taken as the bytes arrive; a resumed
                # file is read back and hashed when it is finished.
                digest = hashlib.sha256() if offset == 0 else None
                try:
                    if offset < spec["size"]:
                        self._download(pull, item, upload_id, offset, digest)
                    break
                except (OSError, http.client.HTTPException):
                    if attempt == ATTEMPTS or pull.cancelled.is_set():
                        raise
                    time.sleep(min(2.0, 0.2 * attempt))
            known = digest.hexdigest() if digest is not None and spec["size"] else None
            self.storage.finish_upload(upload_id, known)  # size and sha256, rename
            item.bytes = spec["size"]
        finally:
            lock.release()

    def _download(self, pull: Pull, item: _File, upload_id: str, offset: int, digest: Any) -> None:
        conn = pull.source.connect()
        try:
            headers = {"Authorization": f"Transfer {pull.token}", "Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
                headers["If-Range"] = f'"{item.spec["sha256"]}"'
            conn.request(
                "GET", "/api/v1/transfer/files/" + quote(item.source_path), headers=headers
            )
            resp = conn.getresponse()
            if resp.status == 200 and offset:
                raise ApiError(409, "source_changed", "the file changed on the failover server")
            if resp.status not in (200, 206):
                raise ApiError(502, "source_refused", _refusal(resp))
            with open(self.storage.part_path(upload_id), "ab") as fh:
                try:
                    while chunk := resp.read(CHUNK):
                        if pull.cancelled.is_set():
                            raise _Cancelled()
                        if self.volume_fault():
                            raise ApiError(503, "volume_fault", "the volume is crashed")
                        fh.write(chunk)
                        if digest is not None:
                            digest.update(chunk)  # releases the GIL for large buffers
                        item.bytes += len(chunk)
                finally:
                    fh.flush()
                    os.fsync(fh.fileno())
        finally:
            conn.close()


class _Cancelled(Exception):
    pass


def _refusal(resp: http.client.HTTPResponse) -> str:
    raw = resp.read(64 * 1024)
    try:
        message = json.loads(raw)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = ""
    return f"the failover server answered {resp.status}" + (f": {message}" if message else "")


def _redeem(source: _Source, grant: str) -> str:
    try:
        conn = source.connect(timeout=CONNECT_TIMEOUT)
        try:
            conn.request(
                "POST",
                "/api/v1/transfer/redeem",
                body=json.dumps({"grant": grant}).encode(),
                headers={"Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            if resp.status != 200:
                raise ApiError(502, "grant_refused", _refusal(resp))
            token = json.loads(resp.read(64 * 1024))["token"]
        finally:
            conn.close()
    except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
        raise ApiError(
            502, "source_unreachable", f"cannot reach the failover server: {exc}"
        ) from None
    if not isinstance(token, str):
        raise ApiError(502, "grant_refused", "the failover server gave no transfer token")
    return token


def check_pull(body: dict[str, Any]) -> None:
    """400 for a pull request that is not well formed (before anything else is checked)."""
    _parse_source(body.get("source"))
    _parse_files(body.get("files"))
    grant = body.get("grant")
    if not isinstance(grant, str) or not grant:
        raise bad_request("grant must be a non-empty string")


def _parse_source(value: object) -> _Source:
    if not isinstance(value, dict):
        raise bad_request("source must be an object: host, port, https, fingerprint")
    host, port = value.get("host"), value.get("port")
    https, fingerprint = bool(value.get("https")), value.get("fingerprint")
    if not isinstance(host, str) or not 0 < len(host) <= 253 or any(c in host for c in "/@ "):
        raise bad_request("source.host must be a host name or address")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise bad_request("source.port must be a TCP port")
    if https:
        if not isinstance(fingerprint, str):
            raise bad_request("source.fingerprint is required with https")
        fingerprint = fingerprint.replace(":", "").strip().lower()
        if not SHA256_RE.match(fingerprint):
            raise bad_request("source.fingerprint must be a sha256 in hex")
    return _Source(host, port, https, fingerprint if https else None)


def _parse_files(value: object) -> list[_File]:
    if not isinstance(value, list) or not 0 < len(value) <= MAX_PULL_FILES:
        raise bad_request(f"files must be a list of 1 to {MAX_PULL_FILES} files")
    files = []
    for entry in value:
        if not isinstance(entry, dict):
            raise bad_request("each file must be an object")
        source_path = safe_relpath(entry.get("from"))
        spec = validate_upload_spec({k: v for k, v in entry.items() if k != "from"}, time.time())
        files.append(_File(source_path, spec))
    return files
