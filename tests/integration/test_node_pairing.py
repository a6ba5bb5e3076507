"""Nodes prove who they are; the lock and the epochs are the pairing key's, not a header's.

Written as the attacks: another node answering at a server's address, anyone who can
log in sending an epoch far in the future, a relay replaying a signed change it
recorded, and a second CMS that knows the password but not the pairing key.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import socket

import pytest

from cms.inventory.choices import HealthStatus
from cms.inventory.models import Server
from cms.nodes.client import NodeClient, client_for
from cms.nodes.errors import EpochUnproven, IdentityChanged, NodeRefused
from cms.nodes.models import PendingPairing
from cms.nodes.services import test_connection as check_connection
from failover import engine, probing
from failover.choices import EventState
from failover.models import FailoverEvent
from protocol import scram
from tests.fixtures import hostile as h
from tests.fixtures.nodes import raw_request, token_of

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_tokens")]

FAR_FUTURE = 2**61


def send_raw(node, request: bytes) -> tuple[int, dict]:
    with socket.create_connection((node.host, node.port), timeout=10) as conn:
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")]  # fmt: skip
            if length and len(body) >= length[0]:
                break
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body or b"{}")


def requests_in(stream: bytes) -> list[bytes]:
    """Split a recorded HTTP/1.1 byte stream into whole requests."""
    found = []
    while stream:
        head, _, rest = stream.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)  # fmt: skip
        found.append(head + b"\r\n\r\n" + rest[:length])
        stream = rest[length:]
    return found


def paired(node, *, locked: bool = True, host: str = "cms-a") -> tuple[NodeClient, bytes]:
    keys: list[bytes] = []
    client = NodeClient(node.host, node.port, password=node.password, cms_host_id=host,
                        on_pair=lambda key, _serial: keys.append(key))  # fmt: skip
    client.enable_cms(
        node.get_info()["cms_mode"] if node.get_info()["cms_enabled"] else "failover",
        refuse_other_hosts=locked,
        refuse_local_changes=locked,
    )
    return client, keys[-1]


# -- identity ------------------------------------------------------------------------------


def test_another_serial_at_the_address_gets_nothing(db, make_server, hostile_node):
    other = hostile_node({})  # answers /info as serial BAD0000001, logs in with PASSWORD
    server = make_server(host="127.0.0.1", port=other.port, admin_password=h.PASSWORD)
    Server.objects.filter(pk=server.pk).update(serial="REAL0000001", model="CMS-NODE")
    server.refresh_from_db()

    with pytest.raises(IdentityChanged) as exc:
        client_for(server).health()
    assert exc.value.actual == "BAD0000001" and exc.value.expected == "REAL0000001"
    report = check_connection(server)
    assert not report.ok and report.error_code == "identity_changed"
    (result,) = probing.probe_servers([server], timeout=3.0)
    assert result.status == HealthStatus.IDENTITY_CHANGED
    assert "BAD0000001" in result.error
    # Only the public /info: no login, no token, no request.
    assert other.seen("/auth") == 0 and other.seen("/health") == 0
    assert set(other.requests) == {f"GET {h.API}/info"}
    assert HealthStatus.IDENTITY_CHANGED not in engine.TRIGGER_FOR_STATUS


def test_the_same_serial_is_probed_as_usual(db, make_server, hostile_node):
    node = hostile_node({})
    server = make_server(host="127.0.0.1", port=node.port, admin_password=h.PASSWORD)
    Server.objects.filter(pk=server.pk).update(serial="BAD0000001", model="FAKE")
    server.refresh_from_db()
    (result,) = probing.probe_servers([server], timeout=3.0)
    assert result.status == HealthStatus.NORMAL


# -- epochs --------------------------------------------------------------------------------


def test_a_far_future_epoch_without_proof_changes_nothing(start_node):
    node = start_node(mode="failover")
    cms, key = paired(node, locked=False)
    attacker = {"Authorization": f"Bearer {token_of(node)}"}  # knows the password
    serial = node.get_info()["serial"]
    forged = scram.epoch_proof(secrets.token_bytes(32), FAR_FUTURE, serial, "takeover")
    for proof in (None, "", forged, "0" * 64):
        body = {"epoch": FAR_FUTURE, "on_behalf_of": {"id": "x", "name": "X"},
                "config": {"cameras": []}}  # fmt: skip
        if proof is not None:
            body["proof"] = proof
        status, _, answer = raw_request(
            node, "POST", "/api/v1/takeover", json.dumps(body).encode(), attacker
        )
        assert status == 403 and answer["error"]["code"] == "epoch_unproven", answer
        status, _, answer = raw_request(
            node, "POST", "/api/v1/release",
            json.dumps({"epoch": FAR_FUTURE, "proof": proof or ""}).encode(), attacker,
        )  # fmt: skip
        assert status == 403 and answer["error"]["code"] == "epoch_unproven"
    health = cms.health()
    assert health["epoch"] == 0 and health["recording"]["on_behalf_of"] is None
    # The CMS's own epochs still work, and a proof for one action is not one for another.
    assert cms.takeover(5, {"id": "r1", "name": "R1"}, [])["active"] is True
    takeover_proof = scram.epoch_proof(key, 6, serial, "takeover")
    status, _, answer = raw_request(
        node, "POST", "/api/v1/release",
        json.dumps({"epoch": 6, "proof": takeover_proof}).encode(), attacker,
    )  # fmt: skip
    assert status == 403 and answer["error"]["code"] == "epoch_unproven"
    assert cms.release(5)["active"] is False
    assert cms.health()["epoch"] == 5


def test_a_node_paired_with_another_key_refuses_the_cms_epochs(start_node):
    node = start_node(mode="failover")
    paired(node, locked=False)
    stale = NodeClient(node.host, node.port, password=node.password, cms_host_id="cms-a",
                       pairing_key=secrets.token_bytes(32))  # fmt: skip
    with pytest.raises(EpochUnproven) as exc:
        stale.takeover(3, {"id": "r1", "name": "R1"}, [])
    assert exc.value.status == 403 and "proof" in exc.value.message
    assert stale.health()["epoch"] == 0


# -- the lock ------------------------------------------------------------------------------


def test_a_replayed_signed_change_is_refused(start_node, node_proxy):
    node = start_node(mode="failover")
    _, key = paired(node)
    relay = node_proxy(node)
    via_relay = NodeClient("127.0.0.1", relay.port, password=node.password,
                           cms_host_id="cms-a", pairing_key=key)  # fmt: skip
    before = via_relay.get_config()["version"]
    via_relay.put_config([{"id": "cam1", "source": "synthetic"}])
    (captured,) = [r for r in requests_in(b"".join(relay.from_cms))
                   if r.startswith(b"PUT /api/v1/config")]  # fmt: skip
    assert b"X-CMS-Signature" in captured
    status, answer = send_raw(node, captured)  # the same bytes: nonce already used
    assert status == 403 and answer["error"]["code"] == "locked"
    head, _, body = captured.partition(b"\r\n\r\n")
    tampered = head + b"\r\n\r\n" + body.replace(b"cam1", b"cam9")  # same length
    status, answer = send_raw(node, tampered)
    assert status == 403 and answer["error"]["code"] == "locked"
    config = NodeClient(node.host, node.port, password=node.password).get_config()
    assert config["version"] == before + 1
    assert [c["id"] for c in config["cameras"]] == ["cam1"]


def test_a_second_cms_with_the_password_cannot_change_a_locked_node(start_node):
    node = start_node(mode="failover")
    first, _ = paired(node)
    for pairing_key in (None, secrets.token_bytes(32)):
        second = NodeClient(node.host, node.port, password=node.password, cms_host_id="cms-b",
                            pairing_key=pairing_key)  # fmt: skip
        assert second.health()["state"]  # reading is allowed
        for change in (
            lambda c=second: c.enable_cms("recording"),
            lambda c=second: c.takeover(FAR_FUTURE, {"id": "x", "name": "X"}, []),
            lambda c=second: c.release(FAR_FUTURE),
            lambda c=second: c.put_config([]),
            lambda c=second: c.install_license("OTHER-0001"),
            lambda c=second: c.set_fault("volume"),
            lambda c=second: c.disable_cms(),
        ):
            with pytest.raises(NodeRefused) as exc:
                change()
            assert exc.value.status == 403 and exc.value.code == "locked", exc.value
    info = node.get_info()
    assert info["cms_mode"] == "failover" and info["locked"] is True
    health = first.health()
    assert health["epoch"] == 0 and health["faults"] == {"volume": False, "service": False}
    assert first.licenses() == []
    # The paired CMS still changes it, re-pairs it (lock, unlock) and takes over.
    first.install_license("MINE-0001")
    assert first.enable_cms("failover")["locked"] is False
    assert first.takeover(2, {"id": "r1", "name": "R1"}, [])["active"] is True


# -- the CMS side --------------------------------------------------------------------------


def test_a_pairing_before_the_server_is_saved_reaches_the_server(db, team, start_node):
    node = start_node(mode="standalone")
    unsaved = Server(team=team, role="failover", name="Standby", host=node.host,
                     port=node.port, admin_password=node.password)  # fmt: skip
    client_for(unsaved, pin=False).enable_cms(
        "failover", refuse_other_hosts=True, refuse_local_changes=True
    )
    serial = node.get_info()["serial"]
    assert PendingPairing.objects.filter(serial=serial).exists()
    server = Server.objects.create(team=team, role="failover", name="Standby 2",
                                   host=node.host, port=node.port,
                                   admin_password=node.password, serial=serial)  # fmt: skip
    assert client_for(server).takeover(1, {"id": "r1", "name": "R1"}, [])["active"] is True
    server.refresh_from_db()
    assert server.pairing_key and not PendingPairing.objects.exists()
    assert "pairing_key" not in repr(server.pairing_key)


def test_an_unpaired_failover_node_is_paired_at_its_first_takeover(db, team, start_node):
    node = start_node(mode="failover")
    server = Server.objects.create(team=team, role="failover", name="Standby",
                                   host=node.host, port=node.port,
                                   admin_password=node.password)  # fmt: skip
    assert not server.pairing_key
    assert client_for(server).takeover(1, {"id": "r1", "name": "R1"}, [])["active"] is True
    server.refresh_from_db()
    assert len(bytes.fromhex(server.pairing_key.reveal())) == 32
    assert Server.objects.filter(pk=server.pk).values_list("pairing_key", flat=True)[0] != (
        server.pairing_key.reveal()
    )  # encrypted at rest


def test_a_refused_epoch_reaches_the_event_timeline(make_fleet):
    fleet = make_fleet(failovers=1)
    standby = fleet.failovers[0]
    client_for(standby).enable_cms("failover")  # paired: the CMS holds the key
    # The node was paired again elsewhere: the key the CMS holds no longer proves anything.
    Server.objects.filter(pk=standby.pk).update(pairing_key=secrets.token_hex(32))
    fleet.recording_node.kill()
    for _ in range(3):
        probing.run_cycle(force=True)
    event = FailoverEvent.objects.get()
    assert engine.advance(event.pk) == EventState.NO_FAILOVER_SERVER
    reasons = " ".join(event.transitions.values_list("reason", flat=True))
    assert "without the proof" in reasons, reasons
    assert fleet.failover_nodes[0].client().health()["recording"]["on_behalf_of"] is None


def test_only_the_node_itself_unpairs_it_and_only_while_stopped(start_node):
    node = start_node(mode="failover")
    paired(node)
    refused = node.cli("unpair")
    assert refused.returncode == 1 and "stop it first" in refused.stderr
    assert node.get_info()["locked"] is True
    node.stop()
    done = node.cli("unpair")
    assert done.returncode == 0, done.stderr
    node.start()
    info = node.get_info()
    assert info["paired"] is False and info["locked"] is False
    assert info["cms_mode"] == "failover"
    NodeClient(node.host, node.port, password=node.password).install_license("FREE-0001")


def test_the_paired_cms_restores_to_a_locked_node_and_no_one_else_does(start_node):
    node = start_node(mode="recording")
    first, _ = paired(node)
    data = b"restored bytes " * 1000
    digest = hashlib.sha256(data).hexdigest()
    spec = {"camera": "door", "origin": "failover", "on_behalf_of": "rec",
            "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:05Z"}  # fmt: skip
    path = "failover/rec/door/2026-01-01/000000.000.seg"
    other = NodeClient(node.host, node.port, password=node.password, cms_host_id="cms-b")
    with pytest.raises(NodeRefused) as exc:
        other.upload(path, data, len(data), digest, **spec)
    assert exc.value.code == "locked"
    # Chunks are streamed (UNSIGNED-PAYLOAD): the signed POST /uploads fixed their digest.
    result = first.upload(path, data, len(data), digest, chunk_size=4096, **spec)
    assert result.sent == len(data)
    with first.open_download(path) as dl:
        assert hashlib.sha256(b"".join(dl.chunks())).hexdigest() == digest
    with pytest.raises(NodeRefused) as exc:
        other.delete_file(path)
    assert exc.value.code == "locked"
    first.delete_file(path)
