"""The CMS's client for the node agent protocol (``docs/node-api.md``).

Plain ``requests`` underneath, with:

* kept-alive connections: one ``Session`` per (thread, node address, pin), reused by
  every client built for that node in that thread, so probing thousands of nodes
  does not pay a TCP (and TLS) handshake each time;
* ``(connect, read)`` timeouts on every request;
* automatic retries only where repeating is harmless: any request whose connection
  failed before it was sent, and idempotent ``GET``/``HEAD`` (also on 502/503/504);
* HTTPS pinned by certificate fingerprint (trust on first use): the first contact
  reads the certificate's SHA-256 and reports it through ``on_pin``; afterwards a
  different certificate raises :class:`CertificateChanged`;
* tokens cached per (scheme, host, port, user) so a probe does not log in each time;
  a 401 on a cached token logs in again once.

This module needs no Django: only :func:`client_for` touches the inventory model,
and it does so through the object it is given.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from cms.nodes.errors import (
    CertificateChanged,
    EpochRefused,
    NodeAuthFailed,
    NodeBadResponse,
    NodeError,
    NodeRefused,
    NodeUnreachable,
)

API = "/api/v1"
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 15.0)
UPLOAD_CHUNK = 1024 * 1024
TOKEN_MARGIN = 30.0  # renew a cached token this long before the node expires it

ChunkSource = bytes | BinaryIO | Callable[[int], Iterable[bytes]] | Iterable[bytes]


def normalize_fingerprint(value: str) -> str:
    """Accept ``AB:CD:..`` or ``abcd..`` and return 64 lowercase hex digits."""
    return value.replace(":", "").strip().lower()


def fetch_fingerprint(host: str, port: int, timeout: float = 5.0) -> str:
    """SHA-256 of the certificate a node presents now (the trust-on-first-use read)."""
    try:
        pem = ssl.get_server_certificate((host, port), timeout=timeout)
    except ssl.SSLError as exc:
        raise NodeBadResponse(
            f"{host}:{port} does not answer TLS ({exc.reason or exc}); is HTTPS enabled on "
            "the node?",
            code="tls_error",
        ) from None
    except (OSError, TimeoutError) as exc:
        raise NodeUnreachable(f"cannot connect to {host}:{port}: {_reason(exc)}") from None
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


class _PinnedAdapter(HTTPAdapter):
    """Verifies the peer by its pinned fingerprint instead of a CA chain.

    Self-signed node certificates have no CA to check, so ``cert_reqs`` is off and
    urllib3's ``assert_fingerprint`` does the verification on every new connection.
    """

    def __init__(self, fingerprint: str, **kwargs: Any) -> None:
        self._fingerprint = fingerprint
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["assert_fingerprint"] = self._fingerprint
        kwargs["assert_hostname"] = False
        super().init_poolmanager(*args, **kwargs)


def _retry(retries: int) -> Retry:
    return Retry(
        total=retries,
        connect=retries,  # never sent: safe for every method
        read=retries,
        status=retries,
        other=0,
        allowed_methods=frozenset({"GET", "HEAD"}),  # read/status retries only for these
        status_forcelist=(502, 503, 504),
        backoff_factor=0.2,
        raise_on_status=False,
        respect_retry_after_header=False,
    )


_local = threading.local()
_tokens: dict[tuple[str, str, int, str, str], tuple[str, float]] = {}
_tokens_lock = threading.Lock()


def _session_for(
    scheme: str, host: str, port: int, fingerprint: str | None, retries: int
) -> requests.Session:
    """A kept-alive session per thread and node (sessions are not shared across threads)."""
    sessions: dict = getattr(_local, "sessions", None) or {}
    _local.sessions = sessions
    key = (scheme, host, port, fingerprint, retries)
    session = sessions.get(key)
    if session is None:
        if len(sessions) > 256:  # bound per-thread memory on a very large fleet
            for old in list(sessions)[:128]:
                sessions.pop(old).close()
        session = requests.Session()
        session.trust_env = False  # a node is on the LAN: never through an HTTP proxy
        adapter: HTTPAdapter
        if scheme == "https":
            assert fingerprint
            adapter = _PinnedAdapter(
                fingerprint, max_retries=_retry(retries), pool_connections=1, pool_maxsize=4
            )
            session.verify = False  # the pin replaces CA verification (see _PinnedAdapter)
        else:
            adapter = HTTPAdapter(max_retries=_retry(retries), pool_connections=1, pool_maxsize=4)
        session.mount(f"{scheme}://", adapter)
        sessions[key] = session
    return session


def forget_tokens() -> None:
    """Drop every cached token (tests; or after changing a node's password)."""
    with _tokens_lock:
        _tokens.clear()


@dataclass
class UploadResult:
    path: str
    size: int
    resumed_from: int  # bytes the node already had before this call
    sent: int  # bytes sent by this call
    already_present: bool


class Download:
    """An open streamed download; use as a context manager and iterate ``chunks()``."""

    def __init__(self, response: requests.Response, requested_offset: int) -> None:
        self.response = response
        self.partial = response.status_code == 206
        # If-Range may answer 200 (whole file) when the file changed: start over.
        self.offset = requested_offset if self.partial else 0
        self.etag = response.headers.get("ETag", "")
        self.sha256 = self.etag.strip('"')
        length = int(response.headers.get("Content-Length", "0"))
        content_range = response.headers.get("Content-Range", "")
        self.size = (
            int(content_range.rsplit("/", 1)[1])
            if self.partial and "/" in content_range
            else length
        )
        self.length = length

    def chunks(self, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        try:
            yield from self.response.iter_content(chunk_size)
        except requests.RequestException as exc:
            raise NodeUnreachable(f"download interrupted: {_reason(exc)}") from None

    def close(self) -> None:
        self.response.close()

    def __enter__(self) -> Download:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NodeClient:
    """One node, one admin account. Cheap to create; connections are pooled per thread."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        https: bool = False,
        username: str = "admin",
        password: str = "",
        fingerprint: str | None = None,
        on_pin: Callable[[str], None] | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retries: int = 1,
        cms_host_id: str | None = None,
    ) -> None:
        self.host = host
        self.port = int(port)
        self.https = https
        self.username = username
        self._password = password  # never logged, never in repr
        self._password_digest = hashlib.sha256(password.encode()).hexdigest()[:16]
        self.fingerprint = normalize_fingerprint(fingerprint) if fingerprint else None
        self.on_pin = on_pin
        self.timeout = timeout
        self.retries = retries
        self.cms_host_id = cms_host_id
        self.scheme = "https" if https else "http"
        netloc = f"[{host}]" if ":" in host else host
        self.base_url = f"{self.scheme}://{netloc}:{self.port}{API}"

    def __repr__(self) -> str:
        return f"<NodeClient {self.base_url} user={self.username!r}>"

    # -- plumbing ------------------------------------------------------------

    @property
    def _token_key(self) -> tuple[str, str, int, str, str]:
        # The password is part of the key: a token obtained with an old password must not
        # make a wrong new one look right (Test Connection, probes after an edit).
        return (self.scheme, self.host, self.port, self.username, self._password_digest)

    def pin(self) -> str | None:
        """Make sure HTTPS has a pinned fingerprint; returns it (None for HTTP)."""
        if self.https and not self.fingerprint:
            self.fingerprint = fetch_fingerprint(self.host, self.port, self.timeout[0])
            if self.on_pin:
                self.on_pin(self.fingerprint)
        return self.fingerprint

    def _session(self) -> requests.Session:
        self.pin()
        return _session_for(self.scheme, self.host, self.port, self.fingerprint, self.retries)

    def _send(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: tuple[float, float] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        hdrs = {"Accept": "application/json"}
        if self.cms_host_id:
            hdrs["X-CMS-Host"] = self.cms_host_id
        hdrs.update(headers or {})
        try:
            return self._session().request(
                method,
                self.base_url + path,
                headers=hdrs,
                timeout=timeout or self.timeout,
                allow_redirects=False,
                **kwargs,
            )
        except requests.exceptions.SSLError as exc:
            text = str(exc)
            if "ingerprint" in text:
                actual = ""
                with contextlib.suppress(NodeError):
                    actual = fetch_fingerprint(self.host, self.port, self.timeout[0])
                raise CertificateChanged(
                    f"the TLS certificate of {self.host}:{self.port} changed since it was "
                    f"pinned (pinned {self.fingerprint}, now {actual or 'unknown'}). If the "
                    "node was reinstalled or its certificate renewed on purpose, clear the "
                    "pinned fingerprint to trust the new one; otherwise someone may be "
                    "impersonating the node.",
                    expected=self.fingerprint or "",
                    actual=actual,
                ) from None
            raise NodeBadResponse(
                f"TLS with {self.host}:{self.port} failed: {_reason(exc)}", code="tls_error"
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise NodeUnreachable(f"cannot reach {self.host}:{self.port}: {_reason(exc)}") from None
        except requests.RequestException as exc:
            raise NodeBadResponse(f"{self.host}:{self.port}: {_reason(exc)}") from None

    def login(self) -> str:
        """Log in with the admin password and cache the token."""
        resp = self._send(
            "POST", "/auth/login", json={"username": self.username, "password": self._password}
        )
        if resp.status_code == 200:
            body = _json(resp)
            token, ttl = body.get("token"), body.get("expires_in", 3600)
            if not isinstance(token, str) or not isinstance(ttl, int | float):
                raise NodeBadResponse(
                    "login answer has no token; is this a cms-node?", code="not_a_node"
                )
            with _tokens_lock:
                _tokens[self._token_key] = (token, time.monotonic() + ttl - TOKEN_MARGIN)
            return token
        code, message = _error_of(resp)
        if resp.status_code == 401:
            raise NodeAuthFailed(
                f"{self.host}:{self.port} refused the credentials of {self.username!r}: {message}",
                code="auth_failed",
                status=401,
            )
        if resp.status_code == 429:
            retry = float(resp.headers.get("Retry-After", "1") or 1)
            raise NodeAuthFailed(
                f"too many failed logins on {self.host}:{self.port}; retry in {retry:.0f} s",
                code="too_many_attempts",
                status=429,
                retry_after=retry,
            )
        raise _refusal(resp, code, message)

    def _token(self) -> str:
        with _tokens_lock:
            cached = _tokens.get(self._token_key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        return self.login()

    def _forget_token(self, token: str) -> None:
        with _tokens_lock:
            if _tokens.get(self._token_key, ("",))[0] == token:
                del _tokens[self._token_key]

    def request(
        self,
        method: str,
        path: str,
        *,
        expect: tuple[int, ...] = (200,),
        auth: bool = True,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send an API request; map every failure to a :class:`NodeError`."""
        for attempt in (1, 2):
            hdrs = dict(headers or {})
            token = ""
            if auth:
                token = self._token()
                hdrs["Authorization"] = f"Bearer {token}"
            resp = self._send(method, path, headers=hdrs, **kwargs)
            if resp.status_code == 401 and auth and attempt == 1:
                # Expired or forgotten (node restarted): log in again, once.
                resp.close()
                self._forget_token(token)
                continue
            break
        if resp.status_code in expect:
            return resp
        code, message = _error_of(resp)
        if resp.status_code == 401:
            raise NodeAuthFailed(message, code=code or "auth_failed", status=401)
        raise _refusal(resp, code, message)

    def _get_json(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return _json(self.request("GET", path, **kwargs))

    def _post_json(
        self, path: str, body: dict[str, Any], expect: tuple[int, ...] = (200,), **kwargs: Any
    ) -> dict[str, Any]:
        return _json(self.request("POST", path, json=body, expect=expect, **kwargs))

    # -- identity and health -------------------------------------------------

    def info(self) -> dict[str, Any]:
        """``GET /info`` (no login). Raises NodeBadResponse(code not_a_node) for a stranger."""
        body = _json(self.request("GET", "/info", auth=False))
        if not {"name", "model", "serial", "cms_mode"} <= body.keys():
            raise NodeBadResponse(
                f"{self.host}:{self.port} answers HTTP but not as a cms-node", code="not_a_node"
            )
        return body

    def health(self) -> dict[str, Any]:
        return self._get_json("/health")

    # -- configuration -------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """``{version, cameras, etag}``."""
        resp = self.request("GET", "/config")
        body = _json(resp)
        body["etag"] = resp.headers.get("ETag", "")
        return body

    def put_config(
        self, config: dict[str, Any] | list[dict[str, Any]], etag: str | None = None
    ) -> dict[str, Any]:
        """Replace the cameras. ``etag`` from :meth:`get_config`; None overwrites (``*``)."""
        cameras = config if isinstance(config, list) else config.get("cameras", [])
        resp = self.request(
            "PUT", "/config", json={"cameras": cameras}, headers={"If-Match": etag or "*"}
        )
        body = _json(resp)
        body["etag"] = resp.headers.get("ETag", "")
        return body

    # -- failover ------------------------------------------------------------

    def takeover(
        self,
        epoch: int,
        on_behalf_of: dict[str, str],
        config: dict[str, Any] | list[dict[str, Any]],
    ) -> dict[str, Any]:
        """Start recording ``config`` for ``on_behalf_of`` ({id, name}); fenced by ``epoch``."""
        cameras = config if isinstance(config, list) else config.get("cameras", [])
        return self._post_json(
            "/takeover",
            {"epoch": epoch, "on_behalf_of": on_behalf_of, "config": {"cameras": cameras}},
        )

    def release(self, epoch: int) -> dict[str, Any]:
        return self._post_json("/release", {"epoch": epoch})

    # -- recordings ----------------------------------------------------------

    def recordings_page(
        self, cursor: str | None = None, limit: int = 500, **filters: Any
    ) -> dict[str, Any]:
        params = {k: v for k, v in filters.items() if v is not None}
        params["limit"] = limit
        if cursor:
            params["cursor"] = cursor
        return self._get_json("/recordings", params=params)

    def list_recordings(self, *, limit: int = 500, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every matching file, page after page. Filters: camera, since, until, origin
        (own|failover), on_behalf_of, kind (recording|snapshot)."""
        cursor = None
        while True:
            page = self.recordings_page(cursor, limit, **filters)
            yield from page["items"]
            cursor = page.get("next")
            if not cursor:
                return

    def purge_failover(self, on_behalf_of: str) -> int:
        """Delete every file recorded during a failover for ``on_behalf_of``."""
        return int(self._post_json("/recordings/purge", {"on_behalf_of": on_behalf_of})["deleted"])

    def open_download(self, path: str, offset: int = 0, etag: str | None = None) -> Download:
        """Stream a file from ``offset``. With ``etag``, a changed file restarts at 0."""
        headers = {}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if etag:
                headers["If-Range"] = etag if etag.startswith('"') else f'"{etag}"'
        resp = self.request(
            "GET",
            "/files/" + quote(path, safe="/"),
            headers=headers,
            stream=True,
            expect=(200, 206),
        )
        return Download(resp, offset)

    def delete_file(self, path: str) -> None:
        self.request("DELETE", "/files/" + quote(path, safe="/"), expect=(204,))

    def upload_offset(self, upload_id: str) -> int:
        resp = self.request("HEAD", f"/uploads/{upload_id}")
        try:
            return int(resp.headers["Upload-Offset"])
        except (KeyError, ValueError):
            raise NodeBadResponse("upload status without Upload-Offset") from None

    def upload(
        self,
        path: str,
        source: ChunkSource,
        size: int,
        sha256: str,
        *,
        kind: str = "recording",
        camera: str = "unknown",
        origin: str = "own",
        on_behalf_of: str | None = None,
        start: str | float | None = None,
        end: str | float | None = None,
        max_attempts: int = 5,
        chunk_size: int = UPLOAD_CHUNK,
    ) -> UploadResult:
        """Upload resumably: an interrupted transfer continues where the node stopped.

        ``source`` is bytes, a seekable binary file, a callable ``offset -> chunks``
        (e.g. ``lambda off: other.open_download(p, off).chunks()``), or an iterable
        of chunks (resumable only by skipping, once). The node verifies size and
        sha256 before it keeps the file; a mismatch raises NodeRefused
        (``checksum_mismatch``) and nothing is kept.
        """
        spec: dict[str, Any] = {
            "path": path,
            "size": size,
            "sha256": sha256,
            "kind": kind,
            "camera": camera,
            "origin": origin,
            "on_behalf_of": on_behalf_of,
        }
        if start is not None:
            spec["start"] = start
        if end is not None:
            spec["end"] = end
        status = self._post_json("/uploads", spec, expect=(200, 201))
        if status.get("complete"):
            return UploadResult(path, size, size, 0, already_present=True)
        upload_id, offset = status["id"], int(status["offset"])
        resumed_from, sent = offset, 0
        opener = _opener(source, chunk_size)
        for attempt in range(1, max_attempts + 1):
            try:
                body = _counting(opener(offset))
                resp = self.request(
                    "PATCH",
                    f"/uploads/{upload_id}",
                    data=body,
                    headers={
                        "Upload-Offset": str(offset),
                        "Content-Type": "application/offset+octet-stream",
                    },
                    expect=(200,),
                )
                sent += body.count
                result = _json(resp)
                if result.get("complete"):
                    return UploadResult(path, size, resumed_from, sent, already_present=False)
                offset = int(result["offset"])
                raise NodeBadResponse(
                    f"the source gave only {offset} of {size} bytes for {path}",
                    code="short_source",
                )
            except NodeRefused as exc:
                if exc.code != "offset_mismatch" or attempt == max_attempts:
                    raise
                offset = self.upload_offset(upload_id)
            except NodeUnreachable:
                if attempt == max_attempts:
                    raise
                time.sleep(min(2.0, 0.2 * attempt))
                offset = self.upload_offset(upload_id)
        raise NodeUnreachable(f"upload of {path} did not finish after {max_attempts} attempts")

    # -- licenses ------------------------------------------------------------

    def licenses(self) -> list[dict[str, Any]]:
        return self._get_json("/licenses")["licenses"]

    def install_license(self, key: str, cameras: int = 1) -> dict[str, Any]:
        return self._post_json("/licenses", {"key": key, "cameras": cameras}, expect=(201,))

    def remove_license(self, key: str) -> None:
        self.request("DELETE", "/licenses/" + quote(key, safe=""), expect=(204,))

    def replace_licenses(self, licenses: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = {"licenses": [{"key": x["key"], "cameras": x.get("cameras", 1)} for x in licenses]}
        return _json(self.request("PUT", "/licenses", json=body))["licenses"]

    # -- CMS service and faults ----------------------------------------------

    def enable_cms(
        self, mode: str, *, refuse_other_hosts: bool = False, refuse_local_changes: bool = False
    ) -> dict[str, Any]:
        """Enable the CMS service in ``mode`` (recording|failover) and pair with this host."""
        if not self.cms_host_id:
            raise ValueError("enable_cms needs cms_host_id (the X-CMS-Host identity)")
        return self._post_json(
            "/cms/enable",
            {
                "username": self.username,
                "password": self._password,
                "mode": mode,
                "lock": {
                    "refuse_other_hosts": refuse_other_hosts,
                    "refuse_local_changes": refuse_local_changes,
                },
            },
            auth=False,
        )

    def disable_cms(self) -> dict[str, Any]:
        return self._post_json("/cms/disable", {})

    def set_fault(self, kind: str) -> dict[str, Any]:
        """Demo/test faults: ``volume``, ``service`` or ``clear``."""
        return self._post_json("/fault", {"kind": kind})


# -- helpers ----------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    """A short human reason from a requests/urllib3 exception chain."""
    text = str(exc)
    for marker in (
        "Connection refused",
        "timed out",
        "Name or service not known",
        "No route to host",
        "Connection reset",
        "Remote end closed",
        "Temporary failure in name resolution",
        "certificate",
        "wrong version",
    ):
        if marker.lower() in text.lower():
            return marker.lower()
    return text[:200]


def _json(resp: requests.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        raise NodeBadResponse(
            f"HTTP {resp.status_code} answer is not JSON; is this a cms-node?", code="not_a_node"
        ) from None
    if not isinstance(body, dict):
        raise NodeBadResponse("answer is not a JSON object", code="not_a_node")
    return body


def _error_of(resp: requests.Response) -> tuple[str | None, str]:
    try:
        err = resp.json()["error"]
        return str(err["code"]), str(err.get("message", ""))
    except (ValueError, KeyError, TypeError):
        return None, f"HTTP {resp.status_code} {resp.reason or ''}".strip()


def _refusal(resp: requests.Response, code: str | None, message: str) -> NodeError:
    status = resp.status_code
    if code is None:
        return NodeBadResponse(
            f"{message} without the node's error format; is this a cms-node?",
            code="not_a_node",
            status=status,
        )
    if code == "stale_epoch":
        try:
            newest = int(resp.json()["error"].get("newest_epoch"))
        except (ValueError, TypeError, KeyError):
            newest = None
        return EpochRefused(message, newest_epoch=newest, status=status)
    if status >= 500:
        return NodeBadResponse(message, code=code, status=status)
    return NodeRefused(message, code=code, status=status)


class _counting:
    """Wraps the body iterator to count what requests actually consumed."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self.count = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._it:
            self.count += len(chunk)
            yield chunk


def _opener(source: ChunkSource, chunk_size: int) -> Callable[[int], Iterable[bytes]]:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        return lambda off: (data[i : i + chunk_size] for i in range(off, len(data), chunk_size))
    if callable(source):
        return source
    if isinstance(source, io.IOBase) or hasattr(source, "seek"):
        fh: Any = source

        def from_file(off: int) -> Iterator[bytes]:
            fh.seek(off)
            while chunk := fh.read(chunk_size):
                yield chunk

        return from_file
    iterator = iter(source)  # a plain iterable: resumable only forward, by skipping
    consumed = {"n": 0}

    def from_iter(off: int) -> Iterator[bytes]:
        if consumed["n"] > off:
            raise NodeError("cannot rewind an iterable source; pass a callable or a file")
        for chunk in iterator:
            start = consumed["n"]
            consumed["n"] += len(chunk)
            if consumed["n"] <= off:
                continue
            yield chunk[max(0, off - start) :]

    return from_iter


def resolve_quickconnect_http(
    directory_url: str, qc_id: str, timeout: float = 5.0
) -> tuple[str, int]:
    """Resolve a QuickConnect ID through a directory over HTTP (outside Django)."""
    try:
        resp = requests.get(
            f"{directory_url.rstrip('/')}/resolve/{quote(qc_id, safe='')}", timeout=timeout
        )
    except requests.RequestException as exc:
        raise NodeUnreachable(f"QuickConnect directory unreachable: {_reason(exc)}") from None
    if resp.status_code == 404:
        raise NodeUnreachable(
            f"QuickConnect ID {qc_id!r} is not registered", code="quickconnect_unknown"
        )
    body = _json(resp)
    return str(body["host"]), int(body["port"])


def client_for(
    server: Any,
    *,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    retries: int = 1,
    cms_host_id: str | None = None,
    pin: bool = True,
) -> NodeClient:
    """Build a client from an inventory ``Server`` (or any object with its fields).

    QuickConnect IDs are resolved through this CMS host's directory (always plain
    HTTP, as the product says). A fingerprint seen at first contact is saved on the
    server with a compare-and-set, so two workers racing agree on the first pin.
    """
    password = server.admin_password
    password = password.reveal() if hasattr(password, "reveal") else (password or "")
    if cms_host_id is None:
        cms_host_id = _settings_host_id()
    if getattr(server, "connection_type", "address") == "quickconnect":
        from cms.nodes.directory import resolve

        host, port = resolve(server.quickconnect_id)
        https, fingerprint = False, None
    else:
        host, port = server.host, server.port
        https, fingerprint = bool(server.use_https), (server.tls_fingerprint or None)

    def save_pin(fp: str) -> None:
        if not pin:  # Test Connection: report the fingerprint, change nothing
            return
        server.tls_fingerprint = fp
        if getattr(server, "pk", None):
            type(server).objects.filter(pk=server.pk, tls_fingerprint="").update(tls_fingerprint=fp)

    return NodeClient(
        host,
        port,
        https=https,
        username=server.admin_username or "admin",
        password=password,
        fingerprint=fingerprint,
        on_pin=save_pin,
        timeout=timeout,
        retries=retries,
        cms_host_id=cms_host_id,
    )


def _settings_host_id() -> str | None:
    try:
        from django.conf import settings

        return getattr(settings, "CMS_HOST_ID", None) or None
    except Exception:  # Django not configured: the client works without it
        return None


__all__ = [
    "DEFAULT_TIMEOUT",
    "Download",
    "NodeClient",
    "UploadResult",
    "client_for",
    "fetch_fingerprint",
    "forget_tokens",
    "normalize_fingerprint",
    "resolve_quickconnect_http",
]
