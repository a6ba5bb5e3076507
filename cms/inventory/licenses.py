"""License keys: their format and the record of every move."""

from __future__ import annotations

import re

from django.db import transaction

from .models import License, LicenseMove, Server

_KEY = re.compile(r"^[A-Z0-9]{4,8}(-[A-Z0-9]{4,8}){1,7}$")


def license_key_errors(key: str) -> list[str]:
    if not key:
        return ["Enter the license key."]
    if not _KEY.match(key):
        return [
            "A license key is groups of 4 to 8 letters or digits separated by hyphens, "
            "for example ABCD-1234-EFGH-5678."
        ]
    return []


def record_move(
    license: License, to_server: Server | None, *, reason: str, actor: str
) -> LicenseMove:
    """Point the license at `to_server` and append the move to its history, atomically."""
    with transaction.atomic():
        locked = (
            License.objects.select_for_update(of=("self",))
            .select_related("server")
            .get(pk=license.pk)
        )
        from_server = locked.server
        locked.server = to_server
        locked.save(update_fields=["server"])
        license.server = to_server
        return LicenseMove.objects.create(
            license=locked,
            from_server=from_server,
            from_server_name=from_server.name if from_server else "",
            to_server=to_server,
            to_server_name=to_server.name if to_server else "",
            reason=reason,
            actor=actor,
        )


def install(license: License, server: Server, *, actor: str) -> LicenseMove:
    """Install on `server`'s node, uninstall from the previous one, record the move."""
    from cms.nodes.client import client_for
    from cms.nodes.errors import NodeError, NodeRefused

    client_for(server).install_license(license.key, license.cameras)
    previous = license.server
    if previous is not None and previous.pk != server.pk:
        try:
            client_for(previous).remove_license(license.key)
        except NodeRefused:
            pass  # not installed there any more
        except NodeError:
            pass  # unreachable: the CMS's record moves; the node is corrected when replaced
    return record_move(license, server, reason=f"Installed on {server.name}", actor=actor)


def uninstall(license: License, *, actor: str) -> LicenseMove | None:
    from cms.nodes.client import client_for
    from cms.nodes.errors import NodeRefused

    if license.server is None:
        return None
    try:
        client_for(license.server).remove_license(license.key)
    except NodeRefused:
        pass  # already gone from the node
    return record_move(license, None, reason=f"Removed from {license.server.name}", actor=actor)
