"""The CMS's client for the node agent protocol (``docs/node-api.md``).

Plain ``requests`` underneath, with:

* kept-alive connections: one ``Session`` per (thread, node address, pin), reused by
  every client built for that node in that thread, so a failover's many calls to one
  node do not pay a TCP (and TLS) handshake each time (health probes do not come
  through here: they go through the asynchronous prober, ``prober.py``);
* ``(connect, read)`` timeouts on every request, and an overall deadline per call
  (``deadline``, default 20 s; see ``transport.py`` for how a dripping node is cut off);
* bounded answers: JSON bodies over 1 MiB or nested over 32 levels are refused before
  parsing, and every answer is validated against its model in ``protocol.messages``
  (:class:`NodeBadAnswer` says which field is wrong); listings are capped per page
  and in pages;
* automatic retries only where repeating is harmless: any request whose connection
  failed before it was sent, and idempotent ``GET``/``HEAD`` (also on 502/503/504);
* HTTPS pinned by certificate fingerprint (trust on first use): the first contact
  reads the certificate's SHA-256 and reports it through ``on_pin``; afterwards a
  different certificate raises :class:`CertificateChanged`;
* a SCRAM-SHA-256 login (``protocol.scram``): the password never travels, and a peer
  that cannot prove it holds the node's verifier gets no further;
* identity: with the serial fixed when the server was added, ``/info`` is read before
  anything else is sent, and another serial raises :class:`IdentityChanged`;
* with the pairing key, every authenticated request is signed and every epoch proven
  (what a locked node requires);
* tokens cached per (scheme, host, port, user) so a call does not log in each time;
  a 401 on a cached token logs in again once.

This module needs no Django: only :func:`client_for` touches the inventory model,
and it does so through the object it is given.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar
from urllib.parse import quote, urlsplit

import requests
import urllib3.exceptions

from cms.nodes.errors import (
    CertificateChanged,
    EpochRefused,
    EpochUnproven,
    IdentityChanged,
    NodeAuthFailed,
    NodeBadAnswer,
    NodeBadResponse,
    NodeError,
    NodeRefused,
    NodeUnreachable,
)
from cms.nodes.transport import (
    Call,
    DeadlinePassed,
    Watchdog,
    allowed,
    deadline,
    read_body,
    session_for,
    shutdown,
    time_left,
)
from protocol import BadAnswer, grants, loads_bounded, scram, validate
from protocol.limits import MAX_LISTING_PAGES, MAX_PAGE_ITEMS
from protocol.messages import (
    Answer,
    Config,
    ErrorAnswer,
    FaultsAnswer,
    Health,
    Info,
    License,
    Licenses,
    PeerProbeAnswer,
    PullStatus,
    PurgeAnswer,
    RecordingsPage,
    ScramFinishAnswer,
    ScramStartAnswer,
    StandbyEntry,
    StandbyList,
    TakeoverAnswer,
    UploadStatus,
)

A = TypeVar("A", bound=Answer)

API = "/api/v1"
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 15.0)
DEFAULT_DEADLINE = 20.0  # seconds for one call, login and retries included
UPLOAD_CHUNK = 1024 * 1024
TOKEN_MARGIN = 30.0  # renew a cached token this long before the node expires it

ChunkSource = bytes | BinaryIO | Callable[[int], Iterable[bytes]] | Iterable[bytes]


def normalize_fingerprint(value: str) -> str:
    """Accept ``AB:CD:..`` or ``abcd..`` and return 64 lowercase hex digits."""
    return value.replace(":", "").strip().lower()


def fetch_fingerprint(host: str, port: int, timeout: float = 5.0) -> str:
    """SHA-256 of the certificate a node presents now (the trust-on-first-use read).

    Bounded like every call: a peer that drips its handshake is cut off when
    ``timeout`` (or an enclosing deadline) passes.
    """
    with deadline(timeout):
        left = time_left() or 0.0
        if left <= 0:
            raise NodeUnreachable(f"no time left to reach {host}:{port}")
        end = time.monotonic() + left
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # reading the certificate is the point
        expired = threading.Event()
        watchdog = None
        try:
            with socket.create_connection((host, port), timeout=left) as raw:

                def cut_off() -> None:
                    expired.set()
                    shutdown(raw)

                watchdog = Watchdog(end, cut_off)
                with context.wrap_socket(raw, server_hostname=host) as tls:
                    der = tls.getpeercert(binary_form=True)
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            if expired.is_set() or isinstance(exc, TimeoutError):
                raise NodeUnreachable(
                    f"{host}:{port} did not finish the TLS handshake within {left:g} s"
                ) from None
            if isinstance(exc, ssl.SSLError):
                raise NodeBadResponse(
                    f"{host}:{port} does not answer TLS ({exc.reason or exc}); is HTTPS "
                    "enabled on the node?",
                    code="tls_error",
                ) from None
            raise NodeUnreachable(f"cannot connect to {host}:{port}: {_reason(exc)}") from None
        finally:
            if watchdog is not None:
                watchdog.stop()
    if not der:
        raise NodeBadResponse(f"{host}:{port} presented no certificate", code="tls_error")
    return hashlib.sha256(der).hexdigest()


_tokens: dict[tuple[str, str, int, str, str], tuple[str, float]] = {}
_tokens_lock = threading.Lock()


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
        length = _header_int("Content-Length", response.headers.get("Content-Length", "0"))
        content_range = response.headers.get("Content-Range", "")
        self.size = (
            _header_int("Content-Range", content_range.rsplit("/", 1)[1])
            if self.partial and "/" in content_range
            else length
        )
        self.length = length

    def chunks(self, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        # Files are not size-capped (recordings are large) and each read is bounded by
        # the read timeout; the restoration verifies size and sha256 at the end.
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
        deadline: float | None = DEFAULT_DEADLINE,
        serial: str | None = None,
        pairing_key: bytes | None = None,
        on_pair: Callable[[bytes, str], None] | None = None,
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
        self.deadline = deadline
        self.serial = serial or None  # the identity fixed when the server was added
        self._pairing_key = pairing_key or None  # never logged, never in repr
        self.on_pair = on_pair
        self._identity_checked = False
        self._last_login: scram.ScramLogin | None = None
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
        return session_for(self.scheme, self.host, self.port, self.fingerprint, self.retries)

    def _send(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: tuple[float, float] | None = None,
        stream: bool = False,
        **kwargs: Any,
    ) -> requests.Response:
        """One HTTP exchange within the current deadline; the body is read (bounded)
        unless ``stream``, in which case only the status and headers are waited for."""
        hdrs = {"Accept": "application/json", "Accept-Encoding": "identity"}
        if self.cms_host_id:
            hdrs["X-CMS-Host"] = self.cms_host_id
        hdrs.update(headers or {})
        session = self._session()  # pins first: the pin has its own bounded TLS read
        connect, read = timeout or self.timeout
        try:
            with Call() as call:
                try:
                    resp = session.request(
                        method,
                        self.base_url + path,
                        headers=hdrs,
                        timeout=call.timeouts(connect, read),
                        allow_redirects=False,
                        stream=True,
                        **kwargs,
                    )
                except requests.RequestException as exc:
                    if call.out_of_time:
                        raise DeadlinePassed from None
                    raise self._transport_error(exc) from None
                if stream and resp.status_code < 300:
                    return resp  # a file: its chunks are read by the caller
                return self._read(resp, path, call)
        except DeadlinePassed:
            raise NodeUnreachable(
                f"{self.host}:{self.port} did not answer {path} within {_seconds(allowed())}"
            ) from None

    def _read(self, resp: requests.Response, path: str, call: Call) -> requests.Response:
        """Read the body under the size cap; a body still coming at the deadline is cut."""
        try:
            body = read_body(resp)
        except BadAnswer as exc:
            resp.close()  # never put a half-read connection back in the pool
            raise NodeBadAnswer(f"bad answer to {path}: {exc}") from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            resp.close()
            if not call.expired:
                raise NodeUnreachable(
                    f"the answer of {self.host}:{self.port} to {path} broke off: {_reason(exc)}"
                ) from None
            body = b""
        if call.expired:
            resp.close()
            raise NodeBadAnswer(
                f"bad answer to {path}: it did not finish within {_seconds(allowed())}"
            )
        # Later reads (resp.content, resp.json()) see the bounded bytes, never the socket.
        resp._content = body
        resp._content_consumed = True
        return resp

    def _transport_error(self, exc: requests.RequestException) -> NodeError:
        if isinstance(exc, requests.exceptions.SSLError):
            text = str(exc)
            if "ingerprint" in text:
                actual = ""
                with contextlib.suppress(NodeError):
                    actual = fetch_fingerprint(self.host, self.port, self.timeout[0])
                return CertificateChanged(
                    f"the TLS certificate of {self.host}:{self.port} changed since it was "
                    f"pinned (pinned {self.fingerprint}, now {actual or 'unknown'}). If the "
                    "node was reinstalled or its certificate renewed on purpose, clear the "
                    "pinned fingerprint to trust the new one; otherwise someone may be "
                    "impersonating the node.",
                    expected=self.fingerprint or "",
                    actual=actual,
                )
            return NodeBadResponse(
                f"TLS with {self.host}:{self.port} failed: {_reason(exc)}", code="tls_error"
            )
        if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return NodeUnreachable(f"cannot reach {self.host}:{self.port}: {_reason(exc)}")
        return NodeBadResponse(f"{self.host}:{self.port}: {_reason(exc)}")

    def check_identity(self) -> None:
        """Before anything with a secret goes out: the node answering must have the serial
        the server was added with. Once per client (a client serves one operation)."""
        if not self.serial or self._identity_checked:
            return
        actual = self.info().get("serial", "")
        if actual != self.serial:
            raise IdentityChanged(
                f"{self.host}:{self.port} answers as serial {actual!r}, not {self.serial!r}, "
                "the server that was added at this address: nothing was sent to it. If the "
                "node was replaced on purpose, add it again.",
                expected=self.serial,
                actual=actual,
            )
        self._identity_checked = True

    def login(self) -> str:
        """Log in by SCRAM-SHA-256 (the password does not travel) and cache the token."""
        with deadline(self.deadline):
            self.check_identity()
            exchange = scram.ScramLogin(self.username, self._password)
            resp = self._send("POST", "/auth/scram/start", json=exchange.start())
            if resp.status_code == 200:
                start = _answer(ScramStartAnswer, resp, "/auth/scram/start")
                if self.serial and start.serial not in (None, self.serial):
                    raise IdentityChanged(
                        f"{self.host}:{self.port} logs in as serial {start.serial!r}, not "
                        f"{self.serial!r}",
                        expected=self.serial,
                        actual=start.serial or "",
                    )
                try:
                    final = exchange.finish(start.session, start.server_first)
                except scram.ScramFailed as exc:
                    raise NodeBadAnswer(f"bad answer to /auth/scram/start: {exc}") from None
                resp = self._send("POST", "/auth/scram/finish", json=final)
        if resp.status_code == 200:
            answer = _answer(ScramFinishAnswer, resp, "/auth/scram/finish")
            try:
                exchange.verify(answer.server_final)
            except scram.ScramFailed as exc:
                # Whoever answers does not hold the node's verifier: its token is worthless
                # and nothing more goes to it.
                raise NodeAuthFailed(
                    f"{self.host}:{self.port} is not the node it claims to be: {exc}",
                    code="node_unproven",
                    status=200,
                ) from None
            self._last_login = exchange
            with _tokens_lock:
                _tokens[self._token_key] = (
                    answer.token,
                    time.monotonic() + answer.expires_in - TOKEN_MARGIN,
                )
            return answer.token
        code, message, extra = _error_of(resp)
        if code is None and resp.status_code in (404, 405):
            raise NodeBadResponse(
                f"{self.host}:{self.port} has no SCRAM login; is this a cms-node?",
                code="not_a_node",
                status=resp.status_code,
            )
        if resp.status_code == 401:
            raise NodeAuthFailed(
                f"{self.host}:{self.port} refused the credentials of {self.username!r}: {message}",
                code="auth_failed",
                status=401,
            )
        if resp.status_code == 429:
            retry = _retry_after(resp)
            raise NodeAuthFailed(
                f"too many failed logins on {self.host}:{self.port}; retry in {retry:.0f} s",
                code="too_many_attempts",
                status=429,
                retry_after=retry,
            )
        raise _refusal(resp, code, message, extra)

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
        bounded: bool = True,
        **kwargs: Any,
    ) -> requests.Response:
        """Send an API request; map every failure to a :class:`NodeError`.

        The login, the request and a re-login after a 401 share the client's deadline;
        ``bounded=False`` (an upload's body) keeps only an enclosing one.
        """
        if "json" in kwargs:  # serialised here: a signature covers these exact bytes
            kwargs["data"] = json.dumps(kwargs.pop("json"), separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        with deadline(self.deadline if bounded else None):
            for attempt in (1, 2):
                hdrs = dict(headers or {})
                token = ""
                if auth:
                    self.check_identity()
                    token = self._token()
                    hdrs["Authorization"] = f"Bearer {token}"
                    if self._pairing_key:
                        hdrs.update(self._signature(method, path, kwargs.get("data"), token))
                resp = self._send(method, path, headers=hdrs, **kwargs)
                if resp.status_code == 401 and auth and attempt == 1:
                    # Expired or forgotten (node restarted): log in again, once.
                    resp.close()
                    self._forget_token(token)
                    continue
                break
        if resp.status_code in expect:
            return resp
        code, message, extra = _error_of(resp)
        if resp.status_code == 401:
            raise NodeAuthFailed(message, code=code or "auth_failed", status=401)
        raise _refusal(resp, code, message, extra)

    def _signature(self, method: str, path: str, data: Any, token: str) -> dict[str, str]:
        """``X-CMS-*`` headers: HMAC with the pairing key over method, raw path, body
        digest, time, a fresh nonce and the token (a locked node checks all of them)."""
        assert self._pairing_key is not None
        raw_path = urlsplit(requests.utils.requote_uri(self.base_url + path)).path
        if data is None:
            digest = scram.body_digest(b"")
        elif isinstance(data, bytes):
            digest = scram.body_digest(data)
        else:  # a streamed upload chunk: fixed by the signed POST /uploads (its sha256)
            digest = scram.UNSIGNED_PAYLOAD
        stamp, nonce = f"{time.time():.3f}", secrets.token_hex(16)
        return {
            scram.HEADER_TIME: stamp,
            scram.HEADER_NONCE: nonce,
            scram.HEADER_SIGNATURE: scram.request_signature(
                self._pairing_key, method, raw_path, digest, stamp, nonce, token
            ),
        }

    def _get(self, model: type[A], path: str, **kwargs: Any) -> A:
        return _answer(model, self.request("GET", path, **kwargs), path)

    def _post(
        self,
        model: type[A],
        path: str,
        body: dict[str, Any],
        expect: tuple[int, ...] = (200,),
        **kwargs: Any,
    ) -> A:
        return _answer(model, self.request("POST", path, json=body, expect=expect, **kwargs), path)

    # -- identity and health -------------------------------------------------

    def info(self) -> dict[str, Any]:
        """``GET /info`` (no login). Raises NodeBadResponse(code not_a_node) for a stranger."""
        resp = self.request("GET", "/info", auth=False)
        stranger = NodeBadResponse(
            f"{self.host}:{self.port} answers HTTP but not as a cms-node", code="not_a_node"
        )
        try:
            body = loads_bounded(resp.content)
        except BadAnswer:
            raise stranger from None
        if not isinstance(body, dict) or not {"name", "model", "serial", "cms_mode"} <= body.keys():
            raise stranger
        return _validated(Info, body, "/info").to_json()

    def health(self) -> dict[str, Any]:
        """``GET /health``, validated (``protocol.messages.Health``)."""
        return self._get(Health, "/health").to_json()

    # -- configuration -------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """``{version, cameras, etag}``."""
        resp = self.request("GET", "/config")
        body = _answer(Config, resp, "/config").to_json()
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
        body = _answer(Config, resp, "/config").to_json()
        body["etag"] = resp.headers.get("ETag", "")
        return body

    # -- failover ------------------------------------------------------------

    def takeover(
        self,
        epoch: int,
        on_behalf_of: dict[str, str],
        config: dict[str, Any] | list[dict[str, Any]] | None = None,
        *,
        config_version: str | None = None,
    ) -> dict[str, Any]:
        """Start recording ``config`` for ``on_behalf_of`` ({id, name}); fenced by ``epoch``,
        which carries this CMS's proof (HMAC with the pairing key).

        With ``config_version`` instead of ``config`` the node records the standby
        configuration it holds for that owner (:meth:`put_standby`): NodeRefused with code
        ``standby_missing`` or ``standby_stale`` when it holds none or another version.

        The protocol's ``on_behalf_of`` id is what the CMS calls the event's node tag."""
        proof = self._epoch_proof(epoch, "takeover")
        body: dict[str, Any] = {"epoch": epoch, "proof": proof, "on_behalf_of": on_behalf_of}
        if config_version is not None:
            body["config_version"] = config_version
        else:
            cameras = config if isinstance(config, list) else (config or {}).get("cameras", [])
            body["config"] = {"cameras": cameras}
        return self._post(TakeoverAnswer, "/takeover", body).to_json()

    # -- standby configurations (a failover node) ----------------------------

    def put_standby(self, owner: str, name: str, config: dict[str, Any]) -> dict[str, Any]:
        """Have the node hold ``config`` ({version, cameras}) for ``owner`` (a node tag)."""
        body = {
            "name": name,
            "config": {"version": config["version"], "cameras": config.get("cameras", [])},
        }
        resp = self.request("PUT", f"/standby/{quote(owner, safe='')}", json=body)
        return _answer(StandbyEntry, resp, "/standby").to_json()

    def delete_standby(self, owner: str) -> bool:
        """Forget what the node holds for ``owner``; False when it held nothing."""
        resp = self.request("DELETE", f"/standby/{quote(owner, safe='')}", expect=(204, 404))
        return resp.status_code == 204

    def list_standby(self) -> list[dict[str, Any]]:
        """``[{id, name, version}]``: the standby configurations the node holds."""
        return self._get(StandbyList, "/standby").to_json()["items"]

    def release(self, epoch: int) -> dict[str, Any]:
        proof = self._epoch_proof(epoch, "release")
        return self._post(TakeoverAnswer, "/release", {"epoch": epoch, "proof": proof}).to_json()

    def _epoch_proof(self, epoch: int, action: str) -> str:
        """A node accepts an epoch only from the CMS it is paired with. A server this CMS
        holds no pairing key for (added before pairing keys, or enabled on the node
        itself) is paired first, in the mode and lock it has now."""
        self.ensure_paired()
        assert self._pairing_key is not None
        serial = self.serial or self.info()["serial"]
        return scram.epoch_proof(self._pairing_key, epoch, serial, action)

    def ensure_paired(self) -> None:
        """Pair a server this CMS holds no pairing key for (added before pairing keys, or
        enabled on the node itself), in the mode and lock it has now."""
        if self._pairing_key:
            return
        info = self.info()
        if info["cms_mode"] not in ("recording", "failover"):
            raise NodeRefused(f"{self.host}:{self.port} has no CMS service enabled",
                              code="wrong_mode")  # fmt: skip
        locked = bool(info.get("locked"))
        self.enable_cms(info["cms_mode"], refuse_other_hosts=locked, refuse_local_changes=locked)

    # -- recordings ----------------------------------------------------------

    def recordings_page(
        self, cursor: str | None = None, limit: int = 500, **filters: Any
    ) -> dict[str, Any]:
        """One page: ``{items, next}``. A page longer than ``limit`` is refused."""
        if not 1 <= limit <= MAX_PAGE_ITEMS:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_ITEMS}")
        params = {k: v for k, v in filters.items() if v is not None}
        params["limit"] = limit
        if cursor:
            params["cursor"] = cursor
        page = self._get(RecordingsPage, "/recordings", params=params)
        if len(page.items) > limit:
            raise NodeBadAnswer(
                f"bad answer to /recordings: a page of {len(page.items)} items, "
                f"more than the {limit} asked for"
            )
        return page.to_json()

    def list_recordings(
        self, *, limit: int = 500, max_pages: int = MAX_LISTING_PAGES, **filters: Any
    ) -> Iterator[dict[str, Any]]:
        """Every matching file, page after page. Filters: camera, since, until, origin
        (own|failover), on_behalf_of, kind (recording|snapshot).

        A listing that does not end within ``max_pages``, or that hands back a cursor it
        gave before (a loop), is refused with :class:`NodeBadAnswer`.
        """
        cursor = None
        seen: set[str] = set()
        for _ in range(max_pages):
            page = self.recordings_page(cursor, limit, **filters)
            yield from page["items"]
            cursor = page.get("next")
            if not cursor:
                return
            if cursor in seen:
                raise NodeBadAnswer("bad answer to /recordings: the listing goes round in a loop")
            seen.add(cursor)
        raise NodeBadAnswer(
            f"bad answer to /recordings: the listing did not end after {max_pages} pages"
        )

    def purge_failover(self, node_tag: str) -> int:
        """Delete every file recorded during a failover for the recording server that
        ``node_tag`` stands for; how many it removed."""
        return self.purge_failover_report(node_tag)["deleted"]

    def purge_failover_report(self, node_tag: str) -> dict[str, Any]:
        """``purge_failover``, with what it could not remove: ``{"deleted", "failed",
        "error"}`` (the first reason; an older agent reports no failures)."""
        body = {"on_behalf_of": node_tag}
        return self._post(PurgeAnswer, "/recordings/purge", body).to_json()

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

    def transfer_source(self) -> dict[str, Any]:
        """Where another agent reaches this one to pull restored files: its address and
        the certificate pin this CMS holds (the other agent checks it)."""
        return {"host": self.host, "port": self.port, "https": self.https,
                "fingerprint": self.pin()}  # fmt: skip

    def restoration_grant(self, on_behalf_of: str, epoch: int, paths: list[str]) -> str:
        """A short-lived, single-use grant to pull ``paths`` from this agent, signed with
        its pairing key (which never leaves this process): see ``protocol.grants``."""
        self.ensure_paired()
        assert self._pairing_key is not None
        serial = self.serial or self.info()["serial"]
        return grants.sign_grant(
            self._pairing_key, serial=serial, on_behalf_of=on_behalf_of, epoch=epoch,
            paths=paths,
        )  # fmt: skip

    def start_pull(
        self, source: dict[str, Any], grant: str, files: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Make this agent pull ``files`` from the agent at ``source`` with ``grant``.
        A 502 ``source_unreachable`` says the two agents cannot reach each other."""
        body = {"source": source, "grant": grant, "files": files}
        return self._post(PullStatus, "/pulls", body, expect=(201,)).to_json()

    def pull_status(self, pull_id: str, after: int | None = None, wait: int = 0) -> dict[str, Any]:
        """The pull's progress; with ``after`` (a ``version`` it gave), answered once a
        file or the pull ended since, or after ``wait`` seconds."""
        params = {"after": after, "wait": wait} if after is not None else None
        path = f"/pulls/{quote(pull_id, safe='')}"
        return self._get(PullStatus, path, params=params).to_json()

    def cancel_pull(self, pull_id: str) -> None:
        self.request("DELETE", f"/pulls/{quote(pull_id, safe='')}", expect=(204,))

    def delete_file(self, path: str) -> None:
        self.request("DELETE", "/files/" + quote(path, safe="/"), expect=(204,))

    def upload_offset(self, upload_id: str) -> int:
        resp = self.request("HEAD", f"/uploads/{upload_id}")
        try:
            offset = int(resp.headers["Upload-Offset"])
        except (KeyError, ValueError):
            raise NodeBadAnswer("upload status without a valid Upload-Offset") from None
        if offset < 0:
            raise NodeBadAnswer("upload status with a negative Upload-Offset")
        return offset

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
        status = self._post(UploadStatus, "/uploads", spec, expect=(200, 201))
        if status.complete:
            return UploadResult(path, size, size, 0, already_present=True)
        if status.id is None:
            raise NodeBadAnswer("bad answer to /uploads: an unfinished upload without an id")
        upload_id, offset = status.id, status.offset
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
                    bounded=False,  # as long as the file takes; each read has its timeout
                )
                sent += body.count
                result = _answer(UploadStatus, resp, "/uploads")
                if result.complete:
                    return UploadResult(path, size, resumed_from, sent, already_present=False)
                offset = result.offset
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
        return self._get(Licenses, "/licenses").to_json()["licenses"]

    def install_license(self, key: str, cameras: int = 1) -> dict[str, Any]:
        return self._post(
            License, "/licenses", {"key": key, "cameras": cameras}, expect=(201,)
        ).to_json()

    def remove_license(self, key: str) -> None:
        self.request("DELETE", "/licenses/" + quote(key, safe=""), expect=(204,))

    def replace_licenses(self, licenses: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = {"licenses": [{"key": x["key"], "cameras": x.get("cameras", 1)} for x in licenses]}
        resp = self.request("PUT", "/licenses", json=body)
        return _answer(Licenses, resp, "/licenses").to_json()["licenses"]

    # -- CMS service and faults ----------------------------------------------

    def enable_cms(
        self, mode: str, *, refuse_other_hosts: bool = False, refuse_local_changes: bool = False
    ) -> dict[str, Any]:
        """Enable the CMS service in ``mode`` (recording|failover) and pair with this host.

        After a fresh SCRAM login, the pairing key (this client's, or a new random one)
        goes to the node wrapped under a key derived from the node's ServerKey, which
        only the CMS knowing the password and the node holding the verifier can compute.
        ``on_pair`` gets the key to store; a locked node takes this only when signed with
        the key it already has."""
        if not self.cms_host_id:  # a label the node shows, not a credential
            self.cms_host_id = pairing_host_id()
        with deadline(self.deadline):
            self.check_identity()
            self.login()  # a session of its own: its SCRAM values give the ServerKey
            exchange = self._last_login
            assert exchange is not None
            serial = self.serial or self.info()["serial"]
            key = self._pairing_key or scram.new_pairing_key()
            info = self._post(
                Info,
                "/cms/enable",
                {
                    "mode": mode,
                    "lock": {
                        "refuse_other_hosts": refuse_other_hosts,
                        "refuse_local_changes": refuse_local_changes,
                    },
                    "pairing": scram.wrap_pairing_key(key, exchange.server_key(), serial),
                },
            ).to_json()
        self._pairing_key = key
        if self.on_pair:
            self.on_pair(key, info["serial"])
        return info

    def disable_cms(self) -> dict[str, Any]:
        return self._post(Info, "/cms/disable", {}).to_json()

    # -- a second opinion ----------------------------------------------------

    def probe_peer(
        self, address: str, *, https: bool, serial: str, timeout: float
    ) -> dict[str, Any]:
        """Ask this node to GET another node's public ``/info`` at ``address``
        (``host:port``) within ``timeout`` (at most 2 s): ``{reachable, serial,
        latency_ms, error}``. No credential of the other node is sent anywhere."""
        body = {"address": address, "https": https, "serial": serial, "timeout": timeout}
        return self._post(PeerProbeAnswer, "/peers/probe", body).to_json()

    def set_fault(self, kind: str) -> dict[str, Any]:
        """Demo/test faults: ``volume``, ``service`` or ``clear``."""
        return self._post(FaultsAnswer, "/fault", {"kind": kind}).to_json()


# -- helpers ----------------------------------------------------------------


def _answer(model: type[A], resp: requests.Response, path: str) -> A:
    """The (already bounded) body of ``resp`` as ``model``, or NodeBadAnswer."""
    try:
        body = loads_bounded(resp.content)
    except BadAnswer as exc:
        raise NodeBadAnswer(f"bad answer to {path}: {exc}") from None
    return _validated(model, body, path)


def _validated(model: type[A], body: Any, path: str) -> A:
    try:
        return validate(model, body)
    except BadAnswer as exc:
        raise NodeBadAnswer(f"bad answer to {path}: {exc}") from None


def _seconds(value: float) -> str:
    return "the time allowed" if value == float("inf") else f"{value:g} s"


def _header_int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise NodeBadAnswer(f"bad answer: the {name} header is not a byte count")
    return number


def _retry_after(resp: requests.Response) -> float:
    try:
        return min(3600.0, max(0.0, float(resp.headers.get("Retry-After", "1") or 1)))
    except ValueError:
        return 1.0


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


def _json_object(resp: requests.Response) -> dict[str, Any]:
    """A bounded JSON object from a non-node peer (the QuickConnect directory)."""
    try:
        body = loads_bounded(resp.content)
    except BadAnswer as exc:
        raise NodeBadResponse(f"HTTP {resp.status_code} answer: {exc}") from None
    if not isinstance(body, dict):
        raise NodeBadResponse("answer is not a JSON object")
    return body


def _error_of(resp: requests.Response) -> tuple[str | None, str, dict[str, Any]]:
    """``(code, message, extra fields)`` of a refusal in the node's error shape, or
    ``(None, "HTTP <status> <reason>", {})`` for any other body."""
    try:
        err = validate(ErrorAnswer, loads_bounded(resp.content)).error
    except BadAnswer:
        return None, f"HTTP {resp.status_code} {resp.reason or ''}".strip()[:100], {}
    return err.code, err.message, dict(err.model_extra or {})


def _refusal(
    resp: requests.Response, code: str | None, message: str, extra: dict[str, Any]
) -> NodeError:
    status = resp.status_code
    if code is None:
        return NodeBadResponse(
            f"{message} without the node's error format; is this a cms-node?",
            code="not_a_node",
            status=status,
        )
    if code == "epoch_unproven":
        return EpochUnproven(message, status=status)
    if code == "stale_epoch":
        newest = extra.get("newest_epoch")
        valid = isinstance(newest, int) and not isinstance(newest, bool)
        return EpochRefused(message, newest_epoch=newest if valid else None, status=status)
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
    directory_url: str, qc_id: str, timeout: float = 5.0, *, token: str | None = None
) -> tuple[str, int]:
    """Resolve a QuickConnect ID through a directory over HTTP (outside Django), as a CMS
    user (API token) who may see a server with that ID."""
    headers = {"Authorization": f"Token {token}"} if token else {}
    try:
        with requests.get(
            f"{directory_url.rstrip('/')}/resolve/{quote(qc_id, safe='')}",
            timeout=timeout,
            stream=True,
            headers=headers,
        ) as resp:
            if resp.status_code == 404:
                raise NodeUnreachable(
                    f"QuickConnect ID {qc_id!r} is not registered", code="quickconnect_unknown"
                )
            if resp.status_code in (401, 403):
                raise NodeAuthFailed(
                    "the QuickConnect directory needs a CMS user's API token",
                    status=resp.status_code,
                )
            resp._content = read_body(resp)
    except BadAnswer as exc:
        raise NodeBadResponse(f"QuickConnect directory: {exc}") from None
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        raise NodeUnreachable(f"QuickConnect directory unreachable: {_reason(exc)}") from None
    body = _json_object(resp)
    try:
        return str(body["host"]), int(body["port"])
    except (KeyError, TypeError, ValueError):
        raise NodeBadResponse("QuickConnect directory answer without host and port") from None


