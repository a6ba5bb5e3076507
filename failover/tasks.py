"""The entry points that run in workers: the probe tick and the event driver.

The probe tasks are where the probe cycle's decisions turn into work: the tick sends
one task per shard, and each enqueues the events the engine says a worker should
advance now. Nothing below this module enqueues, except the operator's entry points
(engine.wake) which return at once.
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from cms.inventory.models import Server

from . import drills, engine, metrics, probing, shards, standby, watching

# A shard task older than this is dropped unrun: a later tick has sent a fresh one.
SHARD_TASK_EXPIRES = 5.0


@shared_task(ignore_result=True, acks_late=True, time_limit=120, soft_time_limit=110)
def probe_tick() -> None:
    """Beat fires this every second: one probe_shard task per shard, which any worker
    takes (each runs only when its shard's cycle is due and it wins the claim).

    An event whose worker died is handed on at every tick, not only at the next cycle:
    its lease is a few seconds, and a probe interval may be longer than that.
    """
    total = shards.count()
    for shard in shards.all_shards(total):
        probe_shard.apply_async((shard.index, total), expires=SHARD_TASK_EXPIRES)
    for event_id in engine.abandoned(timezone.now()):
        advance_event.delay(event_id)


@shared_task(ignore_result=True, acks_late=True, time_limit=120, soft_time_limit=110)
def probe_shard(index: int, count: int) -> None:
    """One shard's probe cycle, if its slot is due and this task wins it (idempotent: a
    repeated or late task finds the slot claimed and does nothing)."""
    shard = shards.Shard(index, count)
    report = probing.run_cycle(shard=shard)
    if report.ran:
        claimed = report.claimed_at.timestamp() if report.claimed_at else None
        metrics.record_cycle(report.probed, report.seconds, shard=shard, claimed=claimed)
    for event_id in dict.fromkeys(report.wake):
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
