"""The inventory's operator actions: enable, disable, edit, delete, lock, and enabling a
node's CMS service. The admin and the API call these; each checks its permission, asks
for confirmation where the product does, and leaves its mark in the audit trail.

Another app may have duties towards a server (failover stops what a failover server
does before it is disabled, edited or deleted). It says so through `extend()`, from its
`ready()`: the inventory asks every registered `ServerDuties` what an action would cost
and lets it act first, without knowing what it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol, TypeVar

from cms import audit
from cms.actions import confirm, require, require_perm
from cms.nodes.client import client_for
from cms.nodes.errors import NodeRefused
from cms.nodes.webcalls import address_of, web_node_call

from . import enabling, locking
from .models import Server

log = logging.getLogger(__name__)

Change = Literal["disabled", "edited", "deleted"]
T = TypeVar("T")


class ServerDuties(Protocol):
    def consequences(self, server: Server, change: Change) -> list[str]:
        """What `change` of `server` would cost, as sentences for the user to confirm."""
        ...

    def before(self, server: Server, change: Change, *, actor: str) -> None:
        """Act before `change` happens (called once it is confirmed)."""
        ...


_duties: list[ServerDuties] = []


def extend(duties: ServerDuties) -> None:
    """Register an app's duties towards servers (once per kind)."""
    if not any(type(d) is type(duties) for d in _duties):
        _duties.append(duties)


def consequences(servers: Iterable[Server], change: Change) -> list[str]:
    """Every sentence the user must confirm before `change` of `servers`."""
    return [line for server in servers for d in _duties for line in d.consequences(server, change)]


def _before(servers: Iterable[Server], change: Change, user: Any) -> None:
    for server in servers:
        for d in _duties:
            d.before(server, change, actor=audit.actor_name(user))


def set_enabled(user: Any, servers: Iterable[Server], enabled: bool, *,
                confirmed: bool = False) -> int:  # fmt: skip
    """Enable or disable `servers`; disabling one with duties needs `confirmed`."""
    require(user, "enable")
    servers = list(servers)
    if not enabled:
        confirm(consequences(servers, "disabled"), confirmed)
        _before(servers, "disabled", user)
    # A save per server, so the audit trail records who changed which.
    return Server.objects.filter(pk__in=[s.pk for s in servers]).set_enabled(enabled)


def confirm_edit(server: Server, *, confirmed: bool) -> None:
    """Refuse an edit of `server` whose consequences were not confirmed."""
    confirm(consequences([server], "edited"), confirmed)


def edit(user: Any, server: Server, save: Callable[[], T], *, confirmed: bool,
         changed: bool = True) -> T:  # fmt: skip
    """Save an edit of the stored `server` (`save` writes it), after its duties; a save
    that changes nothing (`changed` false) has none."""
    require_perm(user, f"inventory.change_{server.role}server")
    if changed:
        confirm_edit(server, confirmed=confirmed)
        _before([server], "edited", user)
    return save()


def delete(user: Any, servers: Iterable[Server], *, confirmed: bool) -> int:
    """Delete `servers`, one by one so the trail records each, after their duties."""
    servers = list(servers)
    for role in {s.role for s in servers}:
        require_perm(user, f"inventory.delete_{role}server")
    confirm(consequences(servers, "deleted"), confirmed)
    _before(servers, "deleted", user)
    for server in servers:
        server.delete()
    return len(servers)


def set_lock(user: Any, server: Server, locked: bool) -> Server:
    """Lock or unlock `server`'s CMS service on its node (the save is in the trail)."""
    require(user, "lock")
    with web_node_call(address_of(server)):
        return locking.set_lock(server, locked)


def enable_cms_service(user: Any, server: Server, lock: dict[str, bool], *,
                       remote_addr: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Enable the CMS service of a node not added yet, in `server.role`'s mode.

    It sets the node's mode and its security lock: the lock permission as well. No
    server row exists yet, so the trail gets an entry of its own, by its address.
    """
    require(user, "test_connection")
    require(user, "lock")
    with web_node_call(address_of(server)):
        before = client_for(server, pin=False).info()
        if before.get("cms_enabled"):
            # Enabling again would pair it anew (with another host's pairing lost, which
            # this CMS could not put back): the Enable link is for a node without it.
            raise NodeRefused(
                f"The CMS service of {before.get('name') or server.address} is already "
                f"enabled, in {before.get('cms_mode')} mode: nothing to enable.",
                code="already_enabled",
            )
        done = enabling.enable(server, server.role, **lock)
        try:
            on = ", ".join(k for k, value in lock.items() if value) or "none"
            log.info("%s enabled the CMS service of %s in %s mode (lock: %s)",
                     audit.actor_name(user), address_of(server), server.role, on)  # fmt: skip
            audit.record(
                user, Server, f"CMS service of {server.address} enabled",
                {"cms_mode": [None, server.role], **{k: [None, v] for k, v in lock.items()}},
                remote_addr=remote_addr,
            )  # fmt: skip
        except BaseException:
            done.undo()  # not kept in the trail: not kept on the node either
            raise
    return done.info
