"""A node answers errors in the middle of a restoration that a real worker runs: the
recording server refuses uploads with 507 insufficient_storage (its disk is full) or
500, or the failover server answers 503 to downloads, for OUTAGE seconds; then the
fault clears.

Invariants: the event reaches COMPLETED within STORY_BOUND of the recording server's
return (a transient fault never leaves it stuck); every file the failover server
recorded is on the recording server with the same sha256 (hashed as each node serves
the bytes); the timeline says the restoration was interrupted.
"""

from __future__ import annotations

import time

import pytest
from django.db.models import F

from cms.inventory.models import Server
from failover.choices import EventState
from failover.models import FailoverEvent, RestorationJob
from tests.faults.invariants import FileLedger, one_takeover, settles, timeline
from tests.fixtures.faulty_network import answer_error
from tests.fixtures.nodes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

OUTAGE = 5.0
TAKEOVER_BOUND = 45.0
STORY_BOUND = 90.0

# What each side's fault meets on each path: relayed, the CMS uploads to the recording
# server and downloads from the failover server; direct, the CMS starts and watches the
# recording server's pull, which downloads from the failover server itself.
WRITES = {"relayed": ("POST /api/v1/uploads", "PATCH /api/v1/uploads"),
          "direct": ("POST /api/v1/pulls", "GET /api/v1/pulls")}  # fmt: skip
READS = {"relayed": ("GET /api/v1/files/",), "direct": ("GET /api/v1/transfer/files/",)}
FAULTS = {
    "disk_full": ("recording", lambda path: answer_error(507, "insufficient_storage",
                                                         *WRITES[path])),
    "upload_500": ("recording", lambda path: answer_error(500, "internal_error", *WRITES[path])),
    "download_503": ("failover", lambda path: answer_error(503, "unavailable", *READS[path])),
}  # fmt: skip


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_restoration_resumes_after_a_node_errs_mid_way(
    fault, restoration_path, make_fleet, faulty_proxy, cms_host, fresh_tokens
):
    """Invariant: COMPLETED within STORY_BOUND, every file accounted for by sha256, one
    takeover, with `fault` injected for OUTAGE s once the restoration copied a file."""
    fleet = make_fleet(failovers=1)
    side, make_refusal = FAULTS[fault]
    refusal = make_refusal(restoration_path)
    proxies = {}
    sides = [("recording", fleet.recording, fleet.recording_node),
             ("failover", fleet.failovers[0], fleet.failover_nodes[0])]  # fmt: skip
    for name, server, node in sides:
        proxies[name] = faulty_proxy(node)
        Server.objects.filter(pk=server.pk).update(host=proxies[name].host,
                                                   port=proxies[name].port)  # fmt: skip
    # Slow enough copies that the fault meets the restoration in the middle.
    # Direct, the bytes cross one proxy instead of two (and no worker): slower still.
    proxies["failover"].latency = 0.1 if restoration_path == "direct" else 0.03
    worker, _ = cms_host()
    wait_until(lambda: Server.objects.get(pk=fleet.recording.pk).status == "normal",
               timeout=30, message="the first probe")  # fmt: skip

    fleet.recording_node.client().set_fault("service")
    event = settles(wait_until(FailoverEvent.objects.first, timeout=30).pk, TAKEOVER_BOUND,
                    [EventState.ACTIVE])  # fmt: skip
    one_takeover(event, fleet.failover_nodes)
    ledger = FileLedger(fleet.failover_nodes, event.node_tag)
    wait_until(lambda: len(ledger.files) >= 20, timeout=30, message="failover recordings")

    fleet.recording_node.client().set_fault("clear")
    back_at = time.monotonic()
    copied = RestorationJob.objects.filter(event=event, files_done__gte=1,
                                           files_done__lt=F("files_total"))  # fmt: skip
    wait_until(copied.exists, timeout=60, interval=0.02,
               message=f"a restoration under way\n{worker.log()[-3000:]}")  # fmt: skip
    proxies[side].refuse = refusal
    time.sleep(OUTAGE)
    proxies[side].refuse = None

    event = settles(event.pk, STORY_BOUND - (time.monotonic() - back_at),
                    [EventState.COMPLETED])  # fmt: skip
    assert proxies[side].refused >= 1, "the fault met no request"
    assert event.transitions.filter(reason__startswith="Restoration interrupted").exists(), (
        timeline(event)
    )
    assert FailoverEvent.objects.count() == 1
    assert ledger.unaccounted(fleet.recording_node) == [], timeline(event)
    job = RestorationJob.objects.get(event=event)
    assert job.files_done == job.files_total >= 20
    assert job.transfer == restoration_path
