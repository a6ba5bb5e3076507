"""The HTTP API (Starlette): parsing, authentication and error shape only.

Every refusal is ``{"error": {"code": ..., "message": ...}}`` with a 4xx status;
an unexpected bug is a 500 with the same shape and no traceback. Bodies are
bounded: JSON bodies by ``MAX_JSON_BYTES``, upload chunks by the declared size.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    MalformedRangeHeader,
    RangeNotSatisfiable,
    Response,
)
from starlette.routing import Route

from node.config import validate_id
from node.core import NodeRuntime, config_etag
from node.errors import ApiError, bad_request, not_found
from node.openapi import build_schema
from node.parsing import ascii_int
from node.storage import KINDS, ORIGINS, validate_upload_spec
from node.timeutil import parse_time
from node.transfer import check_pull
from node.watch import WatchResponse, WatchSlots, parse_heartbeat
from node.watch import stream as watch_stream
from protocol import scram
from protocol.messages import StandbyEntry, StandbyList

log = logging.getLogger("node.app")

MAX_JSON_BYTES = 1024 * 1024
PREFIX = "/api/v1"
Handler = Callable[[Request], Awaitable[Response]]


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def read_raw(request: Request, limit: int = MAX_JSON_BYTES) -> bytes:
    """The body, bounded: 413 when too large. Kept on the request, so a later
    :func:`read_json` parses these bytes instead of reading the stream again."""
    cached = getattr(request, "_body", None)
    if cached is not None:
        return cached
    length = request.headers.get("content-length")
    if length is not None and ascii_int(length, "Content-Length") > limit:
        raise ApiError(413, "too_large", f"request body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"request body over {limit} bytes")
        chunks.append(chunk)
    request._body = b"".join(chunks)
    return request._body


async def read_json(request: Request, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """Read a bounded JSON object body; 413 when too large, 400 when malformed."""
    raw = await read_raw(request, limit)
    malformed = ApiError(400, "malformed_json", "request body is not valid JSON")
    try:
        # Strict JSON: NaN and Infinity are not numbers a node can store; nesting
        # deep enough to exhaust the parser's recursion is refused like any bad body.
        body = json.loads(raw or b"null", parse_constant=_no_constant)
        # A lone surrogate ("\ud800") parses into a str that cannot be encoded again:
        # stored, it would break every later answer that shows it.
        json.dumps(body, ensure_ascii=False).encode()
    except (ValueError, UnicodeError, RecursionError):
        raise malformed from None
    if not isinstance(body, dict):
        raise ApiError(400, "malformed_json", "request body must be a JSON object")
    return body


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def build_app(rt: NodeRuntime) -> Starlette:
    def endpoint(
        auth: bool = True, mutating: bool = False, streamed_body: bool = False
    ) -> Callable[[Handler], Handler]:
        """Wrap a handler with the bearer-token check and the security-lock check.

        A locked node takes a change only when it is signed with the pairing key
        (``X-CMS-*`` headers over method, raw path, the body's sha256, time, nonce and
        token); ``streamed_body`` (upload chunks) signs ``UNSIGNED-PAYLOAD`` instead."""

        def wrap(fn: Handler) -> Handler:
            async def handler(request: Request) -> Response:
                try:
                    request.state.signed = False
                    if auth:
                        token = bearer_token(request)
                        if mutating and rt.locked():
                            request.state.signed = await is_signed(request, token, streamed_body)
                            rt.check_lock(request.state.signed)
                    return await fn(request)
                except ApiError as exc:
                    return error_response(exc)

            handler.__name__ = fn.__name__
            return handler

        return wrap

    def bearer_token(request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(
                401,
                "auth_required",
                "log in first (Bearer token)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if rt.tokens.check(token.strip()) is None:
            raise ApiError(
                401,
                "token_invalid",
                "token expired or unknown",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return token.strip()

    async def is_signed(request: Request, token: str, streamed_body: bool) -> bool:
        if scram.HEADER_SIGNATURE.lower() not in request.headers:
            return False
        if streamed_body:
            digest = scram.UNSIGNED_PAYLOAD
        else:
            digest = scram.body_digest(await read_raw(request))
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        return rt.verify_signature(
            request.method,
            raw_path.decode("latin-1"),
            digest,
            request.headers,
            token,
        )

    def cms_host(request: Request) -> str | None:
        return request.headers.get("x-cms-host")

    @endpoint(auth=False)
    async def info(request: Request) -> Response:
        return JSONResponse(rt.info())

    description = build_schema(rt.options.allow_fault_injection)

    @endpoint(auth=False)
    async def openapi(request: Request) -> Response:
        return JSONResponse(description)

    @endpoint(auth=False)
    async def login(request: Request) -> Response:
        return JSONResponse(rt.login())

    @endpoint(auth=False)
    async def scram_start(request: Request) -> Response:
        body = await read_json(request)
        return JSONResponse(
            rt.scram_start(body.get("username"), body.get("client_first"), client_address(request))
        )

    @endpoint(auth=False)
    async def scram_finish(request: Request) -> Response:
        body = await read_json(request)
        return JSONResponse(
            rt.scram_finish(body.get("session"), body.get("client_final"), client_address(request))
        )

    @endpoint()
    async def logout(request: Request) -> Response:
        rt.tokens.revoke(request.headers.get("authorization", "").partition(" ")[2].strip())
        return Response(status_code=204)

    @endpoint()
    async def health(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(rt.health))

    watch_slots = WatchSlots()

    @endpoint()
    async def watch(request: Request) -> Response:
        token = bearer_token(request)
        interval = parse_heartbeat(request.query_params.get("heartbeat"))
        watch_slots.take()
        try:
            events = watch_stream(
                lambda: run_in_threadpool(rt.health),
                lambda: rt.tokens.check(token) is not None,
                interval,
            )
            return WatchResponse(events, watch_slots)
        except BaseException:
            watch_slots.give_back()
            raise

    @endpoint()
    async def get_config(request: Request) -> Response:
        cfg = rt.get_config()
        return JSONResponse(cfg, headers={"ETag": config_etag(cfg["version"])})

    @endpoint(mutating=True)
    async def put_config(request: Request) -> Response:
        body = await read_json(request)
        cfg = await run_in_threadpool(rt.put_config, body, request.headers.get("if-match"))
        return JSONResponse(cfg, headers={"ETag": config_etag(cfg["version"])})

    @endpoint(mutating=True)
    async def takeover(request: Request) -> Response:
        body = await read_json(request)
        return JSONResponse(await run_in_threadpool(rt.takeover, body))

    @endpoint()
    async def list_standby(request: Request) -> Response:
        return JSONResponse(StandbyList.model_validate({"items": rt.standby.list()}).to_json())

    @endpoint(mutating=True)
    async def put_standby(request: Request) -> Response:
        body = await read_json(request)
        entry = await run_in_threadpool(rt.standby.put, request.path_params["owner"], body)
        return JSONResponse(StandbyEntry.model_validate(entry).to_json())

    @endpoint(mutating=True)
    async def delete_standby(request: Request) -> Response:
        await run_in_threadpool(rt.standby.delete, request.path_params["owner"])
        return Response(status_code=204)

    @endpoint(mutating=True)
    async def release(request: Request) -> Response:
        body = await read_json(request)
        return JSONResponse(await run_in_threadpool(rt.release, body))

    @endpoint()
    async def recordings(request: Request) -> Response:
        q = request.query_params
        filters: dict[str, Any] = {}
        if q.get("camera"):
            filters["camera"] = validate_id(q["camera"], "camera")
        if q.get("on_behalf_of"):
            filters["on_behalf_of"] = validate_id(q["on_behalf_of"], "on_behalf_of")
        if q.get("origin"):
            if q["origin"] not in ORIGINS:
                raise bad_request(f"origin must be one of {', '.join(ORIGINS)}")
            filters["origin"] = q["origin"]
        if q.get("kind"):
            if q["kind"] not in KINDS:
                raise bad_request(f"kind must be one of {', '.join(KINDS)}")
            filters["kind"] = q["kind"]
        for key in ("since", "until"):
            if q.get(key):
                filters[key] = parse_time(q[key], key)
        limit = ascii_int(q.get("limit", "100"), "limit", minimum=1, maximum=1000)
        items, nxt = await run_in_threadpool(
            rt.storage.list, cursor=q.get("cursor") or None, limit=limit, **filters
        )
        return JSONResponse({"items": [i.to_api() for i in items], "next": nxt})

    @endpoint(mutating=True)
    async def purge(request: Request) -> Response:
        body = await read_json(request)
        return JSONResponse(await run_in_threadpool(rt.purge, body))

    def media_file(request: Request) -> tuple[str, Any]:
        rel = request.path_params["path"]
        full = rt.storage.resolve(rel)
        meta = rt.storage.get(rel)
        if meta is None or not full.is_file():
            raise not_found(f"no recording or snapshot at {rel[:200]!r}")
        return rel, (full, meta)

    @endpoint()
    async def download(request: Request) -> Response:
        return serve_file(request)

    def serve_file(request: Request) -> Response:
        _, (full, meta) = media_file(request)
        # The sha256 is the strong ETag: equal bytes, equal tag. Starlette's FileResponse
        # answers Range (206) and If-Range against it.
        response = MediaFileResponse(
            full,
            stat_result=os.stat(full),
            media_type="application/octet-stream",
            headers={"ETag": f'"{meta.sha256}"', "Cache-Control": "no-store"},
        )
        check_range(request, response)
        return response

    @endpoint(auth=False)
    async def redeem_grant(request: Request) -> Response:
        body = await read_json(request)
        return JSONResponse(await run_in_threadpool(rt.redeem_grant, body))

    @endpoint(auth=False)
    async def transfer_file(request: Request) -> Response:
        # The transfer token a grant gave is the whole authentication: it opens the
        # files that grant names, nothing else.
        rt.grants.check(request.headers.get("authorization", ""), request.path_params["path"])
        return serve_file(request)

    @endpoint(mutating=True)
    async def start_pull(request: Request) -> Response:
        body = await read_json(request, limit=8 * MAX_JSON_BYTES)
        check_pull(body)  # a malformed body is a 400 whoever sends it
        # Signed whether locked or not: a pull makes this agent connect where the body
        # says, so only the paired CMS may ask (a locked node checked it already).
        if not request.state.signed and not await is_signed(request, bearer_token(request), False):
            raise ApiError(
                403,
                "not_signed",
                "only the CMS this node is paired with may ask for this "
                "(signed with the pairing key)",
            )
        return JSONResponse(await run_in_threadpool(rt.pulls.start, body), status_code=201)

    @endpoint()
    async def get_pull(request: Request) -> Response:
        q = request.query_params
        after = ascii_int(q["after"], "after") if q.get("after") else None
        wait = ascii_int(q.get("wait", "0"), "wait", minimum=0, maximum=5)
        status = await run_in_threadpool(rt.pulls.get, request.path_params["id"], after, wait)
        return JSONResponse(status)

    @endpoint(mutating=True)
    async def cancel_pull(request: Request) -> Response:
        rt.pulls.cancel(request.path_params["id"])
        return Response(status_code=204)

    @endpoint(mutating=True)
    async def delete_file(request: Request) -> Response:
        rel = request.path_params["path"]
        await run_in_threadpool(rt.storage.delete, rel)
        return Response(status_code=204)

    @endpoint(mutating=True)
    async def create_upload(request: Request) -> Response:
        body = await read_json(request)
        if rt.faults.current()["volume"]:
            raise ApiError(503, "volume_fault", "the volume is crashed; cannot store files")
        spec = validate_upload_spec(body, now=time.time())
        status = await run_in_threadpool(rt.storage.create_upload, spec)
        return JSONResponse(status, status_code=200 if status["complete"] else 201)

    def upload_status(upload_id: str) -> dict[str, Any]:
        meta = rt.storage.load_upload(upload_id)
        return {
            "id": upload_id,
            "offset": meta["offset"],
            "size": meta["size"],
            "complete": False,
            "path": meta["path"],
        }

    @endpoint()
    async def get_upload(request: Request) -> Response:
        status = await run_in_threadpool(upload_status, request.path_params["id"])
        headers = {
            "Upload-Offset": str(status["offset"]),
            "Upload-Length": str(status["size"]),
            "Cache-Control": "no-store",
        }
        if request.method == "HEAD":
            return Response(status_code=200, headers=headers)
        return JSONResponse(status, headers=headers)

    @endpoint(mutating=True)
    async def abort_upload(request: Request) -> Response:
        await run_in_threadpool(rt.storage.abort_upload, request.path_params["id"])
        return Response(status_code=204)

    @endpoint(mutating=True, streamed_body=True)
    async def patch_upload(request: Request) -> Response:
        upload_id = request.path_params["id"]
        offset = ascii_int(request.headers.get("upload-offset"), "Upload-Offset header")
        lock = rt.storage.upload_lock(upload_id)
        if not lock.acquire(blocking=False):
            raise ApiError(409, "upload_busy", "another request is writing this upload")
        try:
            meta = await run_in_threadpool(rt.storage.load_upload, upload_id)
            if offset != meta["offset"]:
                raise ApiError(
                    409,
                    "offset_mismatch",
                    f"upload is at offset {meta['offset']}, not {offset}",
                    headers={"Upload-Offset": str(meta["offset"])},
                    extra={"offset": meta["offset"]},
                )
            if rt.faults.current()["volume"]:
                raise ApiError(503, "volume_fault", "the volume is crashed; cannot store files")
            remaining = meta["size"] - offset
            length = request.headers.get("content-length")
            if length is not None and ascii_int(length, "Content-Length") > remaining:
                raise ApiError(413, "too_large", f"only {remaining} bytes remain in this upload")
            digest = hashlib.sha256() if offset == 0 else None
            written = await _append_body(
                request, rt.storage.part_path(upload_id), remaining, digest
            )
            if written is None:
                raise ApiError(413, "too_large", f"only {remaining} bytes remain in this upload")
            if offset + written < meta["size"]:
                new = offset + written
                return JSONResponse(
                    {"id": upload_id, "offset": new, "complete": False, "path": meta["path"]},
                    headers={"Upload-Offset": str(new)},
                )
            known = digest.hexdigest() if digest is not None else None
            result = await run_in_threadpool(rt.storage.finish_upload, upload_id, known)
            return JSONResponse(result, headers={"Upload-Offset": str(result["offset"])})
        finally:
            lock.release()

    @endpoint()
    async def list_licenses(request: Request) -> Response:
        return JSONResponse(rt.licenses())

    @endpoint(mutating=True)
    async def install_license(request: Request) -> Response:
        body = await read_json(request)
        return JSONResponse(await run_in_threadpool(rt.install_license, body), status_code=201)

    @endpoint(mutating=True)
    async def replace_licenses(request: Request) -> Response:
        body = await read_json(request)
        return JSONResponse(await run_in_threadpool(rt.replace_licenses, body))

    @endpoint(mutating=True)
    async def remove_license(request: Request) -> Response:
        await run_in_threadpool(rt.remove_license, request.path_params["key"])
        return Response(status_code=204)

    @endpoint(mutating=True)
    async def enable_cms(request: Request) -> Response:
        body = await read_json(request)
        result = await run_in_threadpool(
            rt.enable_cms, body, cms_host(request), request.state.signed
        )
        return JSONResponse(result)

    @endpoint(mutating=True)
    async def disable_cms(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(rt.disable_cms))

    # Not a change, but it makes the agent connect where the body says: a locked node
    # takes it only signed by its CMS, as any change.
    @endpoint(mutating=True)
    async def probe_peer(request: Request) -> Response:
        body = await read_json(request)
        return JSONResponse(await rt.peers.probe(body))

    @endpoint(mutating=True)
    async def fault(request: Request) -> Response:
        body = await read_json(request)
        return JSONResponse(await run_in_threadpool(rt.set_fault, body))

    routes = [
        route("/info", GET=info),
        route("/openapi.json", GET=openapi),
        route("/auth/login", POST=login),
        route("/auth/scram/start", POST=scram_start),
        route("/auth/scram/finish", POST=scram_finish),
        route("/auth/logout", POST=logout),
        route("/health", GET=health),
        route("/watch", GET=watch),
        route("/config", GET=get_config, PUT=put_config),
        route("/takeover", POST=takeover),
        route("/release", POST=release),
        route("/standby", GET=list_standby),
        route("/standby/{owner}", PUT=put_standby, DELETE=delete_standby),
        route("/recordings", GET=recordings),
        route("/recordings/purge", POST=purge),
        route("/files/{path:path}", GET=download, DELETE=delete_file),
        route("/transfer/redeem", POST=redeem_grant),
        route("/transfer/files/{path:path}", GET=transfer_file),
        route("/pulls", POST=start_pull),
        route("/pulls/{id}", GET=get_pull, DELETE=cancel_pull),
        route("/uploads", POST=create_upload),
        route("/uploads/{id}", GET=get_upload, PATCH=patch_upload, DELETE=abort_upload),
        route("/licenses", GET=list_licenses, POST=install_license, PUT=replace_licenses),
        route("/licenses/{key}", DELETE=remove_license),
        route("/cms/enable", POST=enable_cms),
        route("/cms/disable", POST=disable_cms),
        route("/peers/probe", POST=probe_peer),
    ]
    if rt.options.allow_fault_injection:
        # Without the flag the endpoint does not exist (404), whoever asks.
        routes.append(route("/fault", POST=fault))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": {"code": code, "message": str(exc.detail)}},
            status_code=exc.status_code,
            headers=exc.headers,  # a 405 says which methods are allowed (Allow)
        )

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc)

    async def server_error(request: Request, exc: Exception) -> Response:
        # The traceback goes to the node's log, never to the client.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(
            {"error": {"code": "internal", "message": "internal error; see the node's log"}},
            status_code=500,
        )

    return Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: http_error,
            ApiError: api_error,
            Exception: server_error,
        },
    )


def route(path: str, **handlers: Handler) -> Route:
    """One route per path, whatever its methods: a wrong method then gets a 405 whose
    ``Allow`` lists every method of the path (one Starlette route per method would
    answer with the first route's methods only). HEAD is answered by GET's handler."""

    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    dispatch.__name__ = "_".join(h.__name__ for h in handlers.values())
    return Route(PREFIX + path, dispatch, methods=list(handlers))


WRITE_BUFFER = 1024 * 1024  # one thread hop per MiB, not per network read


class MediaFileResponse(FileResponse):
    """Reads a MiB per thread hop instead of Starlette's 64 KiB: recordings are large and
    restoration streams them whole."""

    chunk_size = 1024 * 1024


def check_range(request: Request, response: MediaFileResponse) -> None:
    """Refuse a Range that Starlette would refuse, in the agent's error shape.

    Starlette answers a malformed or unsatisfiable Range with a plain-text 400/416;
    the same parser runs here first (with the same If-Range rule) so that the client
    gets ``{"error": ...}`` like everywhere else.
    """
    http_range = request.headers.get("range")
    if http_range is None or response.stat_result is None:
        return
    if_range = request.headers.get("if-range")
    if if_range is not None and not response._should_use_range(if_range):
        return  # the file changed: Starlette ignores Range and sends it whole
    size = response.stat_result.st_size
    try:
        response._parse_range_header(http_range, size)
    except MalformedRangeHeader as exc:
        raise ApiError(400, "bad_range", f"Range header: {exc.content}") from None
    except RangeNotSatisfiable:
        raise ApiError(
            416,
            "range_not_satisfiable",
            f"the range starts past the end of the file ({size} bytes)",
            headers={"Content-Range": f"bytes */{size}"},
        ) from None


async def _append_body(
    request: Request, part: Any, remaining: int, digest: Any = None
) -> int | None:
    """Append the streamed body to the part file; None if it exceeds ``remaining``.

    A client that disconnects mid-body leaves what arrived on disk: the next
    ``HEAD /uploads/<id>`` reports that offset and the client resumes from there.
    An oversized body is cut back to where this request started. With ``digest``
    (an upload sent whole from offset 0) the sha256 is computed as the bytes arrive,
    so finishing does not read the file again.
    """
    fh = await run_in_threadpool(open, part, "ab")
    start = fh.tell()
    written = 0
    pending: list[bytes] = []
    pending_size = 0
    try:
        async for chunk in request.stream():
            if written + pending_size + len(chunk) > remaining:
                pending.clear()  # nothing of an oversized body is kept
                fh.truncate(start)
                return None
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= WRITE_BUFFER:
                await run_in_threadpool(_write, fh, b"".join(pending), digest)
                written += pending_size
                pending, pending_size = [], 0
    except ClientDisconnect:
        pass
    finally:
        if pending:
            await run_in_threadpool(_write, fh, b"".join(pending), digest)
            written += pending_size
        await run_in_threadpool(_close_durably, fh)
    return written


def _write(fh: Any, data: bytes, digest: Any) -> None:
    fh.write(data)
    if digest is not None:
        digest.update(data)  # hashlib releases the GIL for large buffers


def _close_durably(fh: Any) -> None:
    fh.flush()
    os.fsync(fh.fileno())
    fh.close()
