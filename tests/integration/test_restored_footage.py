"""Restored footage keeps its time: after a failover, a failback and a restoration, the
recording server finds what the failover server recorded where it was recorded.

Real node agents, the real database; the engine's steps are called directly.
"""

from __future__ import annotations

import datetime as dt

import pytest

from failover import engine, probing
from failover.choices import EventState
from tests.fixtures.nodes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def footage(client, **filters) -> set[tuple]:
    """What a time-range search shows of each file (the path differs between servers)."""
    return {
        (f["kind"], f["camera"], f["start"], f["end"], f["size"], f["sha256"])
        for f in client.list_recordings(**filters)
    }


def test_a_search_for_the_failover_period_finds_exactly_what_the_failover_server_recorded(
    make_fleet,
):
    fleet = make_fleet(failovers=1)
    rec, fo = fleet.recording_node.client(), fleet.failover_nodes[0].client()
    wait_until(lambda: any(rec.list_recordings(origin="own")), message="an own segment")
    # The volume fault stops the recording server's own recording: from here until the
    # fault is cleared, only the failover server records its cameras.
    event = fleet.fail_over("volume")
    assert event.state == EventState.ACTIVE
    since = now_iso()
    wait_until(
        lambda: len(footage(fo, on_behalf_of=event.node_tag, since=since)) >= 8,
        timeout=30,
        message="recordings and snapshots made during the failover",
    )
    until = now_iso()
    rec.set_fault("clear")
    for _ in range(2):
        probing.run_cycle(force=True)
    assert engine.step(event.pk) == EventState.FAILING_BACK
    assert engine.step(event.pk) == EventState.RESTORING  # released: its files are final
    recorded = footage(fo, on_behalf_of=event.node_tag, since=since, until=until)
    assert {kind for kind, *_ in recorded} == {"recording", "snapshot"}
    assert footage(rec, since=since, until=until) == set()  # its volume was down

    assert engine.advance(event.pk) == EventState.COMPLETED
    assert footage(fo, on_behalf_of=event.node_tag) == set()  # moved, not copied
    assert footage(rec, since=since, until=until) == recorded
    for camera in {c for _, c, *_ in recorded}:
        assert footage(rec, camera=camera, since=since, until=until) == {
            f for f in recorded if f[1] == camera
        }


def test_an_upload_without_times_is_indexed_when_it_arrives(start_node):
    """Older clients send no start and end: the file is kept, at the time it arrived."""
    import hashlib

    node = start_node(mode="recording", name="plain")
    client = node.client()
    data = b"older client" * 100
    before = now_iso()
    client.upload(
        "own/cam9/2026-01-01/000000.000.seg", data, len(data), hashlib.sha256(data).hexdigest(),
        camera="cam9",
    )  # fmt: skip
    (item,) = client.list_recordings(camera="cam9")
    assert before <= item["start"] == item["end"] <= now_iso()
    assert item["size"] == len(data)
