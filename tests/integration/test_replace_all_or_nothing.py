"""Replace protected server is all or nothing on the nodes too: a replace that fails
part-way puts back what it had changed on both nodes (configuration, licenses, mode,
lock, the takeover) and changes nothing in the inventory.

Real node agents; a later step is made to fail as a node would make it fail.
"""

from __future__ import annotations

import pytest

from cms.inventory.models import License, Server
from failover import probing
from failover.choices import EventState
from failover.errors import FailoverError
from failover.replace import replace_protected_server
from tests.fixtures.faulty_network import answer_error
from tests.fixtures.fleet import register

pytestmark = pytest.mark.django_db(transaction=True)


def install_license(server, node, key: str, cameras: int = 4) -> License:
    node.client().install_license(key, cameras)
    return License.objects.create(key=key, team=server.team, cameras=cameras, server=server)


def recording_for(node) -> str | None:
    return (node.client().health()["recording"]["on_behalf_of"] or {}).get("id")


def node_state(node) -> dict:
    """What a replace may change on a node."""
    client = node.client()
    info = client.info()
    return {
        "mode": info["cms_mode"],
        "locked": info.get("locked"),
        "paired": info.get("paired"),
        "cameras": client.get_config()["cameras"],
        "licenses": sorted((x["key"], x["cameras"]) for x in client.licenses()),
    }


def test_a_replace_by_the_acting_server_refused_at_its_last_step_puts_both_nodes_back(
    make_fleet, faulty_proxy
):
    from cms.inventory.locking import set_lock

    fleet = make_fleet(failovers=1)
    install_license(fleet.recording, fleet.recording_node, "AAAA-1111-BBBB-2222")
    event = fleet.fail_over("service")  # the original still answers: its licenses count
    fs, fs_node = fleet.failovers[0], fleet.failover_nodes[0]
    set_lock(fs, True)
    proxy = faulty_proxy(fs_node)
    Server.objects.filter(pk=fs.pk).update(host=proxy.host, port=proxy.port)
    fs.refresh_from_db()
    before = {"failover": node_state(fs_node), "original": node_state(fleet.recording_node)}
    assert before["failover"]["mode"] == "failover" and before["failover"]["locked"]
    assert recording_for(fs_node) == event.node_tag

    # The node refuses the change of mode, after the configuration, the licenses and the
    # release went through.
    proxy.refuse = answer_error(409, "busy", "POST /api/v1/cms/enable")
    with pytest.raises(FailoverError) as refused:
        replace_protected_server(event, fs, actor="root")
    assert proxy.refused == 1

    after = {"failover": node_state(fs_node), "original": node_state(fleet.recording_node)}
    assert after == before
    assert recording_for(fs_node) == event.node_tag  # it records for Lobby again
    assert str(refused.value) == (
        "Standby 1 refused: injected 409. What it had changed on the servers was put back; "
        "nothing was replaced."
    )
    event.refresh_from_db()
    assert event.state == EventState.ACTIVE
    fs.refresh_from_db()
    assert fs.role == "failover" and fs.locked
    assert Server.objects.filter(pk=fleet.recording.pk).exists()
    assert License.objects.get().server_id == fleet.recording.pk

    # Nothing is left half-done: once the node agrees, the same replace goes through.
    proxy.refuse = None
    replace_protected_server(event, fs, actor="root")
    event.refresh_from_db()
    assert event.state == EventState.REPLACED
    assert fs_node.client().info()["cms_mode"] == "recording"


def test_a_replace_by_another_server_that_does_not_record_puts_both_nodes_back(
    make_fleet, team, start_node, settings
):
    fleet = make_fleet(failovers=1)
    install_license(fleet.recording, fleet.recording_node, "AAAA-1111-BBBB-2222")
    spare_node = start_node(mode="recording", name="spare", cameras=1)
    spare = register(spare_node, team, "recording", "Spare")
    install_license(spare, spare_node, "CCCC-3333-DDDD-4444")
    event = fleet.fail_over("service")
    probing.run_cycle(force=True)  # the spare is probed: normal
    spare.refresh_from_db()
    assert spare.status == "normal"
    fo_node = fleet.failover_nodes[0]
    before = {
        "spare": node_state(spare_node),
        "original": node_state(fleet.recording_node),
        "failover": node_state(fo_node),
    }
    # Its volume fails after the last probe: it takes the configuration and the licenses
    # but never records, so the replace fails at its last step on the node.
    spare_node.client().set_fault("volume")
    settings.CMS_TAKEOVER_CONFIRM_SECONDS = 2
    with pytest.raises(FailoverError, match="could not take the configuration"):
        replace_protected_server(event, spare, actor="root")

    after = {
        "spare": node_state(spare_node),
        "original": node_state(fleet.recording_node),
        "failover": node_state(fo_node),
    }
    assert after == before
    assert recording_for(fo_node) == event.node_tag  # the failover goes on
    event.refresh_from_db()
    assert event.state == EventState.ACTIVE
    spare.refresh_from_db()
    assert spare.name == "Spare"
    assert sorted(License.objects.values_list("key", "server__name")) == [
        ("AAAA-1111-BBBB-2222", "Lobby"), ("CCCC-3333-DDDD-4444", "Spare"),
    ]  # fmt: skip
