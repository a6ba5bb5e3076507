"""Schemathesis against the project's own OpenAPI schema: no 5xx, responses as documented.

The database holds two teams' worth of objects (servers in every failover status, an
event with its timeline and restoration, licenses, audit entries), so every list and
every object answers with a body to check, not an empty page. Every check runs on
every response: its status is documented, its content type is the documented one, its
body and headers match the documented schema.

Operations that reach out to node agents (test connection, LAN search, batch add,
license install, failover actions) are left out of the fuzzing: fuzzed addresses must
never leave this machine. They have their own tests against real agents (the LAN
search's answer is checked against the schema below, on the loopback network).
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# No 5xx, and every response documented: its status, content type, headers and body.
# (Django filter backends ignore an empty filter value on purpose, so negative-data
# checks, which expect a 400 for it, are not asked for.)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
NETWORK = r"(test-connection|search|batch-add|install|uninstall|manual-failover|fail-back|" \
    r"replace|stop-restoration|lock|unlock|auth/)"  # fmt: skip


def _load_schema() -> schemathesis.BaseSchema:
    from cms.wsgi import application

    return schemathesis.openapi.from_wsgi("/api/schema/", application)


full_schema = _load_schema()
# Running a drill reaches out to node agents too (through a worker).
schema = full_schema.exclude(path_regex=NETWORK).exclude(method="POST", path="/api/v1/drills/")


@pytest.fixture(autouse=True)
def keep_the_test_connection(db):
    """As Django's test client does: a request must not close the test's connection."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def token(db, django_user_model, team):
    from knox.models import AuthToken

    user = django_user_model.objects.create_superuser("fuzz", "f@example.com", "pw-fuzz-123")
    return AuthToken.objects.create(user)[1]


@pytest.fixture
def fleet_rows(sites):
    """Rows in every state a client meets: each failover status of the status panel, an
    open event and a finished one with its restoration in progress, an audit trail."""
    from django.utils import timezone

    from cms.inventory.models import Server
    from failover.models import (
        Drill,
        DrillServer,
        EventTransition,
        FailoverEvent,
        RestorationJob,
    )

    north = sites[0]
    Server.objects.filter(pk=north.failover.pk).update(status="normal")
    made = {}
    for name, fields in {
        "acting": {"status": "normal"},
        "abnormal": {"status": "disconnected", "last_error": "refused"},
        "disabled": {"enabled": False},
        "unknown": {},
    }.items():
        made[name] = Server.objects.create(team=north.team, role="failover", name=f"FS {name}",
                                           host="192.0.2.9", admin_password="pw",
                                           **fields)  # fmt: skip
    protected = Server.objects.create(team=north.team, role="recording", name="Gate",
                                      host="192.0.2.8", admin_password="pw")  # fmt: skip
    acting = FailoverEvent.objects.create(
        team=north.team, recording_server=protected, recording_server_name="Gate",
        node_tag=f"rs{protected.pk}", trigger="disconnected", state="active",
        failover_server=made["acting"], failover_server_name=made["acting"].name,
        taken_over_at=timezone.now(),
    )  # fmt: skip
    EventTransition.objects.create(event=acting, from_state="", to_state="detected",
                                   reason="3 probes in a row")  # fmt: skip
    RestorationJob.objects.filter(pk=north.restoration.pk).update(
        state="running", files_total=4, files_done=1, bytes_total=4000, bytes_done=1000,
        rate_bps=500.0, started_at=timezone.now() - dt.timedelta(seconds=5),
    )  # fmt: skip
    drill = Drill.objects.create(
        team=north.team, requested_by="fuzz", state="passed", max_takeover_seconds=30,
        max_gap_seconds=10, max_restoration_seconds=600, recording_seconds=30,
    )  # fmt: skip
    DrillServer.objects.create(drill=drill, server=protected, server_name="Gate",
                               state="passed", takeover_seconds=2.5,
                               camera_gaps={"cam1": 0.0})  # fmt: skip
    from cms.alerts.models import Alert, Channel

    chat = Channel.objects.create(team=north.team, name="Chat", type="apprise",
                                  url="json://user:pw@192.0.2.7/hook")  # fmt: skip
    alert = Alert.objects.create(team=north.team, channel=chat, kind="failover_opened",
                                 subject="Failover opened: Gate", state="sent")  # fmt: skip
    return {
        "sites": sites,
        "acting_event": acting,
        "drill": drill,
        "channel": chat,
        "alert": alert,
        **made,
    }


