"""Stop Restoration against a worker that is copying, with real agents.

Invariants: once the operator's stop is recorded, the worker writes nothing more to the
event or its job (no "Restoration interrupted, will resume" after it, the event's last
error kept, the job's counters as the stop left them); a stopped job has no time left;
the timeline says exactly how many files were removed from the failover server, and
which could not be, and why.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from cms.inventory.models import Server
from failover import engine
from failover.choices import EventState
from failover.models import EventTransition, RestorationJob
from failover.restoration import stop_restoration
from tests.faults.helpers import cycles, failover_files, own_files
from tests.fixtures.nodes import wait_until

# Each test runs on both paths: straight between the nodes, and relayed by the CMS.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("restoration_path")]

JOB_FIELDS = ("state", "files_done", "bytes_done", "rate_bps", "errors", "last_error")


def restoring(make_fleet, files: int):
    """An event whose failover server recorded at least `files` files, failed back and
    about to restore (nobody works on it yet)."""
    fleet = make_fleet(failovers=1)
    event = fleet.fail_over("service")
    fo_node = fleet.failover_nodes[0]
    wait_until(lambda: len(failover_files(fo_node, event.node_tag)) >= files, timeout=40,
               message="recordings")  # fmt: skip
    fleet.recording_node.client().set_fault("clear")
    cycles(2)
    assert engine.step(event.pk) == EventState.FAILING_BACK
    assert engine.step(event.pk) == EventState.RESTORING
    return fleet, event, fo_node


def in_thread(fn, *args):
    outcome: dict = {}

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


def job_row(event) -> dict:
    return RestorationJob.objects.filter(event=event).values(*JOB_FIELDS).get()


@pytest.mark.parametrize("attempt", range(2))
def test_stop_restoration_wins_over_the_worker_that_copies(make_fleet, faulty_proxy, attempt):
    fleet, event, fo_node = restoring(make_fleet, files=16)
    proxy = faulty_proxy(fo_node)
    Server.objects.filter(pk=fleet.failovers[0].pk).update(host=proxy.host, port=proxy.port)
    proxy.latency = 0.05  # slow copies: the stop meets the worker in the middle
    thread, outcome = in_thread(engine.advance, event.pk)
    job = wait_until(
        lambda: RestorationJob.objects.filter(event=event, files_done__gte=1 + attempt).first(),
        timeout=60, interval=0.01, message="a restoration under way",
    )  # fmt: skip
    restored_before = job.files.filter(state="deleted").count()
    files_total = job.files_total
    # The operator's stop, while the worker copies.
    removed = stop_restoration(event, actor="root")
    event.refresh_from_db()
    stopped_at = event.transitions.get(
        from_state=EventState.RESTORING, to_state=EventState.RESTORATION_STOPPED
    ).pk
    error_at_stop = event.last_error
    job_at_stop = job_row(event)

    thread.join(120)
    assert not thread.is_alive() and "error" not in outcome, outcome
    time.sleep(0.6)  # a progress write of the worker's would have come by now
    event.refresh_from_db()
    assert event.state == EventState.RESTORATION_STOPPED
    after = list(EventTransition.objects.filter(event=event, pk__gt=stopped_at))
    assert all(t.actor == "root" for t in after), [(t.actor, t.reason) for t in after]
    assert not [t for t in after if t.from_state == EventState.RESTORING]
    assert event.last_error == error_at_stop
    assert job_row(event) == job_at_stop  # the worker wrote nothing after the stop
    job.refresh_from_db()
    assert job.state == "stopped" and job.seconds_left is None

    # Every file is either restored (on the recording server, same sha256) or removed.
    assert failover_files(fo_node, event.node_tag) == []
    restored = {f["sha256"] for f in own_files(fleet.recording_node).values()}
    not_restored = job.files.exclude(sha256__in=restored).count()
    assert not_restored <= removed <= files_total - restored_before
    (summary,) = [t.reason for t in after if t.reason.startswith("Removed")]
    assert summary == f"Removed {removed} file(s) from Standby 1; none is left there."


def test_the_stop_says_which_files_could_not_be_removed_and_why(make_fleet):
    _, event, fo_node = restoring(make_fleet, files=4)
    files = failover_files(fo_node, event.node_tag)
    # One file the failover node cannot delete: a folder where its file was.
    stuck = fo_node.data_dir / "media" / files[0]["path"]
    stuck.unlink()
    stuck.mkdir()
    (stuck / "x").write_bytes(b"x")

    removed = stop_restoration(event, actor="root")
    assert removed == len(files) - 1
    assert [f["path"] for f in failover_files(fo_node, event.node_tag)] == [files[0]["path"]]
    note = event.transitions.filter(reason__startswith="Removed").get()
    assert note.reason.startswith(
        f"Removed {len(files) - 1} file(s) from Standby 1; 1 could not be removed and are "
        f"still there ({files[0]['path']}: "
    )
    assert "directory" in note.reason.lower()
