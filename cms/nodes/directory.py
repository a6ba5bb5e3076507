"""QuickConnect directory logic: register (hijack-proof) and resolve.

Nodes started with ``--quickconnect-id ID --directory http://<cms>/qc`` POST their
current address to ``/qc/register``. The first registration binds the ID to the
node's serial number and a secret token the node generated; later registrations
must present both, so another node cannot take the ID over. An admin frees an ID
by deleting its entry in the Django admin. QuickConnect connections are always
plain HTTP (the product offers HTTPS only for the IP/FQDN connection type).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from typing import Any

from django.db import IntegrityError, transaction

from cms.nodes.errors import NodeUnreachable
from cms.nodes.models import QuickConnectEntry

SERIAL_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


class RegistrationError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(HOSTNAME_RE.match(host))


def register(body: dict[str, Any], remote_addr: str) -> QuickConnectEntry:
    """Create or refresh a registration; raise RegistrationError to refuse."""
    from cms.inventory.addresses import quickconnect_id_errors

    qc_id, serial, token = body.get("id"), body.get("serial"), body.get("token")
    port, host = body.get("port"), body.get("host") or remote_addr
    if not isinstance(qc_id, str) or quickconnect_id_errors(qc_id):
        raise RegistrationError(400, "bad_request", "id is not a valid QuickConnect ID")
    if not isinstance(serial, str) or not SERIAL_RE.match(serial):
        raise RegistrationError(400, "bad_request", "serial must be 1-64 letters, digits or -")
    if not isinstance(token, str) or not 16 <= len(token) <= 128:
        raise RegistrationError(400, "bad_request", "token must be 16-128 characters")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise RegistrationError(400, "bad_request", "port must be 1-65535")
    if not isinstance(host, str) or not _valid_host(host):
        raise RegistrationError(400, "bad_request", "host must be an IP address or a hostname")
    digest = _token_hash(token)
    for _ in range(2):  # a concurrent first registration loses the unique race: re-check
        try:
            with transaction.atomic():
                entry = QuickConnectEntry.objects.select_for_update().filter(qc_id=qc_id).first()
                if entry is None:
                    return QuickConnectEntry.objects.create(
                        qc_id=qc_id, serial=serial, token_hash=digest, host=host, port=port
                    )
                if entry.serial != serial or not hmac.compare_digest(entry.token_hash, digest):
                    raise RegistrationError(
                        403,
                        "id_taken",
                        f"QuickConnect ID {qc_id} belongs to another node; an admin must "
                        "delete its registration first",
                    )
                entry.host, entry.port = host, port
                entry.save(update_fields=["host", "port", "updated_at"])
                return entry
        except IntegrityError:
            continue
    raise RegistrationError(409, "conflict", "concurrent registration; retry")


def resolve(qc_id: str) -> tuple[str, int]:
    """Where the node with this QuickConnect ID registered last."""
    entry = QuickConnectEntry.objects.filter(qc_id=qc_id).only("host", "port").first()
    if entry is None:
        raise NodeUnreachable(
            f"QuickConnect ID {qc_id!r} is not registered with this CMS; start the node with "
            "--quickconnect-id and --directory pointing at this CMS's /qc/",
            code="quickconnect_unknown",
        )
    return entry.host, entry.port
