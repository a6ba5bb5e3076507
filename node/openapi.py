"""The agent's OpenAPI 3.1 description, served at ``GET /api/v1/openapi.json``.

Written by hand next to the rules it describes (the limits are imported from the
modules that enforce them), and held to the truth by tests: every route of
``node/app.py`` is described and every described operation is routed, and CI fuzzes
a real agent against it (``tests/integration/test_node_schema.py``: no 5xx, every
status, content type and body as documented). ``docs/node-api.md`` is the prose.
"""

from __future__ import annotations

from typing import Any

from node import API_VERSION, __version__
from node.config import MAX_CAMERAS, MAX_SOURCE_LENGTH, STREAM_SCHEMES, SYNTHETIC, TEST_PATTERN
from node.core import MAX_USERNAME
from node.state import FAULT_KINDS, MODES
from node.storage import KINDS, MAX_CURSOR_LENGTH, MAX_UPLOAD_BYTES, ORIGINS
from node.timeutil import MAX_TIME_TEXT
from node.transfer import MAX_PULL_FILES
from protocol import scram
from protocol.grants import MAX_GRANT_BYTES
from protocol.limits import MAX_ADDRESS_CHARS, MAX_LAN_ADDRESSES, MAX_PEER_PROBE_SECONDS

PREFIX = "/api/v1"
ID = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"}
OPTIONAL_ID = {"type": "string", "pattern": "^([A-Za-z0-9][A-Za-z0-9_-]{0,63})?$"}
NULLABLE_STRING = {"type": ["string", "null"]}
TIME_IN = {
    "description": "ISO 8601 (Z or an offset; naive is UTC) or POSIX seconds, 1970-2100",
    "anyOf": [
        {"type": "string", "maxLength": MAX_TIME_TEXT},
        {"type": "number", "minimum": 0, "maximum": 4102444800},
    ],
}
TIME_OUT = {"type": "string", "description": "ISO 8601 UTC with milliseconds"}
SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
COUNT = {"type": "integer", "minimum": 0}


