"""A task really travels through the configured broker to a separate worker process."""

import os
import time
import uuid

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


def test_the_suite_runs_on_the_services_it_was_given():
    """With CMS_REQUIRE_SERVICES=1 (CI): PostgreSQL and Redis. Otherwise: what the
    environment names, or the embedded defaults (SQLite and the private redis-server on
    its unix socket). Either way the broker must answer."""
    from cms import broker
    from cms.celery import app

    engine = settings.DATABASES["default"]["ENGINE"]
    if settings.CMS_REQUIRE_SERVICES:
        assert engine == "django.db.backends.postgresql"
        assert settings.CELERY_BROKER_URL.startswith("redis://")
    else:
        named = os.environ.get("DATABASE_URL", "sqlite:")
        assert engine.endswith("postgresql" if named.startswith("postgres") else "sqlite3")
        if settings.CMS_EMBEDDED_BROKER:
            assert broker.url(settings.VAR_DIR) == settings.CELERY_BROKER_URL
        else:
            named = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL")
            assert named == settings.CELERY_BROKER_URL
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        assert conn.connected
