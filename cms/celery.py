"""The Celery application shared by web, workers and beat."""

import os
from typing import Any

from celery import Celery
from kombu.transport import redis as kombu_redis

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cms.settings")


def _survive_broker_restart() -> None:
    """Keep a worker alive when the broker restarts under it.

    After losing the broker, Celery's consumer closes its kombu Connection, which
    detaches the transport (`transport.client = None`), and then closes the
    connection's channel, which tries to restore its unacknowledged messages over a
    new client built from `transport.client.hostname`: an AttributeError, which
    `ignore_errors()` does not catch, so the worker ended with "Unrecoverable error"
    in 3 of 4 broker restarts. Raising the connection error that the consumer expects
    instead lets it reconnect. Nothing is lost: the messages stay in the broker's
    unacked set and are delivered again after the visibility timeout, and every task
    of the CMS is idempotent.
    """
    original = kombu_redis.Channel._connparams
    if getattr(original, "survives_restart", False):
        return

    def _connparams(self: Any, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise kombu_redis.redis.exceptions.ConnectionError(
                "the broker connection was closed; reconnecting"
            )
        return original(self, asynchronous=asynchronous)

    _connparams.survives_restart = True  # type: ignore[attr-defined]
    kombu_redis.Channel._connparams = _connparams


_survive_broker_restart()

app = Celery("cms")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
