"""The CMS's node client and Test Connection against real agents and inventory rows."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from cms.nodes import client as client_module
from cms.nodes.client import NodeClient, client_for
from cms.nodes.errors import NodeBadResponse
from cms.nodes.services import test_connection as run_test_connection
from tests.fixtures.nodes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_tokens")]


@pytest.fixture
def not_a_node():
    """A plain web server that is not a node (answers HTML on every path)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html>router login</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_it_reuses_a_cached_token_and_logs_in_again_after_a_node_restart(node_agent):
    a, b = node_agent.client(), node_agent.client()
    a.health()
    token = client_module._tokens[a._token_key][0]
    b.health()  # a second client for the same node and user does not log in again
    assert client_module._tokens[a._token_key][0] == token
    node_agent.restart()  # tokens live in the node's memory: all invalid now
    assert b.health()["service"]["state"] == "running"
    assert client_module._tokens[a._token_key][0] != token


def test_it_reports_a_working_node(db, make_server, start_node):
    node = start_node(mode="failover", name="standby-x", model="FS-9")
    server = make_server(
        role="failover", host="127.0.0.1", port=node.port, admin_password=node.password
    )
    report = run_test_connection(server)
    assert report.ok, report
    assert (report.name, report.model, report.cms_mode) == ("standby-x", "FS-9", "failover")
    assert report.cms_enabled is True and report.version and report.error_code == ""
    assert report.health in ("normal", "degraded")


def test_it_says_exactly_what_failed(db, make_server, start_node, not_a_node):
    node = start_node(mode="standalone")
    wrong = make_server(host="127.0.0.1", port=node.port, admin_password="s3cr3t-guess")
    report = run_test_connection(wrong)
    assert not report.ok and report.error_code == "auth_failed"
    assert report.name == node.name  # it got as far as identifying the node
    assert "s3cr3t-guess" not in str(report.as_dict())  # the password is never echoed

    stranger = make_server(host="127.0.0.1", port=not_a_node, admin_password="x")
    report = run_test_connection(stranger)
    assert not report.ok and report.error_code == "not_a_node"

    node.stop()
    gone = make_server(host="127.0.0.1", port=node.port, admin_password="x")
    report = run_test_connection(gone)
    assert not report.ok and report.error_code == "unreachable"
    assert "connection refused" in report.message

    ok = make_server(host="127.0.0.1", port=node.port, admin_password=node.password)
    node.start()
    report = run_test_connection(ok)
    assert report.ok and "not enabled" in report.message


def test_client_for_pins_https_on_first_contact_and_refuses_a_new_certificate(
    db, make_server, start_node
):
    import shutil

    from cms.inventory.models import Server

    node = start_node(mode="failover", https=True)
    server = make_server(
        role="failover",
        host="127.0.0.1",
        port=node.port,
        use_https=True,
        admin_password=node.password,
    )
    assert server.tls_fingerprint == ""
    report = run_test_connection(server)  # Test Connection reports, does not save
    assert report.ok and report.fingerprint == node.fingerprint
    assert Server.objects.get(pk=server.pk).tls_fingerprint == ""

    client_for(server).health()
    assert Server.objects.get(pk=server.pk).tls_fingerprint == node.fingerprint

    node.stop()
    shutil.rmtree(node.data_dir / "tls")
    node.start()
    stored = Server.objects.get(pk=server.pk)
    report = run_test_connection(stored)
    assert not report.ok and report.error_code == "certificate_changed"
    assert report.fingerprint == node.fingerprint  # what the node shows now
    assert Server.objects.get(pk=server.pk).tls_fingerprint != node.fingerprint  # pin kept


def test_it_streams_a_failover_recording_back_to_a_recording_node(start_node):
    """The restoration path: download from one node, resumable upload to another."""
    standby = start_node(mode="failover", name="standby")
    recorder = start_node(mode="recording", name="rec")
    src, dst = standby.client(), recorder.client()
    src.takeover(1, {"id": "rec", "name": "rec"}, {"cameras": [{"id": "door"}]})
    item = wait_until(
        lambda: next(iter(src.list_recordings(origin="failover", kind="recording")), None),
        message="a failover segment",
    )
    result = dst.upload(
        item["path"],
        lambda off: src.open_download(item["path"], off, item["sha256"]).chunks(),
        item["size"],
        item["sha256"],
        camera=item["camera"],
        origin="failover",
        on_behalf_of="rec",
        start=item["start"],
        end=item["end"],
    )
    assert result.sent == item["size"]
    copied = next(iter(dst.list_recordings(on_behalf_of="rec")))
    assert copied["sha256"] == item["sha256"] and copied["start"] == item["start"]
    with dst.open_download(copied["path"]) as dl:
        assert hashlib.sha256(b"".join(dl.chunks())).hexdigest() == item["sha256"]
    src.release(1)
    assert src.purge_failover("rec") >= 1
    assert list(src.list_recordings(on_behalf_of="rec")) == []


def test_it_maps_a_garbage_answer_to_bad_response(not_a_node):
    with pytest.raises(NodeBadResponse) as exc:
        NodeClient("127.0.0.1", not_a_node).info()
    assert exc.value.code == "not_a_node"
