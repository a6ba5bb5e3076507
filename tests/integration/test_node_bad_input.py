"""Bad input answers a 4xx in the agent's error shape, never a 500, and changes nothing."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3

import pytest

from tests.fixtures.nodes import RunningNode, raw_request, token_of, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_tokens")]

DATA = b"twelve bytes"
SHA = hashlib.sha256(DATA).hexdigest()


def send(node: RunningNode, method: str, path: str, body: bytes | None = None, **headers: str):
    headers = {"Authorization": f"Bearer {token_of(node)}", **headers}
    return raw_request(node, method, "/api/v1" + path, body, headers)


def refused(answer: tuple[int, dict, dict], status: int = 400, code: str = "bad_request") -> dict:
    got, headers, body = answer
    assert (got, body.get("error", {}).get("code")) == (status, code), body
    assert body["error"]["message"]
    assert headers["content-type"] == "application/json"
    return headers


def upload(node: RunningNode, **spec: object) -> tuple[int, dict, dict]:
    spec = {"path": "own/cam1/2026-01-01/000000.000.seg", "size": len(DATA), "sha256": SHA,
            "camera": "cam1", **spec}  # fmt: skip
    return send(node, "POST", "/uploads", json.dumps(spec).encode())


def test_a_unicode_digit_in_upload_offset_is_a_400(start_node):
    node = start_node(mode="recording")
    status, _, created = upload(node)
    assert status == 201
    path = f"/uploads/{created['id']}"
    for offset in ("²", "¹", "+0", "0x0", "0.0", "9" * 30):
        refused(send(node, "PATCH", path, DATA, **{"Upload-Offset": offset}))
    status, headers, _ = send(node, "HEAD", path)
    assert status == 200 and headers["upload-offset"] == "0"  # nothing was written


def test_a_start_far_in_the_future_is_refused_and_listings_keep_working(start_node):
    node = start_node(mode="recording")
    for start in (1e300, "1e300", -1, "nan", 10**400):
        refused(upload(node, start=start, end=start))
    refused(upload(node, start=1767225600, end=1e300))
    refused(send(node, "POST", "/uploads", b'{"path": "own/x.seg", "size": 1, "start": NaN}'),
            code="malformed_json")  # fmt: skip
    assert list((node.data_dir / "uploads").iterdir()) == []
    status, _, page = send(node, "GET", "/recordings")
    assert status == 200 and page["items"] == []


def test_bad_listing_parameters_are_a_400(node_agent):
    deep = base64.urlsafe_b64encode(b"[" * 1500).decode()  # exhausts the JSON parser
    for query in ("limit=%C2%B2", "limit=%D9%A1", "since=1e300", "until=nan",
                  "since=%D9%A1%D9%A2", "limit=1e3", "cursor=" + deep):  # fmt: skip
        refused(send(node_agent, "GET", "/recordings?" + query))


def test_a_row_stored_by_an_older_version_does_not_break_listings(start_node):
    node = start_node(mode="recording")
    status, _, created = upload(node, start=1767225600)
    assert status == 201
    status, _, done = send(
        node, "PATCH", f"/uploads/{created['id']}", DATA, **{"Upload-Offset": "0"}
    )
    assert status == 200 and done["complete"]
    node.stop()
    with sqlite3.connect(node.data_dir / "index.sqlite3") as db:  # what an old version let in
        db.execute(
            "INSERT INTO files VALUES ('own/cam1/x.seg', 'recording', 'cam1', 'own', NULL,"
            " 1e300, 1e300, 1, ?, 0)",
            (SHA,),
        )
    node.start()
    status, _, page = send(node, "GET", "/recordings")
    assert status == 200, page
    assert [i["path"] for i in page["items"]] == ["own/cam1/2026-01-01/000000.000.seg"]
    assert "left out of listings" in node.log()


def test_bodies_that_break_the_json_parser_or_encoder_are_a_400(start_node):
    node = start_node(mode="recording")
    before = node.client().get_config()
    lone_surrogate = b'{"username": "admin", "client_first": "\\ud800"}'
    refused(
        raw_request(node, "POST", "/api/v1/auth/scram/start", lone_surrogate),
        code="malformed_json",
    )
    bad_name = b'{"cameras": [{"id": "c1", "name": "\\udc00"}]}'
    refused(send(node, "PUT", "/config", bad_name, **{"If-Match": "*"}), code="malformed_json")
    refused(
        send(node, "PUT", "/config", b"[" * 100_000, **{"If-Match": "*"}), code="malformed_json"
    )
    refused(send(node, "POST", "/release", b'{"epoch": Infinity}'), code="malformed_json")
    long = json.dumps({"username": "admin", "client_first": "p" * 5000}).encode()
    refused(raw_request(node, "POST", "/api/v1/auth/scram/start", long))
    assert node.client().get_config() == before


def test_a_bad_range_is_answered_in_the_error_shape(node_agent):
    client = node_agent.client()
    item = wait_until(lambda: next(iter(client.list_recordings(kind="recording")), None))
    path = "/files/" + item["path"]
    refused(send(node_agent, "GET", path, Range="bytes=abc"), code="bad_range")
    refused(send(node_agent, "GET", path, Range="bytes=5-2"), code="bad_range")
    headers = refused(
        send(node_agent, "GET", path, Range="bytes=99999999-"), 416, "range_not_satisfiable"
    )
    assert headers["content-range"] == f"bytes */{item['size']}"
    status, _, _ = send(node_agent, "GET", path, Range="bytes=0-3")
    assert status == 206


def test_a_wrong_method_lists_every_allowed_one(start_node):
    node = start_node(mode="recording")
    headers = refused(send(node, "POST", "/config", b"{}"), 405, "method_not_allowed")
    assert set(headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "PUT"}
