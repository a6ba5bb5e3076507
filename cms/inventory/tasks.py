"""Thin Celery tasks of the inventory."""

from celery import shared_task
from django.utils import timezone

from .models import WorkerHeartbeat


@shared_task(bind=True, acks_late=True, ignore_result=True)
def worker_heartbeat(self, note: str = "") -> None:
    """Record that a worker ran a task now; idempotent, the latest beat wins."""
    WorkerHeartbeat.objects.update_or_create(
        worker=self.request.hostname or "unknown",
        defaults={"last_beat": timezone.now(), "last_note": note[:200]},
    )
