"""The audit trail: every change from the admin, the API or a task, with its actor."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from rest_framework.test import APIClient

from cms.inventory.models import Server

pytestmark = pytest.mark.django_db(transaction=True)


def entries_for(server: Server) -> list[LogEntry]:
    return list(LogEntry.objects.get_for_object(server).order_by("timestamp", "pk"))


def test_an_api_change_records_the_token_user_and_masks_the_password(admin_user, team,
                                                                     start_node):  # fmt: skip
    node = start_node(mode="recording", password="s3cret-pw")
    moved = start_node(mode="recording", password="n3w-s3cret")  # its node was replaced
    from knox.models import AuthToken

    _, token = AuthToken.objects.create(admin_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    created = client.post("/api/v1/recording-servers/", {
        "team": team.pk, "name": "Lobby", "host": node.host, "port": node.port,
        "admin_password": "s3cret-pw",
    }, format="json")  # fmt: skip
    server = Server.objects.get(pk=created.json()["id"])
    edited = client.patch(f"/api/v1/recording-servers/{server.pk}/",
                          {"admin_password": "n3w-s3cret", "port": moved.port, "confirm": True},
                          format="json")  # fmt: skip
    assert edited.status_code == 200, edited.content
    create, update = entries_for(server)
    assert create.actor == admin_user and update.actor == admin_user
    assert create.action == LogEntry.Action.CREATE
    assert update.changes_dict["port"] == [str(node.port), str(moved.port)]
    assert "password_changed_at" in update.changes_dict  # the change is recorded ...
    everything = str(LogEntry.objects.values_list("changes", flat=True)[::1])
    assert "s3cret" not in everything  # ... but never the secret


def test_an_admin_change_records_its_user(admin_client, admin_user, make_server):
    server = make_server(role="failover", name="Standby")
    admin_client.post("/admin/inventory/failoverserver/",
                      {"action": "disable_servers", "_selected_action": [server.pk]})  # fmt: skip
    entry = entries_for(server)[-1]
    assert entry.actor == admin_user
    assert entry.changes_dict["enabled"] == ["True", "False"]


def test_the_api_lists_the_trail_filtered_and_per_team(admin_user, sites, api_user):
    from cms.inventory.models import Server as S

    for site in sites:  # a change in each team
        server = S.objects.get(pk=site.recording.pk)
        server.port = 6000
        server.save()
    viewer = api_user("Viewer")
    rows = viewer.get("/api/v1/audit/?content_type__model=server").json()["results"]
    names = {row["object_repr"] for row in rows}
    assert "Lobby N" in names and "Lobby S" not in names
    client = APIClient()
    client.force_authenticate(admin_user)
    rows = client.get("/api/v1/audit/?action=1").json()["results"]  # updates only
    assert {row["object_repr"] for row in rows} >= {"Lobby N", "Lobby S"}
    assert all(row["action"] == "update" for row in rows)


def test_the_admin_log_shows_a_viewer_only_their_teams_entries(client, sites, django_user_model):
    from django.contrib.auth.models import Group

    from cms.inventory.models import License, TeamMembership

    north, south = sites
    for site in sites:  # a change in each team
        server = Server.objects.get(pk=site.recording.pk)
        server.port = 6000
        server.save()
    License.objects.create(key="SOUTH-SECRET-KEY-0001", team=south.team, cameras=4)
    viewer = django_user_model.objects.create_user("north-viewer", password="pw-long-enough",
                                                   is_staff=True)  # fmt: skip
    viewer.groups.add(Group.objects.get(name="Viewer"))
    TeamMembership.objects.create(team=north.team, user=viewer)
    client.force_login(viewer)

    page = client.get("/admin/auditlog/logentry/?all=")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Lobby N" in html
    assert "Lobby S" not in html and "SOUTH-SECRET-KEY" not in html
    south_entry = LogEntry.objects.get_for_object(Server.objects.get(pk=south.recording.pk))[0]
    assert client.get(f"/admin/auditlog/logentry/{south_entry.pk}/change/").status_code in (
        302,
        404,
    )
