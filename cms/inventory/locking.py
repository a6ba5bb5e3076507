"""Lock and unlock: the security lock of a server's CMS service.

A locked server refuses management by any other CMS host and changes made on the
server itself; the lock is set on the node by re-pairing it in the same mode, with
the credentials the CMS already holds.
"""

from __future__ import annotations

from cms.nodes.client import client_for

from .models import Server


def set_lock(server: Server, locked: bool) -> Server:
    """Lock or unlock `server` on its node, then record what the node reports."""
    info = client_for(server).enable_cms(
        server.role, refuse_other_hosts=locked, refuse_local_changes=locked
    )
    server.locked = bool(info.get("locked"))
    server.save(update_fields=["locked", "updated_at"])
    return server
