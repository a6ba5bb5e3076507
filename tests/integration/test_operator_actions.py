"""Operator actions are one service each: the admin and the API meet the same permission
rule and the same list of consequences to confirm."""

from __future__ import annotations

import html
import re
import socket

import pytest
from auditlog.models import LogEntry
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied
from rest_framework.test import APIClient

from cms.inventory import actions
from cms.inventory.models import Server, TeamMembership
from failover.choices import EventState
from failover.models import FailoverEvent, Protection, RestorationJob
from tests.fixtures.fleet import register

pytestmark = pytest.mark.django_db(transaction=True)

RS_URL = "/admin/inventory/recordingserver/"
FO_URL = "/admin/inventory/failoverserver/"
EVENTS_URL = "/admin/failover/failoverevent/"


def member(django_user_model, team, role: str):
    user = django_user_model.objects.create_user(f"u-{role}", password="pw-role-123", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    TeamMembership.objects.create(team=team, user=user)
    return user


def api_as(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(type(user).objects.get(pk=user.pk))  # permissions read afresh
    return api


def warnings_on(page) -> list[str]:
    """The consequences an admin page lists."""
    found = re.findall(r'<li class="warning">(.*?)</li>', page.content.decode(), re.S)
    return [html.unescape(line) for line in found]


def test_an_operator_reaching_for_the_lock_is_refused_by_the_one_rule(
    client, django_user_model, team, node_agent
):
    server = register(node_agent, team, "recording", "Lobby")
    operator = member(django_user_model, team, "Operator")
    client.force_login(operator)
    lock_in_admin = {"action": "lock_servers", "_selected_action": [server.pk]}

    assert api_as(operator).post(f"/api/v1/recording-servers/{server.pk}/lock/").status_code == 403
    client.post(RS_URL, lock_in_admin, follow=True)
    with pytest.raises(PermissionDenied):
        actions.set_lock(operator, server, True)
    server.refresh_from_db()
    assert not server.locked
    assert node_agent.client().info().get("locked") is not True

    # The rule is the role's permission, nothing else: given it, both places lock.
    lock = Permission.objects.get(content_type__app_label="inventory", codename="lock_server")
    Group.objects.get(name="Operator").permissions.add(lock)
    locked = api_as(operator).post(f"/api/v1/recording-servers/{server.pk}/lock/")
    assert locked.status_code == 200, locked.content
    assert locked.json()["locked"] is True
    unlocked = client.post(RS_URL, {**lock_in_admin, "action": "unlock_servers"}, follow=True)
    assert "Unlocked: Lobby." in unlocked.content.decode()
    server.refresh_from_db()
    assert not server.locked


@pytest.fixture
def acting(team):
    """A failover server that has taken over for a recording server (as stored)."""
    lobby = Server.objects.create(team=team, role="recording", name="Lobby", host="192.0.2.1",
                                  admin_password="pw")  # fmt: skip
    # Nothing listens at the failover server's port: a node call fails at once.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    standby = Server.objects.create(team=team, role="failover", name="Standby 1",
                                    host="127.0.0.1", port=closed, admin_password="pw")  # fmt: skip
    Protection.objects.create(recording_server=lobby, failover_server=standby)
    event = FailoverEvent.objects.create(
        team=team, recording_server=lobby, recording_server_name=lobby.name,
        failover_server=standby, failover_server_name=standby.name, node_tag=f"rs{lobby.pk}",
        trigger="disconnected", state=EventState.ACTIVE,
    )  # fmt: skip
    return lobby, standby, event


def test_disabling_an_acting_failover_server_lists_the_same_consequences_in_both(
    admin_client, admin_user, acting
):
    _lobby, standby, event = acting
    page = admin_client.post(FO_URL, {"action": "disable_servers",
                                      "_selected_action": [standby.pk]})  # fmt: skip
    refused = api_as(admin_user).post(f"/api/v1/failover-servers/{standby.pk}/disable/")

    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "confirmation_required"
    assert (
        error["consequences"]
        == warnings_on(page)
        == [
            "Standby 1 has taken over for Lobby: if it is disabled, its failover stops and the "
            "recordings and snapshots it made during the failover are removed."
        ]
    )
    standby.refresh_from_db()
    event.refresh_from_db()
    assert standby.enabled and event.state == EventState.ACTIVE  # asking changes nothing


def test_deleting_an_acting_failover_server_lists_the_same_consequences_in_both(
    admin_client, admin_user, acting
):
    _lobby, standby, _event = acting
    page = admin_client.get(f"{FO_URL}{standby.pk}/delete/")
    refused = api_as(admin_user).delete(f"/api/v1/failover-servers/{standby.pk}/")

    assert refused.status_code == 409
    assert refused.json()["error"]["consequences"] == warnings_on(page)
    assert "if it is deleted, its failover stops" in warnings_on(page)[0]
    assert Server.objects.filter(pk=standby.pk).exists()


def test_stopping_a_restoration_needs_the_confirmation_the_admin_asks_for(
    admin_client, admin_user, acting
):
    lobby, _standby, event = acting
    FailoverEvent.objects.filter(pk=event.pk).update(state=EventState.RESTORING)
    RestorationJob.objects.create(event=event, target_server=lobby)
    page = admin_client.post(EVENTS_URL, {"action": "stop_restoration",
                                          "_selected_action": [event.pk]})  # fmt: skip
    url = f"/api/v1/events/{event.pk}/stop-restoration/"
    refused = api_as(admin_user).post(url)

    assert refused.status_code == 409
    assert refused.json()["error"]["consequences"] == warnings_on(page)
    assert warnings_on(page) == [
        f"Event #{event.pk} (Lobby): the recordings and snapshots taken during the failover "
        "that are still on Standby 1 are removed and will not be restored."
    ]
    event.refresh_from_db()
    assert event.state == EventState.RESTORING
    # Confirmed, it stops (the failover server is unreachable: its files stay, noted).
    stopped = api_as(admin_user).post(url, {"confirm": True}, format="json")
    assert stopped.status_code == 200, stopped.content
    assert stopped.json()["state"] == EventState.RESTORATION_STOPPED


def test_enabling_a_nodes_cms_service_from_the_admin_is_in_the_audit_trail(
    admin_client, admin_user, start_node
):
    node_agent = start_node(mode="standalone")  # the Enable link is for a node without CMS
    answer = admin_client.post(f"{RS_URL}connect/enable/", {
        "connection_type": "address", "host": node_agent.host, "port": node_agent.port,
        "admin_username": "admin", "admin_password_input": node_agent.password,
        "refuse_other_hosts": "on",
    })  # fmt: skip
    assert answer.status_code == 200 and answer.json()["ok"] is True, answer.content
    entry = LogEntry.objects.get(object_repr__startswith="CMS service of")
    assert entry.actor == admin_user
    assert f"{node_agent.host}:{node_agent.port}" in entry.object_repr
    assert entry.changes_dict["cms_mode"] == [None, "recording"]
    assert entry.changes_dict["refuse_other_hosts"] == [None, True]
    listed = api_as(admin_user).get("/api/v1/audit/", {"search": "CMS service"}).json()
    assert [e["object_repr"] for e in listed["results"]] == [entry.object_repr]
