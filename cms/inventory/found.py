"""What a server found by the LAN search is to this CMS: its status in the search results.

One rule for the Add Server search, Add Batch and the API's ``search/``: **Available**,
**Added** (managed here, with its name), **Paired with another host**, **Locked**,
**Update required** and **Incompatible** (the node's version against this CMS's,
`cms.nodes.versions`). Only an Available server can be picked; one whose CMS service is
not enabled is Available and offers Enable first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import models

from cms.nodes.versions import Compatibility, cms_version, compatibility

from .models import Server


class FoundStatus(models.TextChoices):
    AVAILABLE = "available", "Available"
    ADDED = "added", "Added"
    PAIRED_ELSEWHERE = "paired_elsewhere", "Paired with another host"
    LOCKED = "locked", "Locked"
    UPDATE_REQUIRED = "update_required", "Update required"
    INCOMPATIBLE = "incompatible", "Incompatible"


@dataclass(frozen=True)
class Verdict:
    status: FoundStatus
    detail: str = ""  # the name it has here, what to do, or why not

    @property
    def label(self) -> str:
        label = str(self.status.label)
        return f"{label} ({self.detail})" if self.status == FoundStatus.ADDED else label


def verdict(found: dict[str, Any], added_as: dict[str, str | None]) -> Verdict:
    """The status of one search result; ``added_as`` maps the serials managed here to the
    name the user may see (None: a team they are not in)."""
    serial = found.get("serial") or ""
    if serial in added_as:
        name = added_as[serial]
        return Verdict(FoundStatus.ADDED, name if name is not None else "in another team")
    if found.get("paired_elsewhere"):
        # A lock set by this host (paired with it) is no obstacle here: only another's.
        if found.get("locked"):
            return Verdict(FoundStatus.LOCKED, "Another CMS host manages it with its lock on.")
        return Verdict(
            FoundStatus.PAIRED_ELSEWHERE, "Another CMS host manages it: disable its CMS there."
        )
    fit = compatibility(str(found.get("version") or ""))
    if fit == Compatibility.INCOMPATIBLE:
        return Verdict(
            FoundStatus.INCOMPATIBLE,
            f"Its version {found.get('version') or '(none)'} does not work with this CMS "
            f"({cms_version()}).",
        )
    if fit == Compatibility.UPDATE_REQUIRED:
        return Verdict(
            FoundStatus.UPDATE_REQUIRED,
            f"Update it to {cms_version()} or later (it runs {found.get('version')}).",
        )
    return Verdict(FoundStatus.AVAILABLE)


def added_names(serials: Iterable[str], user: Any) -> dict[str, str | None]:
    """Serial -> the name of the server that has it here (None when the user may not see it)."""
    serials = [s for s in serials if s]
    managed = dict(Server.objects.filter(serial__in=serials).values_list("serial", "name"))
    visible = set(
        Server.objects.for_user(user).filter(serial__in=managed).values_list("serial", flat=True)
    )
    return {serial: (name if serial in visible else None) for serial, name in managed.items()}


def with_status(found: list[dict[str, Any]], user: Any, role: str) -> list[dict[str, Any]]:
    """The search results with ``status``, ``status_label``, ``status_detail`` and
    ``selectable`` (Available, and its CMS service on in this tab's mode)."""
    added = added_names((f.get("serial") or "" for f in found), user)
    results = []
    for item in found:
        v = verdict(item, added)
        usable = bool(item.get("cms_enabled")) and item.get("cms_mode") == role
        results.append(
            item
            | {
                "status": v.status.value,
                "status_label": v.label,
                "status_detail": v.detail,
                "selectable": v.status == FoundStatus.AVAILABLE and usable,
            }
        )
    return results
