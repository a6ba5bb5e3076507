"""A task really travels through the configured broker to a separate worker process."""

import time
import uuid

import pytest
from django.conf import settings

from cms.inventory.models import WorkerHeartbeat
from cms.inventory.tasks import worker_heartbeat


def test_it_runs_a_task_in_a_separate_worker_through_the_broker(celery_worker_process):
    note = f"probe {uuid.uuid4()}"
    worker_heartbeat.apply_async(kwargs={"note": note}, queue=celery_worker_process.queue)

    deadline = time.monotonic() + 30
    beat = None
    while time.monotonic() < deadline:
        beat = WorkerHeartbeat.objects.filter(last_note=note).first()
        if beat:
            break
        time.sleep(0.2)

    assert beat is not None, celery_worker_process.log()[-2000:]
    assert beat.worker.startswith(celery_worker_process.queue + "@")
    assert "worker_heartbeat" in celery_worker_process.log()


def test_ci_uses_the_real_services():
    """With CMS_REQUIRE_SERVICES=1 (CI) the suite must run on PostgreSQL and Redis."""
    if not settings.CMS_REQUIRE_SERVICES:
        pytest.skip("checks CI's configuration: runs with CMS_REQUIRE_SERVICES=1")
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    assert settings.CELERY_BROKER_URL.startswith("redis://")
