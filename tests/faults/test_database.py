"""The database goes away in the middle of a takeover that a real worker is running.

PostgreSQL: every connection of the worker and the beat is terminated, again and again
for OUTAGE seconds (what a restart or a failover of the database does to its clients).
SQLite: another process holds the write lock for OUTAGE seconds (a long writer, a
backup).

Invariants: the event is ACTIVE within TAKEOVER_BOUND of the recording server's death;
every camera records on the failover server within that bound; one takeover.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from django.db import connection

from failover.choices import EventState
from tests.faults.invariants import one_takeover, recorded_within, settles
from tests.fixtures.nodes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

OUTAGE = 5.0
TAKEOVER_BOUND = 60.0  # detection, the outage, the worker's lease (3 s), the takeover


def hold_write_lock(path: str, seconds: float) -> threading.Thread:
    def hold() -> None:
        locker = sqlite3.connect(path, isolation_level=None, timeout=30)
        locker.execute("BEGIN IMMEDIATE")
        time.sleep(seconds)
        locker.execute("ROLLBACK")
        locker.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    return thread


def terminate_other_backends(seconds: float) -> int:
    """Terminate every other session on this database for `seconds`; how many."""
    ended = 0
    until = time.monotonic() + seconds
    with connection.cursor() as cursor:
        while time.monotonic() < until:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            ended += cursor.fetchone()[0]
            time.sleep(0.1)
    return ended


def test_a_takeover_survives_the_database_going_away(make_fleet, cms_host, fresh_tokens):
    """Invariant: ACTIVE within TAKEOVER_BOUND, cameras recorded within it, one takeover,
    although the database was unavailable for OUTAGE seconds mid-takeover."""
    from failover.models import FailoverEvent

    fleet = make_fleet(failovers=2)
    worker, _ = cms_host()
    wait_until(lambda: fleet.recording.__class__.objects.get(pk=fleet.recording.pk).status
               == "normal", timeout=30, message="the first probe")  # fmt: skip

    fleet.recording_node.kill()
    died_at = time.monotonic()
    taking_over = FailoverEvent.objects.filter(state=EventState.TAKING_OVER)
    wait_until(taking_over.exists, timeout=30, interval=0.02,
               message=f"a takeover\n{worker.log()[-3000:]}")  # fmt: skip
    if connection.vendor == "postgresql":
        assert terminate_other_backends(OUTAGE) >= 1  # the worker's and the beat's sessions
    else:
        hold_write_lock(connection.settings_dict["NAME"], OUTAGE).join()

    event = FailoverEvent.objects.get()
    event = settles(event.pk, TAKEOVER_BOUND - (time.monotonic() - died_at), [EventState.ACTIVE])
    acting = next(n for s, n in zip(fleet.failovers, fleet.failover_nodes, strict=True)
                  if s.pk == event.failover_server_id)  # fmt: skip
    took = recorded_within(died_at, TAKEOVER_BOUND, acting, event.node_tag, 2)
    assert one_takeover(event, fleet.failover_nodes) == acting.name
    assert worker.process.poll() is None, "the worker died with the database"
    print(f"cameras recorded again {took:.1f} s after the death")
