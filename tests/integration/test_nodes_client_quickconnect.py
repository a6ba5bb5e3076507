"""QuickConnect: nodes register at the CMS host's directory; the client resolves IDs."""

from __future__ import annotations

import json

import pytest

from cms.nodes.client import client_for, forget_tokens, resolve_quickconnect_http
from cms.nodes.errors import NodeUnreachable
from cms.nodes.services import test_connection as run_test_connection
from tests.fixtures.nodes import wait_until

pytestmark = pytest.mark.integration


def post(client, body):
    return client.post("/qc/register", data=json.dumps(body), content_type="application/json")


def test_it_binds_an_id_to_the_first_node_and_refuses_a_hijack(db, client):
    first = {"id": "shop-1", "serial": "AAA111", "token": "t" * 32, "port": 5000}
    resp = post(client, first)
    assert resp.status_code == 200, resp.content
    assert resp.json() == {"id": "shop-1", "host": "127.0.0.1", "port": 5000}
    # The same node moves to another address: accepted.
    assert post(client, {**first, "host": "10.0.0.7", "port": 5001}).status_code == 200
    assert client.get("/qc/resolve/shop-1").json()["host"] == "10.0.0.7"
    # Another node, or a wrong token, cannot take the ID.
    for thief in ({**first, "serial": "BBB222"}, {**first, "token": "x" * 32}):
        resp = post(client, {**thief, "host": "10.6.6.6"})
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "id_taken"
    assert client.get("/qc/resolve/shop-1").json()["host"] == "10.0.0.7"
    assert client.get("/qc/resolve/nobody").status_code == 404
    for bad in (
        {**first, "id": "-bad-"},
        {**first, "port": 0},
        {**first, "token": "short"},
        {**first, "host": "not a host!"},
    ):
        assert post(client, bad).status_code == 400
    assert client.post("/qc/register", data="{", content_type="application/json").status_code == 400
    assert client.get("/qc/register").status_code == 405


def test_a_node_started_with_an_id_is_reached_through_the_directory(
    transactional_db, live_server, start_node, make_server
):
    from cms.nodes.models import QuickConnectEntry

    forget_tokens()
    directory = live_server.url + "/qc"
    node = start_node(
        mode="failover", name="qc-node", quickconnect_id="qc-node-1", directory=directory
    )
    entry = wait_until(
        lambda: QuickConnectEntry.objects.filter(qc_id="qc-node-1").first(),
        message="the node registered",
    )
    assert (entry.host, entry.port) == ("127.0.0.1", node.port)
    assert resolve_quickconnect_http(directory, "qc-node-1") == ("127.0.0.1", node.port)

    server = make_server(
        role="failover",
        connection_type="quickconnect",
        host="",
        quickconnect_id="qc-node-1",
        admin_password=node.password,
    )
    report = run_test_connection(server)
    assert report.ok and report.name == "qc-node" and report.fingerprint == ""
    assert client_for(server).health()["cms_mode"] == "failover"

    # A second node claiming the same ID is refused; the directory keeps the first.
    thief = start_node(
        mode="recording", name="thief", quickconnect_id="qc-node-1", directory=directory
    )
    assert thief.port != node.port
    wait_until(lambda: "belongs to another node" in thief.log(), message="thief refused")
    assert QuickConnectEntry.objects.get(qc_id="qc-node-1").port == node.port

    unknown = make_server(
        role="failover",
        connection_type="quickconnect",
        host="",
        quickconnect_id="nobody-here",
        admin_password="x",
    )
    report = run_test_connection(unknown)
    assert not report.ok and report.error_code == "quickconnect_unknown"
    with pytest.raises(NodeUnreachable):
        resolve_quickconnect_http(directory, "nobody-here")
