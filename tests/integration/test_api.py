"""The API as a script uses it: tokens, errors, validation, actions against real agents."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from cms.inventory.models import License, Server
from failover.choices import EventState

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_api(admin_user):
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def test_a_script_logs_in_with_a_token_and_logs_out(admin_user):
    client = APIClient()
    bad = client.post("/api/v1/auth/login/", {"username": "root", "password": "nope"})
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "not_authenticated"
    login = {"username": "root", "password": "pw-root-123"}
    token = client.post("/api/v1/auth/login/", login).json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/recording-servers/").status_code == 200
    assert client.post("/api/v1/auth/logout/").status_code == 204
    assert client.get("/api/v1/recording-servers/").status_code == 401


def test_the_token_command_creates_and_revokes(admin_user):
    out = StringIO()
    call_command("api_token", "create", "root", stdout=out, stderr=StringIO())
    token = out.getvalue().strip()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/teams/").status_code == 200
    listing = StringIO()
    call_command("api_token", "list", stdout=listing)
    assert "root\t" in listing.getvalue() and token not in listing.getvalue()
    call_command("api_token", "revoke", "root", stdout=StringIO())
    assert client.get("/api/v1/teams/").status_code == 401


def test_bad_input_is_one_error_shape_per_field_and_saves_nothing(admin_api, team):
    response = admin_api.post("/api/v1/failover-servers/", {
        "team": team.pk, "name": "Bad/Name", "host": "http://x/", "port": 70000,
        "admin_password": "pw",
    }, format="json")  # fmt: skip
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "port" in error["fields"]
    response = admin_api.post("/api/v1/failover-servers/", {
        "team": team.pk, "name": "Bad/Name", "host": "http://x/", "admin_password": "pw",
    }, format="json")  # fmt: skip
    fields = response.json()["error"]["fields"]
    assert fields["name"] == ["The name must not contain these symbols: /"]
    assert "without http://" in fields["host"][0]
    assert not Server.objects.exists()


def test_create_and_edit_a_server(admin_api, team, start_node):
    node = start_node(mode="recording", password="s3cret-pw")
    created = admin_api.post("/api/v1/recording-servers/", {
        "team": team.pk, "name": "Lobby", "host": node.host, "port": node.port,
        "admin_password": "s3cret-pw",
    }, format="json")  # fmt: skip
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["role"] == "recording" and "admin_password" not in body
    server = Server.objects.get()
    assert server.admin_password.reveal() == "s3cret-pw"
    dup = admin_api.post("/api/v1/recording-servers/", {
        "team": team.pk, "name": "Lobby", "host": "192.0.2.8", "admin_password": "x",
    }, format="json")  # fmt: skip
    assert "already exists" in dup.json()["error"]["fields"]["name"][0]
    edited = admin_api.patch(f"/api/v1/recording-servers/{server.pk}/", {"name": "Lobby 2"},
                             format="json")  # fmt: skip
    assert edited.status_code == 200 and edited.json()["name"] == "Lobby 2"
    server.refresh_from_db()
    assert server.admin_password.reveal() == "s3cret-pw"


def test_test_connection_reports_what_failed(admin_api, start_node):
    node = start_node(mode="failover", name="standby-x", model="FS-9")
    good = admin_api.post(
        "/api/v1/failover-servers/test-connection/",
        {"host": node.host, "port": node.port, "admin_password": node.password},
        format="json",
    )
    assert good.status_code == 200
    assert good.json()["ok"] and good.json()["model"] == "FS-9"
    assert good.json()["cms_mode"] == "failover"
    wrong = admin_api.post(
        "/api/v1/failover-servers/test-connection/",
        {"host": node.host, "port": node.port, "admin_password": "wrong"},
        format="json",
    )
    assert not wrong.json()["ok"] and wrong.json()["error_code"] == "auth_failed"


def test_batch_add_with_prefix_names_all_or_nothing(admin_api, team, start_node):
    a = start_node(mode="failover", name="fa")
    b = start_node(mode="failover", name="fb")
    rec = start_node(mode="recording", name="not-a-standby")
    rows = [{"host": n.host, "port": n.port, "admin_password": n.password} for n in (a, b)]
    refused = admin_api.post("/api/v1/failover-servers/batch-add/", {
        "team": team.pk, "naming_rule": "prefix_no", "prefix": "Standby",
        "servers": [*rows, {"host": rec.host, "port": rec.port, "admin_password": "pw"}],
    }, format="json")  # fmt: skip
    assert refused.status_code == 409
    assert "is in Recording Server mode" in refused.json()["error"]["rows"]["2"][0]
    assert not Server.objects.exists()  # no server half-added

    added = admin_api.post("/api/v1/failover-servers/batch-add/", {
        "team": team.pk, "naming_rule": "prefix_no", "prefix": "Standby", "servers": rows,
    }, format="json")  # fmt: skip
    assert added.status_code == 201, added.content
    assert sorted(s["name"] for s in added.json()) == ["Standby-1", "Standby-2"]
    c = start_node(mode="failover", name="fc")
    row_c = {"host": c.host, "port": c.port, "admin_password": c.password}
    bad_prefix = admin_api.post("/api/v1/failover-servers/batch-add/", {
        "team": team.pk, "naming_rule": "prefix_no", "prefix": "Bad:", "servers": [row_c],
    }, format="json")  # fmt: skip
    assert "prefix must not contain these symbols: :" in bad_prefix.json()["error"]["naming"][0]


def test_licenses_move_on_the_nodes(admin_api, make_fleet, team):
    fleet = make_fleet(failovers=1)
    lic = admin_api.post("/api/v1/licenses/", {"key": "abcd-0000-efgh-1111", "team": team.pk,
                                               "cameras": 8}, format="json")  # fmt: skip
    assert lic.status_code == 201
    lic_id = lic.json()["id"]
    installed = admin_api.post(f"/api/v1/licenses/{lic_id}/install/",
                               {"server": fleet.recording.pk}, format="json")  # fmt: skip
    assert installed.status_code == 200, installed.content
    keys = {x["key"] for x in fleet.recording_node.client().licenses()}
    assert keys == {"ABCD-0000-EFGH-1111"}
    assert admin_api.delete(f"/api/v1/licenses/{lic_id}/").status_code == 409  # installed
    admin_api.post(f"/api/v1/licenses/{lic_id}/uninstall/")
    assert fleet.recording_node.client().licenses() == []
    assert License.objects.get().moves.count() == 2


def test_replace_needs_confirmation_then_happens(admin_api, make_fleet):
    fleet = make_fleet(failovers=1)
    event = fleet.fail_over()
    url = f"/api/v1/events/{event.pk}/replace/"
    preview = admin_api.post(url, {"replacement": fleet.failovers[0].pk}, format="json")
    assert preview.status_code == 409
    error = preview.json()["error"]
    assert error["code"] == "confirmation_required"
    assert "Lobby is removed from the recording server list." in error["consequences"]
    event.refresh_from_db()
    assert event.state == EventState.ACTIVE
    done = admin_api.post(url, {"replacement": fleet.failovers[0].pk, "confirm": True},
                          format="json")  # fmt: skip
    assert done.status_code == 200, done.content
    assert done.json()["state"] == "replaced"
    assert [t["to_state"] for t in done.json()["timeline"]][-1] == "replaced"


def test_disabling_an_acting_failover_server_needs_confirm(admin_api, make_fleet):
    fleet = make_fleet(failovers=1)
    event = fleet.fail_over()
    fs = fleet.failovers[0]
    refused = admin_api.post(f"/api/v1/failover-servers/{fs.pk}/disable/")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "confirmation_required"
    fs.refresh_from_db()
    assert fs.enabled
    deleted = admin_api.delete(f"/api/v1/failover-servers/{fs.pk}/")
    assert deleted.status_code == 409 and Server.objects.filter(pk=fs.pk).exists()
    ok = admin_api.post(f"/api/v1/failover-servers/{fs.pk}/disable/", {"confirm": True},
                        format="json")  # fmt: skip
    assert ok.status_code == 200 and ok.json()["enabled"] is False
    event.refresh_from_db()
    assert event.state == EventState.STOPPED


def test_the_search_endpoint_finds_agents(admin_api, start_node, settings):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        settings.CMS_DISCOVERY_PORT = s.getsockname()[1]
    start_node(mode="failover", name="found-me", discovery_port=settings.CMS_DISCOVERY_PORT)
    found = []
    for _ in range(5):  # UDP may drop a datagram
        response = admin_api.post(
            "/api/v1/failover-servers/search/",
            {"address": "127.255.255.255", "timeout": 1},
            format="json",
        )
        assert response.status_code == 200
        found = [r["name"] for r in response.json()]
        if found:
            break
    assert found == ["found-me"]


def test_a_date_filter_out_of_range_is_a_400_not_a_database_error(admin_api):
    bad = admin_api.get("/api/v1/audit/?timestamp__lte=2026-01-21T14:02:50%2B17:12")
    assert bad.status_code == 400
    assert "between -14:00 and +14:00" in str(bad.json()["error"]["fields"])
    good = admin_api.get("/api/v1/audit/?timestamp__lte=2026-01-21T14:02:50%2B05:30")
    assert good.status_code == 200


def test_the_schema_and_swagger_ui_are_served_by_the_project(admin_client):
    schema = admin_client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/events/{id}/replace/" in schema.content
    page = admin_client.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert "cdn" not in page.lower()
    asset = admin_client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css")
    assert asset.status_code == 200


def test_lock_and_unlock_set_the_security_lock_on_the_node(admin_api, team, start_node):
    from tests.fixtures.fleet import register

    node = start_node(mode="recording", name="lobby")
    server = register(node, team, "recording", "Lobby")
    locked = admin_api.post(f"/api/v1/recording-servers/{server.pk}/lock/")
    assert locked.status_code == 200 and locked.json()["locked"] is True
    assert node.client().info()["locked"] is True
    # Locked: a change that does not come from this CMS is refused by the node itself.
    foreign = node.client(cms_host_id="another-cms")
    with pytest.raises(Exception, match="locked"):
        foreign.set_fault("volume")

    unlocked = admin_api.post(f"/api/v1/recording-servers/{server.pk}/unlock/")
    assert unlocked.json()["locked"] is False
    assert node.client().info()["locked"] is False
    server.refresh_from_db()
    assert server.locked is False


@pytest.mark.parametrize(
    "query", ["limit=99999999999999999999999", "offset=99999999999999999999999", "limit=1e20"]
)
def test_a_page_out_of_any_range_is_refused_or_bounded(admin_api, query):
    answer = admin_api.get(f"/api/v1/recording-servers/?{query}")
    assert answer.status_code in (200, 400)
    body = answer.json()
    assert "error" in body or len(body["results"]) <= 1000


def test_a_body_over_the_size_limit_gets_the_error_shape(admin_api, settings):
    big = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)
    answer = admin_api.post("/api/v1/licenses/", {"key": big}, format="json")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "request_too_large"
