"""The entry points that run in workers: the probe tick and the event driver.

The probe task is where the probe cycle's decisions turn into work: it enqueues the
events the engine says a worker should advance now. Nothing below this module
enqueues, except the operator's entry points (engine.wake) which return at once.
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from cms.inventory.models import Server

from . import drills, engine, metrics, probing, standby, watching


@shared_task(ignore_result=True, acks_late=True, time_limit=120, soft_time_limit=110)
def probe_tick() -> None:
    """Beat fires this every second; a cycle runs only when the database says it is due.

    An event whose worker died is handed on at every tick, not only at the next cycle:
    its lease is a few seconds, and a probe interval may be longer than that.
    """
    report = probing.run_cycle()
    if report.ran:
        metrics.record_cycle(report.probed, report.seconds)
    for event_id in dict.fromkeys([*report.wake, *engine.abandoned(timezone.now())]):
        advance_event.delay(event_id)


@shared_task(name="failover.tasks.watch_evidence", ignore_result=True, time_limit=60)
def watch_evidence(server_id: int, status: str, message: str) -> None:
    """What a watch stream showed about a server (cms/nodes/watch.py sends it by name):
    written and decided on at once, without waiting for the next probes."""
    for event_id in watching.apply_evidence(server_id, status, message):
        advance_event.delay(event_id)


@shared_task(
    name=engine.ADVANCE_TASK,
    ignore_result=True,
    acks_late=True,
    time_limit=6 * 3600,
    soft_time_limit=6 * 3600 - 60,
)
def advance_event(event_id: int) -> None:
    """Drive one failover event until it waits or ends; idempotent (every step is a
    compare-and-set)."""
    engine.advance(event_id)


@shared_task(name=drills.DRILL_TASK, ignore_result=True, time_limit=6 * 3600)
def run_drill(drill_id: int) -> None:
    """Run one failover drill to its end (not acks_late: a drill cut short by a dead
    worker is not run again behind the operator's back)."""
    drills.run(drill_id)


@shared_task(ignore_result=True, time_limit=60)
def drill_schedule_tick() -> None:
    """Beat fires this every few minutes: end the drills left by a dead worker, and start
    the monthly drills that are due."""
    now = timezone.now()
    drills.abandoned(now)
    drills.scheduled_drills(now)


# Standby configurations (failover/standby.py): thin, by name, each one server's work;
# a failure is logged there and retried by the next trigger (drift in the probe cycle).


@shared_task(name=standby.SYNC_TASK, ignore_result=True, time_limit=120)
def sync_standby(recording_server_id: int) -> None:
    server = Server.objects.filter(pk=recording_server_id).first()
    if server is not None:
        standby.sync(server)


@shared_task(name=standby.RECONCILE_TASK, ignore_result=True, time_limit=120)
def reconcile_standby(failover_server_id: int) -> None:
    server = Server.objects.filter(pk=failover_server_id).first()
    if server is not None:
        standby.reconcile(server)


@shared_task(name=standby.DROP_TASK, ignore_result=True, time_limit=60)
def drop_standby(failover_server_id: int, recording_server_id: int) -> None:
    server = Server.objects.filter(pk=failover_server_id).first()
    if server is not None:
        standby.drop(server, recording_server_id)
