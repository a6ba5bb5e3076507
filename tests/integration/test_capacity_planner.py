"""The capacity planner against real node agents: each failover server's capacity is
read from its node, and the what-if agrees with what the engine does when the recording
servers are killed at once."""

from __future__ import annotations

import pytest

from failover import engine, planner, probing
from failover.engine import refresh_snapshot
from failover.models import FailoverEvent, Protection
from tests.fixtures.fleet import register

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def site(start_node, team, failover_settings, settings):
    """Big (3 cameras), Lobby (2) and Small (1); Wide records 2 cameras at once and
    Narrow 1. Big and Lobby prefer Narrow, then Wide; Small has Narrow alone."""
    settings.CMS_TAKEOVER_CONFIRM_SECONDS = 15
    # Every recording server of the team is killed at once below, which the mass-failure
    # guard would hold: this is about where they go when they do fail over.
    failover_settings.mass_failure_share = 0
    failover_settings.save()
    nodes, servers = {}, {}
    for name, cameras in (("Big", 3), ("Lobby", 2), ("Small", 1)):
        nodes[name] = start_node(mode="recording", name=name.lower(), cameras=cameras)
        servers[name] = register(nodes[name], team, "recording", name)
    for name, room in (("Wide", 2), ("Narrow", 1)):
        nodes[name] = start_node(
            mode="failover", name=name.lower(), extra_args=["--max-cameras", str(room)]
        )
        servers[name] = register(nodes[name], team, "failover", name)
    for recording, order in (("Big", ["Narrow", "Wide"]), ("Lobby", ["Narrow", "Wide"]),
                             ("Small", ["Narrow"])):  # fmt: skip
        for priority, failover in enumerate(order):
            Protection.objects.create(
                recording_server=servers[recording],
                failover_server=servers[failover],
                priority=priority,
            )
    for name in ("Big", "Lobby", "Small"):
        refresh_snapshot(servers[name])
    probing.run_cycle(force=True)
    for server in servers.values():
        server.refresh_from_db()
    return nodes, servers


def test_the_table_reads_each_capacity_from_its_node(site):
    _, servers = site
    rows = {row.server.name: row for row in planner.capacity_table(servers.values())}
    assert set(rows) == {"Big", "Lobby", "Small"}
    assert rows["Big"].cameras == 3
    assert [(p.server.name, p.capacity.cameras, p.fits) for p in rows["Big"].protectors] == [
        ("Narrow", 1, False),
        ("Wide", 2, False),
    ]
    assert rows["Big"].carried is False  # no failover server can carry Big whole
    assert rows["Lobby"].carried is True  # Wide can
    assert rows["Small"].carried is True


def test_the_what_if_is_what_the_engine_does_when_they_are_killed(site):
    nodes, servers = site
    failing = [servers["Small"], servers["Big"], servers["Lobby"]]
    predicted = {o.server.name: o for o in planner.what_if(failing)}
    assert not FailoverEvent.objects.exists()  # the what-if changed nothing
    assert {n: (o.covered_by.name if o.covered_by else None) for n, o in predicted.items()} == {
        "Big": None,  # Narrow and Wide have no room for 3 cameras
        "Lobby": "Wide",  # Narrow has room for 1 only
        "Small": "Narrow",
    }
    assert "Narrow has room for 1" in predicted["Lobby"].why

    for name in ("Big", "Lobby", "Small"):
        nodes[name].kill()
    for _ in range(2):  # failures before failover
        report = probing.run_cycle(force=True)
    events = list(FailoverEvent.objects.order_by("pk"))
    assert sorted(report.wake) == [e.pk for e in events]
    for event in events:  # the workers' order: the events' order
        engine.advance(event.pk)
    actual = {
        e.recording_server_name: e.failover_server.name if e.failover_server else None
        for e in FailoverEvent.objects.all()
    }
    assert actual == {
        n: (o.covered_by.name if o.covered_by else None) for n, o in predicted.items()
    }
    assert FailoverEvent.objects.get(recording_server_name="Big").state == "no_failover_server"
    # and the nodes record what the planner said
    health = nodes["Wide"].client().health()
    assert health["recording"]["on_behalf_of"]["name"] == "Lobby"
    assert health["capacity"] == {"cameras": 2, "licensed_cameras": 0}


