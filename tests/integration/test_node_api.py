"""The node agent's API against real ``cms-node serve`` processes on loopback."""

from __future__ import annotations

import json
import time

import pytest

from cms.nodes.client import NodeClient, forget_tokens
from cms.nodes.errors import EpochRefused, NodeAuthFailed, NodeRefused
from tests.fixtures.nodes import raw_request as raw
from tests.fixtures.nodes import token_of, wait_until
from tests.fixtures.services import need_program

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_tokens")]

CAMS = {"cameras": [{"id": "lobby", "name": "Lobby", "source": "synthetic"}]}
REC = {"id": "rec-1", "name": "Recorder 1"}


def test_it_answers_info_without_login_and_without_secrets(start_node):
    node = start_node(mode="failover", name="standby-1", model="FS-3000")
    info = node.client().info()
    assert info["name"] == "standby-1"
    assert info["model"] == "FS-3000"
    assert info["cms_mode"] == "failover"
    assert info["cms_enabled"] is True
    assert info["paired"] is False and info["locked"] is False
    assert info["https"] is False
    assert len(info["serial"]) >= 8 and info["version"]
    text = json.dumps(info)
    assert node.password not in text and "token" not in text


def test_it_logs_in_with_the_right_password_and_refuses_a_wrong_one(node_agent):
    assert node_agent.client().health()["state"] in ("normal", "degraded")
    with pytest.raises(NodeAuthFailed) as exc:
        node_agent.client(password="wrong").login()
    assert exc.value.code == "auth_failed"
    assert "admin" in exc.value.message
    status, _, body = raw(node_agent, "GET", "/api/v1/health")
    assert status == 401 and body["error"]["code"] == "auth_required"
    status, _, body = raw(
        node_agent, "GET", "/api/v1/health", headers={"Authorization": "Bearer not-a-token"}
    )
    assert status == 401 and body["error"]["code"] == "token_invalid"


def test_it_slows_down_repeated_failed_logins(node_agent):
    bad = node_agent.client(password="guess")
    for _ in range(3):
        with pytest.raises(NodeAuthFailed) as exc:
            bad.login()
        assert exc.value.code == "auth_failed"
    # Now even the right password must wait: that is what slows guessing down.
    with pytest.raises(NodeAuthFailed) as exc:
        node_agent.client().login()
    assert exc.value.code == "too_many_attempts"
    assert exc.value.retry_after and exc.value.retry_after >= 1
    status, headers, body = raw(
        node_agent,
        "POST",
        "/api/v1/auth/scram/start",
        json.dumps({"username": "admin", "client_first": "n,,n=admin,r=abcdefgh"}).encode(),
    )
    assert status == 429 and int(headers["retry-after"]) >= 1
    assert body["error"]["code"] == "too_many_attempts"
    # After the delay the right password works again.
    wait_until(lambda: node_agent.client().login(), timeout=10, message="login after delay")


def test_it_reports_health_with_volume_service_recording_and_epoch(node_agent):
    client = node_agent.client()
    health = wait_until(
        lambda: (
            (h := client.health())["recording"]["cameras"]
            and all(c["segments"] >= 1 for c in h["recording"]["cameras"])
            and h
        ),
        message="both cameras recorded a segment",
    )
    assert health["state"] in ("normal", "degraded")
    assert health["volume"]["state"] in ("normal", "degraded")
    assert health["volume"]["total_bytes"] > 0 and health["volume"]["free_bytes"] >= 0
    assert health["service"]["state"] == "running"
    assert {c["id"] for c in health["recording"]["cameras"]} == {"cam1", "cam2"}
    assert all(c["on_behalf_of"] is None for c in health["recording"]["cameras"])
    assert health["recording"]["on_behalf_of"] is None
    assert health["epoch"] == 0


def test_it_round_trips_the_config_with_an_etag(node_agent):
    client = node_agent.client()
    cfg = client.get_config()
    assert [c["id"] for c in cfg["cameras"]] == ["cam1", "cam2"]
    new = client.put_config(CAMS, etag=cfg["etag"])
    assert new["version"] == cfg["version"] + 1
    assert new["etag"] != cfg["etag"]
    assert client.get_config()["cameras"][0] == {
        "id": "lobby",
        "name": "Lobby",
        "source": "synthetic",
        "schedule": "always",
        "retention_days": 30,
    }
    with pytest.raises(NodeRefused) as exc:  # a lost update is refused
        client.put_config(CAMS, etag=cfg["etag"])
    assert exc.value.status == 412 and exc.value.code == "precondition_failed"
    token = token_of(node_agent)
    status, _, body = raw(
        node_agent,
        "PUT",
        "/api/v1/config",
        json.dumps(CAMS).encode(),
        {"Authorization": f"Bearer {token}"},
    )
    assert status == 428 and body["error"]["code"] == "precondition_required"
    with pytest.raises(NodeRefused) as exc:
        client.put_config({"cameras": [{"id": "../x"}]})
    assert exc.value.code == "invalid_config"
    # The recorder follows the config: the old cameras stop, "lobby" starts.
    wait_until(
        lambda: {c["id"] for c in client.health()["recording"]["cameras"]} == {"lobby"},
        message="recorder follows the new config",
    )


