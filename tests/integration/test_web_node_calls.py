"""Web requests that talk to a node: one deadline for all their node calls, and a slow
node cannot tie up more than one web thread per process (the next request is "busy").

The slow nodes are fake nodes on loopback (tests/fixtures/hostile.py); the web requests
go through the real API and admin views.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from cms.inventory.models import License, Server
from tests.fixtures import hostile as h
from tests.fixtures.hostile import elapsed
from tests.fixtures.nodes import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_tokens"),
]

DEADLINE = 2.0  # the web deadline for these tests (10 s in production)
MARGIN = 3.0


@pytest.fixture(autouse=True)
def short_web_deadline(settings):
    settings.CMS_WEB_NODE_DEADLINE = DEADLINE


def slow_server(team, node: h.HostileNode, name: str = "Slow") -> Server:
    server = Server(team=team, role="recording", name=name, host="127.0.0.1", port=node.port,
                    admin_password=h.PASSWORD)  # fmt: skip
    server.full_clean()
    server.save()
    return server


def in_thread(fn):
    """Run a request in its own thread, as another web worker thread would."""

    def run():
        try:
            return elapsed(fn)
        finally:
            connection.close()

    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(run)
    pool.shutdown(wait=False)
    return future


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_a_second_api_call_to_a_slow_node_is_busy_at_once(admin_user, team, hostile_node):
    node = hostile_node({"/info": h.black_hole()})
    server = slow_server(team, node)
    url = f"/api/v1/recording-servers/{server.pk}/test-connection/"

    first = in_thread(lambda: api(admin_user).post(url))
    wait_until(lambda: node.seen("/info"), message="the first request waiting for the node")
    seconds, second = elapsed(lambda: api(admin_user).post(url))
    assert second.status_code == 503
    assert second.json()["error"]["code"] == "node_busy"
    assert "busy with another request" in second.json()["error"]["message"]
    assert second["Retry-After"]
    assert seconds < MARGIN  # answered at once, not after the slow node

    seconds, answer = first.result(timeout=DEADLINE + 30)
    assert seconds < DEADLINE + MARGIN
    report = answer.json()
    assert answer.status_code == 200 and report["ok"] is False
    assert report["error_code"] == "unreachable"
    assert f"did not answer /info within {DEADLINE:g} s" in report["message"]

    # Once the first request has finished, the node can be tried again.
    assert api(admin_user).post(url).status_code == 200


def test_a_slow_license_install_ends_within_the_web_deadline_and_changes_nothing(
    admin_user, team, hostile_node
):
    node = hostile_node({"/licenses": h.drip()})
    server = slow_server(team, node)
    lic = License.objects.create(key="ABCD-1234-EFGH", team=team, cameras=2)

    seconds, answer = elapsed(
        lambda: api(admin_user).post(f"/api/v1/licenses/{lic.pk}/install/", {"server": server.pk})
    )
    assert seconds < DEADLINE + MARGIN  # the client's own deadline (20 s) is longer
    assert answer.status_code == 502
    error = answer.json()["error"]
    assert error["code"] == "node_bad_answer"
    assert f"did not finish within {DEADLINE:g} s" in error["message"]
    lic.refresh_from_db()
    assert lic.server is None


def test_the_admin_test_connection_button_says_busy(admin_user, team, hostile_node):
    node = hostile_node({"/info": h.black_hole()})
    url = reverse("admin:inventory_recordingserver_connect_test")
    form = {"connection_type": "address", "host": "127.0.0.1", "port": str(node.port),
            "admin_password_input": h.PASSWORD}  # fmt: skip

    def press():
        browser = Client()
        browser.force_login(admin_user)
        return browser.post(url, form)

    first = in_thread(press)
    wait_until(lambda: node.seen("/info"), message="the first test waiting for the node")
    second = press()
    assert second.status_code == 503
    assert second.json()["ok"] is False and second.json()["error_code"] == "busy"

    seconds, answer = first.result(timeout=DEADLINE + 30)
    assert seconds < DEADLINE + MARGIN
    assert answer.json()["error_code"] == "unreachable"


def test_other_nodes_are_not_held_up_by_a_slow_one(admin_user, team, hostile_node, start_node):
    slow_node = hostile_node({"/info": h.black_hole()})
    slow = slow_server(team, slow_node)
    node = start_node(mode="recording", name="quick")
    quick = Server.objects.create(team=team, role="recording", name="Quick", host=node.host,
                                  port=node.port, admin_password=node.password)  # fmt: skip
    first = in_thread(
        lambda: api(admin_user).post(f"/api/v1/recording-servers/{slow.pk}/test-connection/")
    )
    wait_until(lambda: slow_node.seen("/info"), message="a request waiting for the slow node")
    answer = api(admin_user).post(f"/api/v1/recording-servers/{quick.pk}/test-connection/")
    assert answer.status_code == 200 and answer.json()["ok"] is True  # not "busy"
    first.result(timeout=DEADLINE + 30)