def _ids(rows: dict) -> dict[str, int]:
    """A real object behind every `{id}` of the schema's paths, by the path's list."""
    from auditlog.models import LogEntry

    north = rows["sites"][0]
    return {
        "audit": LogEntry.objects.order_by("-pk").values_list("pk", flat=True).first(),
        "teams": north.team.pk, "recording-servers": north.recording.pk,
        "failover-servers": rows["acting"].pk, "licenses": north.license.pk,
        "protections": north.protection.pk, "events": rows["acting_event"].pk,
        "restorations": north.restoration.pk, "drills": rows["drill"].pk,
        "alert-channels": rows["channel"].pk, "alerts": rows["alert"].pk,
    }  # fmt: skip


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_matches_its_schema(case, token, fleet_rows):
    # Reads of existing objects too, not only of ids nobody has: fuzzed ids almost
    # always miss, and a 404 has nothing to check.
    if case.method == "GET" and case.path_parameters and "id" in case.path_parameters:
        collection = case.path.split("/")[3]
        real, fuzzed = _ids(fleet_rows).get(collection), case.path_parameters["id"]
        if real is not None and isinstance(fuzzed, int) and fuzzed % 2 == 0:
            case.path_parameters["id"] = real
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)


def _read_operations() -> list:
    return [
        op.ok()
        for op in schema.get_all_operations()
        if op.ok().method.upper() == "GET" and not op.ok().path.startswith("/api/docs")
    ]


@pytest.mark.parametrize("operation", _read_operations(), ids=lambda op: op.path)
def test_every_read_answers_with_real_rows_as_documented(operation, token, fleet_rows):
    """Every GET, on the seeded rows: each list's every row and each object's body."""
    path_parameters = {}
    if "{id}" in operation.path:
        path_parameters["id"] = _ids(fleet_rows).get(operation.path.split("/")[3], 1)
    case = operation.Case(path_parameters=path_parameters)
    response = case.call(headers={"Authorization": f"Token {token}"})
    assert response.status_code == 200, response.text[:500]
    case.validate_response(response, checks=CHECKS)
    if "text/csv" in str(
        response.headers.get("content-type") or response.headers.get("Content-Type")
    ):
        assert response.text.splitlines()[0].startswith("camera,"), response.text[:200]
        return  # a download: its documented media type is checked above
    body = response.json()
    if isinstance(body, dict) and "results" in body:
        assert body["results"], f"{operation.path} lists nothing: nothing was checked"


def test_the_lan_search_answers_a_list_as_documented(token, start_node, settings):
    """The LAN search answers a plain list (no page): so does its schema."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        settings.CMS_DISCOVERY_PORT = s.getsockname()[1]
    start_node(mode="failover", name="found-me", discovery_port=settings.CMS_DISCOVERY_PORT)
    operation = full_schema["/api/v1/failover-servers/search/"]["POST"]
    documented = operation.definition.raw["responses"]["200"]["content"]["application/json"]
    assert documented["schema"]["type"] == "array"
    assert not any(p["name"] in ("limit", "offset") for p in operation.definition.raw.get(
        "parameters", []))  # fmt: skip
    for _ in range(5):  # UDP may drop a datagram
        case = operation.Case(body={"address": "127.255.255.255", "timeout": 1},
                              media_type="application/json")  # fmt: skip
        response = case.call(headers={"Authorization": f"Token {token}"})
        case.validate_response(response, checks=CHECKS)
        if response.json():
            break
    assert [row["name"] for row in response.json()] == ["found-me"]


def test_server_names_are_documented_as_the_rule_says(token):
    from cms.inventory.validators import NAME_MAX_LENGTH

    raw = full_schema.raw_schema["components"]["schemas"]
    for component in ("ServerRequest", "PatchedServerRequest", "Server", "FailoverServer"):
        name = raw[component]["properties"]["name"]
        assert (name["minLength"], name["maxLength"]) == (1, NAME_MAX_LENGTH), component
    assert re.search(rf"\b{NAME_MAX_LENGTH}\b", raw["Server"]["properties"]["name"]["description"])