def test_it_takes_over_and_releases_fenced_by_epochs_that_survive_restart(start_node):
    node = start_node(mode="failover", name="standby")
    client = node.client()
    result = client.takeover(5, REC, CAMS)
    assert result == {"epoch": 5, "active": True, "on_behalf_of": REC, "cameras": ["lobby"]}
    assert client.takeover(5, REC, CAMS)["active"] is True  # a retry is harmless
    health = wait_until(
        lambda: (
            (h := client.health())["recording"]["cameras"]
            and h["recording"]["cameras"][0]["segments"] >= 1
            and h
        ),
        message="failover recording",
    )
    assert health["recording"]["on_behalf_of"] == REC
    assert health["recording"]["cameras"][0]["on_behalf_of"] == "rec-1"
    assert health["epoch"] == 5
    files = list(client.list_recordings(origin="failover", on_behalf_of="rec-1"))
    assert files and all(f["path"].startswith("failover/rec-1/lobby/") for f in files)

    with pytest.raises(EpochRefused) as exc:
        client.takeover(4, {"id": "rec-2", "name": "Other"}, CAMS)
    assert exc.value.newest_epoch == 5 and exc.value.code == "stale_epoch"
    with pytest.raises(EpochRefused):
        client.release(3)

    node.restart()
    forget_tokens()
    assert client.health()["epoch"] == 5
    assert client.health()["recording"]["on_behalf_of"] == REC  # takeover resumed
    with pytest.raises(EpochRefused):
        client.takeover(4, REC, CAMS)

    released = client.release(5)
    assert released["active"] is False and released["epoch"] == 5
    assert client.release(5)["active"] is False  # idempotent
    with pytest.raises(EpochRefused):  # a late duplicate of the takeover stays fenced
        client.takeover(5, REC, CAMS)
    wait_until(lambda: client.health()["recording"]["cameras"] == [], message="stopped")
    assert client.takeover(6, REC, CAMS)["epoch"] == 6


def test_it_refuses_takeover_on_a_recording_node(node_agent):
    with pytest.raises(NodeRefused) as exc:
        node_agent.client().takeover(1, REC, CAMS)
    assert exc.value.code == "wrong_mode"


def test_it_installs_a_license_once(node_agent):
    client = node_agent.client()
    client.install_license("ABCD-1234", cameras=4)
    with pytest.raises(NodeRefused) as exc:
        client.install_license("ABCD-1234", cameras=4)
    assert exc.value.status == 409 and exc.value.code == "license_exists"
    client.install_license("EFGH-5678", cameras=2)
    assert [x["key"] for x in client.licenses()] == ["ABCD-1234", "EFGH-5678"]
    client.remove_license("ABCD-1234")
    with pytest.raises(NodeRefused) as exc:
        client.remove_license("ABCD-1234")
    assert exc.value.status == 404
    replaced = client.replace_licenses([{"key": "NEW1-0001", "cameras": 8}])
    assert [(x["key"], x["cameras"]) for x in replaced] == [("NEW1-0001", 8)]
    with pytest.raises(NodeRefused) as exc:
        client.replace_licenses([{"key": "DUPE-0001"}, {"key": "DUPE-0001"}])
    assert exc.value.code == "license_exists"
    node_agent.restart()
    assert [x["key"] for x in client.licenses()] == ["NEW1-0001"]


def test_it_shows_faults_in_health_and_stops_recording_while_they_last(node_agent):
    client = node_agent.client()
    wait_until(
        lambda: client.health()["recording"]["cameras"][0]["segments"] >= 1, message="recording"
    )
    client.set_fault("volume")
    health = client.health()
    assert health["state"] == "abnormal" and health["volume"]["state"] == "crashed"
    # Wait until the cameras noticed, then check that nothing new is written.
    wait_until(
        lambda: all(c["state"] == "paused" for c in client.health()["recording"]["cameras"]),
        message="cameras paused",
    )
    before = len(list(client.list_recordings(kind="recording")))
    # Not a timing assertion: a window longer than two segments in which a running
    # recorder would certainly have written something.
    time.sleep(2.5)
    assert len(list(client.list_recordings(kind="recording"))) == before

    # The CLI form, as in a demo, on the same running node.
    out = node_agent.cli("fault", "clear")
    assert out.returncode == 0, out.stderr
    out = node_agent.cli("fault", "service")
    assert out.returncode == 0, out.stderr
    health = client.health()
    assert health["service"]["state"] == "stopped" and health["volume"]["state"] != "crashed"
    assert health["state"] == "abnormal"
    node_agent.cli("fault", "clear")
    wait_until(lambda: client.health()["state"] in ("normal", "degraded"), message="normal")
    wait_until(
        lambda: len(list(client.list_recordings(kind="recording"))) > before,
        message="recording resumes after clear",
    )


