"""The name rule against look-alike and invisible names, through every door.

The attacks: a name with U+202E RIGHT-TO-LEFT OVERRIDE or a zero-width space shows
as another server's name; a node reporting such a name got it through the batch's
Default server name rule.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from cms.inventory.models import Server

pytestmark = pytest.mark.django_db(transaction=True)

RLO = "\u202e"


@pytest.fixture
def admin_api(admin_user):
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def create(api: APIClient, team, name: str, role: str = "recording"):
    return api.post(
        f"/api/v1/{role}-servers/",
        {"team": team.pk, "name": name, "host": "192.0.2.10", "port": 5000,
         "admin_password": "pw-node"},
        format="json",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        (f"Lobby{RLO}gnp", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("Lob\u200bby", "U+200B ZERO WIDTH SPACE"),
        ("Lobby\u2028", "U+2028 LINE SEPARATOR"),
        ("\u00a0Lobby", "first character must not be a space (U+00A0 NO-BREAK SPACE)"),
        ("Lobby\u3000", "last character must not be a space (U+3000 IDEOGRAPHIC SPACE)"),
        ("Lob\x1bby", "U+001B ESCAPE"),
    ],
)
def test_the_api_refuses_what_a_screen_cannot_show(admin_api, team, name, shown):
    response = create(admin_api, team, name)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert any(shown in m for m in error["fields"]["name"]), error
    assert not Server.objects.exists()


def batch(api: APIClient, team, rule: str, rows: list[dict]):
    return api.post(
        "/api/v1/failover-servers/batch-add/",
        {"team": team.pk, "naming_rule": rule, "servers": rows},
        format="json",
    )


def test_a_reported_name_that_breaks_the_rule_is_refused_until_a_custom_name_is_typed(
    admin_api, team, start_node
):
    node = start_node(mode="failover", name=f"Standby{RLO}1")
    row = {"host": node.host, "port": node.port, "admin_password": node.password}

    refused = batch(admin_api, team, "default", [row])

    assert refused.status_code == 409, refused.content
    error = refused.json()["error"]
    assert error["code"] == "batch_refused"
    # Said for the row once batch.py asks naming.reported_name_errors per row; until
    # then the batch's naming errors say it.
    said = [*error["rows"].get("0", []), *error["naming"]]
    assert any("U+202E RIGHT-TO-LEFT OVERRIDE" in m and "Type a custom name" in m for m in said)
    assert not Server.objects.exists()

    added = batch(admin_api, team, "default", [{**row, "custom_name": "Standby 1"}])
    assert added.status_code == 201, added.content
    assert list(Server.objects.values_list("name", flat=True)) == ["Standby 1"]


def test_a_generated_name_keeps_its_form_but_not_an_invisible_character(
    admin_api, team, start_node
):
    node = start_node(mode="failover", name="fa", model=f"FS{RLO}9")
    row = {"host": node.host, "port": node.port, "admin_password": node.password}

    refused = batch(admin_api, team, "model_no", [row])

    assert refused.status_code == 409, refused.content
    (message,) = refused.json()["error"]["rows"]["0"]
    assert "U+202E RIGHT-TO-LEFT OVERRIDE" in message
    assert not Server.objects.exists()
