"""Two CMS hosts at once: each a Celery worker and a Celery beat, on one database and one
broker. Whichever host works on the failover event is killed outright (SIGKILL to
every one of its processes) in the middle of a takeover, a failback or a restoration;
the other host finishes the story.

Invariants, for each of the three moments:

- the event reaches ACTIVE within TAKEOVER_BOUND of the recording server's death, and
  COMPLETED within STORY_BOUND of its return: nothing stays stuck;
- one takeover: one confirmed move to ACTIVE, one failover server (the one claimed
  before the kill, with the same epoch) records on the recording server's behalf;
- every file the failover server recorded is on the recording server afterwards with
  the same sha256 (the bytes hashed as each node serves them), or still on the
  failover server: none lost.

The workers' lease is 3 s here (conftest.HOST_ENV), so that a dead host's claim
runs out quickly; the bounds include it.

On SQLite both hosts share the database file (the local run); in CI they share
PostgreSQL and Redis, and `test_the_same_on_postgresql` runs this file there when the
session itself is on SQLite.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.db import connection

from cms.inventory.models import Server
from failover.choices import EventState
from failover.engine import ADVANCE_TASK
from failover.models import FailoverEvent
from tests.faults.invariants import FileLedger, one_takeover, settles, timeline
from tests.fixtures.celery import WorkerProcess
from tests.fixtures.nodes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
TAKEOVER_BOUND = 60.0  # from the death: detection, the dead host's lease, the takeover
STORY_BOUND = 120.0  # from the return: recovery, failback and restoration


@dataclass
class Host:
    name: str
    processes: list[WorkerProcess] = field(default_factory=list)

    @property
    def worker(self) -> WorkerProcess:
        return self.processes[0]

    def working(self) -> bool:
        """Its worker runs an event task now: received, not finished yet."""
        log = self.worker.log()
        received = len(re.findall(rf"{re.escape(ADVANCE_TASK)}\[[^\]]+\] received", log))
        finished = len(re.findall(rf"{re.escape(ADVANCE_TASK)}\[[^\]]+\] (succeeded|raised)", log))
        return received > finished

    def kill(self) -> None:
        for process in self.processes:
            process.stop(signal.SIGKILL)


@pytest.fixture
def two_hosts(cms_host):
    hosts = [Host(name, cms_host(name)) for name in ("a", "b")]
    yield hosts
    for host in hosts:
        host.kill()


def the_event() -> FailoverEvent | None:
    return FailoverEvent.objects.first()


def in_state(state: str) -> bool:
    event = the_event()
    return event is not None and event.state == state


def kill_the_working_host(hosts: list[Host], state: str) -> Host:
    """Wait for the event to be in `state` with a host working on it; kill that host."""

    def working() -> Host | None:
        if not in_state(state):
            return None
        return next((host for host in hosts if host.working()), None)

    logs = "\n".join(h.worker.log()[-1500:] for h in hosts)
    host = wait_until(working, timeout=90, interval=0.02, message=f"{state}\n{logs}")
    host.kill()
    # Killed in the middle: the state it was working on is not over yet.
    assert in_state(state), f"{state} ended before the kill: the test proves nothing"
    return host


@pytest.mark.parametrize(
    ("phase", "restoration_path"),
    [("taking_over", "direct"), ("failing_back", "direct"), ("restoring", "direct"),
     ("restoring", "relayed")],
    indirect=["restoration_path"],
)  # fmt: skip
def test_the_other_host_finishes_what_a_killed_host_began(
    phase, restoration_path, make_fleet, faulty_proxy, two_hosts, fresh_tokens
):
    """Invariant: one takeover, COMPLETED within the bounds, every file accounted for by
    sha256, after host A (whichever works on the event) is killed during `phase`."""
    fleet = make_fleet(failovers=2)
    # A little latency to the failover servers makes restoration last long enough to
    # kill a host in the middle of it (an immediate copy of a few small files would not).
    for server, node in zip(fleet.failovers, fleet.failover_nodes, strict=True):
        proxy = faulty_proxy(node)
        proxy.latency = 0.03
        Server.objects.filter(pk=server.pk).update(host=proxy.host, port=proxy.port)
    wait_until(lambda: Server.objects.get(pk=fleet.recording.pk).status == "normal",
               timeout=30, message="the first probe")  # fmt: skip

    fleet.recording_node.kill()
    died_at = time.monotonic()
    killed = None
    if phase == "taking_over":
        killed = kill_the_working_host(two_hosts, EventState.TAKING_OVER)
        claimed = the_event()
        assert claimed.failover_server_id is not None
    opened = wait_until(the_event, timeout=TAKEOVER_BOUND, message="the event to open")
    event = settles(opened.pk, TAKEOVER_BOUND - (time.monotonic() - died_at),
                    [EventState.ACTIVE])  # fmt: skip
    if killed:
        assert (event.failover_server_id, event.epoch) == (
            claimed.failover_server_id,
            claimed.epoch,
        ), timeline(event)
    one_takeover(event, fleet.failover_nodes)
    ledger = FileLedger(fleet.failover_nodes, event.node_tag)
    acting = next(n for s, n in zip(fleet.failovers, fleet.failover_nodes, strict=True)
                  if s.pk == event.failover_server_id)  # fmt: skip
    # Enough recorded meanwhile for a restoration of some length: about 20 files.
    wait_until(lambda: len(ledger.files) >= 20, timeout=30, message="failover recordings")

    fleet.recording_node.restart()
    back_at = time.monotonic()
    if phase != "taking_over":
        killed = kill_the_working_host(two_hosts, phase)
    event = settles(event.pk, STORY_BOUND - (time.monotonic() - back_at),
                    [EventState.COMPLETED])  # fmt: skip

    survivor = next(host for host in two_hosts if host is not killed)
    assert survivor.worker.process.poll() is None
    assert FailoverEvent.objects.count() == 1, "a second event opened"
    assert event.transitions.filter(to_state="active").exclude(from_state="active").count() == 1
    assert event.restoration.state == "completed", timeline(event)
    assert event.restoration.transfer == restoration_path
    assert ledger.files, "nothing was recorded during the failover"
    assert ledger.unaccounted(fleet.recording_node) == [], timeline(event)
    assert acting.client().health()["recording"].get("on_behalf_of") is None


def test_the_same_on_postgresql(postgres_url, redis_url, tmp_path):
    """The tests above, run by a pytest of their own on PostgreSQL and Redis when this
    session is on SQLite and the embedded broker: the two hosts as deployed."""
    if connection.vendor == "postgresql":
        pytest.skip("this run is on PostgreSQL already: the tests above covered it")
    database = postgres_url.rsplit("/", 1)[0] + f"/cms_two_hosts_{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k not in {"CELERY_BROKER_URL", "REDIS_URL"}}
    env.update(
        DATABASE_URL=database,
        CELERY_BROKER_URL=redis_url.rsplit("/", 1)[0] + "/2",
        CMS_VAR_DIR=str(tmp_path / "var"),
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-p", "no:cacheprovider",
         "-k", "not postgresql"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    ran = re.search(r"(\d+) passed", run.stdout)  # every test above, none skipped
    assert ran and int(ran.group(1)) >= 3 and "skipped" not in run.stdout, run.stdout[-2000:]
    assert "database: postgresql" in run.stdout, run.stdout[-2000:]
