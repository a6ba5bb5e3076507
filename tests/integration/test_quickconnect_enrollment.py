"""QuickConnect IDs of servers: one server per ID, and where enrollment secrets come
from (every door that adds a QuickConnect server or changes its ID issues one, shown
once to an administrator; only its hash is stored)."""

from __future__ import annotations

import hashlib
import html
import json
import re

import pytest
from django.test import Client
from rest_framework.test import APIClient

from cms.inventory.models import Server
from cms.nodes.models import QuickConnectEntry
from tests.integration.test_failover_admin import login_as

pytestmark = pytest.mark.integration

FS_URL = "/admin/inventory/failoverserver/"
ENTRIES_URL = "/admin/nodes/quickconnectentry/"


@pytest.fixture
def admin_api(admin_user) -> APIClient:
    api = APIClient()
    api.force_authenticate(admin_user)
    return api


def register(client, qc_id: str, secret: str | None, serial: str = "AAA111"):
    body = {"id": qc_id, "serial": serial, "token": serial * 6, "port": 5000}
    if secret:
        body["enrollment"] = secret
    return client.post("/qc/register", json.dumps(body), content_type="application/json")


def stored(qc_id: str) -> QuickConnectEntry:
    return QuickConnectEntry.objects.get(qc_id=qc_id)


def test_the_api_answers_the_secret_once_and_stores_its_hash(admin_api, client, team,
                                                             start_node):  # fmt: skip
    created = admin_api.post("/api/v1/failover-servers/", {
        "team": team.pk, "name": "Standby 7", "connection_type": "quickconnect", "host": "",
        "quickconnect_id": "site-7", "admin_password": "pw",
    }, format="json")  # fmt: skip
    assert created.status_code == 201, created.content
    secret = created.json()["quickconnect_enrollment_secret"]
    assert len(secret) >= 40
    assert stored("site-7").enrollment_hash == hashlib.sha256(secret.encode()).hexdigest()
    pk = created.json()["id"]

    # Never again: not in a read, a list, or an edit that keeps the ID.
    read = admin_api.get(f"/api/v1/failover-servers/{pk}/").json()
    assert "quickconnect_enrollment_secret" not in read
    listed = admin_api.get("/api/v1/failover-servers/").json()
    assert secret not in json.dumps(listed)
    kept = admin_api.patch(f"/api/v1/failover-servers/{pk}/", {"port": 5009}, format="json")
    assert kept.status_code == 200 and "quickconnect_enrollment_secret" not in kept.json()
    assert stored("site-7").enrollment_hash == hashlib.sha256(secret.encode()).hexdigest()

    # A new ID: a secret for it.
    moved = admin_api.patch(f"/api/v1/failover-servers/{pk}/", {"quickconnect_id": "site-8"},
                            format="json")  # fmt: skip
    assert moved.status_code == 200, moved.content
    new_secret = moved.json()["quickconnect_enrollment_secret"]
    assert register(client, "site-8", secret).status_code == 403
    assert register(client, "site-8", new_secret).status_code == 200

    # The node was replaced: a new secret for the same ID; the old node stays until the
    # new one enrolls.
    renewed = admin_api.post(f"/api/v1/failover-servers/{pk}/quickconnect-enrollment/")
    assert renewed.status_code == 200, renewed.content
    assert renewed.json()["quickconnect_id"] == "site-8"
    assert register(client, "site-8", None).status_code == 200
    assert register(client, "site-8", renewed.json()["quickconnect_enrollment_secret"],
                    serial="BBB222").status_code == 200  # fmt: skip
    assert register(client, "site-8", None).status_code == 403
    assert stored("site-8").serial == "BBB222"

    node = start_node(mode="failover")
    by_address = admin_api.post("/api/v1/failover-servers/", {
        "team": team.pk, "name": "Standby 9", "host": node.host, "port": node.port,
        "admin_password": node.password,
    }, format="json")  # fmt: skip
    assert "quickconnect_enrollment_secret" not in by_address.json()
    nothing = admin_api.post(f"/api/v1/failover-servers/{by_address.json()['id']}/"
                             "quickconnect-enrollment/")  # fmt: skip
    assert nothing.status_code == 409 and nothing.json()["error"]["code"] == "not_quickconnect"


