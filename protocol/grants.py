"""Restoration grants: what lets one agent pull a failover's files from another.

The CMS signs a grant with the failover agent's pairing key (HMAC-SHA256; the key
never leaves the CMS and that agent) and hands it to the recording agent, which
presents it once to the failover agent in exchange for a short-lived transfer token
that opens exactly the files the grant names. The grant carries no secret: its
signature proves the paired CMS issued it, its expiry and nonce make it short-lived
and single-use, and its ``on_behalf_of`` and ``epoch`` tie it to one event.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

GRANT_TTL = 300.0  # seconds a grant may wait before it is redeemed
MAX_GRANT_BYTES = 512 * 1024
_CONTEXT = b"cms-restoration-grant-v1\0"


class GrantInvalid(ValueError):
    """The grant is malformed, badly signed, expired or names nothing."""


def sign_grant(
    key: bytes,
    *,
    serial: str,
    on_behalf_of: str,
    epoch: int,
    paths: list[str],
    ttl: float = GRANT_TTL,
    now: float | None = None,
) -> str:
    """``<payload>.<signature>``: base64url JSON, then the hex HMAC over it."""
    body = {
        "serial": serial,
        "on_behalf_of": on_behalf_of,
        "epoch": int(epoch),
        "paths": sorted(set(paths)),
        "expires": round((time.time() if now is None else now) + ttl, 3),
        "nonce": secrets.token_hex(16),
    }
    payload = base64.urlsafe_b64encode(
        json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    ).decode()
    return f"{payload}.{_mac(key, payload)}"


def verify_grant(key: bytes, grant: object, *, serial: str, now: float | None = None) -> dict:
    """The grant's content when it is signed with ``key`` for this agent and not expired;
    raises :class:`GrantInvalid` otherwise (the caller checks the nonce's first use)."""
    if not isinstance(grant, str) or not 0 < len(grant) <= MAX_GRANT_BYTES:
        raise GrantInvalid("the grant must be a non-empty string")
    payload, dot, signature = grant.rpartition(".")
    if not dot or not hmac.compare_digest(_mac(key, payload), signature):
        raise GrantInvalid("the grant is not signed by the CMS this agent is paired with")
    try:
        body = json.loads(base64.urlsafe_b64decode(payload.encode()))
    except ValueError:
        raise GrantInvalid("the grant's content is not readable") from None
    if not isinstance(body, dict):
        raise GrantInvalid("the grant's content is not readable")
    paths = body.get("paths")
    if body.get("serial") != serial:
        raise GrantInvalid("the grant was issued for another agent")
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise GrantInvalid("the grant names no file")
    expires = body.get("expires")
    if not isinstance(expires, int | float) or expires <= (time.time() if now is None else now):
        raise GrantInvalid("the grant has expired")
    if not isinstance(body.get("nonce"), str) or not isinstance(body.get("epoch"), int):
        raise GrantInvalid("the grant's content is not readable")
    return body


def _mac(key: bytes, payload: str) -> str:
    return hmac.new(key, _CONTEXT + payload.encode(), hashlib.sha256).hexdigest()


def conflict_name(path: str, sha256: str) -> str:
    """own/cam/20260101-120000.123.ts -> own/cam/20260101-120000.123.<sha256[:16]>.ts: the
    name a restored file takes when the recording server has other content under its own."""
    folder, _, name = path.rpartition("/")
    stem, dot, suffix = name.rpartition(".")
    named = f"{stem}.{sha256[:16]}.{suffix}" if dot else f"{name}.{sha256[:16]}"
    return f"{folder}/{named}" if folder else named


def describe(body: dict[str, Any]) -> str:
    """A grant's scope for a log line: never its signature."""
    return f"{len(body['paths'])} file(s) of {body['on_behalf_of']}, epoch {body['epoch']}"
