"""The node's password never travels, and what an impostor captures logs nobody in.

Each test is the attack: a fake node on loopback that does not know the password (an
impostor at a server's address) receives a real CMS login and Test Connection, then
replays what it captured against the real agent; a relay records a real session; a node
whose state still holds the old password hash is started.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from types import SimpleNamespace

import pytest

from cms.nodes.client import NodeClient
from cms.nodes.errors import NodeAuthFailed
from cms.nodes.prober import HealthProber, Target
from cms.nodes.services import test_connection as check_connection
from node.state import PBKDF2_ITERATIONS
from protocol.scram import ScramLogin
from tests.fixtures import hostile as h
from tests.fixtures.nodes import raw_request, scram_login

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_tokens")]

PASSWORD = "Real-node-password-42"


def captured(node: h.HostileNode) -> bytes:
    return b"\n".join(node.bodies)


def leaks(data: bytes, password: str) -> bool:
    forms = [password.encode(), base64.b64encode(password.encode())]
    forms.append(hashlib.sha256(password.encode()).hexdigest().encode())
    return any(form in data for form in forms)


def body_after(stream: bytes, path: bytes) -> dict:
    """The JSON body of the first request to ``path`` in a recorded byte stream."""
    body = stream.split(path, 1)[1].split(b"\r\n\r\n", 1)[1].decode()
    return json.JSONDecoder().raw_decode(body)[0]


def bodies_at(node: h.HostileNode, path: str) -> list[dict]:
    return [
        json.loads(body)
        for request, body in zip(node.requests, node.bodies, strict=True)
        if request.endswith(h.API + path)
    ]


def test_an_impostor_gets_no_password_and_nothing_that_logs_in(start_node, hostile_node):
    real = start_node(mode="recording", password=PASSWORD)
    # The impostor answers like a node but holds a verifier of a password it guessed.
    impostor = hostile_node({}, password="a-guess", pretend=True)
    client = NodeClient("127.0.0.1", impostor.port, password=PASSWORD, cms_host_id="cms-a")
    with pytest.raises(NodeAuthFailed) as exc:
        client.health()
    assert exc.value.code in ("node_unproven", "auth_failed")
    report = check_connection(
        SimpleNamespace(host="127.0.0.1", port=impostor.port, use_https=False,
                        admin_username="admin", admin_password=PASSWORD, tls_fingerprint="",
                        connection_type="address", serial="")
    )  # fmt: skip
    assert not report.ok and report.health == ""
    assert impostor.seen("/health") == 0  # a peer that did not prove itself gets nothing
    assert impostor.seen("/auth/login") == 0
    assert not leaks(captured(impostor), PASSWORD)

    # Replayed against the real agent, the captured messages log nobody in.
    starts = bodies_at(impostor, "/auth/scram/start")
    finals = bodies_at(impostor, "/auth/scram/finish")
    assert starts and finals
    for start, final in zip(starts, finals, strict=False):
        status, _, answer = raw_request(
            real, "POST", "/api/v1/auth/scram/start", json.dumps(start).encode()
        )
        assert status == 200, answer
        replay = {"session": answer["session"], "client_final": final["client_final"]}
        status, _, answer = raw_request(
            real, "POST", "/api/v1/auth/scram/finish", json.dumps(replay).encode()
        )
        assert status == 401 and answer["error"]["code"] == "auth_failed"
        assert "token" not in answer


def test_a_recorded_login_cannot_be_replayed(start_node, node_proxy):
    real = start_node(mode="recording", password=PASSWORD)
    relay = node_proxy(real)
    NodeClient("127.0.0.1", relay.port, password=PASSWORD).health()
    seen = b"".join(relay.from_cms)
    assert b"/auth/scram/finish" in seen and not leaks(seen, PASSWORD)
    start, final = body_after(seen, b"/auth/scram/start"), body_after(seen, b"/auth/scram/finish")
    # The same session again: used up. A new session with the old proof: wrong nonce.
    status, _, answer = raw_request(
        real, "POST", "/api/v1/auth/scram/finish", json.dumps(final).encode()
    )
    assert status == 401 and answer["error"]["code"] == "session_unknown"
    status, _, fresh = raw_request(
        real, "POST", "/api/v1/auth/scram/start", json.dumps(start).encode()
    )
    replay = {"session": fresh["session"], "client_final": final["client_final"]}
    status, _, answer = raw_request(
        real, "POST", "/api/v1/auth/scram/finish", json.dumps(replay).encode()
    )
    assert status == 401 and "token" not in answer


def test_the_prober_sends_an_impostor_nothing_after_the_login(hostile_node):
    impostor = hostile_node({}, password="a-guess", pretend=True)
    prober = HealthProber(concurrency=4)
    try:
        target = Target(key=1, host="127.0.0.1", port=impostor.port, https=False,
                        username="admin", password=PASSWORD)  # fmt: skip
        (result,) = prober.probe_all([target], timeout=3.0)
    finally:
        prober.close()
    assert result.error == "auth_failed"
    assert "not the node it claims" in result.message
    assert impostor.seen("/health") == 0
    assert not leaks(captured(impostor), PASSWORD)


def test_password_logins_are_gone(start_node):
    real = start_node(mode="recording", password=PASSWORD)
    body = json.dumps({"username": "admin", "password": PASSWORD}).encode()
    status, _, answer = raw_request(real, "POST", "/api/v1/auth/login", body)
    assert status == 410 and answer["error"]["code"] == "login_removed"
    assert "token" not in answer


def test_the_node_keeps_a_verifier_not_the_password(start_node):
    real = start_node(mode="recording", password=PASSWORD)
    state = json.loads((real.data_dir / "state.json").read_text())
    admin = state["admin"]
    assert set(admin) == {"username", "salt", "iterations", "stored_key", "server_key"}
    assert not leaks((real.data_dir / "state.json").read_bytes(), PASSWORD)


def test_an_old_password_hash_becomes_a_verifier_on_start(start_node):
    real = start_node(mode="recording", password=PASSWORD)
    real.stop()
    path = real.data_dir / "state.json"
    state = json.loads(path.read_text())
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt, PBKDF2_ITERATIONS)
    state["admin"] = {"username": "admin", "salt": salt.hex(), "iterations": PBKDF2_ITERATIONS,
                      "hash": digest.hex()}  # fmt: skip
    del state["cms"]["pairing_key"]
    path.write_text(json.dumps(state))
    real.start()
    migrated = json.loads(path.read_text())
    assert "hash" not in migrated["admin"] and migrated["admin"]["salt"] == salt.hex()
    assert scram_login(real)["status"] == 200  # the same password still logs in
    assert scram_login(real, "wrong")["status"] == 401


def test_a_scram_client_refuses_a_node_asking_for_absurd_work():
    login = ScramLogin("admin", PASSWORD)
    first = login.start()["client_first"]
    nonce = first.split("r=", 1)[1]
    salt = base64.b64encode(b"0123456789abcdef").decode()
    with pytest.raises(Exception, match="iteration"):
        login.finish("s", f"r={nonce}xyz,s={salt},i=9000000")
