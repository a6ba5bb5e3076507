"""Camera sources against real agents: a filter graph never reaches ffmpeg.

The attack: a camera source such as ``testsrc,metadata=mode=print:file=PATH,nullsink``
was pasted into ffmpeg's lavfi graph and wrote PATH as the agent's user, whether it
came by ``PUT /config`` or in the configuration a takeover pushes.
"""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.fixtures.nodes import RunningNode, raw_request, token_of, wait_until
from tests.fixtures.services import need_program

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_tokens")]


def graph_writing(target: Path) -> str:
    return f"testsrc,metadata=mode=print:file={target},nullsink;testsrc"


def call(node: RunningNode, method: str, path: str, body: object, **headers: str):
    headers = {"Authorization": f"Bearer {token_of(node)}", **headers}
    return raw_request(node, method, "/api/v1" + path, json.dumps(body).encode(), headers)


def assert_nothing_written(node: RunningNode, target: Path) -> None:
    # Not a timing assertion: three 1-second segments in which the old agent had
    # already run ffmpeg on the graph.
    time.sleep(3)
    assert not target.exists(), f"ffmpeg wrote {target}"
    health = node.client().health()
    assert "evil" not in [c["id"] for c in health["recording"]["cameras"]]


def test_put_config_refuses_a_filter_graph_and_nothing_is_written(start_node, tmp_path):
    need_program("ffmpeg", "install it with `apt-get install ffmpeg`")
    node = start_node(mode="recording")
    before = node.client().get_config()
    target = tmp_path / "pwned"
    cams = {"cameras": [{"id": "evil", "source": graph_writing(target)}]}

    status, _, body = call(node, "PUT", "/config", cams, **{"If-Match": "*"})

    assert status == 400, body
    assert body["error"]["code"] == "invalid_config"
    assert body["error"]["message"].startswith("camera evil: source must be 'synthetic'")
    after = node.client().get_config()
    assert (after["version"], after["cameras"]) == (before["version"], before["cameras"])
    assert_nothing_written(node, target)


def test_a_failover_node_refuses_the_same_in_a_takeover(start_node, tmp_path):
    need_program("ffmpeg", "install it with `apt-get install ffmpeg`")
    node = start_node(mode="failover", name="standby")
    target = tmp_path / "pwned"
    takeover = {
        "epoch": 3,
        "on_behalf_of": {"id": "12", "name": "Lobby"},
        "config": {"cameras": [{"id": "evil", "source": graph_writing(target)}]},
    }

    status, _, body = call(node, "POST", "/takeover", takeover)

    assert status == 400, body
    assert body["error"]["code"] == "invalid_config"
    assert "camera evil" in body["error"]["message"]
    health = node.client().health()
    assert health["epoch"] == 0 and health["recording"]["on_behalf_of"] is None
    assert_nothing_written(node, target)


def test_a_source_stored_by_an_older_version_never_reaches_ffmpeg(start_node, tmp_path):
    need_program("ffmpeg", "install it with `apt-get install ffmpeg`")
    node = start_node(mode="recording")
    node.stop()
    target = tmp_path / "pwned"
    state_file = node.data_dir / "state.json"
    state = json.loads(state_file.read_text())
    state["config"]["cameras"] = [
        {"id": "evil", "name": "evil", "source": graph_writing(target), "schedule": "always",
         "retention_days": 7}
    ]  # fmt: skip
    state_file.write_text(json.dumps(state))
    node.start()

    client = node.client()
    camera = wait_until(
        lambda: next(
            (c for c in client.health()["recording"]["cameras"] if c["state"] == "error"), None
        ),
        message="the stored camera refused",
    )
    assert camera["id"] == "evil" and camera["error"].startswith("source not allowed")
    time.sleep(3)  # three segments the old agent would have handed to ffmpeg
    assert not target.exists(), f"ffmpeg wrote {target}"
    assert client.health()["recording"]["cameras"][0]["segments"] == 0


@pytest.fixture
def stream_server(tmp_path):
    """An HTTP camera on loopback serving a few seconds of MPEG-TS made by ffmpeg."""
    need_program("ffmpeg", "install it with `apt-get install ffmpeg`")
    clip = tmp_path / "cam.ts"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi",
         "-i", "testsrc=size=160x120:rate=10", "-t", "4", "-c:v", "mpeg4", "-f", "mpegts",
         str(clip)],
        check=True, timeout=60,
    )  # fmt: skip
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cam.ts"
    server.shutdown()
    server.server_close()
    thread.join(5)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_it_records_an_http_stream_through_ffmpeg(node_agent, stream_server):
    client = node_agent.client()
    client.put_config({"cameras": [{"id": "gate", "source": stream_server}]})
    item = wait_until(
        lambda: next(iter(client.list_recordings(camera="gate", kind="recording")), None),
        timeout=30,
        message="a segment of the HTTP stream",
    )
    assert item["path"].endswith(".mp4")
    with client.open_download(item["path"]) as dl:
        assert b"".join(dl.chunks())[4:8] == b"ftyp"
