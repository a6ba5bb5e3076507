"""Delivery in the workers: one alert, one channel, retried with a growing pause.

Each attempt is claimed by compare-and-set of the attempt count, so an alert enqueued
twice (by notify() and by the sweep) is sent once.
"""

from __future__ import annotations

import datetime as dt
import logging

from celery import shared_task
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from . import channels
from .models import Alert
from .service import DELIVER_TASK, enqueue

log = logging.getLogger(__name__)

MAX_PAUSE_SECONDS = 600
# A queued alert no worker started this long after it was raised missed the broker.
SWEEP_AFTER = dt.timedelta(minutes=2)


def pause(attempt: int) -> float:
    """Seconds before the attempt after `attempt` (1-based): doubling, capped."""
    return min(settings.CMS_ALERT_RETRY_SECONDS * 2 ** (attempt - 1), MAX_PAUSE_SECONDS)


@shared_task(
    name=DELIVER_TASK,
    bind=True,
    ignore_result=True,
    acks_late=True,
    time_limit=120,
    soft_time_limit=110,
)
def deliver(self, alert_id: int, attempt: int = 0) -> None:
    claimed = Alert.objects.filter(pk=alert_id, state=Alert.QUEUED, attempts=attempt).update(
        attempts=attempt + 1
    )
    if not claimed:
        return  # sent, given up, or this attempt is another worker's
    alert = Alert.objects.select_related("channel").get(pk=alert_id)
    try:
        channels.send(alert.channel, alert.subject, _body(alert))
    except channels.DeliveryFailed as exc:
        _failed(self, alert, attempt + 1, str(exc))
        return
    except Exception as exc:  # a bug or an odd channel: recorded and retried the same way
        log.exception("alert %s: delivery raised", alert_id)
        _failed(self, alert, attempt + 1, f"delivery raised {type(exc).__name__}")
        return
    Alert.objects.filter(pk=alert_id).update(state=Alert.SENT, sent_at=timezone.now(), error="")
    log.info("alert %s sent to channel %s", alert_id, alert.channel_id)


def _body(alert: Alert) -> str:
    return f"{alert.body}\n\n{alert.link}".strip() if alert.link else alert.body


def _failed(task, alert: Alert, attempts: int, error: str) -> None:
    last = attempts >= settings.CMS_ALERT_ATTEMPTS
    due = None if last else timezone.now() + dt.timedelta(seconds=pause(attempts))
    Alert.objects.filter(pk=alert.pk).update(
        error=error[:2000], state=Alert.FAILED if last else Alert.QUEUED, next_attempt_at=due
    )
    log.warning("alert %s to channel %s, attempt %s failed: %s", alert.pk, alert.channel_id,
                attempts, error)  # fmt: skip
    if not last:
        # The sweep sends it again if the broker does not take it now.
        enqueue(alert.pk, attempts, countdown=pause(attempts))


@shared_task(ignore_result=True)
def sweep() -> None:
    """Enqueue again the alerts whose delivery never reached a worker: raised, or due
    again after a failure, while the broker was down."""
    late = timezone.now() - SWEEP_AFTER
    stale = Alert.objects.filter(state=Alert.QUEUED).filter(
        Q(attempts=0, created_at__lt=late) | Q(next_attempt_at__lt=late)
    )
    for alert_id, attempts in stale.values_list("pk", "attempts")[:500]:
        enqueue(alert_id, attempts)
