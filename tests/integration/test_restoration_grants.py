"""Direct restoration between two real agents: the grant the CMS signs, the failover
agent that checks it, the recording agent that pulls with it.

A grant opens exactly the files it names, once, only when signed with the failover
agent's pairing key for that agent and not expired; only the paired CMS may make a
recording agent pull; a pulled file is verified (size and sha256) before it is kept,
with its camera, start and end.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time

import pytest

from protocol import grants
from tests.fixtures.nodes import raw_request, token_of, wait_until

pytestmark = pytest.mark.integration

T0 = 1_780_000_000.0  # a recording's start, in POSIX seconds


def paired(node):
    """A client of this node holding its pairing key, as the CMS does."""
    client = node.client(cms_host_id="cms-a")
    client.enable_cms(node.get_info()["cms_mode"])
    return client


def put_failover_file(client, on_behalf_of: str, name: str, size: int = 300_000) -> dict:
    body = os.urandom(size)
    path = f"failover/{on_behalf_of}/cam1/2026-06-01/{name}.ts"
    sha = hashlib.sha256(body).hexdigest()
    client.upload(path, body, size, sha, camera="cam1", origin="failover",
                  on_behalf_of=on_behalf_of, start=T0, end=T0 + 5)  # fmt: skip
    return {"path": path, "sha256": sha, "size": size, "body": body}


def redeem(node, grant: str) -> tuple[int, dict]:
    status, _, body = raw_request(node, "POST", "/api/v1/transfer/redeem",
                                  json.dumps({"grant": grant}).encode(),
                                  {"Content-Type": "application/json"})  # fmt: skip
    return status, body


def fetch(node, path: str, token: str, scheme: str = "Transfer", **headers: str):
    return raw_request(node, "GET", "/api/v1/transfer/files/" + path,
                       headers={"Authorization": f"{scheme} {token}", **headers})  # fmt: skip


@pytest.fixture
def failover_with_files(start_node):
    node = start_node(mode="failover")
    client = paired(node)
    files = [put_failover_file(client, "rs1", f"12000{i}.000") for i in range(2)]
    other = put_failover_file(client, "rs2", "120009.000")
    return node, client, files, other


def test_a_grant_opens_the_files_it_names_once_and_nothing_else(failover_with_files):
    node, client, (granted, not_granted), _ = failover_with_files
    grant = client.restoration_grant("rs1", 7, [granted["path"]])

    status, answer = redeem(node, grant)
    assert status == 200 and answer["files"] == 1
    token = answer["token"]
    status, headers, _ = fetch(node, granted["path"], token, Range="bytes=1000-")
    assert status == 206 and headers["content-range"].startswith("bytes 1000-")
    assert headers["etag"] == f'"{granted["sha256"]}"'

    status, _, body = fetch(node, not_granted["path"], token)
    assert (status, body["error"]["code"]) == (403, "not_granted")
    # The grant is single-use: a copy of it (a log, a capture) opens nothing.
    status, body = redeem(node, grant)
    assert status == 403 and "already used" in body["error"]["message"]
    # The transfer token is no login: the agent's own API does not take it.
    status, _, _ = raw_request(node, "GET", "/api/v1/files/" + granted["path"],
                               headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert status == 401
    status, _, _ = fetch(node, granted["path"], "made-up-token")
    assert status == 401


def test_a_grant_the_paired_cms_did_not_sign_for_this_agent_now_is_refused(
    failover_with_files,
):
    node, client, (granted, _), other = failover_with_files
    serial = node.get_info()["serial"]
    key = client._pairing_key
    refused = {
        "another key": grants.sign_grant(secrets.token_bytes(32), serial=serial,
                                         on_behalf_of="rs1", epoch=7, paths=[granted["path"]]),
        "another agent": grants.sign_grant(key, serial="someone-else", on_behalf_of="rs1",
                                           epoch=7, paths=[granted["path"]]),
        "expired": grants.sign_grant(key, serial=serial, on_behalf_of="rs1", epoch=7,
                                     paths=[granted["path"]], now=time.time() - 3600),
        "another server's file": grants.sign_grant(key, serial=serial, on_behalf_of="rs1",
                                                   epoch=7, paths=[other["path"]]),
        "tampered": client.restoration_grant("rs1", 7, [granted["path"]])[:-2] + "00",
        "garbage": "not.a-grant",
    }  # fmt: skip
    for why, grant in refused.items():
        status, body = redeem(node, grant)
        assert (status, body["error"]["code"]) == (403, "grant_refused"), why
    # None of them used up the real one.
    assert redeem(node, client.restoration_grant("rs1", 7, [granted["path"]]))[0] == 200


def test_only_the_paired_cms_may_make_an_agent_pull(start_node, failover_with_files):
    source, client, (granted, _), _ = failover_with_files
    target = start_node(mode="recording")
    spec = {"source": client.transfer_source(),
            "grant": client.restoration_grant("rs1", 7, [granted["path"]]),
            "files": [{"from": granted["path"], "path": "own/cam1/a.ts",
                       "size": granted["size"], "sha256": granted["sha256"]}]}  # fmt: skip
    # An admin token is not enough: a pull makes the agent connect where the body says.
    status, _, body = raw_request(target, "POST", "/api/v1/pulls", json.dumps(spec).encode(),
                                  {"Content-Type": "application/json",
                                   "Authorization": f"Bearer {token_of(target)}"})  # fmt: skip
    assert (status, body["error"]["code"]) == (403, "not_signed")
    assert not (target.data_dir / "media" / "own" / "cam1" / "a.ts").exists()
    # Nothing was redeemed: the grant still works for the paired CMS's own pull.
    assert redeem(source, spec["grant"])[0] == 200


def test_a_pull_verifies_each_file_and_keeps_its_camera_and_time(start_node, failover_with_files):
    _, client, (good, bad), _ = failover_with_files
    target_node = start_node(mode="recording")
    target = paired(target_node)
    files = [
        {"from": good["path"], "path": "own/cam1/2026-06-01/120000.000.ts", "size": good["size"],
         "sha256": good["sha256"], "camera": "cam1", "origin": "own",
         "start": "2026-06-01T12:00:00.000Z", "end": "2026-06-01T12:00:05.000Z"},
        # The index says another sha256 than the bytes have: nothing of it is kept.
        {"from": bad["path"], "path": "own/cam1/2026-06-01/120001.000.ts", "size": bad["size"],
         "sha256": "0" * 64, "camera": "cam1", "origin": "own"},
    ]  # fmt: skip
    grant = client.restoration_grant("rs1", 7, [good["path"], bad["path"]])
    pull = target.start_pull(client.transfer_source(), grant, files)
    done = wait_until(lambda: (s := target.pull_status(pull["id"]))["state"] != "running" and s,
                      message="the pull to end")  # fmt: skip
    states = {f["path"]: f for f in done["files"]}
    assert done["state"] == "failed"
    assert states[good["path"]]["state"] == "done"
    assert states[bad["path"]]["state"] == "failed"
    assert "nothing was kept" in states[bad["path"]]["error"]

    kept = {item["path"]: item for item in target.list_recordings(origin="own")}
    assert set(kept) == {files[0]["path"]}
    item = kept[files[0]["path"]]
    assert (item["sha256"], item["size"], item["camera"]) == (good["sha256"], good["size"], "cam1")
    assert (item["start"], item["end"]) == ("2026-06-01T12:00:00.000Z", "2026-06-01T12:00:05.000Z")
    assert list((target_node.data_dir / "uploads").glob("*")) == []  # no temporary left
    # The failover agent keeps its files: the CMS deletes each once it saw it verified.
    assert {f["path"] for f in client.list_recordings(origin="failover")} >= {good["path"]}
