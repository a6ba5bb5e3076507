"""Failover drills through the real parts: node agents, a Celery worker on the real
broker (and beat, where a real fault must be seen by the probes), the database.

A drill on a healthy recording server: manual failover, the failover server records,
each camera's gap, failback, restoration, a report held to the team's targets. It is
refused while a failover server it needs is busy, and stops on a real fault."""

from __future__ import annotations

import signal

import pytest
from rest_framework.test import APIClient

from cms.inventory.models import Server
from failover import drills, probing
from failover.choices import DrillState, EventState
from failover.models import Drill, DrillTargets, FailoverEvent, Protection
from tests.fixtures.celery import SESSION_QUEUE, purge, start_beat, start_worker
from tests.fixtures.fleet import register
from tests.fixtures.nodes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

RS_URL = "/admin/inventory/recordingserver/"


@pytest.fixture
def processes(tmp_path):
    started = []
    yield lambda process: started.append(process) or process
    for process in started:
        process.stop(signal.SIGKILL if process.process.poll() is None else signal.SIGTERM)


@pytest.fixture
def api(admin_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def targets(team, **values) -> DrillTargets:
    row = DrillTargets.for_team(team.pk)
    for name, value in values.items():
        setattr(row, name, value)
    row.save()
    return row


def finished(drill: Drill) -> bool:
    drill.refresh_from_db()
    return drill.state not in (DrillState.QUEUED, DrillState.RUNNING)


def recording_for(node) -> str | None:
    return (node.client().health()["recording"]["on_behalf_of"] or {}).get("id")


def test_a_drill_from_the_admin_passes_with_a_report_from_the_real_agents(
    make_fleet, team, admin_client, processes, tmp_path
):
    fleet = make_fleet(failovers=1, cameras=2)
    targets(team, recording_seconds=3, max_takeover_seconds=30, max_gap_seconds=10)
    purge(SESSION_QUEUE)
    worker = processes(start_worker(tmp_path, queue=SESSION_QUEUE))

    response = admin_client.post(
        RS_URL, {"action": "run_drill", "_selected_action": [fleet.recording.pk]}, follow=True
    )
    assert "started" in response.content.decode()
    drill = Drill.objects.get()
    wait_until(lambda: finished(drill), timeout=120,
               message=f"the drill\n{worker.log()[-3000:]}")  # fmt: skip

    assert drill.state == DrillState.PASSED, drill.reason
    row = drill.servers.get()
    event = row.event
    assert row.state == DrillState.PASSED and row.server_name == "Lobby"
    assert event.trigger == "manual" and event.state == EventState.COMPLETED
    assert row.failover_server_name == "Standby 1"
    # The figures are the event's own, measured by the engine and on the nodes.
    assert row.takeover_seconds == pytest.approx(event.time_to_take_over.total_seconds(), 1e-3)
    assert 0 < row.takeover_seconds <= drill.max_takeover_seconds
    cameras = [c["id"] for c in fleet.recording_node.client().get_config()["cameras"]]
    assert sorted(row.camera_gaps) == sorted(cameras)
    assert all(0 <= gap <= drill.max_gap_seconds for gap in row.camera_gaps.values())
    assert row.restoration_seconds == pytest.approx(
        (event.ended_at - event.failed_back_at).total_seconds(), abs=1e-3
    )  # the report keeps milliseconds
    assert event.restoration.state == "completed" and event.restoration.files_done > 0
    # Everything is back as before: the recording server records, the standby is free.
    assert recording_for(fleet.failover_nodes[0]) is None
    actors = set(event.transitions.values_list("actor", flat=True))
    assert f"drill #{drill.pk}" in actors
    assert drill.failure_recorded_at is None

    page = admin_client.get(f"/admin/failover/drill/{drill.pk}/change/").content.decode()
    assert "Passed" in page and "Standby 1" in page and f"#{event.pk}" in page
    for camera in cameras:
        assert f"{camera}:" in page


def test_a_drill_is_refused_while_its_failover_server_acts_for_a_real_failure(
    make_fleet, team, start_node, api
):
    fleet = make_fleet(failovers=1)
    garage_node = start_node(mode="recording", name="garage", cameras=1)
    garage = register(garage_node, team, "recording", "Garage")
    Protection.objects.create(recording_server=garage, failover_server=fleet.failovers[0])
    from failover.engine import advance, refresh_snapshot

    refresh_snapshot(garage)
    probing.run_cycle(force=True)
    garage_node.kill()  # a real failure: Standby 1 takes Garage over
    for _ in range(2):
        probing.run_cycle(force=True)
    real = FailoverEvent.objects.get(recording_server=garage)
    assert advance(real.pk) == EventState.ACTIVE

    response = api.post("/api/v1/drills/", {"servers": [fleet.recording.pk]}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["state"] == "refused"
    why = body["report"][0]["reason"]
    assert "Standby 1 is busy" in why and "Garage" in why and f"#{real.pk}" in why
    # Nothing was started: no event for Lobby, the standby still records Garage.
    assert not FailoverEvent.objects.filter(recording_server=fleet.recording).exists()
    assert recording_for(fleet.failover_nodes[0]) == real.node_tag
    listed = api.get("/api/v1/drills/").json()
    assert [d["id"] for d in listed["results"]] == [body["id"]]


def test_a_real_fault_of_the_recording_server_stops_the_drill(
    make_fleet, team, api, processes, tmp_path
):
    fleet = make_fleet(failovers=1)
    targets(team, recording_seconds=60)  # the drill is still recording when the fault comes
    purge(SESSION_QUEUE)
    worker = processes(start_worker(tmp_path, queue=SESSION_QUEUE, concurrency=2))
    processes(start_beat(tmp_path))  # the probes that see the fault

    response = api.post("/api/v1/drills/", {"servers": [fleet.recording.pk]}, format="json")
    assert response.status_code == 202, response.content
    drill = Drill.objects.get(pk=response.json()["id"])

    def event_active() -> bool:
        event = FailoverEvent.objects.filter(recording_server=fleet.recording).first()
        return event is not None and event.state == EventState.ACTIVE

    wait_until(event_active, timeout=60, message=f"the takeover\n{worker.log()[-3000:]}")
    fleet.recording_node.kill()  # a real fault while the drill runs
    wait_until(lambda: finished(drill), timeout=60,
               message=f"the drill to stop\n{worker.log()[-3000:]}")  # fmt: skip

    assert drill.state == DrillState.STOPPED
    row = drill.servers.get()
    assert row.state == DrillState.STOPPED
    assert row.reason.startswith("Real fault: Lobby failed during the drill")
    assert "Real fault: Lobby failed" in drill.reason
    # The failover stays: the standby goes on recording the server that really failed.
    event = row.event
    event.refresh_from_db()
    assert event.state == EventState.ACTIVE
    assert recording_for(fleet.failover_nodes[0]) == event.node_tag
    assert event.transitions.filter(reason__contains="The drill ended").exists()
    assert drill.failure_recorded_at is None  # stopped, not failed


def test_a_drill_that_misses_its_target_fails_and_is_recorded_for_an_alert(
    make_fleet, team, admin_user
):
    from cms.alerts.models import Alert, Channel

    fleet = make_fleet(failovers=1)
    Channel.objects.create(team=team, name="Ops", emails="ops@example.com",
                           kinds=["drill_failed"])  # fmt: skip
    targets(team, recording_seconds=1, max_takeover_seconds=0.001)
    drill = drills.request_drill(admin_user, [fleet.recording])
    assert drills.run(drill.pk) == DrillState.FAILED  # the worker's body, run here
    drill.refresh_from_db()
    row = drill.servers.get()
    assert row.state == DrillState.FAILED
    assert "time to take over" in row.reason and "> 0.001 s" in row.reason
    assert drill.failure_recorded_at is not None
    [alert] = Alert.objects.filter(kind="drill_failed")  # queued for the team's channel
    assert alert.team_id == team.pk and f"#{drill.pk}" in alert.subject
    assert row.event.state == EventState.COMPLETED  # failed back and restored all the same
    assert drills.run(drill.pk) == DrillState.FAILED  # never run twice
    assert FailoverEvent.objects.count() == 1
    assert Server.objects.get(pk=fleet.recording.pk).status == "normal"