def _obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        ["error"],
        error={
            **_obj(["code", "message"], code={"type": "string"}, message={"type": "string"}),
            "description": "some codes add fields (newest_epoch, offset, retry_after)",
        },
    ),
    "Info": _obj(
        ["name", "model", "serial", "version", "api_version", "cms_mode", "cms_enabled"],
        name={"type": "string"},
        model={"type": "string"},
        serial={"type": "string"},
        version={"type": "string"},
        api_version={"type": "string"},
        cms_mode={"enum": list(MODES)},
        cms_enabled={"type": "boolean"},
        paired={"type": "boolean"},
        locked={"type": "boolean"},
        https={"type": "boolean"},
        quickconnect_id=NULLABLE_STRING,
        lan={
            "type": "array",
            "maxItems": MAX_LAN_ADDRESSES,
            "items": {"type": "string", "maxLength": MAX_ADDRESS_CHARS},
            "description": "host:port the agent listens on, on its site's network",
        },
    ),
    "ScramStart": _obj(
        ["username", "client_first"],
        username={"type": "string", "maxLength": MAX_USERNAME},
        client_first={
            "type": "string",
            "maxLength": scram.MAX_MESSAGE,
            "description": "SCRAM-SHA-256 client-first message (RFC 5802)",
        },
    ),
    "ScramChallenge": _obj(
        ["session", "server_first"],
        session={"type": "string"},
        server_first={"type": "string", "description": "salt, iteration count, nonce"},
        serial={"type": "string"},
    ),
    "ScramFinish": _obj(
        ["session", "client_final"],
        session={"type": "string", "maxLength": 128},
        client_final={
            "type": "string",
            "maxLength": scram.MAX_MESSAGE,
            "description": "SCRAM-SHA-256 client-final message: the proof, not the password",
        },
    ),
    "Token": _obj(
        ["token", "expires_in", "server_final"],
        token={"type": "string"},
        expires_in=COUNT,
        server_final={"type": "string", "description": "the node's proof (ServerSignature)"},
    ),
    "OnBehalfOf": _obj(["id", "name"], id=ID, name={"type": "string"}),
    "CameraStatus": _obj(
        ["id", "name", "origin", "state", "segments"],
        id={"type": "string"},
        name={"type": "string"},
        origin={"enum": list(ORIGINS)},
        on_behalf_of=NULLABLE_STRING,
        state={"enum": ["starting", "recording", "paused", "idle", "error"]},
        error=NULLABLE_STRING,
        last_segment_at=NULLABLE_STRING,
        segments=COUNT,
        open={
            "type": "boolean",
            "description": "the source is open for this recording (synthetic: from the start "
            "of the first segment; ffmpeg: once ffmpeg has opened the input)",
        },
        opened_at=NULLABLE_STRING,
    ),
    "Health": _obj(
        ["state", "volume", "service", "faults", "recording", "epoch", "cms_mode"],
        state={"enum": ["normal", "degraded", "abnormal"]},
        volume=_obj(
            ["state"],
            state={"enum": ["normal", "degraded", "crashed"]},
            free_bytes=COUNT,
            total_bytes=COUNT,
        ),
        service=_obj(["state"], state={"enum": ["running", "stopped", "error"]}),
        faults=_ref("Faults"),
        recording=_obj(
            ["cameras"],
            cameras={"type": "array", "items": _ref("CameraStatus")},
            on_behalf_of={"anyOf": [_ref("OnBehalfOf"), {"type": "null"}]},
            takeover_epoch={"type": ["integer", "null"]},
        ),
        epoch=COUNT,
        cms_mode={"enum": list(MODES)},
        config_version=COUNT,
        time=TIME_OUT,
        capacity=_obj(
            ["cameras"],
            cameras={**COUNT, "description": "the most cameras recorded at once"},
            licensed_cameras={**COUNT, "description": "cameras the installed licenses cover"},
        ),
        standby={
            "type": "object",
            "description": "the standby configurations held: owner id -> version",
            "additionalProperties": {"type": "string"},
        },
        peer_probes={**COUNT, "description": "peer probes made for the CMS since the start"},
    ),
    "Faults": _obj(["volume", "service"], volume={"type": "boolean"}, service={"type": "boolean"}),
    "Window": _obj(
        ["start", "end"],
        days={"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 6}},
        start={"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"},
        end={"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"},
    ),
    "Source": {
        "description": f"'{SYNTHETIC}', '{TEST_PATTERN}' (ffmpeg's test pattern) or a stream "
        "URL (printable ASCII, no spaces); anything else is refused",
        "anyOf": [
            {"enum": [SYNTHETIC, TEST_PATTERN]},
            {
                "type": "string",
                "maxLength": MAX_SOURCE_LENGTH,
                "pattern": f"^({'|'.join(STREAM_SCHEMES)})://[!-~]+$",
            },
        ],
    },
    "Schedule": {
        "anyOf": [
            {"enum": ["always", "never"]},
            {"type": "array", "maxItems": 64, "items": _ref("Window")},
        ]
    },
    "Camera": _obj(
        ["id", "name", "source", "schedule", "retention_days"],
        id=ID,
        name={"type": "string"},
        source={"type": "string"},
        schedule=_ref("Schedule"),
        retention_days={"type": "integer"},
    ),
    "CameraInput": _obj(
        ["id"],
        id=ID,
        name={"type": "string", "minLength": 1, "maxLength": 64},
        source=_ref("Source"),
        schedule={"anyOf": [_ref("Schedule"), {"type": "null"}]},
        retention_days={"type": "integer", "minimum": 1, "maximum": 3650},
    ),
    "Config": _obj(
        ["version", "cameras"],
        version=COUNT,
        cameras={"type": "array", "items": _ref("Camera")},
    ),
    "ConfigInput": _obj(
        ["cameras"],
        cameras={"type": "array", "maxItems": MAX_CAMERAS, "items": _ref("CameraInput")},
    ),
    "Epoch": _obj(
        ["epoch", "proof"],
        epoch={"type": "integer", "minimum": 1, "maximum": 2**62 - 1},
        proof={
            "type": "string",
            "description": "HMAC-SHA256 with the pairing key of (epoch, serial, action)",
        },
    ),
    "Takeover": {
        **_obj(
            ["epoch", "proof", "on_behalf_of"],
            epoch={"type": "integer", "minimum": 1, "maximum": 2**62 - 1},
            proof={
                "type": "string",
                "description": "HMAC-SHA256 with the pairing key of (epoch, serial, action)",
            },
            on_behalf_of=_obj(
                ["id"], id=ID, name={"type": "string", "minLength": 1, "maxLength": 64}
            ),
            config=_ref("ConfigInput"),
            config_version={
                **_ref("StandbyVersion"),
                "description": "instead of config: the version of the standby configuration "
                "held for on_behalf_of.id (409 standby_missing or standby_stale otherwise)",
            },
        ),
        "oneOf": [{"required": ["config"]}, {"required": ["config_version"]}],
    },
    "StandbyVersion": {
        "anyOf": [
            {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
            {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
        ]
    },
    "StandbyInput": _obj(
        ["config"],
        name={"type": "string", "minLength": 1, "maxLength": 64},
        config=_obj(
            ["version", "cameras"],
            version=_ref("StandbyVersion"),
            cameras={"type": "array", "maxItems": MAX_CAMERAS, "items": _ref("CameraInput")},
        ),
    ),
    "StandbyEntry": _obj(
        ["id", "name", "version"],
        id=ID,
        name={"type": "string"},
        version={"type": "string"},
    ),
    "StandbyList": _obj(["items"], items={"type": "array", "items": _ref("StandbyEntry")}),
    "TakeoverView": _obj(
        ["epoch", "active", "on_behalf_of", "cameras"],
        epoch=COUNT,
        active={"type": "boolean"},
        on_behalf_of={"anyOf": [_ref("OnBehalfOf"), {"type": "null"}]},
        cameras={"type": "array", "items": {"type": "string"}},
    ),
    "FileItem": _obj(
        ["path", "kind", "camera", "origin", "start", "end", "size", "sha256"],
        path={"type": "string"},
        kind={"enum": list(KINDS)},
        camera={"type": "string"},
        origin={"enum": list(ORIGINS)},
        on_behalf_of=NULLABLE_STRING,
        start=TIME_OUT,
        end=TIME_OUT,
        size=COUNT,
        sha256=SHA256,
    ),
    "Page": _obj(
        ["items", "next"],
        items={"type": "array", "items": _ref("FileItem")},
        next=NULLABLE_STRING,
    ),
    "Purge": _obj(["on_behalf_of"], on_behalf_of=ID),
    "Deleted": _obj(
        ["deleted", "failed", "error"],
        deleted=COUNT,
        failed={**COUNT, "description": "files that could not be removed (kept, still listed)"},
        error={"type": "string", "description": "why, for the first of them ('' if none)"},
    ),
    "UploadSpec": _obj(
        ["path", "size", "sha256"],
        path={"type": "string", "minLength": 1, "maxLength": 512},
        size={"type": "integer", "minimum": 0, "maximum": MAX_UPLOAD_BYTES},
        sha256=SHA256,
        kind={"enum": list(KINDS)},
        origin={"enum": list(ORIGINS)},
        camera=ID,
        on_behalf_of={"anyOf": [ID, {"type": "null"}]},
        start=TIME_IN,
        end=TIME_IN,
    ),
    "UploadStatus": _obj(
        ["id", "offset", "complete", "path"],
        id=NULLABLE_STRING,
        offset=COUNT,
        size=COUNT,
        complete={"type": "boolean"},
        path={"type": "string"},
    ),
    "License": _obj(
        ["key", "cameras", "installed_at"],
        key={"type": "string"},
        cameras={"type": "integer"},
        installed_at=TIME_OUT,
    ),
    "LicenseInput": _obj(
        ["key"],
        key={"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9-]{3,63}$"},
        cameras={"type": "integer", "minimum": 1, "maximum": 256},
    ),
    "Licenses": _obj(
        ["licenses", "total_cameras"],
        licenses={"type": "array", "items": _ref("License")},
        total_cameras=COUNT,
    ),
    "LicenseSet": _obj(
        ["licenses"],
        licenses={"type": "array", "maxItems": 1000, "items": _ref("LicenseInput")},
    ),
    "Enable": _obj(
        ["mode", "pairing"],
        mode={"enum": ["recording", "failover"]},
        pairing=_obj(
            ["nonce", "key"],
            nonce={"type": "string", "description": "AES-GCM nonce, base64"},
            key={
                "type": "string",
                "description": "the pairing key sealed under HKDF(ServerKey, serial), base64",
            },
        ),
        lock=_obj(
            [],
            refuse_other_hosts={"type": "boolean"},
            refuse_local_changes={"type": "boolean"},
        ),
    ),
    "Grant": _obj(
        ["grant"],
        grant={
            "type": "string",
            "maxLength": MAX_GRANT_BYTES,
            "description": "a restoration grant the paired CMS signed for this agent",
        },
    ),
    "TransferToken": _obj(
        ["token", "expires_in", "files"],
        token={"type": "string"},
        expires_in={"type": "number"},
        files=COUNT,
    ),
    "PullSpec": _obj(
        ["source", "grant", "files"],
        source=_obj(
            ["host", "port"],
            host={"type": "string", "maxLength": 253},
            port={"type": "integer", "minimum": 1, "maximum": 65535},
            https={"type": "boolean"},
            fingerprint=NULLABLE_STRING,
        ),
        grant={"type": "string", "maxLength": MAX_GRANT_BYTES},
        files={
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_PULL_FILES,
            "items": {"type": "object", "description": "an UploadSpec plus `from`"},
        },
    ),
    "PullStatus": _obj(
        ["id", "state", "files", "bytes"],
        id={"type": "string"},
        state={"enum": ["running", "done", "failed", "cancelled"]},
        files={
            "type": "array",
            "items": _obj(
                ["path", "state", "bytes"],
                path={"type": "string"},
                state={"enum": ["pending", "copying", "done", "failed", "cancelled"]},
                bytes=COUNT,
                stored_as={"type": "string"},
                error={"type": "string"},
            ),
        },
        bytes=COUNT,
        version=COUNT,
    ),
    "Fault": _obj(["kind"], kind={"enum": list(FAULT_KINDS)}),
    "PeerProbe": _obj(
        ["address", "serial"],
        address={"type": "string", "maxLength": MAX_ADDRESS_CHARS, "description": "host:port"},
        https={"type": "boolean"},
        serial={"type": "string", "minLength": 1, "maxLength": 64},
        timeout={
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": MAX_PEER_PROBE_SECONDS,
            "description": "seconds",
        },
    ),
    "PeerProbeResult": _obj(
        ["reachable", "serial", "latency_ms", "error"],
        reachable={"type": "boolean"},
        serial=NULLABLE_STRING,
        latency_ms={"type": ["number", "null"]},
        error={"type": "string"},
    ),
    "FaultState": _obj(["faults"], faults=_ref("Faults")),
    "Heartbeat": _obj(["time", "seq"], time={"type": "string"}, seq=COUNT),
}

ERROR_TEXT = {
    400: "bad request: malformed JSON, a field or header out of its rule (code says which)",
    401: "log in first, or the token expired (auth_required, token_invalid, auth_failed)",
    403: "refused by the security lock (locked: a change not signed with the pairing key) "
    "or an epoch without the paired CMS's proof (epoch_unproven)",
    404: "not found",
    410: "gone: password logins were removed (login_removed); log in by SCRAM",
    409: "conflict (stale_epoch, wrong_mode, over_capacity, busy, license_exists, "
    "standby_missing, standby_stale, standby_full, ...)",
    412: "If-Match does not match the config's ETag",
    413: "body over its limit",
    416: "the range starts past the end of the file",
    422: "uploaded bytes do not match the declared size and sha256; nothing was kept",
    428: "If-Match is required",
    429: "too many failed logins, or too many watch streams; wait Retry-After seconds",
    502: "the failover agent cannot be reached or refused the grant (source_unreachable, "
    "grant_refused)",
    503: "the volume is crashed (volume_fault)",
    507: "not enough free space for this upload",
}
CMS_HOST = {
    "name": "X-CMS-Host",
    "in": "header",
    "required": False,
    "description": "the CMS host's id: a label recorded at pairing, not a credential",
    "schema": {"type": "string"},
}
SIGNATURE_HEADERS = [
    {
        "name": name,
        "in": "header",
        "required": False,
        "description": text,
        "schema": {"type": "string"},
    }
    for name, text in (
        (scram.HEADER_TIME, "POSIX seconds the request was signed at (a locked node: required)"),
        (scram.HEADER_NONCE, "16-64 characters, never used before"),
        (
            scram.HEADER_SIGNATURE,
            "HMAC-SHA256 with the pairing key over method, raw path, sha256 of the body, "
            "time, nonce and sha256 of the token",
        ),
    )
]


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(status: int) -> dict[str, Any]:
    return _json(_ref("Error"), ERROR_TEXT[status])


def _operation(
    op_id: str,
    summary: str,
    ok: dict[int, dict[str, Any]],
    errors: tuple[int, ...] = (),
    *,
    auth: bool = True,
    body: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    statuses = set(errors)
    if auth:
        statuses |= {401, 403}
    if body:
        statuses |= {400, 413}
    responses: dict[str, Any] = {str(code): resp for code, resp in ok.items()}
    responses |= {str(code): _error(code) for code in sorted(statuses)}
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "responses": responses}
    params = [*(parameters or []), CMS_HOST, *(SIGNATURE_HEADERS if auth else [])]
    op["parameters"] = params
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    if not auth:
        op["security"] = []
    return op


def _path_param(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _header(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": required, "schema": schema}


NO_CONTENT = {204: {"description": "done"}}
OFFSET_HEADER = _header("Upload-Offset", {"type": "string", "pattern": "^[0-9]{1,18}$"}, True)


def build_schema(allow_fault_injection: bool = False) -> dict[str, Any]:
    """The description of an agent; ``/fault`` exists only with fault injection enabled."""
    paths: dict[str, dict[str, Any]] = {
        "/info": {
            "get": _operation(
                "info", "who this node is (nothing secret)", {200: _json(_ref("Info"))}, auth=False
            )
        },
        "/openapi.json": {
            "get": _operation(
                "openapi", "this description", {200: _json({"type": "object"})}, auth=False
            )
        },
        "/auth/login": {
            "post": _operation(
                "login",
                "removed: the password never travels (answers 410; log in by SCRAM)",
                {},
                (410,),
                auth=False,
            )
        },
        "/auth/scram/start": {
            "post": _operation(
                "scram_start",
                "SCRAM-SHA-256, first step: the client-first message for a challenge",
                {200: _json(_ref("ScramChallenge"))},
                (429,),
                auth=False,
                body="ScramStart",
            )
        },
        "/auth/scram/finish": {
            "post": _operation(
                "scram_finish",
                "SCRAM-SHA-256, second step: the client's proof for the node's and a token",
                {200: _json(_ref("Token"))},
                (401, 429),
                auth=False,
                body="ScramFinish",
            )
        },
        "/auth/logout": {"post": _operation("logout", "revoke this token", NO_CONTENT)},
        "/health": {
            "get": _operation("health", "volume, service, cameras", {200: _json(_ref("Health"))})
        },
        "/watch": {
            "get": _operation(
                "watch",
                "server-sent events: `health` (the body of /health) first and whenever what "
                "the CMS acts on changes, `heartbeat` ({time, seq}) every heartbeat; ends "
                "when the token expires",
                {
                    200: {
                        "description": "an endless text/event-stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    }
                },
                (400, 429),
                parameters=[
                    _query(
                        "heartbeat",
                        {
                            "type": "string",
                            "pattern": r"^[0-9]{1,3}(\.[0-9]{1,6})?$",
                            "description": "seconds between heartbeats, 0.1-5 (0.25)",
                        },
                    )
                ],
            )
        },
        "/config": {
            "get": _operation(
                "get_config", "the cameras, with an ETag", {200: _json(_ref("Config"))}
            ),
            "put": _operation(
                "put_config",
                "replace the cameras (If-Match: the ETag, or *)",
                {200: _json(_ref("Config"))},
                (412, 428),
                body="ConfigInput",
                parameters=[_header("If-Match", {"type": "string"})],
            ),
        },
        "/takeover": {
            "post": _operation(
                "takeover",
                "record a recording server's cameras (fenced by epoch)",
                {200: _json(_ref("TakeoverView"))},
                (409,),
                body="Takeover",
            )
        },
        "/standby": {
            "get": _operation(
                "list_standby",
                "the standby configurations held (their owners and versions)",
                {200: _json(_ref("StandbyList"))},
            )
        },
        "/standby/{owner}": {
            "put": _operation(
                "put_standby",
                "hold a recording server's configuration for a takeover by version",
                {200: _json(_ref("StandbyEntry"))},
                (409,),
                body="StandbyInput",
                parameters=[_path_param("owner", ID)],
            ),
            "delete": _operation(
                "delete_standby",
                "forget the configuration held for a recording server",
                NO_CONTENT,
                (400, 404),
                parameters=[_path_param("owner", ID)],
            ),
        },
        "/release": {
            "post": _operation(
                "release",
                "stop recording for the other server (fenced by epoch)",
                {200: _json(_ref("TakeoverView"))},
                (409,),
                body="Epoch",
            )
        },
        "/recordings": {
            "get": _operation(
                "recordings",
                "recordings and snapshots, ordered by (start, path), a page at a time",
                {200: _json(_ref("Page"))},
                (400,),
                # An empty filter is no filter.
                parameters=[
                    _query("camera", OPTIONAL_ID),
                    _query("since", {"type": "string", "maxLength": MAX_TIME_TEXT}),
                    _query("until", {"type": "string", "maxLength": MAX_TIME_TEXT}),
                    _query("origin", {"enum": ["", *ORIGINS]}),
                    _query("on_behalf_of", OPTIONAL_ID),
                    _query("kind", {"enum": ["", *KINDS]}),
                    _query("cursor", {"type": "string", "maxLength": MAX_CURSOR_LENGTH}),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                ],
            )
        },
        "/recordings/purge": {
            "post": _operation(
                "purge",
                "delete what was recorded on behalf of a server",
                {200: _json(_ref("Deleted"))},
                (409,),
                body="Purge",
            )
        },
        "/files/{path}": {
            "get": _operation(
                "download",
                "the bytes (also HEAD; Range and If-Range against the sha256 ETag)",
                {
                    200: {
                        "description": "the whole file",
                        "content": {"application/octet-stream": {"schema": {}}},
                    },
                    206: {
                        "description": "the requested range(s)",
                        "content": {
                            "application/octet-stream": {"schema": {}},
                            "multipart/byteranges": {"schema": {}},
                        },
                    },
                },
                (400, 404, 416),
                parameters=[_path_param("path"), _header("Range", {"type": "string"})],
            ),
            "delete": _operation(
                "delete_file",
                "delete one file",
                NO_CONTENT,
                (400, 404),
                parameters=[_path_param("path")],
            ),
        },
        "/transfer/redeem": {
            "post": _operation(
                "redeem_grant",
                "a restoration grant for a transfer token (once per grant)",
                {200: _json(_ref("TransferToken"))},
                (403,),
                auth=False,
                body="Grant",
            )
        },
        "/transfer/files/{path}": {
            "get": _operation(
                "transfer_file",
                "a granted file's bytes, with `Authorization: Transfer <token>` (also "
                "HEAD; Range and If-Range as /files)",
                {
                    200: {
                        "description": "the whole file",
                        "content": {"application/octet-stream": {"schema": {}}},
                    },
                    206: {
                        "description": "the requested range(s)",
                        "content": {
                            "application/octet-stream": {"schema": {}},
                            "multipart/byteranges": {"schema": {}},
                        },
                    },
                },
                (400, 401, 403, 404, 416),
                auth=False,
                parameters=[_path_param("path"), _header("Range", {"type": "string"})],
            )
        },
        "/pulls": {
            "post": _operation(
                "start_pull",
                "pull restored files from a failover agent (signed by the paired CMS only)",
                {201: _json(_ref("PullStatus"))},
                (502, 503),
                body="PullSpec",
            )
        },
        "/pulls/{id}": {
            "get": _operation(
                "get_pull",
                "a pull's progress, file by file; with `after` (a version it gave) and "
                "`wait` (seconds, at most 5), once a file or the pull ended since",
                {200: _json(_ref("PullStatus"))},
                (400, 404),
                parameters=[
                    _path_param("id"),
                    _query("after", {"type": "integer", "minimum": 0}),
                    _query("wait", {"type": "integer", "minimum": 0, "maximum": 5}),
                ],
            ),
            "delete": _operation(
                "cancel_pull",
                "stop a pull after the chunks in flight",
                NO_CONTENT,
                (404,),
                parameters=[_path_param("id")],
            ),
        },
        "/uploads": {
            "post": _operation(
                "create_upload",
                "start (or resume) a verified upload",
                {
                    200: _json(_ref("UploadStatus"), "already complete"),
                    201: _json(_ref("UploadStatus"), "created"),
                },
                (409, 422, 503, 507),
                body="UploadSpec",
            )
        },
        "/uploads/{id}": {
            "get": _operation(
                "get_upload",
                "where to resume (also HEAD: Upload-Offset, Upload-Length)",
                {200: _json(_ref("UploadStatus"))},
                (404,),
                parameters=[_path_param("id")],
            ),
            "patch": {
                **_operation(
                    "patch_upload",
                    "append bytes at Upload-Offset",
                    {200: _json(_ref("UploadStatus"))},
                    (400, 404, 409, 413, 422, 503),
                    parameters=[_path_param("id"), OFFSET_HEADER],
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                },
            },
            "delete": _operation(
                "abort_upload",
                "abort an upload",
                NO_CONTENT,
                (404,),
                parameters=[_path_param("id")],
            ),
        },
        "/licenses": {
            "get": _operation("licenses", "installed licenses", {200: _json(_ref("Licenses"))}),
            "post": _operation(
                "install_license",
                "install one license",
                {201: _json(_ref("License"))},
                (409,),
                body="LicenseInput",
            ),
            "put": _operation(
                "replace_licenses",
                "replace the whole set",
                {200: _json(_ref("Licenses"))},
                (409,),
                body="LicenseSet",
            ),
        },
        "/licenses/{key}": {
            "delete": _operation(
                "remove_license",
                "remove one license",
                NO_CONTENT,
                (404,),
                parameters=[_path_param("key")],
            )
        },
        "/cms/enable": {
            "post": _operation(
                "enable_cms",
                "pair with a CMS (after a SCRAM login; the pairing key sealed for this node)",
                {200: _json(_ref("Info"))},
                (409,),
                body="Enable",
            )
        },
        "/cms/disable": {
            "post": _operation(
                "disable_cms", "back to standalone, unpaired", {200: _json(_ref("Info"))}, (409,)
            )
        },
        "/peers/probe": {
            "post": _operation(
                "probe_peer",
                "GET another node's public /info within the timeout: whether it answers, "
                "with which serial (at most 16 at once)",
                {200: _json(_ref("PeerProbeResult"))},
                (429,),
                body="PeerProbe",
            )
        },
    }
    if allow_fault_injection:
        paths["/fault"] = {
            "post": _operation(
                "fault",
                "simulate a crashed volume or a stopped service (agents run with "
                "--allow-fault-injection only)",
                {200: _json(_ref("FaultState"))},
                body="Fault",
            )
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cms-node agent",
            "version": __version__,
            "description": f"Node agent protocol, API version {API_VERSION} (docs/node-api.md).",
        },
        "servers": [{"url": PREFIX}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