def client_for(
    server: Any,
    *,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    retries: int = 1,
    cms_host_id: str | None = None,
    pin: bool = True,
    deadline: float | None = DEFAULT_DEADLINE,
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

    stored_key = getattr(server, "pairing_key", None)
    stored_key = stored_key.reveal() if hasattr(stored_key, "reveal") else (stored_key or "")

    if getattr(server, "pk", None) and getattr(server, "serial", ""):
        # A pairing made since (from the search, before a save) is the node's key now.
        stored_key = _adopt_pending_pairing(server) or stored_key

    def save_pairing(key: bytes, serial: str) -> None:
        # Stored on the server (encrypted; never logged). A server not saved yet keeps it
        # on this object (saved with it: batch add) and by serial until one is added.
        server.pairing_key = key.hex()
        if getattr(server, "pk", None):
            type(server).objects.filter(pk=server.pk).update(pairing_key=key.hex())
            _forget_pending_pairing(serial)  # older than this one
        else:
            _remember_pending_pairing(serial, key)

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
        deadline=deadline,
        serial=getattr(server, "serial", "") or None,
        pairing_key=_key_bytes(stored_key),
        on_pair=save_pairing,
    )


def _remember_pending_pairing(serial: str, key: bytes) -> None:
    from cms.nodes.models import PendingPairing

    PendingPairing.objects.update_or_create(serial=serial, defaults={"key": key.hex()})


def _forget_pending_pairing(serial: str) -> None:
    from cms.nodes.models import PendingPairing

    PendingPairing.objects.filter(serial=serial).delete()


def _adopt_pending_pairing(server: Any) -> str:
    """The key handed to this server's node before the server was saved, now stored on
    the server ("" if there is none)."""
    from cms.nodes.models import PendingPairing

    pending = PendingPairing.objects.filter(serial=server.serial).first()
    if pending is None:
        return ""
    key = pending.key.reveal()
    server.pairing_key = key
    type(server).objects.filter(pk=server.pk).update(pairing_key=key)
    pending.delete()
    return key


def _key_bytes(text: str) -> bytes | None:
    try:
        return bytes.fromhex(text) or None
    except ValueError:
        return None


def pairing_host_id() -> str:
    """The id this CMS host pairs nodes under (X-CMS-Host)."""
    return _settings_host_id() or "cms"


def _settings_host_id() -> str | None:
    try:
        from django.conf import settings

        return getattr(settings, "CMS_HOST_ID", None) or None
    except Exception:  # Django not configured: the client works without it
        return None


__all__ = [
    "DEFAULT_DEADLINE",
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
