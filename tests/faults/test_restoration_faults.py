"""Faults during failback and restoration, against real agents.

Invariants: a recording server that fails again while its recordings are restored is
failed over again within the detection bound, on the same event, and the restoration
then finishes; a file name the recording server already uses for other content never
blocks or overwrites (both are kept); an upload whose every byte arrived but which was
never completed is completed, not retried for ever. Every file is accounted for by
sha256.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db.models import F

from failover import engine
from failover.choices import EventState
from failover.models import FailoverEvent
from failover.restoration import conflict_name, target_path
from tests.faults.helpers import cycles, failover_files, own_files, recording_for, sha256
from tests.fixtures.nodes import wait_until

# Each test runs on both paths: straight between the nodes, and relayed by the CMS.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("restoration_path")]


def failed_over_with_recordings(make_fleet, files: int = 4):
    fleet = make_fleet(failovers=1)
    event = fleet.fail_over("service")
    fo_node = fleet.failover_nodes[0]
    wait_until(lambda: len(failover_files(fo_node, event.node_tag)) >= files,
               message="recordings")  # fmt: skip
    return fleet, event, fo_node


def assert_every_file_restored(fleet, event, fo_node, made: dict[str, str]) -> None:
    job = event.restoration
    job.refresh_from_db()
    assert job.state == "completed" and job.files_done == job.files_total
    assert job.transfer == settings.CMS_RESTORATION_PATH
    assert failover_files(fo_node, event.node_tag) == []
    restored = own_files(fleet.recording_node)
    for path, sha in made.items():
        assert restored[target_path(path, event.node_tag)]["sha256"] == sha, path


def test_a_recording_server_that_dies_while_restoring_is_failed_over_again(make_fleet):
    fleet, event, fo_node = failed_over_with_recordings(make_fleet)
    fleet.recording_node.client().set_fault("clear")
    cycles(2)
    assert engine.step(event.pk) == EventState.FAILING_BACK
    assert engine.step(event.pk) == EventState.RESTORING
    made = {f["path"]: f["sha256"] for f in failover_files(fo_node, event.node_tag)}

    fleet.recording_node.kill()
    cycles(1)
    event.refresh_from_db()
    assert event.state == EventState.RESTORING  # one failed probe is not a failure
    cycles(1)
    event.refresh_from_db()
    assert event.state == EventState.DETECTED  # failed over again at once, same event
    assert engine.advance(event.pk) == EventState.ACTIVE
    assert recording_for(fo_node) == event.node_tag
    assert FailoverEvent.objects.count() == 1

    wait_until(lambda: {f["path"] for f in failover_files(fo_node, event.node_tag)} - set(made),
               message="recordings of the second failover")  # fmt: skip
    made.update({f["path"]: f["sha256"] for f in failover_files(fo_node, event.node_tag)})
    fleet.recording_node.restart()
    cycles(2)
    assert engine.advance(event.pk) == EventState.COMPLETED
    event.refresh_from_db()
    assert_every_file_restored(fleet, event, fo_node, made)
    moves = list(event.transitions.exclude(from_state=F("to_state")).values_list(
        "to_state", flat=True))  # fmt: skip
    assert moves == [
        "detected", "taking_over", "active", "waiting_failback", "failing_back", "restoring",
        "detected", "taking_over", "active", "waiting_failback", "failing_back", "restoring",
        "completed",
    ]  # fmt: skip


def test_a_name_taken_by_other_content_keeps_both_and_restoration_completes(make_fleet):
    fleet, event, fo_node = failed_over_with_recordings(make_fleet, files=2)
    taken = failover_files(fo_node, event.node_tag)[0]
    own_path = target_path(taken["path"], event.node_tag)
    # Both servers recorded the camera in the failback overlap, in the same millisecond.
    theirs = b"recorded by the recording server itself"
    fleet.recording_node.client().upload(
        own_path, theirs, len(theirs), sha256(theirs),
        kind=taken.get("kind", "recording"), camera=taken.get("camera", "c1"), origin="own",
    )  # fmt: skip
    made = {f["path"]: f["sha256"] for f in failover_files(fo_node, event.node_tag)}

    fleet.recording_node.client().set_fault("clear")
    cycles(2)
    assert engine.advance(event.pk) == EventState.COMPLETED
    restored = own_files(fleet.recording_node)
    assert restored[own_path]["sha256"] == sha256(theirs)  # never overwritten
    kept = conflict_name(own_path, taken["sha256"])
    assert restored[kept]["sha256"] == taken["sha256"]
    made.pop(taken["path"])
    assert_every_file_restored(fleet, event, fo_node, made)
    assert event.restoration.files.get(path=taken["path"]).restored_as == kept
    assert event.transitions.filter(reason__contains="both are kept").count() == 1


def test_an_upload_whose_last_byte_arrived_but_never_completed_is_completed(make_fleet):
    fleet, event, fo_node = failed_over_with_recordings(make_fleet, files=2)
    item = failover_files(fo_node, event.node_tag)[0]
    own_path = target_path(item["path"], event.node_tag)
    # The recording agent received every byte, then died before it completed the file.
    target = fleet.recording_node.client()
    started = target.request(
        "POST", "/uploads", expect=(201,),
        json={"path": own_path, "size": item["size"], "sha256": item["sha256"],
              "kind": item.get("kind", "recording"), "camera": item.get("camera", "c1"),
              "origin": "own", "on_behalf_of": None},
    ).json()  # fmt: skip
    download = fo_node.client().open_download(item["path"])
    body = b"".join(download.chunks(1 << 20))
    download.close()
    part = fleet.recording_node.data_dir / "uploads" / f"{started['id']}.part"
    part.write_bytes(body)
    fleet.recording_node.restart(kill=True)
    status = fleet.recording_node.client().request("HEAD", f"/uploads/{started['id']}")
    assert int(status.headers["Upload-Offset"]) == item["size"]

    made = {f["path"]: f["sha256"] for f in failover_files(fo_node, event.node_tag)}
    fleet.recording_node.client().set_fault("clear")
    cycles(2)
    assert engine.advance(event.pk) == EventState.COMPLETED
    event.refresh_from_db()
    assert_every_file_restored(fleet, event, fo_node, made)
    assert own_files(fleet.recording_node)[own_path]["sha256"] == item["sha256"]
