"""A second opinion before failing over, against real agents and the faulty proxy.

The CMS reaches the recording server through a TCP proxy (its link to the site); the
failover servers reach it directly, as a site's LAN would. Probe cycles are run here
one at a time, as tests/integration/test_failover_engine.py does.
"""

from __future__ import annotations

import os
import signal

import pytest

from cms.alerts.models import Alert, Channel
from cms.inventory.choices import HealthStatus
from cms.inventory.models import Server
from failover import probing
from failover.choices import Trigger
from failover.models import FailoverEvent, FailoverSettings
from tests.fixtures.faulty_network import answer_error

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Cycles allowed for what should happen in one, when a failover server's first answer
# needs a login that a loaded machine may not finish within the probe timeout.
SLACK = 2


@pytest.fixture
def slow_probes(failover_settings):
    """A probe timeout of 2 s: a peer probe gets 1 s, the CMS's call to a failover
    server (its login included) the rest."""
    settings = FailoverSettings.load()
    settings.probe_interval = 2
    settings.probe_timeout = 2.0
    settings.save()
    return settings


@pytest.fixture
def ops(team):
    return Channel.objects.create(team=team, name="Ops", emails="ops@example.com",
                                  kinds=["unreachable_from_cms"])  # fmt: skip


def behind(server: Server, proxy) -> None:
    Server.objects.filter(pk=server.pk).update(host=proxy.host, port=proxy.port)
    server.refresh_from_db()


def cycle(server: Server) -> Server:
    probing.run_cycle(force=True)
    server.refresh_from_db()
    return server


def cycles_until(server: Server, done, most: int) -> int:
    """Run probe cycles until done(server); how many it took (fails past `most`)."""
    for n in range(1, most + 1):
        cycle(server)
        if done(server):
            return n
    raise AssertionError(f"not after {most} cycles: {server.status}, {server.last_error}")


def peer_probes(node) -> int:
    return node.client().health()["peer_probes"]


def on_behalf_of(node) -> dict | None:
    return node.client().health()["recording"]["on_behalf_of"]


def unreachable(server: Server) -> bool:
    return server.status == HealthStatus.UNREACHABLE_FROM_CMS


def test_reached_by_its_failover_servers_it_is_not_failed_over_until_it_dies(
    make_fleet, faulty_proxy, slow_probes, ops
):
    fleet = make_fleet()
    recording = fleet.recording
    assert recording.lan_address == f"{fleet.recording_node.host}:{fleet.recording_node.port}"
    proxy = faulty_proxy(fleet.recording_node)
    behind(recording, proxy)
    cycle(recording)
    assert recording.status == HealthStatus.NORMAL

    proxy.mode = "black_hole"
    proxy.cut()
    failures = slow_probes.failures_before_failover
    took = cycles_until(recording, unreachable, failures + SLACK)
    assert took >= failures  # asked only once the probes' rule was met
    assert "Standby 1" in recording.last_error and "Standby 2" in recording.last_error
    assert recording.consecutive_failures == failures
    for _ in range(2):  # the CMS still cannot reach it: asked again, held again
        assert unreachable(cycle(recording))
    assert not FailoverEvent.objects.exists()
    [alert] = Alert.objects.filter(kind="unreachable_from_cms")  # once, as it entered
    assert alert.subject == "Unreachable from the CMS: Lobby"
    assert all(on_behalf_of(node) is None for node in fleet.failover_nodes)
    assert all(peer_probes(node) >= 3 for node in fleet.failover_nodes)

    fleet.recording_node.kill()
    cycle(recording)
    event = FailoverEvent.objects.get()  # on the first cycle the failover servers agree
    assert event.trigger == Trigger.DISCONNECTED
    assert "cannot reach it either" in event.transitions.first().reason
    assert recording.status == HealthStatus.DISCONNECTED
    assert Alert.objects.filter(kind="unreachable_from_cms").count() == 1


