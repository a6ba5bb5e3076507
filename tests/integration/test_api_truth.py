"""The API says what it does: filters, confirmations and timestamps as a client meets them."""

from __future__ import annotations

import pytest
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from failover.admin_status import STATUSES

FS_URL = "/api/v1/failover-servers/"


@pytest.fixture
def root_api(admin_user):
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


@pytest.fixture
def failover_rows(make_server, make_event):
    """One failover server in each status of the failover tab's status panel."""
    rows = {
        "standby": make_server(role="failover", name="Standby", status="normal"),
        "taking_over": make_server(role="failover", name="Taking", status="normal"),
        "acting": make_server(role="failover", name="Acting", status="disconnected"),
        "restoring": make_server(role="failover", name="Restoring", status="normal"),
        "abnormal": make_server(role="failover", name="Broken", status="volume_abnormal"),
        "unknown": make_server(role="failover", name="New"),
        "disabled": make_server(role="failover", name="Off", enabled=False, status="normal"),
    }
    make_event(rows["taking_over"], "taking_over")
    make_event(rows["acting"], "active")
    make_event(rows["restoring"], "restoring")
    return rows


@pytest.fixture
def make_event(make_server, team):
    from failover.models import FailoverEvent

    def make(failover, state: str) -> FailoverEvent:
        recording = make_server(role="recording", name=f"For {failover.name}", status="normal")
        return FailoverEvent.objects.create(
            team=team, recording_server=recording, recording_server_name=recording.name,
            node_tag=f"rs{recording.pk}", trigger="disconnected", state=state,
            failover_server=failover, failover_server_name=failover.name,
        )  # fmt: skip

    return make


def test_failover_servers_filter_by_what_they_do_as_the_status_panel_does(
    root_api, admin_client, failover_rows
):
    for key in STATUSES:
        response = root_api.get(FS_URL, {"status": key})
        assert response.status_code == 200, (key, response.content)
        listed = {row["name"] for row in response.json()["results"]}
        assert listed == {failover_rows[key].name}, key
        assert {row["duty"] for row in response.json()["results"]} == {key}
        panel = admin_client.get("/admin/inventory/failoverserver/", {"duty": key})
        assert {s.name for s in panel.context["cl"].result_list} == listed, key
    both = root_api.get(FS_URL, {"status__in": "standby,acting"}).json()["results"]
    assert {row["name"] for row in both} == {"Standby", "Acting"}
    health = root_api.get(FS_URL, {"health": "normal"}).json()["results"]
    assert {row["name"] for row in health} == {"Standby", "Taking", "Restoring", "Off"}
    refused = root_api.get(FS_URL, {"status": "sleeping"})
    assert refused.status_code == 400
    assert "sleeping" in str(refused.json()["error"]["fields"]["status"])


def test_the_schema_documents_the_status_choices_and_the_confirm_field(root_api):
    schema = root_api.get("/api/schema/", {"format": "json"}).json()
    params = {p["name"]: p for p in schema["paths"]["/api/v1/failover-servers/"]["get"][
        "parameters"]}  # fmt: skip
    assert set(params["status"]["schema"]["enum"]) == set(STATUSES)
    for component in ("PatchedFailoverServerRequest", "FailoverServerRequest"):
        fields = schema["components"]["schemas"][component]["properties"]
        assert "confirm" in fields and "confirm_stop_failover" not in fields


def test_a_patch_that_changes_nothing_on_an_acting_failover_server_needs_no_confirmation(
    root_api, failover_rows
):
    from failover.models import FailoverEvent

    acting = failover_rows["acting"]
    url = f"{FS_URL}{acting.pk}/"
    stored = root_api.get(url).json()
    same = {k: stored[k] for k in ("name", "host", "port", "enabled", "admin_username", "team")}
    response = root_api.patch(url, same, format="json")
    assert response.status_code == 200, response.content
    assert FailoverEvent.objects.get(failover_server=acting).state == "active"
    # A real change still asks, and names the field the schema documents.
    changed = root_api.patch(url, {"name": "Acting 2"}, format="json")
    assert changed.status_code == 409
    assert changed.json()["error"]["code"] == "confirmation_required"
    assert "confirm=true" in changed.json()["error"]["message"]
    acting.refresh_from_db()
    assert acting.name == "Acting"


def test_a_name_longer_than_the_rule_is_refused_at_32_characters(root_api, team):
    body = {"team": team.pk, "host": "127.0.0.1", "port": 9, "admin_password": "pw"}
    long = root_api.post(FS_URL, {**body, "name": "x" * 33}, format="json")
    assert long.status_code == 400
    assert "32" in str(long.json()["error"]["fields"]["name"])
    schema = root_api.get("/api/schema/", {"format": "json"}).json()
    name = schema["components"]["schemas"]["FailoverServerRequest"]["properties"]["name"]
    assert name["maxLength"] == 32


@pytest.mark.django_db(transaction=True)
def test_a_restorations_updated_at_follows_its_progress(make_fleet, admin_user):
    """The job is written as it progresses: `updated_at` is never before it started and
    moves with every write, up to the last."""
    from failover import engine, probing
    from failover.choices import EventState
    from tests.fixtures.nodes import wait_until

    fleet = make_fleet(failovers=1)
    event = fleet.fail_over("volume")
    fo_node = fleet.failover_nodes[0]
    wait_until(
        lambda: len(list(fo_node.client().list_recordings(origin="failover",
                                                         on_behalf_of=event.node_tag))) >= 4,
        message="recordings",
    )  # fmt: skip
    fleet.recording_node.client().set_fault("clear")
    for _ in range(2):
        probing.run_cycle(force=True)
    assert engine.advance(event.pk) == EventState.COMPLETED
    client = APIClient()
    client.force_authenticate(admin_user)
    [job] = client.get("/api/v1/restorations/", {"event": event.pk}).json()["results"]
    started, updated = parse_datetime(job["started_at"]), parse_datetime(job["updated_at"])
    finished = parse_datetime(job["finished_at"])
    assert job["state"] == "completed" and job["files_done"] == job["files_total"] > 0
    assert started <= finished <= updated
