"""All or nothing on the nodes too: a batch refused as a whole, or failing part-way, and
an Enable whose later step fails leave every node exactly as it was (CMS service, mode,
pairing, lock); the Add Batch page's Enable only asks for it, and the batch turns it on.
Real node agents; the failures are a network that refuses one request and an audit trail
that cannot be written."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from cms.inventory.models import Server
from cms.nodes.models import PendingPairing

pytestmark = pytest.mark.integration

BATCH = "/api/v1/failover-servers/batch-add/"
BATCH_ROWS = "/admin/inventory/failoverserver/batch/rows/"
STATE = ("cms_mode", "cms_enabled", "paired", "locked")


@pytest.fixture
def admin_api(admin_user) -> APIClient:
    api = APIClient()
    api.force_authenticate(admin_user)
    return api


def state(node) -> dict:
    info = node.get_info()
    return {key: info[key] for key in STATE}


def row(node, **extra) -> dict:
    return {"host": node.host, "port": node.port, "admin_password": node.password, **extra}


def enable_row(node) -> dict:
    return row(node, enable_cms=True, refuse_other_hosts=True, refuse_local_changes=True)


def test_a_batch_refused_for_one_bad_row_changes_no_node(admin_api, team, start_node):
    fresh = [start_node(mode="standalone", name=f"fresh-{i}") for i in (1, 2)]
    standby = start_node(mode="failover", name="standby")
    recording = start_node(mode="recording", name="rec-box")
    nodes = [*fresh, standby, recording]
    before = {node.port: state(node) for node in nodes}

    refused = admin_api.post(BATCH, {
        "team": team.pk, "naming_rule": "prefix_no", "prefix": "Standby",
        "servers": [enable_row(fresh[0]), enable_row(fresh[1]), row(standby), row(recording)],
    }, format="json")  # fmt: skip

    assert refused.status_code == 409, refused.content
    assert list(refused.json()["error"]["rows"]) == ["3"]  # only the recording node's row
    assert {node.port: state(node) for node in nodes} == before
    assert before[fresh[0].port] == {
        "cms_mode": "standalone", "cms_enabled": False, "paired": False, "locked": False,
    }  # fmt: skip
    assert not Server.objects.exists()
    assert not PendingPairing.objects.exists()


def test_a_batch_that_fails_part_way_turns_the_enabled_nodes_off_again(
    admin_api, team, start_node, faulty_proxy
):
    from tests.fixtures.faulty_network import answer_error

    fresh = [start_node(mode="standalone", name=f"fresh-{i}") for i in (1, 2, 3)]
    before = {node.port: state(node) for node in fresh}
    # The third node is reached through a network that fails its enabling (and nothing
    # else): every row passes its checks, and the batch fails after two nodes took it.
    link = faulty_proxy(fresh[2])
    link.refuse = answer_error(503, "unavailable", "POST /api/v1/cms/enable")
    third = {**enable_row(fresh[2]), "host": link.host, "port": link.port}

    failed = admin_api.post(BATCH, {
        "team": team.pk, "naming_rule": "prefix_no", "prefix": "Standby",
        "servers": [enable_row(fresh[0]), enable_row(fresh[1]), third],
    }, format="json")  # fmt: skip

    assert failed.status_code == 409, failed.content
    assert "Could not enable the CMS service" in failed.json()["error"]["rows"]["2"][0]
    assert link.refused >= 1  # the first two were enabled (and locked) on their nodes ...
    assert {node.port: state(node) for node in fresh} == before  # ... and are off again
    assert not Server.objects.exists()
    assert not PendingPairing.objects.exists()


def test_a_batch_refuses_a_node_already_managed_and_a_node_twice(admin_api, team, start_node):
    a, b = start_node(mode="failover", name="fa"), start_node(mode="failover", name="fb")
    added = admin_api.post(BATCH, {"team": team.pk, "naming_rule": "prefix_no",
                                   "prefix": "Standby", "servers": [row(a)]},
                           format="json")  # fmt: skip
    assert added.status_code == 201
    refused = admin_api.post(BATCH, {
        "team": team.pk, "naming_rule": "prefix_no", "prefix": "Standby",
        # b twice: once by its address, once by another name for the same host
        "servers": [row(a), row(b), row(b, host="localhost")],
    }, format="json")  # fmt: skip
    assert refused.status_code == 409, refused.content
    rows = refused.json()["error"]["rows"]
    assert "already added as 'Standby-1'" in rows["0"][0]
    assert "The same node as row 2" in rows["2"][0]
    assert "1" not in rows
    assert list(Server.objects.values_list("name", flat=True)) == ["Standby-1"]


def test_enable_whose_later_step_fails_leaves_the_node_as_it_was(
    admin_client, start_node, monkeypatch
):
    from cms import audit

    node = start_node(mode="standalone", name="fresh-box")
    before = state(node)

    def trail_unavailable(*args, **kwargs):
        raise RuntimeError("the audit trail could not be written")

    monkeypatch.setattr(audit, "record", trail_unavailable)
    with pytest.raises(RuntimeError, match="audit trail"):
        admin_client.post("/admin/inventory/failoverserver/connect/enable/", {
            "connection_type": "address", "host": node.host, "port": node.port,
            "admin_username": "admin", "admin_password_input": node.password,
            "refuse_other_hosts": "on", "refuse_local_changes": "on",
        })  # fmt: skip
    assert state(node) == before
    assert not PendingPairing.objects.exists()


def test_enable_refuses_a_node_whose_cms_service_is_on_and_changes_nothing(
    admin_client, start_node
):
    node = start_node(mode="recording", name="rec-box")
    before = state(node)
    answer = admin_client.post("/admin/inventory/failoverserver/connect/enable/", {
        "connection_type": "address", "host": node.host, "port": node.port,
        "admin_username": "admin", "admin_password_input": node.password,
    })  # fmt: skip
    assert answer.json()["ok"] is False
    assert "already enabled, in recording mode" in answer.json()["message"]
    assert state(node) == before


def found_on_lan(node) -> str:
    """The node as the LAN search would list it on the Add Batch page."""
    info = node.get_info()
    return json.dumps({
        **{key: info[key] for key in ("serial", "name", "model", "version", "cms_mode",
                                      "cms_enabled", "locked")},
        "address": node.host, "port": node.port, "https": False, "paired_elsewhere": False,
    })  # fmt: skip


def test_add_batch_page_enable_waits_for_the_batch_and_a_refused_one_changes_no_node(
    admin_client, team, start_node
):
    fresh = start_node(mode="standalone", name="FreshBox", password="Fresh-Secret-71")
    standby = start_node(mode="failover", name="EastBox")
    before = state(fresh)
    fresh_serial = fresh.get_info()["serial"]
    page = {"found": [found_on_lan(fresh), found_on_lan(standby)], "team": team.pk}

    enabled = admin_client.post(BATCH_ROWS, page | {
        "op": "enable_ok", "serial": fresh_serial, "enable_password": fresh.password,
        "enable_other_hosts": "on", "enable_local": "on",
    })  # fmt: skip
    html = enabled.content.decode()
    assert "CMS service will be turned on when added" in html
    assert f'name="enable-{fresh_serial}" value="on"' in html
    assert fresh.password not in html  # the page's script keeps it in a password field
    assert json.loads(enabled["HX-Trigger-After-Swap"]) == {
        "cms-enable-done": {"serial": fresh_serial}}  # fmt: skip
    assert state(fresh) == before  # Enable on this page asks the node nothing

    standby_serial = standby.get_info()["serial"]
    chosen = page | {
        "op": "add", "pick": [fresh_serial, standby_serial],
        f"enable-{fresh_serial}": "on", f"lock-hosts-{fresh_serial}": "on",
        f"lock-local-{fresh_serial}": "on", f"password-{fresh_serial}": fresh.password,
    }  # fmt: skip
    refused = admin_client.post(BATCH_ROWS, chosen | {f"password-{standby_serial}": "wrong"})
    assert "nothing was added" in refused.content.decode()
    assert not Server.objects.exists()
    assert state(fresh) == before
    assert not PendingPairing.objects.exists()

    added = admin_client.post(BATCH_ROWS, chosen | {f"password-{standby_serial}": standby.password})
    assert added.status_code == 200 and "HX-Redirect" in added, added.content.decode()
    assert sorted(Server.objects.values_list("name", flat=True)) == ["EastBox", "FreshBox"]
    assert state(fresh) == {
        "cms_mode": "failover", "cms_enabled": True, "paired": True, "locked": True,
    }  # fmt: skip
