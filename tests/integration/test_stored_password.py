"""A stored node password is used for its own server, at its own address, by its editors."""

from __future__ import annotations

import pytest

from tests.integration.test_failover_admin import login_as

STORED = "stored-s3cret-pw"
URL = "/admin/inventory/recordingserver/connect/"


@pytest.fixture
def stored(make_server):
    return make_server(name="Lobby", host="127.0.0.1", port=5999, admin_password=STORED)


def ask(client, stored, port: int, path: str = "test/", **extra):
    form = {"pk": str(stored.pk), "connection_type": "address", "host": "127.0.0.1",
            "port": str(port), "admin_username": "admin", "admin_password_input": ""}  # fmt: skip
    form.update(extra)
    return client.post(URL + path, form)


@pytest.mark.parametrize("role", ["Operator", "Administrator"])
def test_the_stored_password_never_goes_to_another_address(
    client, django_user_model, team, stored, listener, role
):
    login_as(client, django_user_model, team, role)
    answer = ask(client, stored, listener.port)
    assert answer.status_code == 400
    assert "admin_password_input" in answer.json()["errors"]
    assert listener.received == []  # nothing connected, so no password reached it


def test_an_operator_cannot_test_with_the_stored_password_at_all(
    client, django_user_model, team, stored, listener
):
    login_as(client, django_user_model, team, "Operator")
    answer = ask(client, stored, stored.port)  # its own address, still not an editor
    assert answer.status_code == 400
    assert answer.json()["errors"]["admin_password_input"] == [
        "Enter the admin password of the server."
    ]


def test_an_operator_cannot_enable_a_node_or_set_its_lock(
    client, django_user_model, team, stored, listener
):
    login_as(client, django_user_model, team, "Operator")
    answer = ask(client, stored, listener.port, path="enable/",
                 admin_password_input="typed-pw", refuse_other_hosts="on")  # fmt: skip
    assert answer.status_code == 403
    assert listener.received == []


def test_the_api_tests_a_stored_server_only_for_its_editors(sites, api_user):
    operator = api_user("Operator")
    lobby = sites[0].recording
    answer = operator.post(f"/api/v1/recording-servers/{lobby.pk}/test-connection/")
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "permission_denied"
