"""Which node versions this CMS works with.

Versions are ``major.minor.patch``. The same major.minor speaks the same protocol: a
node with an older patch works but needs an update (it lacks fixes the CMS expects);
a newer patch is fine; another major.minor is incompatible. The CMS's version is the
installed distribution's (pyproject.toml); a node reports its own (``/info`` and the
LAN search).
"""

from __future__ import annotations

import re
from enum import StrEnum
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version

_VERSION = re.compile(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?")


class Compatibility(StrEnum):
    COMPATIBLE = "compatible"
    UPDATE_REQUIRED = "update_required"
    INCOMPATIBLE = "incompatible"


def cms_version() -> str:
    try:
        return installed_version("failover-cms")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


def _parts(text: str) -> tuple[int, int, int] | None:
    match = _VERSION.match(text or "")
    if not match:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def compatibility(node_version: str, cms: str | None = None) -> Compatibility:
    """How a node of ``node_version`` fits this CMS (``cms``: its version, for tests)."""
    node, ours = _parts(node_version), _parts(cms if cms is not None else cms_version())
    if node is None or ours is None or node[:2] != ours[:2]:
        return Compatibility.INCOMPATIBLE
    if node[2] < ours[2]:
        return Compatibility.UPDATE_REQUIRED
    return Compatibility.COMPATIBLE
