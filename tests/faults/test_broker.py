"""The broker is restarted in the middle of a takeover.

The worker and the beat use an embedded broker of this test alone (restarting the
machine's Redis would disturb every other test). It is stopped while a worker takes
over, kept down for OUTAGE seconds, and started again.

Invariants: the event is ACTIVE within TAKEOVER_BOUND of the recording server's
death; every camera records on the failover server within that bound; one takeover;
and the CMS goes on afterwards: the recording server's return still ends the event
(COMPLETED within STORY_BOUND), so no probe cycle or event task was lost for good.
"""

from __future__ import annotations

import time

import pytest

from cms import broker
from failover.choices import EventState
from failover.models import FailoverEvent
from tests.faults.invariants import one_takeover, recorded_within, settles
from tests.fixtures.nodes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

OUTAGE = 3.0
TAKEOVER_BOUND = 45.0
STORY_BOUND = 90.0


def test_a_takeover_survives_a_broker_restart(make_fleet, cms_host, private_broker, fresh_tokens):
    """Invariant: ACTIVE within TAKEOVER_BOUND, cameras recorded within it, one takeover,
    then COMPLETED within STORY_BOUND, with the broker down for OUTAGE s mid-takeover."""
    fleet = make_fleet(failovers=2)
    worker, beat = cms_host(CELERY_BROKER_URL=broker.url(private_broker))
    wait_until(lambda: fleet.recording.__class__.objects.get(pk=fleet.recording.pk).status
               == "normal", timeout=30, message="the first probe")  # fmt: skip

    fleet.recording_node.kill()
    died_at = time.monotonic()
    taking_over = FailoverEvent.objects.filter(state=EventState.TAKING_OVER)
    wait_until(taking_over.exists, timeout=30, interval=0.02,
               message=f"a takeover\n{worker.log()[-3000:]}")  # fmt: skip
    broker.stop(private_broker)
    assert not broker.ping(private_broker)
    time.sleep(OUTAGE)
    broker.start_daemon(private_broker)

    event = FailoverEvent.objects.get()
    event = settles(event.pk, TAKEOVER_BOUND - (time.monotonic() - died_at), [EventState.ACTIVE])
    acting = next(n for s, n in zip(fleet.failovers, fleet.failover_nodes, strict=True)
                  if s.pk == event.failover_server_id)  # fmt: skip
    took = recorded_within(died_at, TAKEOVER_BOUND, acting, event.node_tag, 2)
    assert one_takeover(event, fleet.failover_nodes) == acting.name

    fleet.recording_node.restart()
    event = settles(event.pk, STORY_BOUND, [EventState.COMPLETED])
    assert FailoverEvent.objects.count() == 1
    assert worker.process.poll() is None and beat.process.poll() is None
    print(f"cameras recorded again {took:.1f} s after the death")
