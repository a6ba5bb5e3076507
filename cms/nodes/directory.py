"""QuickConnect directory logic: register (enrollment, then serial and token) and resolve.

An ID can be bound only with an enrollment secret the CMS issued for it
(`cms.nodes.enrollment`): a node started with ``--quickconnect-id ID --directory
http://<cms>/qc --quickconnect-enrollment SECRET`` presents it in its first
registration, which binds the ID to the node's serial number and a secret token the
node generated, and spends the secret. Later registrations must present that serial
and token, so no other node can take the ID over, and nobody can claim an ID the CMS
did not issue a secret for. QuickConnect connections are always plain HTTP (the
product offers HTTPS only for the IP/FQDN connection type).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from typing import Any

from django.db import transaction
from django.utils import timezone

from cms.nodes.errors import NodeUnreachable
from cms.nodes.models import QuickConnectEntry

SERIAL_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
# One answer for an unknown ID, an ID waiting for its secret, a wrong secret and a
# wrong serial or token: an anonymous caller learns nothing about which IDs exist.
REFUSED = (
    "QuickConnect registration refused. A node enrolls an ID once with the enrollment "
    "secret the CMS issued for it (cms-node serve --quickconnect-enrollment, shown when "
    "the server was added), then proves itself with its serial and token. If this node "
    "replaced another, ask a CMS administrator for a new enrollment secret."
)


class RegistrationError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def secret_hash(secret: str) -> str:
    """Tokens and enrollment secrets are long random strings: a plain SHA-256 suffices."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _matches(stored: str, secret: str) -> bool:
    return bool(stored) and hmac.compare_digest(stored, secret_hash(secret))


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(HOSTNAME_RE.match(host))


def _parse(body: dict[str, Any], remote_addr: str) -> tuple[str, str, str, str | None, str, int]:
    from cms.inventory.addresses import quickconnect_id_errors

    qc_id, serial, token = body.get("id"), body.get("serial"), body.get("token")
    port, host = body.get("port"), body.get("host") or remote_addr
    enrollment = body.get("enrollment")
    if not isinstance(qc_id, str) or quickconnect_id_errors(qc_id):
        raise RegistrationError(400, "bad_request", "id is not a valid QuickConnect ID")
    if not isinstance(serial, str) or not SERIAL_RE.match(serial):
        raise RegistrationError(400, "bad_request", "serial must be 1-64 letters, digits or -")
    if not isinstance(token, str) or not 16 <= len(token) <= 128:
        raise RegistrationError(400, "bad_request", "token must be 16-128 characters")
    if enrollment is not None and (not isinstance(enrollment, str) or not enrollment):
        raise RegistrationError(400, "bad_request", "enrollment must be a non-empty string")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise RegistrationError(400, "bad_request", "port must be 1-65535")
    if not isinstance(host, str) or not _valid_host(host):
        raise RegistrationError(400, "bad_request", "host must be an IP address or a hostname")
    return qc_id, serial, token, enrollment, host, port


def register(
    body: dict[str, Any], remote_addr: str, *, may_enroll: bool = True
) -> QuickConnectEntry:
    """Bind an ID (with its enrollment secret) or refresh a bound node's address.

    Raise RegistrationError to refuse; a refusal changes nothing. With
    ``may_enroll=False`` (the address is over the rate limit) only the bound node's
    refresh is accepted: an enrollment secret is not even compared.
    """
    qc_id, serial, token, enrollment, host, port = _parse(body, remote_addr)
    with transaction.atomic():
        entry = QuickConnectEntry.objects.select_for_update().filter(qc_id=qc_id).first()
        if entry is None:
            raise RegistrationError(403, "registration_refused", REFUSED)
        if may_enroll and enrollment and _matches(entry.enrollment_hash, enrollment):
            # The secret is spent here: the node that enrolls is bound, whoever held the
            # ID before (an admin issued the secret to replace it).
            entry.serial, entry.token_hash = serial, secret_hash(token)
            entry.host, entry.port, entry.bound_at = host, port, timezone.now()
            entry.enrollment_hash, entry.enrollment_issued_at = "", None
            entry.save()
            return entry
        if entry.is_bound and entry.serial == serial and _matches(entry.token_hash, token):
            entry.host, entry.port = host, port
            entry.save(update_fields=["host", "port", "updated_at"])
            return entry
    raise RegistrationError(403, "registration_refused", REFUSED)


def unknown_id(qc_id: str) -> NodeUnreachable:
    return NodeUnreachable(
        f"QuickConnect ID {qc_id!r} is not registered with this CMS; start the node with "
        "--quickconnect-id, --directory pointing at this CMS's /qc/ and the enrollment "
        "secret the CMS issued for the ID",
        code="quickconnect_unknown",
    )


def resolve(qc_id: str) -> tuple[str, int]:
    """Where the node bound to this QuickConnect ID registered last."""
    entry = (
        QuickConnectEntry.objects.filter(qc_id=qc_id)
        .exclude(token_hash="")
        .only("host", "port")
        .first()
    )
    if entry is None or not entry.host or entry.port is None:
        raise unknown_id(qc_id)
    return entry.host, entry.port


def resolve_for(user: Any, qc_id: str) -> tuple[str, int]:
    """`resolve`, for a user: an ID of no server they may see is unknown to them."""
    from cms.inventory.choices import ConnectionType
    from cms.inventory.models import Server

    visible = Server.objects.for_user(user).filter(
        connection_type=ConnectionType.QUICKCONNECT, quickconnect_id=qc_id
    )
    if not visible.exists():
        raise unknown_id(qc_id)
    return resolve(qc_id)


def may_reach(user: Any, qc_id: str) -> bool:
    """May `user` reach the node of `qc_id` before adding a server with it (Test
    Connection)? Not when it is the ID of a server they may not see: that team's node
    would tell its identity and take their password guesses."""
    from cms.inventory.choices import ConnectionType
    from cms.inventory.models import Server

    using = Server.objects.filter(
        connection_type=ConnectionType.QUICKCONNECT, quickconnect_id=qc_id
    )
    return not using.exclude(pk__in=Server.objects.for_user(user).values("pk")).exists()
