"""The event state machine's one primitive: a compare-and-set transition with its record.

Every change of an event's state goes through `transition()`. It takes the row
lock (PostgreSQL) or the database write lock (SQLite, IMMEDIATE transactions),
checks that the event is still in one of the expected states, writes the new
state and appends an EventTransition. Whoever loses the race gets False and
does nothing: this is what makes a second beat, a duplicated task or a resumed
worker harmless.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from cms import alerts
from cms.alerts.kinds import Kind
from cms.audit import SYSTEM

from .choices import EventState
from .lifecycle import FINAL_STATES, check
from .models import EventTransition, FailoverEvent

RENEWALS_PER_LEASE = 4  # a lease survives three missed renewals

log = logging.getLogger(__name__)


def lease() -> dt.timedelta:
    """How long a worker holds an event it works on without renewing its lease; after
    that another worker may take the event over (the first one died)."""
    return dt.timedelta(seconds=settings.CMS_EVENT_LEASE_SECONDS)


def transition(
    event: FailoverEvent,
    to_state: str,
    *,
    from_states: Iterable[str],
    actor: str = SYSTEM,
    reason: str = "",
    **fields: Any,
) -> bool:
    """Move `event` to `to_state` if it is in one of `from_states`; True if this call did it.

    Raises lifecycle.IllegalTransition, whatever the event's state, when a move from one
    of `from_states` to `to_state` is not in the lifecycle's table. The mover holds the
    event's lease afterwards unless `fields` says otherwise (lease_expires_at=None hands
    the event to whichever worker takes it next).
    """
    allowed = set(from_states)
    check(allowed, to_state)
    with transaction.atomic():
        current = (
            FailoverEvent.objects.select_for_update().filter(pk=event.pk).values("state").first()
        )
        if current is None or current["state"] not in allowed:
            return False
        now = timezone.now()
        fields.setdefault("lease_expires_at", now + lease())
        if to_state in FINAL_STATES:
            fields.setdefault("ended_at", now)
        FailoverEvent.objects.filter(pk=event.pk).update(state=to_state, **fields)
        EventTransition.objects.create(
            event_id=event.pk,
            from_state=current["state"],
            to_state=to_state,
            actor=actor,
            reason=reason[:2000],
        )
    event.refresh_from_db()
    _alert(event, current["state"], reason)
    return True


# The moves a team is told of: (from state or None for any, to state) -> kind.
ALERTS: dict[tuple[str | None, str], str] = {
    (EventState.TAKING_OVER, EventState.ACTIVE): Kind.FAILOVER_OPENED,
    (None, EventState.NO_FAILOVER_SERVER): Kind.NO_FAILOVER_SERVER,
    (EventState.FAILING_BACK, EventState.RESTORING): Kind.FAILBACK_DONE,
    (EventState.FAILING_BACK, EventState.COMPLETED): Kind.FAILBACK_DONE,
    (EventState.RESTORING, EventState.FAILED): Kind.RESTORATION_FAILED,
    (None, EventState.RESTORATION_STOPPED): Kind.RESTORATION_STOPPED,
}


def _alert(event: FailoverEvent, from_state: str, reason: str) -> None:
    """Tell the team; notify() only enqueues after commit and never raises."""
    kind = ALERTS.get((from_state, event.state)) or ALERTS.get((None, event.state))
    if kind is None:
        return
    acting = f" by {event.failover_server_name}" if event.failover_server_name else ""
    subject = f"{Kind(kind).label}: {event.recording_server_name}{acting}"
    body = f"Failover event #{event.pk} of {event.recording_server_name}: " + (
        f"{EventState(event.state).label}. {reason}".strip()
    )
    link = reverse("admin:failover_failoverevent_change", args=[event.pk])
    alerts.notify(event.team_id, kind, subject, body, url=link)


def note(event: FailoverEvent, reason: str, *, actor: str = SYSTEM) -> None:
    """Record something on the timeline without a state change (a failed attempt, say)."""
    EventTransition.objects.create(
        event_id=event.pk, from_state=event.state, to_state=event.state, actor=actor, reason=reason
    )


def take_lease(event: FailoverEvent, state: str) -> bool:
    """Claim the right to work on an event in `state`, unless a live worker holds it."""
    now = timezone.now()
    won = (
        FailoverEvent.objects.filter(pk=event.pk, state=state)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now))
        .update(lease_expires_at=now + lease())
    )
    if won:
        event.lease_expires_at = now + lease()
    return bool(won)


def release_lease(event: FailoverEvent) -> None:
    """Let the next worker (or the next probe cycle's retry) start at once."""
    FailoverEvent.objects.filter(pk=event.pk).update(lease_expires_at=None)
    event.lease_expires_at = None


def renew_lease(event: FailoverEvent) -> bool:
    """Extend the lease while the event is still in the state its holder works on; False
    when it moved on meanwhile (a probe or an operator changed it): the holder stops."""
    expires = timezone.now() + lease()
    renewed = FailoverEvent.objects.filter(pk=event.pk, state=event.state).update(
        lease_expires_at=expires
    )
    if renewed:
        event.lease_expires_at = expires
    return bool(renewed)


@contextmanager
def holding(event: FailoverEvent, states: Iterable[str]) -> Iterator[None]:
    """Keep the event's lease alive while the block works on it in one of `states`.

    A node call may block for its whole timeout, longer than a lease: a thread renews
    the lease meanwhile, so the lease can be as short as a few seconds and a worker
    that dies (SIGKILL, power) holds a takeover up for no longer than that. Only a live
    lease is renewed: one released or run out belongs to nobody, and not to us.
    """
    states = list(states)
    stop = threading.Event()
    every = lease().total_seconds() / RENEWALS_PER_LEASE

    def renew() -> None:
        try:
            while not stop.wait(every):
                now = timezone.now()
                try:
                    FailoverEvent.objects.filter(
                        pk=event.pk, state__in=states, lease_expires_at__gt=now
                    ).update(lease_expires_at=now + lease())
                except Exception:  # the next renewal retries; the lease has slack for it
                    log.warning("event %s: lease renewal failed", event.pk, exc_info=True)
        finally:
            connection.close()

    thread = threading.Thread(target=renew, name=f"lease-{event.pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every + 5)


def lease_expired(event: FailoverEvent, now: dt.datetime | None = None) -> bool:
    """Nobody holds the event: it was released, or its holder stopped renewing."""
    expires = event.lease_expires_at
    return expires is None or expires <= (now or timezone.now())


def bump_attempts(event: FailoverEvent) -> None:
    FailoverEvent.objects.filter(pk=event.pk).update(attempts=F("attempts") + 1)
