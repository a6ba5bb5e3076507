"""Standby configurations and the takeover in one step, against real agents."""

from __future__ import annotations

import json

import pytest

from cms.nodes.client import forget_tokens
from cms.nodes.errors import NodeRefused
from tests.fixtures.nodes import raw_request as raw
from tests.fixtures.nodes import token_of, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_tokens")]

OWNER = {"id": "rs7", "name": "Lobby NVR"}
CONFIG = {
    "version": "3",
    "cameras": [
        {"id": "door", "name": "Door", "source": "synthetic"},
        {"id": "hall", "name": "Hall", "source": "synthetic"},
    ],
}


def test_it_holds_standby_configurations_across_a_restart(start_node):
    node = start_node(mode="failover", name="standby")
    client = node.client()
    assert client.list_standby() == []
    assert client.health()["standby"] == {}

    held = client.put_standby("rs7", "Lobby NVR", CONFIG)
    assert held == {"id": "rs7", "name": "Lobby NVR", "version": "3"}
    client.put_standby("rs8", "Yard NVR", {"version": 12, "cameras": []})
    assert client.put_standby("rs7", "Lobby NVR", CONFIG) == held  # the same again: no change
    assert client.health()["standby"] == {"rs7": "3", "rs8": "12"}

    node.restart()
    forget_tokens()
    assert client.list_standby() == [
        {"id": "rs7", "name": "Lobby NVR", "version": "3"},
        {"id": "rs8", "name": "Yard NVR", "version": "12"},
    ]
    # Listing shows owners and versions, never the cameras (their sources may hold secrets).
    status, _, body = raw(
        node, "GET", "/api/v1/standby", headers={"Authorization": f"Bearer {token_of(node)}"}
    )
    assert status == 200 and "source" not in str(body)

    assert client.delete_standby("rs8") is True
    assert client.delete_standby("rs8") is False
    node.restart()
    forget_tokens()
    assert client.health()["standby"] == {"rs7": "3"}


@pytest.mark.parametrize(
    "body",
    [
        {"name": "X", "config": {"version": "4", "cameras": [{"id": "../etc"}]}},
        {"name": "X", "config": {"version": "4", "cameras": [{"id": "a", "source": "file:/x"}]}},
        {"name": "X", "config": {"cameras": []}},  # a takeover could not name it
        {"name": "X", "config": {"version": "4 5", "cameras": []}},
        {"name": "", "config": {"version": "4", "cameras": []}},
        {"name": "X"},
    ],
)
def test_a_bad_standby_configuration_is_refused_and_nothing_is_stored(start_node, body):
    node = start_node(mode="failover", name="standby")
    client = node.client()
    client.put_standby("rs7", "Lobby NVR", CONFIG)
    auth = {"Authorization": f"Bearer {token_of(node)}"}
    status, _, answer = raw(node, "PUT", "/api/v1/standby/rs7", json.dumps(body).encode(), auth)
    assert status == 400, answer
    status, _, answer = raw(node, "PUT", "/api/v1/standby/rs9", json.dumps(body).encode(), auth)
    assert status == 400, answer
    assert client.list_standby() == [{"id": "rs7", "name": "Lobby NVR", "version": "3"}]
    assert sorted(p.name for p in (node.data_dir / "standby").iterdir()) == ["rs7.json"]


def test_a_bad_owner_id_is_refused(start_node):
    node = start_node(mode="failover", name="standby")
    auth = {"Authorization": f"Bearer {token_of(node)}"}
    body = b'{"name": "X", "config": {"version": "1", "cameras": []}}'
    status, _, answer = raw(node, "PUT", "/api/v1/standby/..%2Fstate", body, auth)
    assert status in (400, 404), answer
    assert node.client().list_standby() == []


def test_it_takes_over_by_version_and_refuses_a_missing_or_stale_one(start_node):
    # Long segments: the cameras are open long before their first segment is written.
    node = start_node(mode="failover", name="standby", segment_seconds=60)
    client = node.client()
    before = client.health()

    for held, code in [(None, "standby_missing"), ("2", "standby_stale")]:
        if held:
            client.put_standby("rs7", "Lobby NVR", {**CONFIG, "version": held})
        with pytest.raises(NodeRefused) as exc:
            client.takeover(5, OWNER, config_version="3")
        assert exc.value.code == code and exc.value.status == 409
        health = client.health()
        assert health["epoch"] == before["epoch"]  # nothing changed: no epoch, no cameras
        assert health["recording"]["cameras"] == []
        assert health["recording"]["on_behalf_of"] is None

    client.put_standby("rs7", "Lobby NVR", CONFIG)
    answer = client.takeover(5, OWNER, config_version="3")
    assert answer == {"epoch": 5, "active": True, "on_behalf_of": OWNER,
                      "cameras": ["door", "hall"]}  # fmt: skip
    health = wait_until(
        lambda: (
            (h := client.health())["recording"]["cameras"]
            and all(c["open"] for c in h["recording"]["cameras"])
            and h
        ),
        message="cameras open",
    )
    cameras = health["recording"]["cameras"]
    assert {c["id"] for c in cameras} == {"door", "hall"}
    assert all(c["on_behalf_of"] == "rs7" and c["opened_at"] for c in cameras)
    assert all(c["segments"] == 0 for c in cameras)  # open, before any segment
    assert health["recording"]["takeover_epoch"] == 5

    # The standby changing meanwhile does not change what is recorded.
    client.put_standby("rs7", "Lobby NVR", {"version": "4", "cameras": CONFIG["cameras"][:1]})
    assert {c["id"] for c in client.health()["recording"]["cameras"]} == {"door", "hall"}

    client.release(5)
    wait_until(lambda: client.health()["recording"]["cameras"] == [], message="released")


def test_a_takeover_names_a_configuration_or_a_version_not_both(start_node):
    node = start_node(mode="failover", name="standby")
    client = node.client()
    client.put_standby("rs7", "Lobby NVR", CONFIG)
    auth = {"Authorization": f"Bearer {token_of(node)}"}
    body = (
        b'{"epoch": 3, "proof": "x", "on_behalf_of": {"id": "rs7"}, "config_version": "3",'
        b' "config": {"cameras": []}}'
    )
    status, _, answer = raw(node, "POST", "/api/v1/takeover", body, auth)
    assert status == 400 and answer["error"]["code"] == "bad_request"
    assert client.health()["epoch"] == 0


def test_a_paused_camera_is_not_open(start_node):
    node = start_node(mode="failover", name="standby")
    client = node.client()
    client.put_standby("rs7", "Lobby NVR", CONFIG)
    client.takeover(5, OWNER, config_version="3")
    wait_until(lambda: all(c["open"] for c in client.health()["recording"]["cameras"]),
               message="cameras open")  # fmt: skip
    client.set_fault("volume")
    cameras = wait_until(
        lambda: (
            (cams := client.health()["recording"]["cameras"])
            and not any(c["open"] for c in cams)
            and cams
        ),
        message="paused cameras closed",
    )
    assert all(c["opened_at"] is None and c["state"] == "paused" for c in cameras)