@pytest.fixture
def api(admin_user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def test_the_api_lists_what_no_failover_server_can_carry(site, api):
    _, servers = site
    answer = api.get("/api/v1/capacity/").json()
    assert answer["uncarried"] == [servers["Big"].pk]
    big = next(r for r in answer["recording_servers"] if r["name"] == "Big")
    assert big["cameras"] == 3
    assert [(p["name"], p["capacity"], p["fits"]) for p in big["protectors"]] == [
        ("Narrow", 1, False),
        ("Wide", 2, False),
    ]


def test_the_api_what_if(site, api):
    _, servers = site
    ids = f"{servers['Lobby'].pk},{servers['Small'].pk}"
    answer = api.get(f"/api/v1/capacity/what-if/?servers={ids}").json()
    covered = {o["name"]: o["covered_by_name"] for o in answer["outcomes"]}
    assert covered == {"Lobby": "Wide", "Small": "Narrow"}
    assert answer["uncovered"] == []
    answer = api.get(f"/api/v1/capacity/what-if/?servers={servers['Big'].pk}").json()
    assert answer["uncovered"] == [servers["Big"].pk]

    assert api.get("/api/v1/capacity/what-if/").json() == {"outcomes": [], "uncovered": []}
    for bad in ("1,x", "-1", str(servers["Wide"].pk)):  # a failover server is not one
        response = api.get(f"/api/v1/capacity/what-if/?servers={bad}")
        assert response.status_code == 400, bad
        assert "servers" in response.json()["error"]["fields"]
    assert not FailoverEvent.objects.exists()


def test_adding_a_protection_that_cannot_carry_asks_first(site, api):
    _, servers = site
    lobby = servers["Lobby"]
    Protection.objects.filter(recording_server=lobby).delete()
    body = {"recording_server": lobby.pk, "failover_server": servers["Narrow"].pk}

    response = api.post("/api/v1/protections/", body, format="json")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "confirmation_required"
    assert "can carry its 2 cameras whole (Narrow: 1 camera)" in error["consequences"][0]
    assert not Protection.objects.filter(recording_server=lobby).exists()

    response = api.post("/api/v1/protections/", {**body, "confirm": True}, format="json")
    assert response.status_code == 201, response.json()
    # Wide carries Lobby whole: no question asked
    wide = {"recording_server": lobby.pk, "failover_server": servers["Wide"].pk, "priority": 1}
    assert api.post("/api/v1/protections/", wide, format="json").status_code == 201


def test_a_node_reports_its_capacity_and_refuses_a_takeover_beyond_it(start_node):
    from cms.nodes.errors import NodeRefused

    node = start_node(mode="failover", name="narrow", extra_args=["--max-cameras", "1"])
    client = node.client()
    client.install_license("WIDE-0001", cameras=4)
    assert client.health()["capacity"] == {"cameras": 1, "licensed_cameras": 4}
    two = {"cameras": [{"id": "a", "name": "A"}, {"id": "b", "name": "B"}]}
    with pytest.raises(NodeRefused) as exc:
        client.takeover(3, {"id": "rs1", "name": "Lobby"}, two)
    assert exc.value.code == "over_capacity"
    assert "2 cameras to take over, room for 1" in str(exc.value)
    health = client.health()
    assert health["epoch"] == 0 and health["recording"]["on_behalf_of"] is None  # unchanged
    one = {"cameras": [{"id": "a", "name": "A"}]}
    assert client.takeover(3, {"id": "rs1", "name": "Lobby"}, one)["active"] is True


def test_the_what_if_says_why_a_server_is_left_uncovered(site):
    _, servers = site
    Protection.objects.filter(recording_server=servers["Small"]).delete()
    servers["Lobby"].enabled = False
    servers["Lobby"].save()
    servers["Wide"].enabled = False  # the engine does not choose a disabled server
    servers["Wide"].save()
    why = {o.server.name: (o.covered_by, o.why) for o in planner.what_if(servers.values())}
    assert why == {
        "Big": (None, "Narrow has room for 1"),
        "Lobby": (None, "disabled: not probed, so never failed over"),
        "Small": (None, "no failover server protects it"),
    }


def test_a_new_order_alone_asks_nothing_but_a_new_failover_server_does(site, api):
    _, servers = site
    big_first = Protection.objects.filter(recording_server=servers["Big"]).first()
    url = f"/api/v1/protections/{big_first.pk}/"
    assert api.patch(url, {"priority": 5}, format="json").status_code == 200
    Protection.objects.filter(recording_server=servers["Small"]).delete()
    response = api.patch(url, {"recording_server": servers["Small"].pk}, format="json")
    assert response.status_code == 200  # Narrow carries Small's one camera
    Protection.objects.filter(
        recording_server=servers["Lobby"], failover_server__name="Narrow"
    ).delete()
    lobby = Protection.objects.get(recording_server=servers["Lobby"])
    response = api.patch(
        f"/api/v1/protections/{lobby.pk}/", {"failover_server": servers["Narrow"].pk}, format="json"
    )
    assert response.status_code == 409  # Narrow cannot carry Lobby's 2 cameras
    assert response.json()["error"]["code"] == "confirmation_required"
    lobby.refresh_from_db()
    assert lobby.failover_server == servers["Wide"]
