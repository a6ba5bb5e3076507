"""HTTPS with a self-signed certificate pinned at first contact (trust on first use)."""

from __future__ import annotations

import json
import shutil

import pytest

from cms.nodes.client import NodeClient, fetch_fingerprint, forget_tokens
from cms.nodes.errors import CertificateChanged, NodeBadResponse, NodeUnreachable

pytestmark = pytest.mark.integration


def test_it_pins_the_certificate_at_first_contact_and_refuses_a_changed_one(start_node):
    forget_tokens()
    node = start_node(mode="failover", https=True)
    out = node.cli("info")
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert printed["tls_fingerprint_sha256"] == node.fingerprint

    pinned: list[str] = []
    first = node.client(on_pin=pinned.append)
    assert first.info()["https"] is True
    assert pinned == [node.fingerprint] == [first.fingerprint]
    assert first.health()["service"]["state"] == "running"

    again = node.client(fingerprint=pinned[0])  # as stored on the server row
    assert again.info()["name"] == node.name
    colon_form = ":".join(pinned[0][i : i + 2] for i in range(0, 64, 2)).upper()
    assert node.client(fingerprint=colon_form).info()["name"] == node.name

    # The node gets a new certificate (reinstalled, or someone impersonating it).
    node.stop()
    shutil.rmtree(node.data_dir / "tls")
    node.start()
    assert node.fingerprint != pinned[0]
    assert fetch_fingerprint(node.host, node.port) == node.fingerprint
    with pytest.raises(CertificateChanged) as exc:
        node.client(fingerprint=pinned[0]).info()
    assert exc.value.expected == pinned[0] and exc.value.actual == node.fingerprint
    assert "changed since it was pinned" in exc.value.message
    with pytest.raises(CertificateChanged):
        node.client(fingerprint=pinned[0]).health()


def test_it_says_when_https_is_asked_of_a_plain_http_node(node_agent):
    with pytest.raises(NodeBadResponse) as exc:
        NodeClient(node_agent.host, node_agent.port, https=True).info()
    assert exc.value.code == "tls_error"


def test_it_says_when_a_node_is_unreachable(node_agent):
    port = node_agent.port
    node_agent.stop()
    with pytest.raises(NodeUnreachable) as exc:
        NodeClient("127.0.0.1", port, retries=0).info()
    assert "connection refused" in exc.value.message