def test_it_keeps_state_across_restart_and_refuses_a_second_agent(node_agent, start_node):
    client = node_agent.client()
    serial = client.info()["serial"]
    client.put_config(CAMS)
    client.install_license("KEEP-0001")
    second = node_agent.cli("serve", "--port", "0", "--discovery-port", "0")
    assert second.returncode == 2
    assert "already using the data folder" in second.stderr
    node_agent.restart(kill=True)  # like a crash: no clean shutdown
    assert client.info()["serial"] == serial
    assert [c["id"] for c in client.get_config()["cameras"]] == ["lobby"]
    assert [x["key"] for x in client.licenses()] == ["KEEP-0001"]


def test_it_relogs_once_when_the_token_expired(start_node, monkeypatch):
    from cms.nodes import client as client_module

    node = start_node(token_ttl=31)
    client = node.client()
    logins = []
    real_login = client.login
    monkeypatch.setattr(client, "login", lambda: logins.append(1) or real_login())
    client.health()
    first = client_module._tokens[client._token_key][0]

    # Stale by the client's own clock: a new login before the request, not a 401.
    client_module._tokens[client._token_key] = (first, 0.0)
    client.health()
    second = client_module._tokens[client._token_key][0]
    assert second != first and len(logins) == 2

    # The node forgot it (restarted): a 401, then one new login, and the call succeeds.
    client_module._tokens[client._token_key] = ("forgotten-token", time.monotonic() + 3600)
    assert client.health()["state"] in ("normal", "degraded")
    assert len(logins) == 3
    assert client_module._tokens[client._token_key][0] not in ("forgotten-token", second)


def test_it_refuses_malformed_and_oversized_bodies(node_agent):
    token = token_of(node_agent)
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    status, _, body = raw(node_agent, "POST", "/api/v1/licenses", b"{not json", auth)
    assert status == 400 and body["error"]["code"] == "malformed_json"
    status, _, body = raw(node_agent, "POST", "/api/v1/licenses", b"[1, 2]", auth)
    assert status == 400 and body["error"]["code"] == "malformed_json"
    big = b'{"key": "' + b"A" * (2 * 1024 * 1024) + b'"}'
    status, _, body = raw(node_agent, "POST", "/api/v1/licenses", big, auth)
    assert status == 413 and body["error"]["code"] == "too_large"
    status, _, body = raw(node_agent, "POST", "/api/v1/takeover", b'{"epoch": "x"}', auth)
    assert status == 400 and body["error"]["code"] == "bad_request"
    status, _, body = raw(node_agent, "POST", "/api/v1/auth/scram/start", b"\xff\xfe", {})
    assert status == 400 and body["error"]["code"] == "malformed_json"
    status, _, body = raw(node_agent, "DELETE", "/api/v1/info", None, auth)
    assert status == 405 and body["error"]["code"] == "method_not_allowed"
    status, _, body = raw(node_agent, "GET", "/api/v1/nothing-here", None, auth)
    assert status == 404 and body["error"]["code"] == "not_found"
    status, _, body = raw(node_agent, "GET", "/api/v1/recordings?limit=0", None, auth)
    assert status == 400
    status, _, body = raw(node_agent, "GET", "/api/v1/recordings?since=yesterday", None, auth)
    assert status == 400 and "since" in body["error"]["message"]


def test_it_enables_cms_and_honours_the_security_lock(start_node):
    node = start_node(mode="standalone")
    assert node.client().info()["cms_enabled"] is False
    host_a = NodeClient(node.host, node.port, password=node.password, cms_host_id="cms-a")
    info = host_a.enable_cms("failover", refuse_other_hosts=True, refuse_local_changes=True)
    assert info["cms_enabled"] is True and info["cms_mode"] == "failover"
    assert info["paired"] is True and info["locked"] is True
    host_a.install_license("LOCK-0001")  # the paired host may change things

    host_b = NodeClient(node.host, node.port, password=node.password, cms_host_id="cms-b")
    with pytest.raises(NodeRefused) as exc:
        host_b.enable_cms("recording")
    assert exc.value.status == 403 and exc.value.code == "locked"
    host_b.login()  # the password logs in; the lock is about changes
    with pytest.raises(NodeRefused) as exc:
        host_b.install_license("OTHER-0001")
    assert exc.value.code == "locked"

    local = node.client()  # no pairing key: a local admin
    assert local.licenses()  # reading is allowed
    with pytest.raises(NodeRefused) as exc:
        local.install_license("LOCAL-0001")
    assert exc.value.code == "locked"
    with pytest.raises(NodeAuthFailed):
        NodeClient(node.host, node.port, password="nope", cms_host_id="cms-a").enable_cms(
            "failover"
        )


def test_it_records_real_mp4_segments_with_ffmpeg(node_agent):
    need_program("ffmpeg", "install it with `apt-get install ffmpeg`")
    client = node_agent.client()
    client.put_config({"cameras": [{"id": "pattern", "source": "testsrc"}]})
    item = wait_until(
        lambda: next(iter(client.list_recordings(camera="pattern", kind="recording")), None),
        timeout=30,
        message="an ffmpeg segment",
    )
    assert item["path"].endswith(".mp4")
    with client.open_download(item["path"]) as dl:
        head = b"".join(dl.chunks())[:12]
    assert head[4:8] == b"ftyp"  # an MP4 container
