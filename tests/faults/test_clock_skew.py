"""A node whose clock is minutes off: the failover server ten minutes ahead, or the
recording server ten minutes behind. Every time the node stamps (segments, health,
uploads) is off by that much; the CMS's own clock is right.

Invariants, through a real worker and beat: the event is ACTIVE within TAKEOVER_BOUND
of the failure and COMPLETED within STORY_BOUND of the recovery; one takeover; every
file the failover server recorded is on the recording server with the same sha256; the
recording gap shown is never a figure made of the skew: either not measured (None) or
between 0 and TAKEOVER_BOUND.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from cms.inventory.models import Server
from failover.choices import EventState
from failover.models import FailoverEvent
from tests.faults.clock import skewed_env
from tests.faults.invariants import FileLedger, one_takeover, settles, timeline
from tests.fixtures.nodes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

SKEW = 600.0
TAKEOVER_BOUND = 45.0
STORY_BOUND = 90.0


@pytest.mark.parametrize("side, offset", [("failover", SKEW), ("recording", -SKEW)])
def test_a_node_with_its_clock_minutes_off(
    side, offset, make_fleet, cms_host, tmp_path, fresh_tokens
):
    """Invariant: ACTIVE within TAKEOVER_BOUND, COMPLETED within STORY_BOUND, one
    takeover, every file accounted for by sha256, no gap made of the skew."""
    fleet = make_fleet(failovers=1)
    node = fleet.failover_nodes[0] if side == "failover" else fleet.recording_node
    node.env.update(skewed_env(tmp_path / "clock", offset))
    node.restart()
    node_time = dt.datetime.fromisoformat(node.client().health()["time"].replace("Z", "+00:00"))
    off_by = (node_time - dt.datetime.now(dt.UTC)).total_seconds()
    assert abs(off_by - offset) < 30, f"the node's clock is {off_by:.0f} s off, not {offset}"

    cms_host()
    wait_until(lambda: Server.objects.get(pk=fleet.recording.pk).status == "normal",
               timeout=30, message="the first probe")  # fmt: skip
    fleet.recording_node.client().set_fault("service")
    failed_at = time.monotonic()
    opened = wait_until(FailoverEvent.objects.first, timeout=TAKEOVER_BOUND, message="an event")
    event = settles(opened.pk, TAKEOVER_BOUND - (time.monotonic() - failed_at),
                    [EventState.ACTIVE])  # fmt: skip
    one_takeover(event, fleet.failover_nodes)
    ledger = FileLedger(fleet.failover_nodes, event.node_tag)
    wait_until(lambda: len(ledger.files) >= 8, timeout=30, message="failover recordings")

    fleet.recording_node.client().set_fault("clear")
    event = settles(event.pk, STORY_BOUND, [EventState.COMPLETED])
    assert FailoverEvent.objects.count() == 1
    assert event.restoration.state == "completed", timeline(event)
    assert ledger.unaccounted(fleet.recording_node) == [], timeline(event)
    gap = event.recording_gap_seconds
    assert gap is None or 0 <= gap < TAKEOVER_BOUND, f"a recording gap of {gap} s"
    print(f"{side} {offset:+.0f} s: recording gap {gap}")
