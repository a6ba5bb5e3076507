"""QuickConnect: IDs are bound with a CMS-issued enrollment secret, then by serial and
token; registration is rate limited; resolving needs a login. Written as the attacks."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests
from django.db.models import F
from rest_framework.test import APIClient

from cms.inventory.choices import HealthStatus
from cms.nodes import directory
from cms.nodes.client import client_for, forget_tokens
from cms.nodes.errors import NodeUnreachable
from cms.nodes.models import QuickConnectEntry
from cms.nodes.services import test_connection as run_test_connection
from failover.probing import probe_servers
from tests.fixtures.nodes import wait_until

pytestmark = pytest.mark.integration

# The enrollment and the rate limit are imported in the tests, after their first
# assertion: each test shows its attack succeed on code without them.


def post(client, body, **extra):
    return client.post(
        "/qc/register", data=json.dumps(body), content_type="application/json", **extra
    )


@pytest.fixture
def admin_api(admin_user) -> APIClient:
    api = APIClient()
    api.force_authenticate(admin_user)
    return api


def add_quickconnect_server(api: APIClient, team, qc_id: str, role: str = "recording") -> dict:
    created = api.post(f"/api/v1/{role}-servers/", {
        "team": team.pk, "name": qc_id.replace("-", " "), "connection_type": "quickconnect",
        "host": "", "quickconnect_id": qc_id, "admin_password": "pw",
    }, format="json")  # fmt: skip
    assert created.status_code == 201, created.content
    return created.json()


def test_it_binds_an_id_only_with_its_secret_then_by_serial_and_token(db, client):
    node = {"id": "shop-1", "serial": "AAA111", "token": "t" * 32, "port": 5000}
    # No secret was ever issued for the ID: nobody can claim it.
    refused = post(client, node)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "registration_refused"
    assert not QuickConnectEntry.objects.exists()

    from cms.nodes import enrollment

    secret = enrollment.issue("shop-1")
    for attempt in (node, {**node, "enrollment": "x" * 43}):  # no secret, a wrong one
        assert post(client, attempt).status_code == 403
    entry = QuickConnectEntry.objects.get()
    assert not entry.is_bound and entry.awaits_enrollment
    with pytest.raises(NodeUnreachable):
        directory.resolve("shop-1")

    bound = post(client, {**node, "enrollment": secret})
    assert bound.status_code == 200, bound.content
    assert bound.json() == {"id": "shop-1", "host": "127.0.0.1", "port": 5000}
    entry.refresh_from_db()
    assert entry.is_bound and not entry.awaits_enrollment  # the secret is spent
    assert secret not in json.dumps(list(QuickConnectEntry.objects.values()), default=str)

    # The same node moves to another address, with or without the spent secret.
    assert post(client, {**node, "host": "10.0.0.7", "port": 5001}).status_code == 200
    assert post(client, {**node, "enrollment": secret, "port": 5001}).status_code == 200
    assert directory.resolve("shop-1") == ("127.0.0.1", 5001)
    # Another node, a wrong token, or the spent secret cannot take the ID.
    for thief in (
        {**node, "serial": "BBB222"},
        {**node, "token": "x" * 32},
        {**node, "serial": "BBB222", "token": "x" * 32, "enrollment": secret},
    ):
        resp = post(client, {**thief, "host": "10.6.6.6"})
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "registration_refused"
    assert directory.resolve("shop-1") == ("127.0.0.1", 5001)

    # The node was replaced: an admin issues a new secret. The old node stays reached
    # until the new one enrolls; then the old one is refused.
    renewed = enrollment.issue("shop-1")
    assert post(client, node).status_code == 200
    newcomer = {"id": "shop-1", "serial": "CCC333", "token": "n" * 32, "port": 6000}
    assert post(client, {**newcomer, "enrollment": secret}).status_code == 403
    assert post(client, {**newcomer, "enrollment": renewed}).status_code == 200
    assert directory.resolve("shop-1") == ("127.0.0.1", 6000)
    assert post(client, node).status_code == 403

    for bad in (
        {**node, "id": "-bad-"},
        {**node, "port": 0},
        {**node, "token": "short"},
        {**node, "host": "not a host!"},
        {**node, "enrollment": 7},
    ):
        assert post(client, bad).status_code == 400
    assert client.post("/qc/register", data="{", content_type="application/json").status_code == 400
    assert client.get("/qc/register").status_code == 405


def test_a_squatter_cannot_claim_an_added_id_and_is_never_contacted(
    transactional_db, live_server, admin_api, team, listener
):
    """The attack: a server was added with a QuickConnect ID whose node has not
    registered yet; an anonymous squatter registers the ID, pointing at its listener."""
    forget_tokens()
    added = add_quickconnect_server(admin_api, team, "shop-7")
    from cms.inventory.models import Server

    server = Server.objects.get(pk=added["id"])
    squat = requests.post(live_server.url + "/qc/register", json={
        "id": "shop-7", "serial": "EVIL01", "token": "e" * 32, "host": "127.0.0.1",
        "port": listener.port,
    }, timeout=5)  # fmt: skip
    assert squat.status_code == 403, squat.text
    assert not QuickConnectEntry.objects.get(qc_id="shop-7").is_bound

    # Everything that would reach the server: the probe, Test Connection, the client.
    (result,) = probe_servers([server], timeout=1.0)
    assert result.status == HealthStatus.DISCONNECTED
    report = run_test_connection(server)
    assert not report.ok and report.error_code == "quickconnect_unknown"
    with pytest.raises(NodeUnreachable):
        client_for(server).health()
    assert listener.received == []


def test_an_agent_started_with_its_secret_binds_the_id_and_is_probed(
    transactional_db, live_server, start_node, admin_api, admin_user, team, make_server
):
    from knox.models import AuthToken

    from cms.inventory.models import Server

    forget_tokens()
    qc_dir = live_server.url + "/qc"
    added = add_quickconnect_server(admin_api, team, "qc-node-1", role="failover")
    secret = added["quickconnect_enrollment_secret"]
    server = Server.objects.get(pk=added["id"])

    node = start_node(mode="failover", name="qc-node", quickconnect_id="qc-node-1",
                      directory=qc_dir, quickconnect_enrollment=secret)  # fmt: skip
    entry = wait_until(
        lambda: QuickConnectEntry.objects.exclude(token_hash="").filter(qc_id="qc-node-1").first(),
        message="the node enrolled",
    )
    assert (entry.host, entry.port) == ("127.0.0.1", node.port)
    assert not entry.awaits_enrollment
    cmdline = open(f"/proc/{node.pid}/cmdline", "rb").read()  # noqa: SIM115
    assert secret.encode() not in cmdline  # it came in the environment, out of `ps`

    token = AuthToken.objects.create(admin_user)[1]
    resolved = requests.get(f"{qc_dir}/resolve/qc-node-1", timeout=5,
                            headers={"Authorization": f"Token {token}"})  # fmt: skip
    assert resolved.json() == {"id": "qc-node-1", "host": "127.0.0.1", "port": node.port}

    report = run_test_connection(server)
    assert report.ok and report.name == "qc-node" and report.fingerprint == ""
    assert client_for(server).health()["cms_mode"] == "failover"
    (result,) = probe_servers([server], timeout=2.0)
    assert result.status == HealthStatus.NORMAL, result.error

    # A second node presenting the spent secret (on its command line) is refused.
    thief = start_node(
        mode="recording",
        name="thief",
        quickconnect_id="qc-node-1",
        directory=qc_dir,
        extra_args=["--quickconnect-enrollment", secret],
    )
    assert thief.port != node.port
    wait_until(lambda: "registration refused" in thief.log(), message="thief refused")
    assert QuickConnectEntry.objects.get(qc_id="qc-node-1").port == node.port

    unknown = make_server(role="failover", connection_type="quickconnect", host="",
                          quickconnect_id="nobody-here", admin_password="x")  # fmt: skip
    report = run_test_connection(unknown)
    assert not report.ok and report.error_code == "quickconnect_unknown"


def test_batch_add_of_an_enrolled_node_issues_no_spare_secret(
    transactional_db, live_server, start_node, admin_api, team
):
    """Batch add reaches each node first: an ID bound to the node it reached needs no
    secret (one would only be a credential lying around)."""
    from cms.nodes import enrollment

    secret = enrollment.issue("qc-batch-1")  # e.g. its server was deleted, now added back
    node = start_node(
        mode="failover",
        name="qc-batch",
        quickconnect_id="qc-batch-1",
        directory=live_server.url + "/qc",
        quickconnect_enrollment=secret,
    )
    bound = QuickConnectEntry.objects.filter(qc_id="qc-batch-1").exclude(token_hash="")
    wait_until(bound.exists, message="the node enrolled")
    row = {"connection_type": "quickconnect", "quickconnect_id": "qc-batch-1",
           "admin_password": node.password}  # fmt: skip
    added = admin_api.post("/api/v1/failover-servers/batch-add/", {
        "team": team.pk, "naming_rule": "prefix_no", "prefix": "Standby", "servers": [row],
    }, format="json")  # fmt: skip
    assert added.status_code == 201, added.content
    assert "quickconnect_enrollment_secret" not in added.json()[0]
    assert not QuickConnectEntry.objects.get(qc_id="qc-batch-1").awaits_enrollment


def test_refused_registrations_from_one_address_are_cut_off(db, client):
    attacker = {"REMOTE_ADDR": "203.0.113.5"}
    squat = {"serial": "EVIL01", "token": "e" * 32, "port": 1}
    answers = [post(client, {**squat, "id": f"squat-{n}"}, **attacker) for n in range(30)]
    # At most 20 refusals per address in 10 minutes, then 429 with Retry-After.
    assert [a.status_code for a in answers] == [403] * 20 + [429] * 10
    cut_off = answers[-1]
    assert cut_off.json()["error"]["code"] == "throttled"
    assert 0 < int(cut_off["Retry-After"]) <= 600

    from cms.nodes import enrollment
    from cms.nodes.models import RegistrationRefusal

    # Another address is not concerned.
    assert post(client, {**squat, "id": "squat-0"}, REMOTE_ADDR="198.51.100.1").status_code == 403
    # The bound node's refresh is never limited, even from the same (NAT) address...
    node = {"id": "shop-9", "serial": "AAA111", "token": "t" * 32, "port": 5000,
            "host": "10.0.0.9"}  # fmt: skip
    assert post(client, {**node, "enrollment": enrollment.issue("shop-9")}).status_code == 200
    assert post(client, node, **attacker).status_code == 200
    # ...but no enrollment is tried from it, not even with the right secret.
    newcomer = {**node, "id": "shop-10", "serial": "BBB222",
                "enrollment": enrollment.issue("shop-10")}  # fmt: skip
    assert post(client, newcomer, **attacker).status_code == 429
    assert not QuickConnectEntry.objects.get(qc_id="shop-10").is_bound

    # Once the window has passed, the address is heard again.
    RegistrationRefusal.objects.update(at=F("at") - timedelta(minutes=10, seconds=1))
    assert post(client, newcomer, **attacker).status_code == 200


def test_resolve_needs_a_login_and_answers_only_for_visible_servers(
    db, client, django_user_model, team, other_team, make_server
):
    from django.contrib.auth.models import Group
    from knox.models import AuthToken

    from cms.inventory.models import TeamMembership

    for qc_id, owner, port in (("ours-1", team, 5001), ("theirs-1", other_team, 5002)):
        make_server(team=owner, connection_type="quickconnect", host="", quickconnect_id=qc_id)
        QuickConnectEntry.objects.create(qc_id=qc_id, serial=f"S{port}", token_hash="0" * 64,
                                         host="10.0.0.7", port=port)  # a bound node  # fmt: skip

    anonymous = client.get("/qc/resolve/ours-1")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "not_authenticated"

    viewer = django_user_model.objects.create_user("viewer", password="pw-viewer-123")
    viewer.groups.add(Group.objects.get(name="Viewer"))
    TeamMembership.objects.create(team=team, user=viewer)
    client.force_login(viewer)  # a session
    assert client.get("/qc/resolve/ours-1").json() == {"id": "ours-1", "host": "10.0.0.7",
                                                        "port": 5001}  # fmt: skip
    theirs, nobody = client.get("/qc/resolve/theirs-1"), client.get("/qc/resolve/nobody-1")
    assert theirs.status_code == nobody.status_code == 404
    assert theirs.json() == json.loads(json.dumps(nobody.json()).replace("nobody-1", "theirs-1"))

    client.logout()
    token = AuthToken.objects.create(viewer)[1]
    by_token = client.get("/qc/resolve/ours-1", HTTP_AUTHORIZATION=f"Token {token}")
    assert by_token.status_code == 200 and by_token.json()["port"] == 5001
    assert client.get("/qc/resolve/theirs-1", HTTP_AUTHORIZATION=f"Token {token}").status_code \
        == 404  # fmt: skip


def test_test_connection_never_reaches_another_teams_quickconnect_node(
    db, team, other_team, django_user_model, listener, make_server
):
    """Test Connection and batch add resolve an ID before any server has it: not to the
    node of a team the user cannot see (it would tell who it is, and take guesses)."""
    from django.contrib.auth.models import Group

    from cms.inventory.models import TeamMembership

    make_server(team=other_team, connection_type="quickconnect", host="",
                quickconnect_id="theirs-2")  # fmt: skip
    QuickConnectEntry.objects.create(qc_id="theirs-2", serial="S1", token_hash="0" * 64,
                                     host="127.0.0.1", port=listener.port)  # fmt: skip
    row = {"connection_type": "quickconnect", "quickconnect_id": "theirs-2",
           "admin_password": "a-guess"}  # fmt: skip
    for role in ("Operator", "Administrator"):
        user = django_user_model.objects.create_user(role, password="pw-long-enough")
        user.groups.add(Group.objects.get(name=role))
        TeamMembership.objects.create(team=team, user=user)
        api = APIClient()
        api.force_authenticate(user)
        tested = api.post("/api/v1/failover-servers/test-connection/", row, format="json")
        assert tested.json()["error_code"] == "quickconnect_unknown", tested.json()
    batch = api.post("/api/v1/failover-servers/batch-add/", {
        "team": team.pk, "naming_rule": "prefix_no", "prefix": "Standby", "servers": [row],
    }, format="json")  # fmt: skip
    assert batch.status_code == 409
    assert "already exists" in batch.json()["error"]["rows"]["0"][0]
    assert listener.received == []
