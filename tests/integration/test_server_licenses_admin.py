"""Installed licenses on the server page: add, remove, refused input, permissions."""

from __future__ import annotations

import html

import pytest

from cms.inventory.models import License, LicenseMove

pytestmark = pytest.mark.django_db(transaction=True)

RS_URL = "/admin/inventory/recordingserver/"


@pytest.fixture
def lobby(start_node, team):
    from tests.fixtures.fleet import register

    node = start_node(mode="recording", name="lobby")
    return register(node, team, "recording", "Lobby"), node


def node_keys(node) -> set[str]:
    return {lic["key"] for lic in node.client().licenses()}


def test_add_and_remove_a_license_on_the_server_page(admin_client, lobby):
    server, node = lobby
    page = html.unescape(admin_client.get(f"{RS_URL}{server.pk}/change/").content.decode())
    assert "No license is installed on this server." in page

    add = f"{RS_URL}{server.pk}/licenses/add/"
    refused = admin_client.post(add, {"key": "not a key", "cameras": "4"}, follow=True)
    assert "groups of 4 to 8 letters or digits" in refused.content.decode()
    assert not License.objects.exists()  # bad input changes nothing

    done = admin_client.post(add, {"key": "abcd-1234-efgh-5678", "cameras": "4"}, follow=True)
    assert "License ABCD-1234-EFGH-5678 installed on Lobby." in done.content.decode()
    lic = License.objects.get()
    assert (lic.server_id, lic.cameras) == (server.pk, 4)
    assert node_keys(node) == {"ABCD-1234-EFGH-5678"}

    admin_client.post(f"{RS_URL}{server.pk}/licenses/remove/", {"license": lic.pk})
    lic.refresh_from_db()
    assert lic.server is None and node_keys(node) == set()
    # Installed again from the list of licenses not installed anywhere: history kept.
    admin_client.post(add, {"license": lic.pk})
    lic.refresh_from_db()
    assert lic.server_id == server.pk
    assert list(LicenseMove.objects.filter(license=lic).values_list("to_server_name", flat=True)
                .order_by("pk")) == ["Lobby", "", "Lobby"]  # fmt: skip


def test_a_license_refused_by_the_node_is_not_created(admin_client, lobby):
    server, node = lobby
    node.kill()
    response = admin_client.post(f"{RS_URL}{server.pk}/licenses/add/",
                                 {"key": "ABCD-1234-EFGH-5678"}, follow=True)  # fmt: skip
    assert "Lobby refused the license" in html.unescape(response.content.decode())
    assert not License.objects.exists()


def test_an_operator_sees_the_licenses_but_cannot_change_them(client, lobby, django_user_model):
    from tests.integration.test_failover_admin import login_as

    server, _ = lobby
    login_as(client, django_user_model, server.team, "Operator")
    page = client.get(f"{RS_URL}{server.pk}/change/").content.decode()
    assert "Installed licenses" in page and "Add license" not in page
    response = client.post(f"{RS_URL}{server.pk}/licenses/add/", {"key": "ABCD-1234-EFGH-5678"})
    assert response.status_code == 403
    assert not License.objects.exists()


def test_a_license_installed_meanwhile_is_not_taken_from_its_server(
    admin_client, lobby, start_node, team
):
    from cms.inventory.licenses import install
    from tests.fixtures.fleet import register

    server, node = lobby
    garage_node = start_node(mode="recording", name="garage")
    garage = register(garage_node, team, "recording", "Garage")
    lic = License.objects.create(key="ABCD-1234-EFGH-5678", team=team)
    install(lic, garage, actor="root")  # after the page offered it as installed nowhere
    response = admin_client.post(f"{RS_URL}{server.pk}/licenses/add/", {"license": lic.pk},
                                 follow=True)  # fmt: skip
    assert "was installed on Garage meanwhile" in html.unescape(response.content.decode())
    lic.refresh_from_db()
    assert lic.server_id == garage.pk
    assert node_keys(garage_node) == {"ABCD-1234-EFGH-5678"} and node_keys(node) == set()
