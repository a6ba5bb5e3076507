"""What the LAN search tells about each node: paired with another host, locked, and
what that makes it to this CMS, the same in the API's search as in the admin."""

from __future__ import annotations

import json
import secrets
import socket

import pytest

from cms.nodes.client import pairing_host_id
from cms.nodes.discovery import search

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
LOOPBACK = "127.255.255.255"


@pytest.fixture
def admin_api(admin_user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def found_until(names: set[str], port: int) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for _ in range(5):  # UDP may drop a datagram
        found.update({a["name"]: a for a in search(timeout=1.0, port=port, address=LOOPBACK)})
        if names <= found.keys():
            break
    return found


def raw_answer(port: int, host: str | None) -> dict:
    """One node's datagram as it is sent, to a search naming ``host`` (or none)."""
    query = {"type": "cms-node-search", "v": 1, "nonce": secrets.token_hex(8)}
    if host is not None:
        query["host"] = host
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        for _ in range(5):
            s.sendto(json.dumps(query).encode(), ("127.0.0.1", port))
            try:
                return json.loads(s.recvfrom(1024)[0])
            except TimeoutError:
                continue
    raise AssertionError("no answer")


def test_a_node_says_whether_another_host_manages_it_and_whether_it_is_locked(start_node):
    port = free_udp_port()
    ours = start_node(mode="failover", name="ours", discovery_port=port)
    theirs = start_node(mode="failover", name="theirs", discovery_port=port)
    start_node(mode="failover", name="free", discovery_port=port)
    ours.client(cms_host_id=pairing_host_id()).enable_cms("failover", refuse_other_hosts=True)
    theirs.client(cms_host_id="other-cms").enable_cms("failover", refuse_local_changes=True)

    found = found_until({"ours", "theirs", "free"}, port)
    assert (found["ours"]["paired_elsewhere"], found["ours"]["locked"]) == (False, True)
    assert (found["theirs"]["paired_elsewhere"], found["theirs"]["locked"]) == (True, True)
    assert (found["free"]["paired_elsewhere"], found["free"]["locked"]) == (False, False)

    # Booleans only: neither the pairing key nor the other host's id leaves the node.
    other_port = free_udp_port()
    lone = start_node(mode="failover", name="lone", discovery_port=other_port)
    lone.client(cms_host_id="other-cms").enable_cms("failover")
    answer = raw_answer(other_port, host=pairing_host_id())
    assert answer["paired_elsewhere"] is True and answer["locked"] is False
    text = json.dumps(answer)
    assert "other-cms" not in text and "pairing" not in text
    # A search that names no host (an older CMS): paired with anyone counts.
    assert raw_answer(other_port, host=None)["paired_elsewhere"] is True
    assert raw_answer(other_port, host="other-cms")["paired_elsewhere"] is False


def test_the_api_search_gives_each_server_its_status(admin_api, start_node, settings, team):
    from cms.inventory.models import FailoverServer

    settings.CMS_DISCOVERY_PORT = port = free_udp_port()
    start_node(mode="failover", name="free-box", discovery_port=port)
    managed = start_node(mode="failover", name="managed-box", discovery_port=port)
    paired = start_node(mode="failover", name="paired-box", discovery_port=port)
    FailoverServer.objects.create(team=team, name="Spare East", host="127.0.0.1",
                                  port=managed.port, admin_password="x",
                                  serial=managed.client().info()["serial"])  # fmt: skip
    paired.client(cms_host_id="other-cms").enable_cms("failover")

    results: dict[str, dict] = {}
    for _ in range(5):  # UDP may drop a datagram
        response = admin_api.post("/api/v1/failover-servers/search/",
                                  {"address": LOOPBACK, "timeout": 1}, format="json")  # fmt: skip
        assert response.status_code == 200
        results.update({r["name"]: r for r in response.json()})
        if len(results) == 3:
            break
    summary = {n: (r["status"], r["status_label"], r["selectable"]) for n, r in results.items()}
    assert summary == {
        "free-box": ("available", "Available", True),
        "managed-box": ("added", "Added (Spare East)", False),
        "paired-box": ("paired_elsewhere", "Paired with another host", False),
    }
    assert results["paired-box"]["paired_elsewhere"] is True
