"""`make run`'s demo fleet is registered once: every later start finds the fleet as the
operator left it (after a replace, a delete) and adds nothing, and a node's role in the
CMS is the one its CMS mode says (real node agents, the real `demo_fleet` command)."""

from __future__ import annotations

import dataclasses

import pytest
from django.core.management import call_command

from cms.inventory.models import Server

pytestmark = pytest.mark.integration


@pytest.fixture
def demo(start_node, settings, tmp_path, monkeypatch, failover_settings):
    """The five demo agents (real processes) on ports of their own."""
    from failover.management.commands import demo_fleet

    settings.VAR_DIR = tmp_path
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "node-password").write_text("pw")
    nodes, fleet = {}, []
    for spec in demo_fleet.FLEET:
        node = start_node(mode=spec.role, name=spec.name, model=spec.model, cameras=spec.cameras)
        nodes[spec.name] = node
        fleet.append(dataclasses.replace(spec, port=node.port))
    monkeypatch.setattr(demo_fleet, "FLEET", fleet)
    return nodes


def inventory() -> set[tuple[str, str, str]]:
    return set(Server.objects.values_list("name", "role", "serial"))


def test_the_demo_adds_its_fleet_once_and_leaves_it_as_it_is_after_a_replace_and_a_delete(demo):
    from failover import engine, probing
    from failover.models import FailoverEvent, FailoverSettings
    from failover.replace import replace_protected_server

    call_command("demo_fleet")
    serial = {name: node.get_info()["serial"] for name, node in demo.items()}
    first = inventory()
    assert first == {
        ("Lobby", "recording", serial["Lobby"]),
        ("Garage", "recording", serial["Garage"]),
        ("Warehouse", "recording", serial["Warehouse"]),
        ("Standby 1", "failover", serial["Standby 1"]),
        ("Standby 2", "failover", serial["Standby 2"]),
    }
    call_command("demo_fleet")  # a restart of `make run`
    assert inventory() == first

    # Standby 1 takes over Lobby and replaces it: it is a recording server now.
    lobby = Server.objects.get(name="Lobby")
    engine.refresh_snapshot(lobby)
    demo["Lobby"].kill()
    for _ in range(FailoverSettings.load().failures_before_failover):
        probing.run_cycle(force=True)
    event = FailoverEvent.objects.get(recording_server=lobby)
    engine.advance(event.pk)
    replace_protected_server(event, Server.objects.get(name="Standby 1"), actor="root")
    assert demo["Standby 1"].get_info()["cms_mode"] == "recording"
    Server.objects.get(name="Garage").delete()
    demo["Lobby"].start()  # the replaced server's agent comes back too

    after = inventory()
    call_command("demo_fleet")
    assert inventory() == after  # nothing added: not Lobby, not Garage, not Standby 1 again
    assert set(Server.objects.filter(role="failover").values_list("name", flat=True)) == {
        "Standby 2"
    }
    for server in Server.objects.all():  # a node's role is its mode
        node = next(n for n in demo.values() if n.get_info()["serial"] == server.serial)
        assert node.get_info()["cms_mode"] == server.role
