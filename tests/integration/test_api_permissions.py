"""The generic API test case every endpoint goes through.

anonymous -> 401; no permission -> 403; another team's object -> 404 (never revealed);
allowed -> only the team's objects.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

ENDPOINTS = {
    # name: (list url, attribute of a Site whose id is the detail)
    "recording-servers": ("/api/v1/recording-servers/", "recording"),
    "failover-servers": ("/api/v1/failover-servers/", "failover"),
    "licenses": ("/api/v1/licenses/", "license"),
    "protections": ("/api/v1/protections/", "protection"),
    "events": ("/api/v1/events/", "event"),
    "restorations": ("/api/v1/restorations/", "restoration"),
    "teams": ("/api/v1/teams/", "team"),
}


@pytest.mark.parametrize("name", ENDPOINTS)
class TestEveryEndpoint:
    def test_anonymous_is_401(self, name, sites):
        url, attr = ENDPOINTS[name]
        client = APIClient()
        for target in (url, f"{url}{getattr(sites[0], attr).pk}/"):
            response = client.get(target)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "not_authenticated"

    def test_without_permission_is_403(self, name, sites, api_user):
        url, _ = ENDPOINTS[name]
        client = api_user(None)
        response = client.get(url)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"

    def test_another_teams_object_is_404(self, name, sites, api_user):
        url, attr = ENDPOINTS[name]
        client = api_user("Viewer")
        theirs = getattr(sites[1], attr)
        response = client.get(f"{url}{theirs.pk}/")
        assert response.status_code == 404
        assert response.json() == {"error": {"code": "not_found", "message": "Not found."}}

    def test_allowed_sees_only_its_team(self, name, sites, api_user):
        url, attr = ENDPOINTS[name]
        client = api_user("Viewer")
        response = client.get(url)
        assert response.status_code == 200
        ids = {row["id"] for row in response.json()["results"]}
        assert ids == {getattr(sites[0], attr).pk}
        detail = client.get(f"{url}{getattr(sites[0], attr).pk}/")
        assert detail.status_code == 200


def test_a_superuser_sees_every_team(sites, admin_user):
    client = APIClient()
    client.force_authenticate(admin_user)
    names = {r["name"] for r in client.get("/api/v1/recording-servers/").json()["results"]}
    assert names == {"Lobby N", "Lobby S"}


def test_the_password_is_write_only(sites, api_user):
    client = api_user("Administrator")
    body = client.get(f"/api/v1/recording-servers/{sites[0].recording.pk}/").json()
    assert "admin_password" not in body
    assert "pw" not in str(body.values())


ROLE_MATRIX = [
    # (role, method, url template, body, expected status)
    ("Viewer", "post", "/api/v1/recording-servers/{rs}/enable/", {}, 403),
    ("Operator", "post", "/api/v1/recording-servers/{rs}/enable/", {}, 200),
    ("Operator", "post", "/api/v1/failover-servers/{fs}/disable/", {}, 200),
    ("Viewer", "post", "/api/v1/recording-servers/{rs}/manual-failover/", {}, 403),
    ("Operator", "post", "/api/v1/recording-servers/{rs}/manual-failover/", {}, 202),
    ("Viewer", "post", "/api/v1/events/{ev}/fail-back/", {}, 403),
    ("Operator", "post", "/api/v1/events/{ev}/fail-back/", {}, 409),  # allowed; completed
    ("Viewer", "post", "/api/v1/events/{ev}/stop-restoration/", {}, 403),
    ("Operator", "post", "/api/v1/events/{ev}/stop-restoration/", {}, 409),
    ("Operator", "post", "/api/v1/events/{ev}/replace/", {"replacement": 1}, 403),
    ("Administrator", "post", "/api/v1/events/{ev}/replace/", {"replacement": "{fs}"}, 409),
    ("Operator", "post", "/api/v1/recording-servers/", {}, 403),
    ("Administrator", "post", "/api/v1/recording-servers/", {}, 400),  # allowed; no fields
    ("Operator", "delete", "/api/v1/recording-servers/{rs}/", None, 403),
    ("Operator", "post", "/api/v1/licenses/{lic}/install/", {"server": "{rs}"}, 403),
    ("Operator", "patch", "/api/v1/failover-settings/", {"probe_interval": 9}, 403),
    ("Operator", "post", "/api/v1/recording-servers/{rs}/lock/", {}, 403),
    ("Administrator", "patch", "/api/v1/failover-settings/", {"probe_interval": 9}, 200),
    ("Viewer", "get", "/api/v1/failover-settings/", None, 200),
    ("Viewer", "get", "/api/v1/audit/", None, 200),
    (None, "get", "/api/v1/audit/", None, 403),
]


@pytest.mark.parametrize(("role", "method", "url", "body", "expected"), ROLE_MATRIX)
def test_each_action_for_each_role(sites, api_user, role, method, url, body, expected):
    from failover.models import FailoverEvent

    FailoverEvent.objects.filter(pk=sites[0].event.pk).update(state="completed")
    ids = {"rs": sites[0].recording.pk, "fs": sites[0].failover.pk, "ev": sites[0].event.pk,
           "lic": sites[0].license.pk}  # fmt: skip
    url = url.format(**ids)
    if body:
        body = {k: (int(v.format(**ids)) if isinstance(v, str) else v) for k, v in body.items()}
    client = api_user(role)
    response = getattr(client, method)(url, body, format="json")
    assert response.status_code == expected, response.content[:500]
    if expected >= 400:
        assert "code" in response.json()["error"]


def test_another_teams_server_cannot_be_acted_on(sites, api_user):
    client = api_user("Operator")
    response = client.post(f"/api/v1/recording-servers/{sites[1].recording.pk}/enable/")
    assert response.status_code == 404


def test_another_teams_id_in_a_filter_answers_as_if_it_did_not_exist(sites, api_user):
    from cms.inventory.models import Team

    viewer = api_user("Viewer")
    south = sites[1].team
    missing = Team.objects.order_by("-pk").first().pk + 100
    for path in ("recording-servers", "failover-servers", "licenses"):
        other = viewer.get(f"/api/v1/{path}/?team={south.pk}")
        nowhere = viewer.get(f"/api/v1/{path}/?team={missing}")
        assert other.status_code == nowhere.status_code == 400, path
        message = other.json()["error"]["fields"]["team"][0]
        assert message == nowhere.json()["error"]["fields"]["team"][0].replace(
            str(missing), str(south.pk)
        )
    own = viewer.get(f"/api/v1/recording-servers/?team={sites[0].team.pk}")
    assert own.status_code == 200 and own.json()["count"] == 1
