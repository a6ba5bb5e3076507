"""Enabling a node's CMS service, all or nothing: a step that fails after the node was
changed puts the node back as it was.

Enabling changes the node (CMS service on, mode, pairing, security lock). It is undone
by turning the service off again, which is exactly where a node whose service was off
started from; a node whose service was already on is never enabled again by these doors
(the search's Enable link and batch add are for nodes without it), so nothing has to
be rebuilt that this CMS cannot know (another host's pairing).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from cms.nodes.client import NodeClient, client_for
from cms.nodes.errors import NodeError

log = logging.getLogger(__name__)


@dataclass
class Enabled:
    """A node whose CMS service this request turned on, and how to turn it off again."""

    client: NodeClient
    info: dict[str, Any]

    def undo(self) -> None:
        """Turn the service off again (standalone, unpaired, unlocked: as it was), and
        forget the pairing key kept for it."""
        from cms.nodes.models import PendingPairing

        try:
            self.client.disable_cms()  # signed with the key it was just paired with
        except NodeError as exc:  # said, never hidden: the operator can turn it off by hand
            log.warning("could not turn the CMS service of %s:%s off again: %s",
                        self.client.host, self.client.port, exc)  # fmt: skip
        PendingPairing.objects.filter(serial=self.info.get("serial", "")).delete()


def enable(server: Any, role: str, *, refuse_other_hosts: bool = False,
           refuse_local_changes: bool = False) -> Enabled:  # fmt: skip
    """Enable the CMS service of `server`'s node in `role`'s mode; undone if enabling
    itself fails after the node took it (the pairing key could not be kept)."""
    client = client_for(server, pin=False)
    try:
        info = client.enable_cms(role, refuse_other_hosts=refuse_other_hosts,
                                 refuse_local_changes=refuse_local_changes)  # fmt: skip
    except BaseException:
        with contextlib.suppress(NodeError):
            after = client.info()
            if after.get("cms_enabled"):  # it was off (the callers checked): put it back
                Enabled(client, after).undo()
        raise
    return Enabled(client, info)


def undo_all(done: list[Enabled]) -> None:
    for enabled in reversed(done):
        enabled.undo()
