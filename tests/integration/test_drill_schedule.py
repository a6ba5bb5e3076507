"""Which drills start, and which are refused, before any node is asked: the monthly
schedule in a team's maintenance window, and drills that would compete for the same
failover servers. (Drills running on real agents: test_drills.py.)"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from failover import drills
from failover.choices import DrillState
from failover.models import Drill, DrillTargets, Protection

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet(make_server):
    standby = make_server(role="failover", name="Standby 1", status="normal")
    servers = [make_server(name=name, status="normal") for name in ("Lobby", "Garage")]
    for server in servers:
        Protection.objects.create(recording_server=server, failover_server=standby)
    make_server(name="Unprotected", status="normal")
    return servers


def local(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return timezone.make_aware(dt.datetime(2026, 3, day, hour, minute))


def test_the_monthly_drill_starts_once_in_its_window_on_every_protected_server(fleet, team):
    DrillTargets.objects.create(team=team, monthly_day=10, window_start=dt.time(2, 0),
                                window_hours=2)  # fmt: skip
    assert drills.scheduled_drills(local(9, 2, 30)) == []  # another day
    assert drills.scheduled_drills(local(10, 1, 59)) == []  # before the window
    assert drills.scheduled_drills(local(10, 4, 0)) == []  # after it

    [drill] = drills.scheduled_drills(local(10, 2, 0))
    assert drill.scheduled and drill.requested_by == "schedule"
    assert drill.state == DrillState.QUEUED
    # Both share Standby 1: one drill runs them one after the other, neither refused.
    rows = list(drill.servers.values_list("server_name", "state"))
    assert rows == [("Garage", DrillState.QUEUED), ("Lobby", DrillState.QUEUED)]
    Drill.objects.filter(pk=drill.pk).update(state=DrillState.PASSED)
    drill.servers.update(state=DrillState.PASSED)

    assert drills.scheduled_drills(local(10, 3, 0)) == []  # once a month
    assert Drill.objects.count() == 1


def test_no_schedule_without_a_day(fleet, team):
    DrillTargets.objects.create(team=team)
    assert drills.scheduled_drills(timezone.now()) == []


def test_a_drill_on_a_server_sharing_the_failover_servers_of_a_running_one_is_refused(
    fleet, admin_user
):
    lobby, garage = fleet
    first = drills.request_drill(admin_user, [lobby])
    assert first.state == DrillState.QUEUED
    second = drills.request_drill(admin_user, [garage])
    assert second.state == DrillState.REFUSED
    assert f"Drill #{first.pk} on Lobby uses the same failover servers" in second.reason
    again = drills.request_drill(admin_user, [lobby])
    assert again.state == DrillState.REFUSED
    assert f"Lobby is already in drill #{first.pk}" in again.reason


def test_the_api_runs_drills_for_operators_only_and_on_their_teams_servers(api_user, sites):
    north, south = sites
    north.recording.__class__.objects.filter(pk=north.recording.pk).update(status="normal")
    north.failover.__class__.objects.filter(pk=north.failover.pk).update(status="normal")

    viewer = api_user("Viewer")
    assert viewer.post("/api/v1/drills/", {"servers": [north.recording.pk]},
                       format="json").status_code == 403  # fmt: skip
    operator = api_user("Operator")
    other = operator.post("/api/v1/drills/", {"servers": [south.recording.pk]}, format="json")
    assert other.status_code == 400
    assert "No such recording server" in str(other.json())
    assert not Drill.objects.exists()  # nothing recorded for a refused request

    response = operator.post("/api/v1/drills/", {"servers": [north.recording.pk]}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["state"] == "queued"
    assert response.json()["requested_by"] == "user-Operator"
    assert [d["id"] for d in viewer.get("/api/v1/drills/").json()["results"]] == [
        response.json()["id"]
    ]


def test_a_drill_left_by_a_dead_worker_ends_failed_and_frees_its_failover_servers(
    fleet, admin_user
):
    lobby, garage = fleet
    left = drills.request_drill(admin_user, [lobby])
    now = timezone.now()
    Drill.objects.filter(pk=left.pk).update(state=DrillState.RUNNING, heartbeat_at=now)
    left.servers.update(state=DrillState.RUNNING)
    assert drills.abandoned(now + dt.timedelta(seconds=30)) == []  # it still beats
    assert drills.request_drill(admin_user, [garage]).state == DrillState.REFUSED

    later = now + drills.HEARTBEAT_LIMIT + dt.timedelta(seconds=1)
    assert drills.abandoned(later) == [left]
    left.refresh_from_db()
    assert left.state == DrillState.FAILED and "worker running the drill stopped" in left.reason
    assert left.failure_recorded_at is not None
    assert list(left.servers.values_list("state", flat=True)) == [DrillState.FAILED]
    assert drills.request_drill(admin_user, [garage]).state == DrillState.QUEUED


def test_a_drill_no_worker_took_ends_failed(fleet, admin_user):
    queued = drills.request_drill(admin_user, [fleet[0]])
    assert drills.abandoned(timezone.now()) == []
    assert drills.abandoned(timezone.now() + drills.QUEUED_LIMIT) == [queued]
    queued.refresh_from_db()
    assert queued.state == DrillState.FAILED and queued.reason == "No worker ran the drill."
