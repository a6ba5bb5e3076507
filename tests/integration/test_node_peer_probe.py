"""``POST /peers/probe``: a failover server probes another node for the CMS.

As the CMS asks before failing over: the probed node answers, is gone (a closed port),
is another node (another serial), or is black-holed (the probe ends by its timeout).
A malformed request is refused and makes no probe; a request without a token is
refused before anything happens.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from cms.nodes.client import NodeClient
from cms.nodes.errors import NodeRefused
from tests.fixtures.faulty_network import FaultyProxy
from tests.fixtures.nodes import raw_request, token_of

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_tokens")]

PATH = "/api/v1/peers/probe"


@pytest.fixture
def pair(start_node):
    """(the failover node that probes, the recording node it probes)."""
    return start_node(mode="failover", name="standby"), start_node(mode="recording", name="rec")


def probes_made(node) -> int:
    return node.client().health()["peer_probes"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nobody listens


def test_info_reports_where_the_agent_listens(pair):
    _, recording = pair
    assert recording.get_info()["lan"] == [f"{recording.host}:{recording.port}"]


def test_an_agent_on_every_interface_lists_their_addresses(start_node):
    node = start_node(mode="recording", name="wide", extra_args=["--host", "0.0.0.0"])
    lan = node.get_info()["lan"]
    assert lan and all(a.endswith(f":{node.port}") for a in lan)
    assert not any(a.startswith("0.0.0.0:") for a in lan)  # an address a peer can reach


def test_a_reachable_node_answers_with_its_serial(pair):
    standby, recording = pair
    serial = recording.get_info()["serial"]
    answer = standby.client().probe_peer(
        f"{recording.host}:{recording.port}", https=False, serial=serial, timeout=1
    )
    assert answer["reachable"] is True and answer["serial"] == serial
    assert answer["latency_ms"] is not None and answer["latency_ms"] >= 0
    assert answer["error"] == ""
    assert probes_made(standby) == 1


def test_an_https_node_is_reached_too(start_node):
    standby = start_node(mode="failover", name="standby")
    recording = start_node(mode="recording", name="rec", https=True)
    serial = recording.get_info()["serial"]
    answer = standby.client().probe_peer(
        f"{recording.host}:{recording.port}", https=True, serial=serial, timeout=1
    )
    assert answer["reachable"] is True and answer["serial"] == serial


def test_another_node_at_the_address_is_reported_with_its_own_serial(pair):
    standby, recording = pair
    actual = recording.get_info()["serial"]
    answer = standby.client().probe_peer(
        f"{recording.host}:{recording.port}", https=False, serial="SOMEONE-ELSE", timeout=1
    )
    assert answer["serial"] == actual != "SOMEONE-ELSE"
    assert answer["error"] == "answers as another serial"


def test_a_closed_port_is_unreachable(pair):
    standby, _ = pair
    answer = standby.client().probe_peer(
        f"127.0.0.1:{closed_port()}", https=False, serial="X", timeout=1
    )
    assert answer == {
        "reachable": False, "serial": None, "latency_ms": None,
        "error": "cannot reach it: ClientConnectorError",
    }  # fmt: skip


def test_a_black_hole_ends_by_the_timeout(pair):
    standby, recording = pair
    proxy = FaultyProxy((recording.host, recording.port))
    proxy.mode = "black_hole"
    try:
        started = time.monotonic()
        answer = standby.client().probe_peer(
            f"{proxy.host}:{proxy.port}", https=False, serial="X", timeout=0.5
        )
        took = time.monotonic() - started
    finally:
        proxy.close()
    assert answer["reachable"] is False and answer["error"] == "no answer within 0.5 s"
    assert proxy.accepted == 1  # it did try
    assert took < 5  # ended by the timeout, not by the client's own deadline (20 s)


BAD_BODIES = [
    {},
    {"address": "127.0.0.1", "serial": "X"},
    {"address": "127.0.0.1:0", "serial": "X"},
    {"address": "127.0.0.1:65536", "serial": "X"},
    {"address": "127.0.0.1:8o", "serial": "X"},
    {"address": "evil.example/x:80", "serial": "X"},
    {"address": "user@host:80", "serial": "X"},
    {"address": "::1:80", "serial": "X"},
    {"address": "[nothex]:80", "serial": "X"},
    {"address": "h" * 300 + ":80", "serial": "X"},
    {"address": 8080, "serial": "X"},
    {"address": "127.0.0.1:80", "serial": ""},
    {"address": "127.0.0.1:80", "serial": "S" * 65},
    {"address": "127.0.0.1:80", "serial": 5},
    {"address": "127.0.0.1:80", "serial": "X", "https": "yes"},
    {"address": "127.0.0.1:80", "serial": "X", "timeout": 0},
    {"address": "127.0.0.1:80", "serial": "X", "timeout": 2.5},
    {"address": "127.0.0.1:80", "serial": "X", "timeout": True},
    {"address": "127.0.0.1:80", "serial": "X", "timeout": "1"},
    [],
]


def test_bad_requests_are_refused_and_probe_nothing(pair):
    standby, _ = pair
    auth = {"Authorization": f"Bearer {token_of(standby)}"}
    for body in BAD_BODIES:
        status, _, answer = raw_request(standby, "POST", PATH, json.dumps(body).encode(), auth)
        assert status == 400, (body, answer)
        assert answer["error"]["code"] in ("bad_request", "malformed_json"), answer
    status, _, _ = raw_request(standby, "POST", PATH, b"{not json", auth)
    assert status == 400
    assert probes_made(standby) == 0


def test_without_a_token_nothing_is_probed(pair):
    standby, recording = pair
    body = {"address": f"{recording.host}:{recording.port}", "serial": "X"}
    status, headers, answer = raw_request(standby, "POST", PATH, json.dumps(body).encode())
    assert status == 401 and answer["error"]["code"] == "auth_required"
    assert headers["www-authenticate"] == "Bearer"
    status, _, _ = raw_request(
        standby, "POST", PATH, json.dumps(body).encode(), {"Authorization": "Bearer forged"}
    )
    assert status == 401
    assert probes_made(standby) == 0


def test_a_locked_node_probes_only_for_its_cms(pair):
    standby, recording = pair
    paired = NodeClient(standby.host, standby.port, password=standby.password, cms_host_id="a")
    paired.enable_cms("failover", refuse_other_hosts=True, refuse_local_changes=True)
    address = f"{recording.host}:{recording.port}"
    with pytest.raises(NodeRefused) as exc:
        standby.client().probe_peer(address, https=False, serial="X", timeout=1)
    assert exc.value.status == 403 and exc.value.code == "locked"
    assert paired.probe_peer(address, https=False, serial="X", timeout=1)["reachable"] is True
    assert paired.health()["peer_probes"] == 1
