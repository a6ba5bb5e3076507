"""Recordings, downloads with Range, resumable verified uploads, and path safety."""

from __future__ import annotations

import hashlib
import json
import socket

import pytest

from cms.nodes.errors import NodeRefused
from tests.fixtures.nodes import raw_request as raw
from tests.fixtures.nodes import token_of, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_tokens")]


def test_it_lists_recordings_with_filters_and_pages(node_agent):
    client = node_agent.client()
    wait_until(
        lambda: len(list(client.list_recordings(camera="cam1", kind="recording"))) >= 3,
        message="three segments of cam1",
    )
    items = list(client.list_recordings(limit=2))  # several pages of two
    paths = [i["path"] for i in items]
    assert len(paths) == len(set(paths)) >= 6
    assert [i["start"] for i in items] == sorted(i["start"] for i in items)
    cam1 = list(client.list_recordings(camera="cam1", kind="recording"))
    assert {i["camera"] for i in cam1} == {"cam1"} and {i["kind"] for i in cam1} == {"recording"}
    assert all(i["origin"] == "own" and i["on_behalf_of"] is None for i in cam1)
    snaps = list(client.list_recordings(kind="snapshot"))
    assert snaps and all(i["path"].endswith(".snap") for i in snaps)
    assert list(client.list_recordings(origin="failover")) == []
    middle = cam1[1]
    window = list(
        client.list_recordings(
            camera="cam1", kind="recording", since=middle["start"], until=middle["end"]
        )
    )
    assert middle["path"] in [i["path"] for i in window]
    assert cam1[0]["path"] not in [i["path"] for i in window]


def test_it_downloads_with_range_and_a_strong_etag(node_agent):
    client = node_agent.client()
    item = wait_until(
        lambda: next(iter(client.list_recordings(kind="recording")), None), message="a segment"
    )
    with client.open_download(item["path"]) as dl:
        whole = b"".join(dl.chunks())
    assert len(whole) == item["size"] == dl.size
    assert hashlib.sha256(whole).hexdigest() == item["sha256"] == dl.sha256
    assert dl.etag == f'"{item["sha256"]}"'
    with client.open_download(item["path"], offset=100, etag=item["sha256"]) as dl:
        tail = b"".join(dl.chunks())
    assert dl.partial and dl.offset == 100 and dl.size == item["size"]
    assert tail == whole[100:]
    with client.open_download(item["path"], offset=100, etag="changed") as dl:
        assert not dl.partial and dl.offset == 0  # If-Range mismatch: whole file again
        assert b"".join(dl.chunks()) == whole
    token = token_of(node_agent)
    status, headers, _ = raw(
        node_agent,
        "GET",
        "/api/v1/files/" + item["path"],
        headers={"Authorization": f"Bearer {token}", "Range": "bytes=0-9"},
    )
    assert status == 206 and headers["content-range"] == f"bytes 0-9/{item['size']}"
    status, headers, _ = raw(
        node_agent,
        "GET",
        "/api/v1/files/" + item["path"],
        headers={"Authorization": f"Bearer {token}", "Range": f"bytes={item['size'] + 10}-"},
    )
    assert status == 416


def test_it_deletes_a_file(node_agent):
    client = node_agent.client()
    item = wait_until(
        lambda: next(iter(client.list_recordings(kind="recording")), None), message="a segment"
    )
    client.delete_file(item["path"])
    assert item["path"] not in [i["path"] for i in client.list_recordings()]
    assert not (node_agent.data_dir / "media" / item["path"]).exists()
    with pytest.raises(NodeRefused) as exc:
        client.delete_file(item["path"])
    assert exc.value.status == 404


def _interrupted_patch(
    node, token: str, upload_id: str, offset: int, declared: int, sent: bytes
) -> None:
    """A PATCH that announces ``declared`` bytes, sends fewer, then drops the connection."""
    with socket.create_connection((node.host, node.port), timeout=5) as sock:
        head = (
            f"PATCH /api/v1/uploads/{upload_id} HTTP/1.1\r\nHost: {node.host}\r\n"
            f"Authorization: Bearer {token}\r\nUpload-Offset: {offset}\r\n"
            f"Content-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {declared}\r\n\r\n"
        ).encode()
        sock.sendall(head + sent)


