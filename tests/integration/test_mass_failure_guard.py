"""The mass-failure guard and flapping damping against real node agents: the engine's
steps are called directly (a probe cycle, an advance), as in test_failover_engine."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from cms.alerts.kinds import Kind
from cms.alerts.models import Alert, Channel
from cms.inventory.choices import HealthStatus
from failover import engine, probing
from failover.choices import EventState
from failover.engine import refresh_snapshot
from failover.models import EventTransition, FailoverEvent, GuardHold, MassFailureGuard, Protection
from tests.fixtures.fleet import register

pytestmark = pytest.mark.django_db(transaction=True)


def cycles(n: int) -> None:
    for _ in range(n):
        probing.run_cycle(force=True)


@pytest.fixture
def mail(team):
    return Channel.objects.create(team=team, name="Mail", type=Channel.EMAIL,
                                  emails="ops@example.com")  # fmt: skip


@pytest.fixture
def six(start_node, team, failover_settings, settings, mail):
    """Six recording servers (one camera each), all protected by Standby 1 then Standby 2."""
    settings.CMS_TAKEOVER_CONFIRM_SECONDS = 15
    nodes, servers = {}, {}
    for i in range(1, 7):
        name = f"Cam{i}"
        nodes[name] = start_node(mode="recording", name=name.lower(), cameras=1)
        servers[name] = register(nodes[name], team, "recording", name)
    standbys = []
    for i in (1, 2):
        node = start_node(mode="failover", name=f"standby{i}")
        nodes[f"Standby {i}"] = node
        standbys.append(register(node, team, "failover", f"Standby {i}"))
    for i in range(1, 7):
        for priority, standby in enumerate(standbys):
            Protection.objects.create(recording_server=servers[f"Cam{i}"],
                                      failover_server=standby, priority=priority)  # fmt: skip
        refresh_snapshot(servers[f"Cam{i}"])
    cycles(1)
    return nodes, servers


def operator_of(team, django_user_model, name: str = "op") -> APIClient:
    from django.contrib.auth.models import Group

    from cms.inventory.models import TeamMembership

    user = django_user_model.objects.create_user(name, password="pw-long-enough")
    user.groups.add(Group.objects.get(name="Operator"))
    TeamMembership.objects.create(team=team, user=user)
    client = APIClient()
    client.force_authenticate(user)
    return client


def held() -> set[str]:
    return set(GuardHold.objects.values_list("server__name", flat=True))


def guard_alerts() -> int:
    return Alert.objects.filter(kind=Kind.MASS_FAILURE_GUARD).count()


def recording_for(node) -> str | None:
    return (node.client().health()["recording"]["on_behalf_of"] or {}).get("id")


def test_three_of_six_killed_are_held_until_released(six, team, django_user_model,
                                                     admin_client):  # fmt: skip
    nodes, servers = six
    for name in ("Cam1", "Cam2", "Cam3"):
        nodes[name].kill()
    cycles(2)  # failures before failover
    cycles(2)  # the guard keeps holding while it stands
    assert not FailoverEvent.objects.exists()
    assert held() == {"Cam1", "Cam2", "Cam3"}
    assert guard_alerts() == 1  # one per engagement, not per cycle
    alert = Alert.objects.get(kind=Kind.MASS_FAILURE_GUARD)
    assert "3 of 6 recording servers" in alert.body
    # Nothing was started on the failover servers.
    assert recording_for(nodes["Standby 1"]) is None
    assert recording_for(nodes["Standby 2"]) is None

    page = admin_client.get("/admin/").content.decode()
    assert "Automatic failover paused for 3 recording servers of" in page
    assert "3 of 6 went down within 60 s (more than 30 %)" in page
    listing = admin_client.get("/admin/inventory/recordingserver/").content.decode()
    assert listing.count("Held by the mass-failure guard") == 3

    operator = operator_of(team, django_user_model)
    state = operator.get("/api/v1/guard/").json()
    assert [(s["engaged"], len(s["held"])) for s in state] == [(True, 3)]

    answer = operator.post("/api/v1/guard/release/", {"servers": [servers["Cam1"].pk]},
                           format="json")  # fmt: skip
    assert answer.status_code == 200, answer.content
    [released] = answer.json()
    event = FailoverEvent.objects.get(pk=released["event"])
    assert event.recording_server == servers["Cam1"]
    assert EventTransition.objects.filter(event=event).first().actor == "op"
    assert engine.advance(event.pk) == EventState.ACTIVE
    assert recording_for(nodes["Standby 1"]) == event.node_tag
    assert held() == {"Cam2", "Cam3"}
    cycles(1)  # the others stay held
    assert FailoverEvent.objects.count() == 1
    assert held() == {"Cam2", "Cam3"}

    answer = operator.post("/api/v1/guard/release/", {"all": True}, format="json")
    assert answer.status_code == 200, answer.content
    assert {r["name"] for r in answer.json()} == {"Cam2", "Cam3"}
    assert held() == set()
    opened = {e.recording_server_name: e for e in FailoverEvent.objects.all()}
    assert set(opened) == {"Cam1", "Cam2", "Cam3"}
    assert engine.advance(opened["Cam2"].pk) == EventState.ACTIVE  # Standby 2 is free
    assert engine.advance(opened["Cam3"].pk) == EventState.NO_FAILOVER_SERVER  # nobody left
    # The failures already counted do not engage the guard again.
    cycles(2)
    assert held() == set()
    assert MassFailureGuard.objects.get(team=team).engaged_at is None
    assert guard_alerts() == 1
    assert "paused" not in admin_client.get("/admin/").content.decode()


def test_one_of_six_killed_fails_over_as_usual(six):
    nodes, servers = six
    nodes["Cam4"].kill()
    cycles(2)
    event = FailoverEvent.objects.get()
    assert event.recording_server == servers["Cam4"]
    assert engine.advance(event.pk) == EventState.ACTIVE
    assert held() == set()
    assert guard_alerts() == 0


def test_held_servers_that_come_back_are_released_without_an_event(six, team):
    nodes, _ = six
    for name in ("Cam1", "Cam2", "Cam3"):
        nodes[name].kill()
    cycles(2)
    assert held() == {"Cam1", "Cam2", "Cam3"}
    for name in ("Cam1", "Cam2", "Cam3"):
        nodes[name].restart()
    cycles(2)  # successes before recovery
    assert held() == set()
    assert not FailoverEvent.objects.exists()
    assert MassFailureGuard.objects.get(team=team).engaged_at is None


def test_a_team_of_two_fails_over_when_one_dies(make_fleet, start_node, team):
    fleet = make_fleet(failovers=1)
    other = register(start_node(mode="recording", name="garage", cameras=1), team, "recording",
                     "Garage")  # fmt: skip
    assert other.pk
    event = fleet.fail_over("kill")  # 1 of 2 is 50 %, but fewer than 3 servers down
    assert event.state == EventState.ACTIVE
    assert held() == set()


def test_an_operator_of_another_team_or_a_viewer_cannot_release(six, team, other_team,
                                                                 django_user_model):  # fmt: skip
    from django.contrib.auth.models import Group

    from cms.inventory.models import TeamMembership

    nodes, servers = six
    for name in ("Cam1", "Cam2", "Cam3"):
        nodes[name].kill()
    cycles(2)
    before = held()
    stranger = operator_of(other_team, django_user_model, "stranger")
    answer = stranger.post("/api/v1/guard/release/", {"servers": [servers["Cam1"].pk]},
                           format="json")  # fmt: skip
    assert answer.status_code == 404
    answer = stranger.post("/api/v1/guard/release/", {"all": True, "team": team.pk},
                           format="json")  # fmt: skip
    assert answer.status_code == 404
    assert stranger.post("/api/v1/guard/release/", {"all": True}, format="json").json() == []
    assert [s["team"] for s in stranger.get("/api/v1/guard/").json()] == [other_team.pk]

    viewer_user = django_user_model.objects.create_user("viewer", password="pw-long-enough")
    viewer_user.groups.add(Group.objects.get(name="Viewer"))
    TeamMembership.objects.create(team=team, user=viewer_user)
    viewer = APIClient()
    viewer.force_authenticate(viewer_user)
    assert viewer.get("/api/v1/guard/").status_code == 200
    answer = viewer.post("/api/v1/guard/release/", {"all": True}, format="json")
    assert answer.status_code == 403
    assert held() == before
    assert not FailoverEvent.objects.exists()


def test_bad_release_requests_change_nothing(six, team, django_user_model):
    nodes, servers = six
    for name in ("Cam1", "Cam2", "Cam3"):
        nodes[name].kill()
    cycles(2)
    operator = operator_of(team, django_user_model)
    for body, status in (
        ({}, 400),
        ({"servers": [servers["Cam1"].pk], "all": True}, 400),
        ({"servers": ["x"]}, 400),
        ({"servers": [servers["Cam5"].pk]}, 409),  # up, not held
        ({"servers": [999999]}, 404),
    ):
        answer = operator.post("/api/v1/guard/release/", body, format="json")
        assert answer.status_code == status, (body, answer.content)
    assert held() == {"Cam1", "Cam2", "Cam3"}
    assert not FailoverEvent.objects.exists()


# -- flapping --------------------------------------------------------------------------


def test_the_nth_failover_of_a_flapping_server_waits_for_the_operator(
    make_fleet, failover_settings, mail
):
    failover_settings.restore_recordings = False
    failover_settings.save()  # failback_hold_down 0, automatic; flapping: 3 in 1 h
    fleet = make_fleet(failovers=1)
    client = fleet.recording_node.client()

    def fail_and_recover() -> FailoverEvent:
        client.set_fault("service")
        cycles(2)
        event = FailoverEvent.objects.open().get()
        assert engine.advance(event.pk) == EventState.ACTIVE
        client.set_fault("clear")
        cycles(2)  # successes before recovery
        engine.advance(event.pk)
        event.refresh_from_db()
        return event

    for _ in range(2):
        event = fail_and_recover()
        assert event.state == EventState.COMPLETED
        assert event.damped == ""
    event = fail_and_recover()
    assert event.damped == "damped: 3 failovers in 1 h"
    assert event.state == EventState.WAITING_FAILBACK
    cycles(3)  # healthy, the hold-down (0 s) long over: it still waits
    assert engine.advance(event.pk) == EventState.WAITING_FAILBACK
    fleet.refresh()
    assert fleet.recording.status == HealthStatus.NORMAL
    assert recording_for(fleet.failover_nodes[0]) == event.node_tag
    assert Alert.objects.filter(kind=Kind.FLAPPING).count() == 1
    assert "damped: 3 failovers in 1 h" in " ".join(
        event.transitions.values_list("reason", flat=True)
    )

    engine.fail_back_now(event, actor="root")
    assert engine.advance(event.pk) == EventState.COMPLETED
    assert recording_for(fleet.failover_nodes[0]) is None
