"""QuickConnect IDs of servers: one server per ID, and where enrollment secrets come
from (every door that adds a QuickConnect server or changes its ID issues one, shown
once to an administrator; only its hash is stored)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from cms.inventory.models import Server

pytestmark = pytest.mark.integration


@pytest.fixture
def admin_api(admin_user) -> APIClient:
    api = APIClient()
    api.force_authenticate(admin_user)
    return api


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
