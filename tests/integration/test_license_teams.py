"""A license stays in its team, even for a user who administers two teams; a license id
that is not a number is a 404, not a server error."""

from __future__ import annotations

import html

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from cms.inventory.models import License, LicenseMove, TeamMembership
from tests.fixtures.fleet import register

pytestmark = pytest.mark.django_db(transaction=True)

RS_URL = "/admin/inventory/recordingserver/"


@pytest.fixture
def two_teams_admin(django_user_model, team, other_team):
    user = django_user_model.objects.create_user("both", password="pw-both-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Administrator"))
    for each in (team, other_team):
        TeamMembership.objects.create(team=each, user=user)
    return user


@pytest.fixture
def their_server(start_node, other_team):
    """A recording server of the other team, with its real node."""
    node = start_node(mode="recording", name="south")
    return register(node, other_team, "recording", "South"), node


def node_keys(node) -> set[str]:
    return {lic["key"] for lic in node.client().licenses()}


def test_the_api_refuses_a_license_of_another_team(two_teams_admin, team, their_server):
    server, node = their_server
    lic = License.objects.create(key="ABCD-0000-EFGH-1111", team=team, cameras=4)
    api = APIClient()
    api.force_authenticate(two_teams_admin)

    refused = api.post(f"/api/v1/licenses/{lic.pk}/install/", {"server": server.pk},
                       format="json")  # fmt: skip
    assert refused.status_code == 400, refused.content
    error = refused.json()["error"]
    assert error["code"] == "validation_error"
    assert "belongs to team Site A" in error["fields"]["server"][0]
    lic.refresh_from_db()
    assert lic.server is None and not LicenseMove.objects.exists()
    assert node_keys(node) == set()  # the node was never asked


def test_the_server_page_refuses_a_license_of_another_team(
    client, two_teams_admin, team, their_server
):
    server, node = their_server
    lic = License.objects.create(key="ABCD-0000-EFGH-2222", team=team, cameras=4)
    client.force_login(two_teams_admin)

    page = client.post(f"{RS_URL}{server.pk}/licenses/add/", {"license": lic.pk}, follow=True)
    assert page.status_code == 200
    text = html.unescape(page.content.decode())
    assert "License ABCD-0000-EFGH-2222 belongs to team Site A" in text
    lic.refresh_from_db()
    assert lic.server is None and not LicenseMove.objects.exists()
    assert node_keys(node) == set()


def test_a_license_id_that_is_not_a_number_is_a_404(admin_client, make_server):
    server = make_server(name="Lobby")  # refused before any node would be asked
    lic = License.objects.create(key="ABCD-0000-EFGH-3333", team=server.team, server=server)
    for bad in ("abc", "1.5", "-1", f" {lic.pk}", "\uff11", "9" * 30, ""):
        for action in ("add", "remove"):
            response = admin_client.post(f"{RS_URL}{server.pk}/licenses/{action}/",
                                         {"license": bad})  # fmt: skip
            if action == "add" and bad == "":
                continue  # no license chosen: a new key is read instead (and refused)
            assert response.status_code == 404, (action, bad, response.status_code)
    lic.refresh_from_db()
    assert lic.server_id == server.pk  # nothing was removed
