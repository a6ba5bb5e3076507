"""The embedded broker is a real Redis, and restarting it never ends a worker."""

from __future__ import annotations

import time
import uuid

from kombu import Connection

from cms import broker
from cms.inventory.models import WorkerHeartbeat
from cms.inventory.tasks import worker_heartbeat
from tests.fixtures.celery import start_worker
from tests.fixtures.nodes import wait_until


def send_heartbeats(url: str, queue: str, count: int, note: str = "load") -> None:
    with Connection(url) as conn:
        for _ in range(count):
            worker_heartbeat.apply_async(kwargs={"note": note}, queue=queue, connection=conn)


def test_the_embedded_broker_keeps_queued_work_across_a_restart(private_broker):
    url = broker.url(private_broker)
    send_heartbeats(url, "parked", 3)
    broker.stop(private_broker)
    assert not broker.ping(private_broker)

    broker.start_daemon(private_broker)
    with Connection(url) as conn:
        assert conn.default_channel.client.llen("parked") == 3  # the append-only file kept them
    assert oct(broker.socket_path(private_broker).stat().st_mode & 0o777) == "0o700"


def test_it_survives_broker_restarts_with_tasks_in_flight(
    transactional_db, tmp_path, private_broker
):
    url = broker.url(private_broker)
    queue = f"restart-{uuid.uuid4().hex[:8]}"
    worker = start_worker(tmp_path, queue=queue, concurrency=2, CELERY_BROKER_URL=url)
    try:
        for round_ in range(6):
            # Acknowledged late: while the queue drains, the worker holds unacked messages,
            # which is what it tries to restore when the connection breaks.
            send_heartbeats(url, queue, 200)
            time.sleep(0.3)
            broker.stop(private_broker)
            time.sleep(1.0)
            broker.start_daemon(private_broker)
            time.sleep(3.0)
            assert worker.process.poll() is None, (
                f"the worker exited after broker restart {round_ + 1}:\n{worker.log()[-4000:]}"
            )
        assert "Unrecoverable error" not in worker.log()

        note = f"after restarts {uuid.uuid4()}"
        send_heartbeats(url, queue, 1, note=note)
        wait_until(
            lambda: WorkerHeartbeat.objects.filter(last_note=note).exists(),
            timeout=60,
            message="a task sent after the restarts to run",
        )
    finally:
        worker.stop()
