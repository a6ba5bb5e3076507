"""What the fault tests share: driving probe cycles, reading what each node records."""

from __future__ import annotations

import hashlib
from typing import Any

from failover import probing


def cycles(n: int) -> None:
    """`n` probe cycles, as beat would run them one interval apart."""
    for _ in range(n):
        probing.run_cycle(force=True)


def failover_files(node: Any, tag: str) -> list[dict]:
    return list(node.client().list_recordings(origin="failover", on_behalf_of=tag))


def own_files(node: Any) -> dict[str, dict]:
    return {f["path"]: f for f in node.client().list_recordings(origin="own")}


def recording_for(node: Any) -> str | None:
    return (node.client().health()["recording"]["on_behalf_of"] or {}).get("id")


def acting_nodes(nodes: list[Any], tag: str) -> list[int]:
    """Which of `nodes` (by index) record for `tag` now; a dead node records nothing."""
    acting = []
    for i, node in enumerate(nodes):
        if node.process is None or node.process.poll() is not None:
            continue
        try:
            if recording_for(node) == tag:
                acting.append(i)
        except Exception:  # noqa: S112 (a node that does not answer records for no one we know)
            continue
    return acting


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
