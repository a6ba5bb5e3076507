"""Faults that look like many failures, run by a real worker and beat (a CMS host):

- a site cut off from the CMS (its recording servers alive, recording, but unreachable)
  is held by the mass-failure guard: no failover opens, nothing is started, stopped or
  deleted on any node, and the servers are released by themselves once reachable again;
- a flapping recording server's Nth failover fails over as usual but stays on the
  failover server, while the server is healthy, until an operator fails it back; then
  every file recorded during it is accounted for.
"""

from __future__ import annotations

import time

import pytest

from cms.alerts.kinds import Kind
from cms.alerts.models import Alert, Channel
from cms.inventory.models import Server
from failover import engine
from failover.choices import EventState
from failover.engine import refresh_snapshot
from failover.models import FailoverEvent, GuardHold, MassFailureGuard, Protection
from tests.faults.helpers import own_files
from tests.faults.invariants import FileLedger, acting_for, one_takeover, settles
from tests.fixtures.fleet import register
from tests.fixtures.nodes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def normal(server: Server) -> bool:
    server.refresh_from_db()
    return server.status == "normal"


def held() -> set[str]:
    return set(GuardHold.objects.values_list("server__name", flat=True))


def test_a_site_cut_off_from_the_cms_is_held_and_nothing_changes_on_its_nodes(
    start_node, team, failover_settings, faulty_proxy, cms_host, fresh_tokens
):
    Channel.objects.create(team=team, name="Mail", type=Channel.EMAIL, emails="ops@example.com")
    site, servers, proxies = {}, {}, {}
    standby_node = start_node(mode="failover", name="standby")
    standby = register(standby_node, team, "failover", "Standby")
    for name in ("Lobby", "Garage", "Warehouse", "Office"):
        site[name] = start_node(mode="recording", name=name.lower(), cameras=1)
        servers[name] = register(site[name], team, "recording", name)
        Protection.objects.create(recording_server=servers[name], failover_server=standby)
        refresh_snapshot(servers[name])
        proxies[name] = faulty_proxy(site[name])
        Server.objects.filter(pk=servers[name].pk).update(
            host=proxies[name].host, port=proxies[name].port
        )
    cms_host()
    for server in servers.values():
        wait_until(lambda s=server: normal(s), timeout=30, message="the first probes")
    cut = ("Lobby", "Garage", "Warehouse")  # 3 of 4: the site's link, not its servers
    before = {name: own_files(site[name]) for name in cut}

    for name in cut:
        proxies[name].mode = "black_hole"
        proxies[name].cut()
    wait_until(lambda: held() == set(cut), timeout=60, message="the three held")
    time.sleep(5)  # several more probe cycles (1 s apart) while the guard stands
    assert held() == set(cut)
    assert not FailoverEvent.objects.exists()
    assert Alert.objects.filter(kind=Kind.MASS_FAILURE_GUARD).count() == 1
    # Nothing was started, stopped or deleted on a node: each records its own cameras on.
    for name in cut:
        assert acting_for([standby_node], f"rs{servers[name].pk}") == []
        now = own_files(site[name])
        assert set(before[name]) <= set(now), f"{name} lost files"
        assert len(now) > len(before[name]), f"{name} stopped recording"

    for name in cut:  # the link is back
        proxies[name].mode = "pass"
    wait_until(lambda: not held(), timeout=60, message="released by themselves")
    for server in servers.values():
        wait_until(lambda s=server: normal(s), timeout=30, message="normal again")
    assert not FailoverEvent.objects.exists()
    assert MassFailureGuard.objects.get(team=team).engaged_at is None


def test_a_flapping_server_stays_on_the_failover_server_until_the_operator(
    make_fleet, failover_settings, cms_host
):
    failover_settings.flap_failovers = 2
    failover_settings.failback_hold_down = 1
    failover_settings.save()
    fleet = make_fleet(failovers=1)
    cms_host()
    nodes = [fleet.recording_node, *fleet.failover_nodes]
    client = fleet.recording_node.client()

    client.set_fault("volume")
    first = wait_until(lambda: FailoverEvent.objects.first(), timeout=30, message="event 1")
    settles(first.pk, 60, {EventState.ACTIVE})
    client.set_fault("clear")
    first = settles(first.pk, 90, {EventState.COMPLETED})
    assert first.damped == ""

    client.set_fault("volume")
    second = wait_until(lambda: FailoverEvent.objects.exclude(pk=first.pk).first(),
                        timeout=30, message="event 2")  # fmt: skip
    ledger = FileLedger(fleet.failover_nodes, second.node_tag)
    settles(second.pk, 60, {EventState.ACTIVE})
    client.set_fault("clear")
    second = settles(second.pk, 60, {EventState.WAITING_FAILBACK})
    assert second.damped == "damped: 2 failovers in 1 h"
    time.sleep(5)  # the hold-down (1 s) over several times, the server healthy all along
    second.refresh_from_db()
    assert second.state == EventState.WAITING_FAILBACK
    assert normal(fleet.recording)
    assert one_takeover(second, nodes) == fleet.failover_nodes[0].name

    engine.fail_back_now(second, actor="root")
    second = settles(second.pk, 90, {EventState.COMPLETED})
    assert acting_for(nodes, second.node_tag) == []
    assert ledger.unaccounted(fleet.recording_node) == []
