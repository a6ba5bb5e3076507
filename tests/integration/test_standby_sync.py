"""Standby configurations kept current on the failover servers by a real Celery worker,
and the takeover in one step that they allow, against real agents."""

from __future__ import annotations

import signal

import pytest

from failover import probing
from failover.choices import EventState
from failover.engine import refresh_snapshot
from failover.models import ConfigSnapshot, FailoverEvent, Protection
from failover.standby import owner_tag
from tests.fixtures.celery import SESSION_QUEUE, purge, start_worker
from tests.fixtures.fleet import register
from tests.fixtures.nodes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(tmp_path):
    purge(SESSION_QUEUE)
    process = start_worker(tmp_path, queue=SESSION_QUEUE)
    yield process
    process.stop(signal.SIGTERM)


def held(node) -> dict[str, str]:
    return {e["id"]: e["version"] for e in node.client().list_standby()}


def latest_version(server) -> str:
    return ConfigSnapshot.objects.filter(server=server).order_by("-taken_at", "-pk")[0].version


def test_adding_a_protection_puts_the_configuration_on_the_failover_server(
    start_node, team, failover_settings, worker
):
    rec_node = start_node(mode="recording", name="lobby", cameras=2)
    recording = register(rec_node, team, "recording", "Lobby")
    snapshot = refresh_snapshot(recording)
    fo_node = start_node(mode="failover", name="standby1")
    failover = register(fo_node, team, "failover", "Standby 1")
    assert held(fo_node) == {}

    protection = Protection.objects.create(recording_server=recording, failover_server=failover)
    tag = owner_tag(recording.pk)
    wait_until(lambda: held(fo_node) == {tag: snapshot.version}, timeout=30,
               message=f"standby put\n{worker.log()[-3000:]}")  # fmt: skip
    # What it holds is what a takeover by that version records.
    fo_node.client().takeover(7, {"id": tag, "name": "Lobby"}, config_version=snapshot.version)
    cameras = fo_node.client().health()["recording"]["cameras"]
    assert sorted(c["id"] for c in cameras) == sorted(c["id"] for c in snapshot.config["cameras"])
    fo_node.client().release(7)

    protection.delete()
    wait_until(lambda: held(fo_node) == {}, timeout=30,
               message=f"standby dropped\n{worker.log()[-3000:]}")  # fmt: skip

    # The recording server deleted: its protections go, and so does its configuration.
    Protection.objects.create(recording_server=recording, failover_server=failover)
    wait_until(lambda: held(fo_node) == {tag: snapshot.version}, timeout=30,
               message=f"standby put again\n{worker.log()[-3000:]}")  # fmt: skip
    recording.delete()
    wait_until(lambda: held(fo_node) == {}, timeout=30,
               message=f"standby dropped with its server\n{worker.log()[-3000:]}")  # fmt: skip


def test_a_changed_camera_reaches_the_failover_servers_after_the_next_probe_cycles(
    make_fleet, worker
):
    fleet = make_fleet(failovers=2)
    tag = owner_tag(fleet.recording.pk)
    first = latest_version(fleet.recording)

    def synced(version: str) -> bool:
        probing.run_cycle(force=True)
        return all(held(node) == {tag: version} for node in fleet.failover_nodes)

    wait_until(lambda: synced(first), timeout=30, interval=0.5,
               message=f"first sync\n{worker.log()[-3000:]}")  # fmt: skip

    client = fleet.recording_node.client()
    config = client.get_config()
    cameras = [*config["cameras"], {"id": "yard", "name": "Yard", "source": "synthetic"}]
    new = str(client.put_config(cameras, config["etag"])["version"])
    assert new != first
    wait_until(lambda: synced(new), timeout=30, interval=0.5,
               message=f"changed camera synced\n{worker.log()[-3000:]}")  # fmt: skip

    # Drift behind the CMS's back (a standby deleted, one left that nothing protects) is
    # seen in the probe cycle and put right.
    fleet.failover_nodes[0].client().delete_standby(tag)
    fleet.failover_nodes[1].client().put_standby("rs999999", "Gone", {"version": "1",
                                                                      "cameras": []})  # fmt: skip
    wait_until(lambda: synced(new), timeout=60, interval=0.5,
               message=f"drift repaired\n{worker.log()[-3000:]}")  # fmt: skip


def test_a_failover_takes_over_in_one_step_and_without_the_standby_still_takes_over(
    make_fleet, worker
):
    fleet = make_fleet(failovers=1)
    tag = owner_tag(fleet.recording.pk)
    version = latest_version(fleet.recording)
    wait_until(lambda: held(fleet.failover_nodes[0]) == {tag: version}, timeout=30,
               message=f"standby put\n{worker.log()[-3000:]}")  # fmt: skip

    event = fleet.fail_over()
    assert event.state == EventState.ACTIVE
    notes = list(event.transitions.values_list("reason", flat=True))
    assert any("taken over in one step" in n for n in notes), notes
    health = fleet.failover_nodes[0].client().health()
    assert health["recording"]["on_behalf_of"]["id"] == tag
    assert all(c["open"] for c in health["recording"]["cameras"])
    assert len(health["recording"]["cameras"]) == len(event.config["cameras"])


def test_without_the_standby_a_failover_sends_the_full_configuration(make_fleet):
    fleet = make_fleet(failovers=1)
    tag = owner_tag(fleet.recording.pk)
    node = fleet.failover_nodes[0]
    # Held by an earlier sync, then deleted behind the CMS's back; no worker syncs it again.
    node.client().put_standby(tag, "Lobby", ConfigSnapshot.objects.get(server=fleet.recording)
                              .config)  # fmt: skip
    node.client().delete_standby(tag)

    event = fleet.fail_over()
    assert event.state == EventState.ACTIVE
    notes = list(event.transitions.values_list("reason", flat=True))
    assert any("with the full configuration (standby_missing)" in n for n in notes), notes
    assert not any("one step" in n for n in notes)
    health = node.client().health()
    assert health["recording"]["on_behalf_of"]["id"] == tag
    assert len(health["recording"]["cameras"]) == 2
    assert FailoverEvent.objects.count() == 1


def test_a_stale_standby_is_not_recorded(make_fleet):
    fleet = make_fleet(failovers=1)
    tag = owner_tag(fleet.recording.pk)
    node = fleet.failover_nodes[0]
    node.client().put_standby(tag, "Lobby", {"version": "0", "cameras": [
        {"id": "old-camera", "name": "Old", "source": "synthetic"}]})  # fmt: skip

    event = fleet.fail_over()
    assert event.state == EventState.ACTIVE
    notes = list(event.transitions.values_list("reason", flat=True))
    assert any("with the full configuration (standby_stale)" in n for n in notes), notes
    cameras = node.client().health()["recording"]["cameras"]
    assert "old-camera" not in {c["id"] for c in cameras}
    assert len(cameras) == 2