def test_a_frozen_agent_is_silent_for_everyone_and_fails_over(make_fleet, slow_probes, ops):
    fleet = make_fleet()
    os.kill(fleet.recording_node.pid, signal.SIGSTOP)
    try:
        failures = slow_probes.failures_before_failover
        cycles_until(fleet.recording, lambda _: FailoverEvent.objects.exists(), failures + SLACK)
    finally:
        os.kill(fleet.recording_node.pid, signal.SIGCONT)
    assert FailoverEvent.objects.get().trigger == Trigger.DISCONNECTED
    assert fleet.recording.status == HealthStatus.DISCONNECTED
    assert not Alert.objects.filter(kind="unreachable_from_cms").exists()


def test_another_node_at_its_lan_address_is_no_reason_to_hold(
    make_fleet, faulty_proxy, slow_probes
):
    fleet = make_fleet()
    other = fleet.failover_nodes[1]  # answers at the address, with another serial
    Server.objects.filter(pk=fleet.recording.pk).update(lan_address=f"{other.host}:{other.port}")
    proxy = faulty_proxy(fleet.recording_node)
    behind(fleet.recording, proxy)
    proxy.mode = "black_hole"
    failures = slow_probes.failures_before_failover
    cycles_until(fleet.recording, lambda _: FailoverEvent.objects.exists(), failures + SLACK)
    assert fleet.recording.status == HealthStatus.DISCONNECTED


def test_a_failing_failover_server_is_not_heard_and_the_others_are(
    make_fleet, faulty_proxy, slow_probes
):
    fleet = make_fleet()
    broken = faulty_proxy(fleet.failover_nodes[0])  # answers probes, fails peer probes
    broken.refuse = answer_error(500, "internal", "POST /api/v1/peers/probe")
    behind(fleet.failovers[0], broken)
    proxy = faulty_proxy(fleet.recording_node)
    behind(fleet.recording, proxy)
    proxy.mode = "black_hole"
    failures = slow_probes.failures_before_failover
    cycles_until(fleet.recording, unreachable, failures + SLACK)
    assert broken.refused >= 1
    assert "Standby 2" in fleet.recording.last_error
    assert "Standby 1" not in fleet.recording.last_error
    assert not FailoverEvent.objects.exists()


def test_a_site_cut_off_from_the_cms_is_left_alone(make_fleet, faulty_proxy, slow_probes):
    fleet = make_fleet()
    proxies = [faulty_proxy(fleet.recording_node)]
    behind(fleet.recording, proxies[0])
    for server, node in zip(fleet.failovers, fleet.failover_nodes, strict=True):
        proxies.append(faulty_proxy(node))
        behind(server, proxies[-1])
    cycle(fleet.recording)
    assert fleet.recording.status == HealthStatus.NORMAL
    for proxy in proxies:
        proxy.mode = "black_hole"
        proxy.cut()

    for _ in range(slow_probes.failures_before_failover + 2):
        cycle(fleet.recording)
    assert not FailoverEvent.objects.exists()
    assert fleet.recording.status == HealthStatus.DISCONNECTED
    assert "no failover server could be asked" in fleet.recording.last_error
    # Nothing changed on the nodes: no peer probe, nobody recorded on anyone's behalf.
    for node in fleet.failover_nodes:
        assert peer_probes(node) == 0
        assert on_behalf_of(node) is None
        assert list(node.client().list_recordings(origin="failover")) == []
    assert fleet.recording_node.client().health()["recording"]["cameras"]


def test_a_volume_fault_fails_over_without_asking(make_fleet, slow_probes):
    fleet = make_fleet()
    fleet.recording_node.client().set_fault("volume")
    for _ in range(slow_probes.failures_before_failover):
        cycle(fleet.recording)
    assert FailoverEvent.objects.get().trigger == Trigger.VOLUME_ABNORMAL
    assert all(peer_probes(node) == 0 for node in fleet.failover_nodes)
