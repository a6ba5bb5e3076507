"""The failover engine against real node agents and the real database.

The engine's steps are called directly here (a probe cycle, an advance), so each
test sees every transition; tests/integration/test_failover_worker.py runs the
same through a real Celery worker and beat.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from django.db.models import F

from cms.inventory.models import Server
from failover import engine, probing
from failover.choices import EventState
from failover.models import EventTransition, FailoverEvent
from tests.fixtures.nodes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def cycles(n: int) -> None:
    for _ in range(n):
        probing.run_cycle(force=True)


def the_event() -> FailoverEvent:
    return FailoverEvent.objects.get()


def failover_files(node, tag: str) -> list[dict]:
    return list(node.client().list_recordings(origin="failover", on_behalf_of=tag))


def recording_for(node) -> str | None:
    return (node.client().health()["recording"]["on_behalf_of"] or {}).get("id")


def test_it_fails_over_when_the_recording_agent_is_killed(make_fleet, failover_settings):
    fleet = make_fleet()
    cycles(1)
    assert not FailoverEvent.objects.exists()

    fleet.recording_node.kill()
    cycles(1)
    assert not FailoverEvent.objects.exists()  # one failure is not enough (N = 2)
    cycles(1)
    event = the_event()
    assert event.state == EventState.DETECTED
    assert event.trigger == "disconnected"

    assert engine.advance(event.pk) == EventState.ACTIVE
    event.refresh_from_db()
    assert event.failover_server == fleet.failovers[0]
    assert event.epoch > 0
    assert recording_for(fleet.failover_nodes[0]) == event.node_tag
    assert recording_for(fleet.failover_nodes[1]) is None
    # the failover server records the same cameras as the recording server's snapshot
    cams = fleet.failover_nodes[0].client().health()["recording"]["cameras"]
    assert sorted(c["id"] for c in cams if c["on_behalf_of"] == event.node_tag) == sorted(
        c["id"] for c in event.config["cameras"]
    )
    states = list(event.transitions.values_list("to_state", flat=True))
    assert states == ["detected", "taking_over", "active"]


@pytest.mark.parametrize(
    ("fault", "trigger"), [("volume", "volume_abnormal"), ("service", "service_abnormal")]
)
def test_a_volume_or_service_fault_fails_over(make_fleet, fault, trigger):
    fleet = make_fleet(failovers=1)
    fleet.recording_node.client().set_fault(fault)
    cycles(2)
    event = the_event()
    assert event.trigger == trigger
    assert engine.advance(event.pk) == EventState.ACTIVE


def test_a_disabled_condition_does_not_fail_over(make_fleet, failover_settings):
    failover_settings.on_service_abnormal = False
    failover_settings.save()
    fleet = make_fleet(failovers=1)
    fleet.recording_node.client().set_fault("service")
    cycles(3)
    fleet.refresh()
    assert fleet.recording.status == "service_abnormal"
    assert not FailoverEvent.objects.exists()


def test_a_flapping_agent_does_not_bounce(make_fleet, failover_settings):
    fleet = make_fleet(failovers=1)
    client = fleet.recording_node.client()
    for _ in range(3):  # down for one probe, up for one: never N failures in a row
        client.set_fault("service")
        cycles(1)
        client.set_fault("clear")
        cycles(1)
    assert not FailoverEvent.objects.exists()

    client.set_fault("service")
    cycles(2)
    event = the_event()
    engine.advance(event.pk)
    for _ in range(3):  # recovered for one probe, down again: no failback (M = 2)
        client.set_fault("clear")
        cycles(1)
        client.set_fault("service")
        cycles(1)
    event.refresh_from_db()
    assert event.state == EventState.ACTIVE
    assert recording_for(fleet.failover_nodes[0]) == event.node_tag


def test_failback_and_restoration_copy_every_file_exactly(make_fleet):
    fleet = make_fleet(failovers=1)
    own = fleet.recording_node.client()
    wait_until(lambda: any(own.list_recordings(origin="own")), message="an own segment")
    event = fleet.fail_over("volume")
    fo_node = fleet.failover_nodes[0]
    wait_until(lambda: len(failover_files(fo_node, event.node_tag)) >= 6, message="recordings")

    fleet.recording_node.client().set_fault("clear")
    cycles(2)
    event.refresh_from_db()
    assert event.state == EventState.WAITING_FAILBACK
    # One step at a time, to look between them (advance() would run them all).
    assert engine.step(event.pk) == EventState.FAILING_BACK  # hold-down 0: due now
    assert engine.step(event.pk) == EventState.RESTORING
    assert recording_for(fo_node) is None  # released after the recording server recorded
    made_during_failover = {f["path"]: f for f in failover_files(fo_node, event.node_tag)}
    assert made_during_failover
    # The faulty volume stopped the recording before detection; the takeover resumed it.
    event.refresh_from_db()
    assert event.recording_gap_seconds is not None
    assert 0 < event.recording_gap_seconds < 60

    assert engine.advance(event.pk) == EventState.COMPLETED
    job = event.restoration
    job.refresh_from_db()
    assert job.state == "completed"
    assert job.files_done == job.files_total >= len(made_during_failover)
    assert job.bytes_done == job.bytes_total
    assert failover_files(fo_node, event.node_tag) == []  # deleted after verification

    rec_client = fleet.recording_node.client()
    restored = {f["path"]: f for f in rec_client.list_recordings(origin="own")}
    for path, meta in made_during_failover.items():
        own_path = "own/" + path.split("/", 2)[2]
        assert restored[own_path]["sha256"] == meta["sha256"]
        with rec_client.open_download(own_path) as download:
            data = b"".join(download.chunks())
        assert hashlib.sha256(data).hexdigest() == meta["sha256"]
        assert len(data) == meta["size"]

    # Moves only: notes on the way (which path the files took) stay in their state.
    moves = event.transitions.exclude(from_state=F("to_state"))
    states = list(moves.values_list("to_state", flat=True))
    assert states[-4:] == ["waiting_failback", "failing_back", "restoring", "completed"]


def test_manual_failback_waits_for_the_operator(make_fleet, failover_settings, admin_user):
    failover_settings.failback_mode = "manual"
    failover_settings.restore_recordings = False
    failover_settings.save()
    fleet = make_fleet(failovers=1)
    event = fleet.fail_over("service")
    fleet.recording_node.client().set_fault("clear")
    cycles(3)
    assert engine.advance(event.pk) == EventState.WAITING_FAILBACK

    engine.fail_back_now(event, actor="root")
    assert engine.advance(event.pk) == EventState.COMPLETED
    last = EventTransition.objects.filter(event=event, to_state="failing_back").get()
    assert last.actor == "root"
    assert failover_files(fleet.failover_nodes[0], event.node_tag)  # kept: restoration off


def test_scheduled_failback_waits_for_its_window(make_fleet, failover_settings):
    import datetime as dt

    from django.utils import timezone

    now = timezone.localtime()
    failover_settings.failback_mode = "scheduled"
    failover_settings.restore_recordings = False
    failover_settings.failback_window_start = (now + dt.timedelta(hours=2)).time()
    failover_settings.failback_window_end = (now + dt.timedelta(hours=3)).time()
    failover_settings.save()
    fleet = make_fleet(failovers=1)
    event = fleet.fail_over("service")
    fleet.recording_node.client().set_fault("clear")
    cycles(2)
    assert engine.advance(event.pk) == EventState.WAITING_FAILBACK

    failover_settings.failback_window_start = (now - dt.timedelta(minutes=5)).time()
    failover_settings.failback_window_end = (now + dt.timedelta(minutes=55)).time()
    failover_settings.save()
    # Failing back and ending in one run, with no broker round trip in between.
    assert engine.advance(event.pk) == EventState.COMPLETED
    states = list(event.transitions.values_list("to_state", flat=True))
    assert states[-2:] == ["failing_back", "completed"]


def test_no_free_failover_server_alerts_and_retries(make_fleet, mailoutbox, settings):
    settings.ADMINS = [("ops", "ops@example.com")]
    fleet = make_fleet(failovers=1)
    fleet.failover_nodes[0].kill()
    # A fault the agent reports itself: a disconnection with every failover server down
    # is held instead (the CMS could reach none to take over; test_second_opinion.py).
    fleet.recording_node.client().set_fault("volume")
    cycles(2)
    event = the_event()
    assert engine.advance(event.pk) == EventState.NO_FAILOVER_SERVER
    assert len(mailoutbox) == 1
    assert "No failover server available for Lobby" in mailoutbox[0].subject
    cycles(1)
    assert engine.advance(event.pk) == EventState.NO_FAILOVER_SERVER
    assert len(mailoutbox) == 1  # one alert per event, not one per retry

    fleet.failover_nodes[0].restart()
    cycles(1)  # it is probed healthy again
    assert engine.advance(event.pk) == EventState.ACTIVE


def test_it_takes_the_next_failover_server_when_the_first_is_busy(make_fleet, team, start_node):
    from tests.fixtures.fleet import register

    fleet = make_fleet(failovers=2)
    other_node = start_node(mode="recording", name="garage", cameras=1)
    other = register(other_node, team, "recording", "Garage")
    from failover.models import Protection

    Protection.objects.create(recording_server=other, failover_server=fleet.failovers[0])
    engine.refresh_snapshot(other)
    other_node.kill()
    fleet.recording_node.kill()
    cycles(2)
    events = {e.recording_server_name: e for e in FailoverEvent.objects.all()}
    assert engine.advance(events["Garage"].pk) == EventState.ACTIVE
    assert engine.advance(events["Lobby"].pk) == EventState.ACTIVE
    events["Lobby"].refresh_from_db()
    assert events["Lobby"].failover_server == fleet.failovers[1]


def test_two_probe_cycles_at_once_run_only_one(make_fleet, failover_settings):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    make_fleet(failovers=1)
    failover_settings.probe_interval = 60
    failover_settings.save()

    def one_beat():
        try:
            return probing.run_cycle().ran
        finally:
            connection.close()

    with ThreadPoolExecutor(2) as pool:
        ran = list(pool.map(lambda _: one_beat(), range(2)))
    assert sorted(ran) == [False, True]


def test_a_duplicated_advance_takes_over_once(make_fleet):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    fleet = make_fleet(failovers=2)
    fleet.recording_node.kill()
    cycles(2)
    event = the_event()

    def deliver():
        try:
            return engine.advance(event.pk)
        finally:
            connection.close()

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: deliver(), range(2)))
    event.refresh_from_db()
    assert event.state == EventState.ACTIVE
    assert event.transitions.filter(to_state="taking_over").count() == 1
    assert recording_for(fleet.failover_nodes[1]) is None


def test_an_acting_failover_server_stopped_removes_its_recordings(make_fleet):
    fleet = make_fleet(failovers=1)
    event = fleet.fail_over()
    fo_node = fleet.failover_nodes[0]
    wait_until(lambda: failover_files(fo_node, event.node_tag), message="recordings")

    engine.stop_failover(fleet.failovers[0], actor="root", reason="Disabled by root")
    event.refresh_from_db()
    assert event.state == EventState.STOPPED
    assert recording_for(fo_node) is None
    assert failover_files(fo_node, event.node_tag) == []
    assert Server.objects.filter(pk=fleet.recording.pk).exists()


# -- restoration interrupted, stopped -------------------------------------------------


BIG = 120 * 1024 * 1024


def add_big_failover_file(fo_node, tag: str, size: int = BIG) -> dict:
    """A large recording 'made during the failover', so a copy takes long enough to act."""
    block = hashlib.sha256(b"seed").digest() * (1024 * 1024 // 32)
    digest = hashlib.sha256()
    for _ in range(size // len(block)):
        digest.update(block)
    sha = digest.hexdigest()
    path = f"failover/{tag}/zz-big/2026-01-01/000000.000.bin"
    fo_node.client().upload(
        path, lambda off: _blocks(block, size, off), size, sha,
        kind="recording", camera="zz-big", origin="failover", on_behalf_of=tag,
    )  # fmt: skip
    return {"path": path, "sha256": sha, "size": size}


def _blocks(block: bytes, size: int, offset: int):
    position = offset - offset % len(block)
    first = True
    while position < size:
        chunk = block if not first else block[offset % len(block) :]
        first = False
        position += len(block)
        yield chunk


def restoring_event(make_fleet):
    fleet = make_fleet(failovers=1)
    event = fleet.fail_over("service")
    fo_node = fleet.failover_nodes[0]
    wait_until(lambda: len(failover_files(fo_node, event.node_tag)) >= 4, message="recordings")
    big = add_big_failover_file(fo_node, event.node_tag)
    fleet.recording_node.client().set_fault("clear")
    cycles(2)
    assert engine.step(event.pk) == EventState.FAILING_BACK
    assert engine.step(event.pk) == EventState.RESTORING
    return fleet, event, big


def part_files(node) -> int:
    return sum(p.stat().st_size for p in (node.data_dir / "uploads").glob("*.part"))


def in_thread(fn, *args):
    import threading

    from django.db import connection

    outcome = {}

    def run():
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # reported by the test
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_restoration_resumes_after_the_failover_agent_is_killed_mid_copy(make_fleet, settings):
    from failover.events import release_lease
    from failover.models import RestorationFile

    # Relayed: the CMS's copy is slow enough to be killed in the middle of the big file
    # (a direct pull on loopback finishes it before the kill lands).
    settings.CMS_RESTORATION_PATH = "relayed"

    fleet, event, big = restoring_event(make_fleet)
    fo_node = fleet.failover_nodes[0]

    thread, outcome = in_thread(engine.advance, event.pk)
    wait_until(lambda: part_files(fleet.recording_node) > 4 << 20, timeout=60, interval=0.01,
               message="the big file being copied")  # fmt: skip
    fo_node.kill()
    thread.join(120)
    assert "error" not in outcome, outcome
    event.refresh_from_db()
    assert event.state == EventState.RESTORING  # interrupted, not failed
    job = event.restoration
    job.refresh_from_db()
    assert job.errors >= 1 and job.last_error
    done_before = set(
        RestorationFile.objects.filter(job=job, state="deleted").values_list("path", flat=True)
    )
    assert done_before  # the small files finished before the big one
    partial = part_files(fleet.recording_node)
    assert 0 < partial < BIG

    fo_node.restart()
    release_lease(event)  # as if the interrupted run's lease had run out
    assert engine.advance(event.pk) == EventState.COMPLETED
    job.refresh_from_db()
    assert job.state == "completed" and job.files_done == job.files_total
    restored = {f["path"]: f for f in fleet.recording_node.client().list_recordings(origin="own")}
    own_big = "own/" + big["path"].split("/", 2)[2]
    assert restored[own_big]["sha256"] == big["sha256"]
    assert restored[own_big]["size"] == BIG
    assert failover_files(fo_node, event.node_tag) == []


def test_stop_restoration_removes_the_failover_recordings(make_fleet):
    from failover.restoration import stop_restoration

    fleet, event, _ = restoring_event(make_fleet)
    fo_node = fleet.failover_nodes[0]
    thread, outcome = in_thread(engine.advance, event.pk)
    wait_until(lambda: part_files(fleet.recording_node) > 4 << 20, timeout=60, interval=0.01,
               message="the big file being copied")  # fmt: skip
    removed = stop_restoration(event, actor="root")
    thread.join(120)
    assert "error" not in outcome, outcome
    event.refresh_from_db()
    assert event.state == EventState.RESTORATION_STOPPED
    assert event.restoration.state == "stopped"
    assert removed >= 1
    assert failover_files(fo_node, event.node_tag) == []
    stop = event.transitions.filter(to_state="restoration_stopped").first()
    assert stop.actor == "root"


# -- replace protected server --------------------------------------------------------


def install_license(server, node, key: str, cameras: int = 4):
    from cms.inventory.models import License

    node.client().install_license(key, cameras)
    return License.objects.create(key=key, team=server.team, cameras=cameras, server=server)


def node_license_keys(node) -> set[str]:
    return {x["key"] for x in node.client().licenses()}


def test_replace_with_the_acting_failover_server(make_fleet):
    from cms.inventory.locking import set_lock
    from cms.inventory.models import License
    from failover.models import Protection
    from failover.replace import replace_protected_server

    fleet = make_fleet(failovers=2)
    install_license(fleet.recording, fleet.recording_node, "AAAA-1111-BBBB-2222")
    event = fleet.fail_over()
    fs, fs_node = fleet.failovers[0], fleet.failover_nodes[0]
    set_lock(fs, True)  # the security lock survives the change of mode
    original_pk = fleet.recording.pk

    plan = replace_protected_server(event, fs, actor="root")
    assert plan.variant == "acting"
    event.refresh_from_db()
    assert event.state == EventState.REPLACED
    assert not Server.objects.filter(pk=original_pk).exists()
    fs.refresh_from_db()
    assert fs.role == "recording"
    assert License.objects.get().server == fs
    assert License.objects.get().moves.get().from_server_name == "Lobby"
    assert node_license_keys(fs_node) == {"AAAA-1111-BBBB-2222"}
    health = fs_node.client().health()
    assert health["cms_mode"] == "recording"
    assert fs.locked and fs_node.client().info()["locked"] is True
    own = {c["id"] for c in health["recording"]["cameras"] if c["origin"] == "own"}
    assert own == {c["id"] for c in event.config["cameras"]}
    assert recording_for(fs_node) is None
    # protection follows the new recording server
    assert list(Protection.objects.values_list("recording_server", "failover_server")) == [
        (fs.pk, fleet.failovers[1].pk)
    ]
    assert event.transitions.filter(to_state="replaced").first().actor == "root"


def test_replace_with_another_recording_server(make_fleet, team, start_node):
    from cms.inventory.models import License
    from failover.models import Protection
    from failover.replace import replace_protected_server
    from tests.fixtures.fleet import register

    fleet = make_fleet(failovers=1)
    install_license(fleet.recording, fleet.recording_node, "AAAA-1111-BBBB-2222")
    spare_node = start_node(mode="recording", name="spare", cameras=1)
    spare = register(spare_node, team, "recording", "Spare")
    install_license(spare, spare_node, "CCCC-3333-DDDD-4444")
    event = fleet.fail_over("service")
    fo_node = fleet.failover_nodes[0]
    wait_until(lambda: len(failover_files(fo_node, event.node_tag)) >= 4, message="recordings")
    fleet.recording_node.kill()
    cycles(1)  # the spare is probed: normal

    plan = replace_protected_server(event, spare, actor="root")
    assert plan.variant == "other"
    assert plan.licenses_overwritten == ["CCCC-3333-DDDD-4444"]
    spare.refresh_from_db()
    assert spare.name == "Lobby"
    assert not Server.objects.filter(pk=fleet.recording.pk).exists()
    assert recording_for(fo_node) is None  # the failover stopped
    assert node_license_keys(spare_node) == {"AAAA-1111-BBBB-2222"}
    assert License.objects.get(key="AAAA-1111-BBBB-2222").server == spare
    assert License.objects.get(key="CCCC-3333-DDDD-4444").server is None
    config = spare_node.client().get_config()
    assert [c["id"] for c in config["cameras"]] == [c["id"] for c in event.config["cameras"]]
    assert Protection.objects.get().recording_server == spare

    event.refresh_from_db()
    assert event.state == EventState.RESTORING
    made = failover_files(fo_node, event.node_tag)
    assert engine.advance(event.pk) == EventState.REPLACED
    restored = {f["path"] for f in spare_node.client().list_recordings(origin="own")}
    assert {"own/" + f["path"].split("/", 2)[2] for f in made} <= restored


def test_a_replacement_that_is_not_normal_is_refused_and_changes_nothing(
    make_fleet, team, start_node
):
    from failover.engine import FailoverError
    from failover.replace import replace_protected_server
    from tests.fixtures.fleet import register

    fleet = make_fleet(failovers=1)
    spare_node = start_node(mode="recording", name="spare", cameras=1)
    spare = register(spare_node, team, "recording", "Spare")  # never probed: unknown
    fleet.recording_node.kill()
    cycles(2)
    Server.objects.filter(pk=spare.pk).update(status="disconnected")
    event = the_event()
    engine.advance(event.pk)
    with pytest.raises(FailoverError, match="cannot replace"):
        replace_protected_server(event, spare, actor="root")
    event.refresh_from_db()
    assert event.state == EventState.ACTIVE
    spare.refresh_from_db()
    assert spare.name == "Spare"


# -- probing ----------------------------------------------------------------------------


def test_a_steady_fleet_costs_no_database_writes(make_fleet, monkeypatch):
    # Last-seen is refreshed once a minute per server, each at its own second: a day's
    # grain keeps that (correct) write out of these few seconds, however slow they are.
    monkeypatch.setattr(probing, "LAST_SEEN_GRAIN", dt.timedelta(days=1))
    make_fleet(failovers=2)
    reports = [probing.run_cycle(force=True) for _ in range(4)]  # after the fixture's first
    assert reports[0].written == 3  # the success counters climb to their threshold (2)
    assert [r.written for r in reports[1:]] == [0, 0, 0]  # then nothing changes
    assert all(r.probed == 3 for r in reports)


def test_it_refreshes_the_snapshot_only_when_the_configuration_changes(make_fleet):
    from failover.models import ConfigSnapshot

    fleet = make_fleet(failovers=1)
    cycles(2)
    assert ConfigSnapshot.objects.filter(server=fleet.recording).count() == 1
    client = fleet.recording_node.client()
    config = client.get_config()
    config["cameras"][0]["name"] = "Entrance (renamed)"
    client.put_config(config, etag=config["etag"])
    cycles(2)
    snapshots = ConfigSnapshot.objects.filter(server=fleet.recording).order_by("taken_at")
    assert snapshots.count() == 2
    assert snapshots.last().config["cameras"][0]["name"] == "Entrance (renamed)"


def test_a_wrong_password_shows_as_its_own_status_and_never_fails_over(make_fleet):
    fleet = make_fleet(failovers=1)
    fleet.recording.admin_password = "wrong-password"
    fleet.recording.save()  # the token cached with the right password must not hide it
    cycles(3)
    fleet.refresh()
    assert fleet.recording.status == "auth_failed"
    assert not FailoverEvent.objects.exists()


def test_deleting_a_failed_over_recording_server_ends_its_event_and_keeps_recordings(make_fleet):
    fleet = make_fleet(failovers=1)
    event = fleet.fail_over()
    fo_node = fleet.failover_nodes[0]
    wait_until(lambda: failover_files(fo_node, event.node_tag), message="recordings")

    engine.before_deleting_recording_server(fleet.recording, actor="root")
    fleet.recording.delete()
    event.refresh_from_db()
    assert event.state == EventState.STOPPED
    assert recording_for(fo_node) is None
    assert failover_files(fo_node, event.node_tag)  # nothing recorded is deleted
    assert engine.advance(event.pk) == EventState.STOPPED


def test_the_first_probe_records_what_the_node_says_it_is(make_fleet):
    fleet = make_fleet(failovers=1)  # the fixture ran one probe cycle
    fleet.refresh()
    assert fleet.recording.model == "TEST-NODE"
    assert fleet.recording.serial and fleet.recording.software_version
    assert fleet.failovers[0].cms_mode == "failover"
