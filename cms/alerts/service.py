"""notify(): the one way any part of the CMS raises an alert.

It never fails and never waits on a channel: after the caller's transaction commits,
it writes one Alert row per channel of the team that wants the kind and enqueues its
delivery. A broker that is down leaves the rows queued (the sweep enqueues them again
later); a database fault there is logged. Either way the caller goes on.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction

from .models import Alert, Channel

DELIVER_TASK = "cms.alerts.tasks.deliver"

log = logging.getLogger(__name__)


def notify(team_id: int | None, kind: str, subject: str, body: str, *, url: str = "") -> None:
    """Alert `team_id`'s channels that want `kind`, once the current transaction commits."""
    if team_id is None:
        return
    try:
        transaction.on_commit(lambda: _record_and_enqueue(team_id, kind, subject, body, url))
    except Exception:
        log.exception("alert %s for team %s not raised", kind, team_id)


def _record_and_enqueue(team_id: int, kind: str, subject: str, body: str, url: str) -> None:
    if url.startswith("/"):
        url = settings.CMS_BASE_URL.rstrip("/") + url  # a link a chat can open
    try:
        alerts = [
            Alert.objects.create(
                team_id=team_id,
                channel=channel,
                kind=kind,
                subject=subject[:200],
                body=body,
                link=url[:500],
            )
            for channel in Channel.objects.filter(team_id=team_id, enabled=True)
            if channel.wants(kind)
        ]
    except Exception:
        log.exception("alert %s for team %s not recorded", kind, team_id)
        return
    for alert in alerts:
        enqueue(alert.pk)


def enqueue(alert_id: int, attempt: int = 0, *, countdown: float = 0) -> bool:
    """Hand one alert's next attempt to the workers; False (logged) when the broker
    cannot take it (the sweep tries again)."""
    from cms.celery import app

    try:
        app.send_task(DELIVER_TASK, args=[alert_id, attempt], countdown=countdown, retry=False)
    except Exception as exc:
        log.warning("alert %s stays queued: the broker did not take it (%s)", alert_id, exc)
        return False
    return True


def test(channel: Channel) -> None:
    """A test alert to this one channel, whatever kinds it takes."""
    alert = Alert.objects.create(
        team_id=channel.team_id, channel=channel, kind="test",
        subject=f"Test alert for {channel.name}",
        body="This channel receives the CMS's alerts.",
    )  # fmt: skip
    transaction.on_commit(lambda: enqueue(alert.pk))