def test_it_resumes_an_interrupted_upload_and_verifies_it(start_node):
    node = start_node(mode="recording")
    client = node.client()
    data = bytes(range(256)) * 4096  # 1 MiB
    sha = hashlib.sha256(data).hexdigest()
    path = "own/restored/2026-01-01/000000.000.seg"
    token = token_of(node)
    status, _, created = raw(
        node,
        "POST",
        "/api/v1/uploads",
        json.dumps(
            {
                "path": path,
                "size": len(data),
                "sha256": sha,
                "camera": "restored",
                "start": "2026-01-01T00:00:00Z",
                "end": "2026-01-01T00:00:05Z",
            }
        ).encode(),
        {"Authorization": f"Bearer {token}"},
    )
    assert status == 201 and created["offset"] == 0
    _interrupted_patch(node, token, created["id"], 0, len(data), data[:300_000])
    offset = wait_until(
        lambda: client.upload_offset(created["id"]) == 300_000 and 300_000,
        message="the node kept the bytes that arrived",
    )
    assert not (node.data_dir / "media" / path).exists()  # not visible until verified

    result = client.upload(
        path,
        data,
        len(data),
        sha,
        camera="restored",
        start="2026-01-01T00:00:00Z",
        end="2026-01-01T00:00:05Z",
    )
    assert result.resumed_from == offset and result.sent == len(data) - offset
    assert (node.data_dir / "media" / path).read_bytes() == data
    listed = list(client.list_recordings(camera="restored"))
    assert listed[0]["sha256"] == sha and listed[0]["start"] == "2026-01-01T00:00:00.000Z"
    # Uploading the same file again is a no-op; other content at that path is refused.
    assert client.upload(path, data, len(data), sha, camera="restored").already_present
    other = b"x" * 10
    with pytest.raises(NodeRefused) as exc:
        client.upload(path, other, len(other), hashlib.sha256(other).hexdigest())
    assert exc.value.code == "file_exists"


def test_it_rejects_an_upload_whose_sha256_does_not_match_and_keeps_nothing(node_agent):
    client = node_agent.client()
    data = b"recording bytes" * 1000
    wrong = hashlib.sha256(b"something else").hexdigest()
    path = "failover/rec-9/cam1/2026-01-01/000000.000.seg"
    with pytest.raises(NodeRefused) as exc:
        client.upload(path, data, len(data), wrong, origin="failover", on_behalf_of="rec-9")
    assert exc.value.status == 422 and exc.value.code == "checksum_mismatch"
    assert not (node_agent.data_dir / "media" / path).exists()
    assert list((node_agent.data_dir / "uploads").iterdir()) == []
    assert list(client.list_recordings(on_behalf_of="rec-9")) == []


def test_it_refuses_a_chunk_beyond_the_declared_size(node_agent):
    client = node_agent.client()
    token = token_of(node_agent)
    auth = {"Authorization": f"Bearer {token}"}
    status, _, created = raw(
        node_agent,
        "POST",
        "/api/v1/uploads",
        json.dumps({"path": "own/x/a.seg", "size": 10, "sha256": "0" * 64}).encode(),
        auth,
    )
    assert status == 201
    status, _, body = raw(
        node_agent,
        "PATCH",
        f"/api/v1/uploads/{created['id']}",
        b"y" * 11,
        {**auth, "Upload-Offset": "0"},
    )
    assert status == 413 and body["error"]["code"] == "too_large"
    status, _, body = raw(
        node_agent,
        "PATCH",
        f"/api/v1/uploads/{created['id']}",
        b"y",
        {**auth, "Upload-Offset": "5"},
    )
    assert status == 409 and body["error"]["code"] == "offset_mismatch"
    assert client.upload_offset(created["id"]) == 0


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/files/../state.json",
        "/api/v1/files/../../../../etc/passwd",
        "/api/v1/files/own/../../state.json",
        "/api/v1/files/%2e%2e/state.json",
        "/api/v1/files/%2E%2E%2Fstate.json",
        "/api/v1/files/own%2f..%2f..%2fstate.json",
        "/api/v1/files//etc/passwd",
        "/api/v1/files/%2fetc%2fpasswd",
        "/api/v1/files/own/..%5c..%5cstate.json",
        "/api/v1/files/%252e%252e/state.json",
        "/api/v1/files/own/%00/x",
    ],
)
def test_it_refuses_paths_that_leave_the_data_folder(node_agent, path):
    token = token_of(node_agent)
    for method in ("GET", "DELETE"):
        status, _, body = raw(
            node_agent, method, path, headers={"Authorization": f"Bearer {token}"}
        )
        assert status == 400, (method, path, status, body)
        assert body["error"]["code"] == "bad_path"
    assert (node_agent.data_dir / "state.json").exists()


def test_it_refuses_upload_paths_and_symlinks_out_of_the_media_folder(node_agent, tmp_path):
    client = node_agent.client()
    data = b"evil"
    sha = hashlib.sha256(data).hexdigest()
    for bad in ("../state.json", "/tmp/evil", "own/../../x", "own/%2e%2e/x", "own\\x", ".hidden"):
        with pytest.raises(NodeRefused) as exc:
            client.upload(bad, data, len(data), sha)
        assert exc.value.code == "bad_path", bad
    outside = tmp_path / "outside"
    outside.mkdir()
    (node_agent.data_dir / "media" / "link").symlink_to(outside)
    with pytest.raises(NodeRefused) as exc:
        client.upload("link/x.seg", data, len(data), sha)
    assert exc.value.code == "bad_path"
    assert list(outside.iterdir()) == []
