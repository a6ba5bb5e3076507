"""One node, one server, in the list its CMS mode says; its identity follows its address.

Every door that adds a server (the admin's Add Server, the API's create, Add Batch) or
moves one to another address reaches the node first, as Test Connection does, and
refuses what cannot be a server of that list, with the reason. Real node agents.
"""

from __future__ import annotations

import html
import socket

import pytest
from django.db import IntegrityError, transaction
from rest_framework.test import APIClient

from cms.inventory.models import Server

pytestmark = pytest.mark.integration

FS_ADD = "/admin/inventory/failoverserver/add/"
FS_API = "/api/v1/failover-servers/"
RS_API = "/api/v1/recording-servers/"


@pytest.fixture
def admin_api(admin_user) -> APIClient:
    api = APIClient()
    api.force_authenticate(admin_user)
    return api


def closed_port() -> int:
    """A loopback port nothing listens on (the connection is refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def form(team, host, port, password="pw", name="Standby North", **extra):  # noqa: S107
    return {"team": team.pk, "name": name, "connection_type": "address", "host": host,
            "port": str(port), "quickconnect_id": "", "admin_username": "admin",
            "admin_password_input": password, "enabled": "on", **extra}  # fmt: skip


def page_text(response) -> str:
    return html.unescape(response.content.decode())


def body(team, host, port, password="pw", name="Standby North"):  # noqa: S107
    return {"team": team.pk, "name": name, "host": host, "port": port, "admin_password": password}


# -- Add Server: the admin ---------------------------------------------------------


def test_add_server_refuses_an_address_nothing_answers_at(admin_client, team):
    port = closed_port()
    response = admin_client.post(FS_ADD, form(team, "127.0.0.1", port))
    assert response.status_code == 200
    assert f"The server cannot be added: cannot reach 127.0.0.1:{port}" in page_text(response)
    assert not Server.objects.exists()


def test_add_server_refuses_a_wrong_password_with_test_connections_reason(
    admin_client, team, start_node
):
    node = start_node(mode="failover")
    response = admin_client.post(FS_ADD, form(team, node.host, node.port, password="wrong"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "refused the credentials of 'admin'" in errors["admin_password_input"][0]
    assert not Server.objects.exists()


def test_the_failover_list_takes_only_a_node_in_failover_server_mode(
    admin_client, admin_api, team, start_node
):
    recording = start_node(mode="recording", name="rec-box")
    standalone = start_node(mode="standalone", name="fresh-box")
    refused = admin_client.post(FS_ADD, form(team, recording.host, recording.port))
    assert "rec-box is in Recording Server mode; the failover server list takes only nodes " \
           "in Failover Server mode. Add it to the recording server list instead" \
           in page_text(refused)  # fmt: skip
    no_cms = admin_client.post(FS_ADD, form(team, standalone.host, standalone.port))
    text = page_text(no_cms)
    assert "fresh-box's CMS service is not enabled" in text and "use the Enable link" in text
    assert not Server.objects.exists()
    # and the recording list takes the recording node
    taken = admin_api.post(
        RS_API, body(team, recording.host, recording.port, name="Rec"), format="json"
    )
    assert taken.status_code == 201, taken.content
    assert Server.objects.get().role == "recording"


def test_a_node_already_added_is_refused_with_the_name_of_its_server(
    admin_client, team, start_node
):
    node = start_node(mode="failover")
    first = admin_client.post(FS_ADD, form(team, node.host, node.port, name="Standby 2"))
    assert first.status_code == 302
    # The same node, at the same address or by another name for it.
    for host in (node.host, "localhost"):
        again = admin_client.post(FS_ADD, form(team, host, node.port, name="Standby 3"))
        assert "This node is already added as 'Standby 2'" in page_text(again), host
    assert list(Server.objects.values_list("name", flat=True)) == ["Standby 2"]


# -- the API's create ----------------------------------------------------------------


def test_the_api_refuses_what_cannot_be_a_failover_server_with_the_reason(
    admin_api, team, start_node
):
    standby = start_node(mode="failover", name="standby")
    recording = start_node(mode="recording", name="rec-box")
    assert admin_api.post(FS_API, body(team, standby.host, standby.port, name="Standby 2"),
                          format="json").status_code == 201  # fmt: skip
    cases = [
        (body(team, "127.0.0.1", closed_port()), "host", "cannot reach 127.0.0.1"),
        (body(team, standby.host, standby.port, password="wrong"), "admin_password",
         "refused the credentials"),
        (body(team, recording.host, recording.port), "host", "is in Recording Server mode"),
        (body(team, standby.host, standby.port), "host", "already added as 'Standby 2'"),
    ]  # fmt: skip
    for data, field, message in cases:
        response = admin_api.post(FS_API, data, format="json")
        assert response.status_code == 400, response.content
        assert message in response.json()["error"]["fields"][field][0]
    assert Server.objects.count() == 1
    added = Server.objects.get()
    assert (added.serial, added.model) == (standby.get_info()["serial"], "TEST-NODE")


def test_the_database_keeps_one_server_per_serial_and_allows_unread_ones(make_server):
    make_server(name="a", serial="")
    make_server(name="b", serial="")  # not probed yet: no identity to compare
    make_server(name="c", serial="SN-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        Server.objects.filter(name="b").update(serial="SN-1")


def test_the_probe_does_not_give_two_servers_one_serial(team, start_node, failover_settings):
    """Rows written straight to the database (no door checked them) point at one node:
    the first keeps its identity, the other stays unread, and the probe cycle runs."""
    from failover import probing

    node = start_node(mode="recording")
    for name in ("One", "Two"):
        Server.objects.create(team=team, role="recording", name=name, host=node.host,
                              port=node.port, admin_password="pw")  # fmt: skip
    probing.run_cycle(force=True)
    assert sorted(Server.objects.values_list("serial", flat=True)) == sorted(
        ["", node.get_info()["serial"]]
    )


# -- identity follows the address ---------------------------------------------------


def test_moving_a_server_to_another_node_needs_confirmation_then_its_identity_follows(
    admin_client, team, start_node
):
    old = start_node(mode="failover", name="old-box", model="FS-7")
    new = start_node(mode="failover", name="new-box", model="FS-9")
    assert admin_client.post(FS_ADD, form(team, old.host, old.port)).status_code == 302
    server = Server.objects.get()
    url = f"/admin/inventory/failoverserver/{server.pk}/change/"
    assert "confirm_node_replacement" not in admin_client.get(url).content.decode()

    moved = form(team, new.host, new.port, password="")
    refused = admin_client.post(url, moved)
    assert refused.status_code == 200
    text = page_text(refused)
    assert f"is another node than the one added as 'Standby North': serial " \
           f"'{new.get_info()['serial']}' (FS-9" in text  # fmt: skip
    assert "Tick 'Replace the node' to save anyway." in text
    assert 'name="confirm_node_replacement"' in refused.content.decode()
    server.refresh_from_db()
    assert (server.port, server.model) == (old.port, "FS-7")

    saved = admin_client.post(url, {**moved, "confirm_node_replacement": "on"})
    assert saved.status_code == 302, page_text(saved)[-2000:]
    server.refresh_from_db()
    info = new.get_info()
    assert (server.port, server.serial, server.model, server.software_version) == (
        new.port, info["serial"], "FS-9", info["version"]
    )  # fmt: skip


def test_the_api_moves_a_server_to_another_node_only_with_confirm(admin_api, team, start_node):
    old = start_node(mode="recording", name="old-box", model="NVR-1")
    new = start_node(mode="recording", name="new-box", model="NVR-2")
    taken = start_node(mode="recording", name="taken-box")
    created = admin_api.post(RS_API, body(team, old.host, old.port, name="Lobby"), format="json")
    assert created.status_code == 201
    admin_api.post(RS_API, body(team, taken.host, taken.port, name="Garage"), format="json")
    url = f"{RS_API}{created.json()['id']}/"

    # The same node by another name for its host: nothing to confirm.
    same = admin_api.patch(url, {"host": "localhost"}, format="json")
    assert same.status_code == 200, same.content
    assert same.json()["serial"] == old.get_info()["serial"]

    asked = admin_api.patch(url, {"host": new.host, "port": new.port}, format="json")
    assert asked.status_code == 409
    assert asked.json()["error"]["code"] == "confirmation_required"
    assert "Saving replaces the node" in asked.json()["error"]["consequences"][0]
    assert admin_api.get(url).json()["port"] == old.port  # nothing changed

    other = admin_api.patch(url, {"host": taken.host, "port": taken.port, "confirm": True},
                            format="json")  # fmt: skip
    assert other.status_code == 400
    assert "already added as 'Garage'" in other.json()["error"]["fields"]["host"][0]

    done = admin_api.patch(url, {"host": new.host, "port": new.port, "confirm": True},
                           format="json")  # fmt: skip
    assert done.status_code == 200, done.content
    assert (done.json()["serial"], done.json()["model"]) == (new.get_info()["serial"], "NVR-2")


def test_an_edit_that_does_not_move_the_server_does_not_ask_its_node(admin_api, make_server):
    """A server whose node is down keeps being editable (its name, enabled)."""
    server = make_server(role="recording", name="Far", host="127.0.0.1", port=closed_port())
    edited = admin_api.patch(f"{RS_API}{server.pk}/", {"name": "Far away"}, format="json")
    assert edited.status_code == 200, edited.content


def test_a_server_moved_to_another_https_node_pins_that_nodes_certificate(
    admin_api, team, start_node
):
    old = start_node(mode="failover", name="old-box", https=True)
    new = start_node(mode="failover", name="new-box", https=True)
    created = admin_api.post(FS_API, {**body(team, old.host, old.port), "use_https": True},
                             format="json")  # fmt: skip
    assert created.status_code == 201, created.content
    assert created.json()["tls_fingerprint"].replace(":", "").lower() == old.fingerprint
    url = f"{FS_API}{created.json()['id']}/"
    moved = admin_api.patch(url, {"port": new.port, "confirm": True}, format="json")
    assert moved.status_code == 200, moved.content
    server = Server.objects.get()
    assert server.tls_fingerprint.replace(":", "").lower() == new.fingerprint
    assert server.serial == new.get_info()["serial"] and server.pairing_key.reveal() == ""


def test_a_node_of_another_team_is_refused_without_naming_its_server(
    admin_api, team, other_team, start_node
):
    node = start_node(mode="failover")
    ours = admin_api.post(FS_API, body(team, node.host, node.port, name="Secret name"),
                          format="json")  # fmt: skip
    assert ours.status_code == 201
    theirs = admin_api.post(FS_API, body(other_team, node.host, node.port, name="Standby"),
                            format="json")  # fmt: skip
    assert theirs.status_code == 400
    (message,) = theirs.json()["error"]["fields"]["host"]
    assert message.startswith("This node is already a server of another team here")
    assert "Secret name" not in theirs.content.decode()
