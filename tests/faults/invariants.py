"""The invariants every fault test checks, in one place.

- every event reaches a terminal or a waiting state within a stated bound;
- no camera is unrecorded longer than the bound (the recording server died at a known
  instant; a failover server records all its cameras by then);
- never two takeovers for one recording server (one node, at most, records on its
  behalf, and one takeover was confirmed);
- every file accounted for by sha256 (each file the failover server recorded is on the
  recording server with the same bytes once restoration completed).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable

from django.db.models import F

from failover.lifecycle import FINAL_STATES, WAITING_STATES
from failover.models import FailoverEvent
from tests.fixtures.nodes import RunningNode, wait_until

SETTLED = FINAL_STATES | WAITING_STATES


def settles(event_id: int, within: float, states: Iterable[str] = SETTLED) -> FailoverEvent:
    """The event is in one of `states` within `within` seconds (polling the database)."""
    wanted = set(states)

    def state() -> FailoverEvent | None:
        event = FailoverEvent.objects.get(pk=event_id)
        return event if event.state in wanted else None

    last = FailoverEvent.objects.get(pk=event_id)
    try:
        return wait_until(state, timeout=within, interval=0.1, message=f"one of {sorted(wanted)}")
    except AssertionError:
        last.refresh_from_db()
        raise AssertionError(
            f"event {event_id} is still {last.state} after {within} s:\n{timeline(last)}"
        ) from None


def timeline(event: FailoverEvent) -> str:
    return "\n".join(
        f"  {t.from_state} -> {t.to_state}: {t.reason}"
        for t in event.transitions.order_by("pk")[:60]
    )


def takeovers_confirmed(event: FailoverEvent) -> int:
    return event.transitions.filter(to_state="active").exclude(from_state=F("to_state")).count()


def acting_for(nodes: Iterable[RunningNode], node_tag: str) -> list[str]:
    """The names of the nodes that record on behalf of `node_tag` (asked directly, not
    through any proxy the test put in between)."""
    acting = []
    for node in nodes:
        owner = node.client().health()["recording"].get("on_behalf_of") or {}
        if owner.get("id") == node_tag:
            acting.append(node.name)
    return acting


def one_takeover(event: FailoverEvent, nodes: Iterable[RunningNode]) -> str:
    """One confirmed takeover and exactly one node recording for the event; its name."""
    assert takeovers_confirmed(event) == 1, timeline(event)
    acting = acting_for(nodes, event.node_tag)
    assert len(acting) == 1, f"recording on behalf of {event.node_tag}: {acting}"
    return acting[0]


def recorded_within(
    died_at: float, bound: float, node: RunningNode, node_tag: str, cameras: int
) -> float:
    """Every one of the `cameras` records on `node` for `node_tag` within `bound` seconds
    of `died_at` (time.monotonic()); how long it took."""

    def all_recording() -> bool:
        recording = node.client().health()["recording"]
        ours = [c for c in recording.get("cameras", []) if c.get("on_behalf_of") == node_tag]
        return len(ours) >= cameras and all(c.get("segments") for c in ours)

    left = bound - (time.monotonic() - died_at)
    assert left > 0, f"the bound of {bound} s was over before the failover server recorded"
    wait_until(all_recording, timeout=left, interval=0.1, message="every camera recorded")
    return time.monotonic() - died_at


class FileLedger:
    """Every file a failover server records for one recording server, with its last
    sha256, as listed by the node itself; polled in a thread so that a file restored
    and deleted between two looks of the test is still on the ledger."""

    def __init__(self, nodes: Iterable[RunningNode], node_tag: str) -> None:
        self.nodes = list(nodes)
        self.node_tag = node_tag
        self.files: dict[str, str] = {}  # failover/<tag>/... -> sha256
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        clients = [node.client() for node in self.nodes]
        while not self._stop.wait(0.2):
            for client in clients:
                try:
                    for item in client.list_recordings(on_behalf_of=self.node_tag):
                        self.files[item["path"]] = item["sha256"]
                except Exception:  # noqa: S112 (a node down for the test: look again later)
                    continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def unaccounted(self, recording: RunningNode) -> list[str]:
        """Files on the ledger whose bytes are neither on the recording server (as
        own/...) nor still on a failover server, both checked by hashing the bytes."""
        self.stop()
        missing = []
        for path, sha in sorted(self.files.items()):
            own = "own/" + path.split("/", 2)[2]
            if _sha_of(recording, own) == sha:
                continue
            if any(_sha_of(node, path) == sha for node in self.nodes):
                continue
            missing.append(path)
        return missing


def _sha_of(node: RunningNode, path: str) -> str | None:
    try:
        with node.client().open_download(path) as download:
            digest = hashlib.sha256()
            for chunk in download.chunks():
                digest.update(chunk)
        return digest.hexdigest()
    except Exception:
        return None
