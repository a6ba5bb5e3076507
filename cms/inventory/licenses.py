"""License keys: installing them on nodes and the record of every move.

The node is changed first, with no transaction open (a slow node must not hold the
database); then one short transaction records the move, if the license is still where
it was read. A license moved meanwhile is not taken: the node change is undone and the
caller hears why.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from .models import License, LicenseMove, Server

log = logging.getLogger(__name__)

ANYWHERE = object()  # record_move's default: no expectation about the current server


class LicenseMovedMeanwhile(Exception):
    """The license was installed, moved or created elsewhere while a node was changed."""


class LicenseOfAnotherTeam(Exception):
    """A team's license goes only on that team's servers, whoever may manage both."""


def check_same_team(license: License, server: Server) -> None:
    if license.team_id != server.team_id:
        raise LicenseOfAnotherTeam(
            f"License {license.key} belongs to team {license.team}: it can be installed only "
            f"on a server of that team, and {server.name} belongs to {server.team}. Nothing "
            "was changed."
        )


def record_move(
    license: License,
    to_server: Server | None,
    *,
    reason: str,
    actor: str,
    expected_from: int | object | None = ANYWHERE,
) -> LicenseMove:
    """Point the license at `to_server` and append the move to its history, atomically.

    A license not saved yet is created here. With `expected_from` (a server id, or None
    for "installed nowhere") the move happens only if the license is still there;
    otherwise LicenseMovedMeanwhile is raised and nothing changes.
    """
    creating = license.pk is None
    try:
        with transaction.atomic():
            if creating:
                license.server = None
                license.save()
            locked = (
                License.objects.select_for_update(of=("self",))
                .select_related("server")
                .get(pk=license.pk)
            )
            from_server = locked.server
            if expected_from is not ANYWHERE and locked.server_id != expected_from:
                where = f"installed on {from_server.name}" if from_server else "removed"
                raise LicenseMovedMeanwhile(
                    f"License {locked.key} was {where} meanwhile; nothing was changed."
                )
            locked.server = to_server
            locked.save(update_fields=["server"])
            move = LicenseMove.objects.create(
                license=locked,
                from_server=from_server,
                from_server_name=from_server.name if from_server else "",
                to_server=to_server,
                to_server_name=to_server.name if to_server else "",
                reason=reason,
                actor=actor,
            )
    except IntegrityError:
        if not creating:
            raise
        license.pk = None  # the insert was rolled back with the rest
        if License.objects.filter(key=license.key).exists():
            raise LicenseMovedMeanwhile(
                f"License {license.key} was added meanwhile; nothing was changed."
            ) from None
        raise
    license.server = to_server
    return move


def install(license: License, server: Server, *, actor: str) -> LicenseMove:
    """Install on `server`'s node, record the move, then uninstall from the previous one.

    `license` may be new (not saved): it is created with the move, so a refused install
    leaves nothing behind. A license of another team than the server's is refused
    (LicenseOfAnotherTeam) before the node is touched. The move is recorded only if the
    license is still where it was read (LicenseMovedMeanwhile otherwise, and the install
    is undone).
    """
    from cms.nodes.client import client_for
    from cms.nodes.errors import NodeError, NodeRefused

    check_same_team(license, server)  # before the node is asked anything
    expected = license.server_id if license.pk else None
    previous = license.server if expected else None
    client_for(server).install_license(license.key, license.cameras)
    try:
        move = record_move(
            license, server, reason=f"Installed on {server.name}", actor=actor,
            expected_from=expected,
        )  # fmt: skip
    except LicenseMovedMeanwhile:
        _undo_install(license.key, server)
        raise
    if previous is not None and previous.pk != server.pk:
        try:
            client_for(previous).remove_license(license.key)
        except NodeRefused:
            pass  # not installed there any more
        except NodeError:
            pass  # unreachable: the CMS's record moves; the node is corrected when replaced
    return move


def uninstall(license: License, *, actor: str) -> LicenseMove | None:
    """Remove from the node it is installed on, then record it as installed nowhere."""
    from cms.nodes.client import client_for
    from cms.nodes.errors import NodeRefused

    server = license.server
    if server is None:
        return None
    try:
        client_for(server).remove_license(license.key)
    except NodeRefused:
        pass  # already gone from the node
    return record_move(
        license, None, reason=f"Removed from {server.name}", actor=actor,
        expected_from=server.pk,
    )  # fmt: skip


def _undo_install(key: str, server: Server) -> None:
    """Take back an install whose move lost the race, unless the winner put the key on
    that same server (then it belongs there)."""
    from cms.nodes.client import client_for
    from cms.nodes.errors import NodeError

    if License.objects.filter(key=key, server=server).exists():
        return
    try:
        client_for(server).remove_license(key)
    except NodeError as exc:
        log.warning("license %s stays on %s's node after a lost race: %s", key, server.name, exc)
