"""Enrollment secrets: the CMS says which node may bind a QuickConnect ID.

Every door that adds a server, or changes the QuickConnect ID it is reached by,
calls `issue_for_server` once the server is saved; an administrator asks for a new
secret with `issue` when a node was replaced. The plaintext is returned to be shown
once (an admin message, a write-once API field) and only its SHA-256 is stored.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.utils import timezone

from cms.inventory.choices import ConnectionType
from cms.nodes.directory import secret_hash
from cms.nodes.models import QuickConnectEntry

# The node's variable for the secret (docs/node-api.md): out of `ps`, unlike an option.
ENROLLMENT_ENV = "CMS_NODE_QUICKCONNECT_ENROLLMENT"


def quickconnect_id_of(connection_type: str | None, qc_id: str | None) -> str | None:
    """The QuickConnect ID a server with these fields is reached by, or None (an IP
    address or FQDN)."""
    if connection_type != ConnectionType.QUICKCONNECT:
        return None
    return qc_id or None


def issue(qc_id: str) -> str:
    """A new enrollment secret for `qc_id`; any earlier unspent one stops working.

    A bound node keeps its binding (and is still reached) until a node presents the
    new secret: replacing a node costs no outage before the new one enrolls.
    """
    secret = secrets.token_urlsafe(32)
    QuickConnectEntry.objects.update_or_create(
        qc_id=qc_id,
        defaults={"enrollment_hash": secret_hash(secret), "enrollment_issued_at": timezone.now()},
    )
    return secret


def issue_for_server(server: Any, previous_id: str | None = None) -> str | None:
    """Issue a secret if `server` was just added with, or moved to, a QuickConnect ID.

    `previous_id` is the ID it was reached by before this save (None when it was just
    added, or reached by address). No secret is issued when the ID is already bound to
    this very server's node (same serial, as batch add reads it from the node): that
    node has enrolled, and a spare secret would only be one more credential to leak.
    """
    qc_id = quickconnect_id_of(server.connection_type, server.quickconnect_id)
    if qc_id is None or qc_id == previous_id:
        return None
    serial = getattr(server, "serial", "")
    bound = QuickConnectEntry.objects.filter(qc_id=qc_id).exclude(token_hash="").first()
    if bound is not None and serial and bound.serial == serial:
        return None
    return issue(qc_id)
