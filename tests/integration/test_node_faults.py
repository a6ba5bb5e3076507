"""Simulated faults exist only on an agent started with ``--allow-fault-injection``.

The attack: ``POST /fault`` was accepted on a locked production node and made the
CMS fail it over.
"""

from __future__ import annotations

import json
import time

import pytest

from cms.nodes.client import NodeClient
from cms.nodes.errors import NodeRefused
from tests.fixtures.nodes import raw_request, token_of

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_tokens")]

VOLUME = json.dumps({"kind": "volume"}).encode()


def test_without_the_flag_there_is_no_fault_to_inject(start_node):
    node = start_node(mode="recording", cameras=1, allow_faults=False)
    auth = {"Authorization": f"Bearer {token_of(node)}"}

    status, _, body = raw_request(node, "POST", "/api/v1/fault", VOLUME, auth)
    assert status == 404 and body["error"]["code"] == "not_found"

    out = node.cli("fault", "volume")
    assert out.returncode == 1
    assert "faults are not enabled on this node" in out.stderr
    assert not (node.data_dir / "faults.json").exists()

    # A faults.json written by hand (or left by a demo run) changes nothing either.
    (node.data_dir / "faults.json").write_text(json.dumps({"volume": True, "service": True}))
    time.sleep(0.1)
    health = node.client().health()
    assert health["faults"] == {"volume": False, "service": False}
    assert health["volume"]["state"] != "crashed" and health["service"]["state"] == "running"
    assert health["state"] != "abnormal"


def test_a_locked_node_refuses_faults_from_anyone_but_its_cms(start_node):
    node = start_node(mode="standalone")
    paired = NodeClient(node.host, node.port, password=node.password, cms_host_id="cms-a")
    paired.enable_cms("recording", refuse_other_hosts=True, refuse_local_changes=True)

    with pytest.raises(NodeRefused) as exc:
        node.client().set_fault("volume")  # a local admin, not the paired CMS
    assert exc.value.status == 403 and exc.value.code == "locked"
    assert paired.health()["faults"] == {"volume": False, "service": False}


def test_the_cli_needs_a_running_agent(start_node):
    node = start_node(mode="recording")
    node.stop()
    out = node.cli("fault", "volume")
    assert out.returncode == 1 and "no agent is running" in out.stderr
    assert not (node.data_dir / "faults.json").exists()
