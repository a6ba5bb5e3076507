"""A site cut off from the CMS: its recording and failover servers all behind one link
that goes dark, through a real Celery worker and beat, on the clock.

The CMS cannot reach any server of the site, so it cannot reach a failover server to
take over either: failing over would help no one. Invariants, for longer than the
detection time (2 probes at 1 s): no event opens, no node records on anyone's behalf,
no failover server was asked anything, and the recording server records its own
cameras throughout; once the link is back, the servers are normal again and still no
event was opened.
"""

from __future__ import annotations

import time

import pytest

from cms.inventory.choices import HealthStatus
from cms.inventory.models import Server
from failover.models import FailoverEvent, FailoverSettings
from tests.fixtures.nodes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

# Several detection times (2 probes at 1 s) with the site dark.
DARK_SECONDS = 12.0


def status_of(server: Server) -> str:
    return Server.objects.get(pk=server.pk).status


def segments(node) -> dict[str, int]:
    cameras = node.client().health()["recording"]["cameras"]
    return {c["id"]: c["segments"] for c in cameras if c["origin"] == "own"}


def test_a_site_cut_off_from_the_cms_is_not_failed_over(
    make_fleet, faulty_proxy, cms_host, fresh_tokens
):
    fleet = make_fleet(failovers=2)
    servers = [fleet.recording, *fleet.failovers]
    nodes = [fleet.recording_node, *fleet.failover_nodes]
    proxies = [faulty_proxy(node) for node in nodes]
    for server, proxy in zip(servers, proxies, strict=True):
        Server.objects.filter(pk=server.pk).update(host=proxy.host, port=proxy.port)
    settings = FailoverSettings.load()
    assert settings.probe_interval * settings.failures_before_failover < DARK_SECONDS / 3

    cms_host()
    wait_until(lambda: all(p.accepted for p in proxies), timeout=30,
               message="the worker probes through the link")  # fmt: skip
    wait_until(lambda: status_of(fleet.recording) == HealthStatus.NORMAL, timeout=30,
               message="the first probe")  # fmt: skip
    before = segments(fleet.recording_node)

    for proxy in proxies:
        proxy.mode = "black_hole"
        proxy.cut()
    wait_until(
        lambda: "no failover server could be asked"
        in Server.objects.get(pk=fleet.recording.pk).last_error,
        timeout=30, message="the recording server held, nobody to ask",
    )  # fmt: skip
    time.sleep(DARK_SECONDS)  # the site stays dark for several detection times

    assert FailoverEvent.objects.count() == 0
    assert status_of(fleet.recording) == HealthStatus.DISCONNECTED
    assert all(status_of(s) == HealthStatus.DISCONNECTED for s in fleet.failovers)
    for node in fleet.failover_nodes:  # asked directly, not through the dark link
        health = node.client().health()
        assert health["recording"]["on_behalf_of"] is None
        assert health["peer_probes"] == 0
        assert list(node.client().list_recordings(origin="failover")) == []
    after = segments(fleet.recording_node)
    assert after.keys() == before.keys() and before
    assert all(after[c] > before[c] for c in before), (before, after)  # still recording

    for proxy in proxies:
        proxy.mode = "pass"
    wait_until(lambda: all(status_of(s) == HealthStatus.NORMAL for s in servers),
               timeout=30, message="the site back to normal")  # fmt: skip
    assert FailoverEvent.objects.count() == 0