def test_one_quickconnect_id_is_one_server_across_teams(admin_api, team, other_team):
    """Else another team's administrator could issue a secret that moves our node's ID."""
    body = {"connection_type": "quickconnect", "host": "", "quickconnect_id": "site-1",
            "admin_password": "pw"}  # fmt: skip
    first = admin_api.post("/api/v1/recording-servers/", {**body, "team": team.pk,
                           "name": "Lobby"}, format="json")  # fmt: skip
    assert first.status_code == 201
    second = admin_api.post("/api/v1/failover-servers/", {**body, "team": other_team.pk,
                            "name": "Standby"}, format="json")  # fmt: skip
    assert second.status_code == 400
    assert "already exists" in second.json()["error"]["fields"]["quickconnect_id"][0]
    assert Server.objects.count() == 1


def test_only_administrators_issue_secrets_through_the_api(db, sites, api_user):
    server = sites[0].failover
    Server.objects.filter(pk=server.pk).update(
        connection_type="quickconnect", host="", quickconnect_id="north-1"
    )
    url = f"/api/v1/failover-servers/{server.pk}/quickconnect-enrollment/"
    for role in ("Viewer", "Operator"):
        assert api_user(role).post(url).status_code == 403
    assert not QuickConnectEntry.objects.exists()
    other = f"/api/v1/failover-servers/{sites[1].failover.pk}/quickconnect-enrollment/"
    admin = api_user("Administrator")
    assert admin.post(other).status_code == 404
    assert admin.post(url).status_code == 200


def test_the_schema_documents_the_write_once_field(admin_client):
    schema = admin_client.get("/api/schema/", {"format": "json"}).json()
    server = schema["components"]["schemas"]["Server"]
    field = server["properties"]["quickconnect_enrollment_secret"]
    assert field["readOnly"] and "Write-once" in field["description"]
    assert "quickconnect_enrollment_secret" not in server["required"]
    request = schema["components"]["schemas"]["ServerRequest"]
    assert "quickconnect_enrollment_secret" not in request["properties"]
    assert "/api/v1/failover-servers/{id}/quickconnect-enrollment/" in schema["paths"]


def states(admin_client) -> list[str]:
    """The State column of the QuickConnect registrations list."""
    page = admin_client.get(ENTRIES_URL).content.decode()
    return re.findall(r'<td class="field-state">([^<]*)</td>', page)


def secret_in(page: str, qc_id: str) -> str | None:
    found = re.search(rf"QuickConnect ID {qc_id}: enrollment secret <code>([^<]+)</code>", page)
    return found.group(1) if found else None


def add_form(team, **overrides):
    data = {"team": team.pk, "name": "Standby North", "connection_type": "quickconnect",
            "host": "", "port": "5000", "quickconnect_id": "north-1", "admin_username": "admin",
            "admin_password_input": "pw-node", "enabled": "on"}  # fmt: skip
    return {**data, **overrides}


def test_the_admin_shows_the_secret_once_and_issues_a_new_one_on_request(
    admin_client, client, team, django_user_model
):
    added = admin_client.post(f"{FS_URL}add/", add_form(team), follow=True)
    page = html.unescape(added.content.decode())
    secret = secret_in(page, "north-1")
    assert secret, page[:3000]
    assert "CMS_NODE_QUICKCONNECT_ENROLLMENT" in page
    server = Server.objects.get()
    assert states(admin_client) == ["Waiting for enrollment"]
    assert secret not in admin_client.get(f"{FS_URL}{server.pk}/change/").content.decode()

    assert register(client, "north-1", secret).status_code == 200
    assert states(admin_client) == ["Bound"]
    # Saving again without a new ID issues nothing.
    again = admin_client.post(f"{FS_URL}{server.pk}/change/",
                              add_form(team, admin_password_input=""), follow=True)  # fmt: skip
    assert again.status_code == 200 and secret_in(again.content.decode(), "north-1") is None
    assert stored("north-1").is_bound and not stored("north-1").awaits_enrollment

    # An Operator cannot run the action; an administrator can.
    action = {"action": "issue_enrollment_secret", "_selected_action": [server.pk]}
    operator = Client()
    login_as(operator, django_user_model, team, "Operator")
    operator.post(FS_URL, action, follow=True)
    assert not stored("north-1").awaits_enrollment
    renewed = admin_client.post(FS_URL, action, follow=True)
    new_secret = secret_in(html.unescape(renewed.content.decode()), "north-1")
    assert new_secret and new_secret != secret
    assert states(admin_client) == ["Bound; a new secret waits for a replacement node"]
    assert register(client, "north-1", new_secret, serial="BBB222").status_code == 200
    assert stored("north-1").serial == "BBB222"

    # A changed ID gets its own secret.
    moved = admin_client.post(f"{FS_URL}{server.pk}/change/",
                              add_form(team, quickconnect_id="north-2", admin_password_input=""),
                              follow=True)  # fmt: skip
    assert secret_in(html.unescape(moved.content.decode()), "north-2")
