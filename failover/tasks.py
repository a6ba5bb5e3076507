"""Thin Celery tasks: load ids, call the services. Decisions live in engine.py."""

from __future__ import annotations

from celery import shared_task

from . import engine, probing


@shared_task(ignore_result=True, acks_late=True, time_limit=120, soft_time_limit=110)
def probe_tick() -> None:
    """Beat fires this every second; a cycle runs only when the database says it is due."""
    probing.run_cycle()


@shared_task(ignore_result=True, acks_late=True, time_limit=6 * 3600, soft_time_limit=6 * 3600 - 60)
def advance_event(event_id: int) -> None:
    """Drive one failover event forward; idempotent (every step is a compare-and-set)."""
    engine.advance(event_id)
