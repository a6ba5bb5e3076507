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
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .choices import EventState
from .models import EventTransition, FailoverEvent

SYSTEM = "system"
# A worked_at this old means nobody holds the event: any worker may take it at once.
FREE_LEASE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def lease() -> dt.timedelta:
    """A worker renews `worked_at` while it works on an event; after this long without a
    renewal another worker may take the event over (the first one died)."""
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
    """Move `event` to `to_state` if it is in one of `from_states`; True if this call did it."""
    allowed = set(from_states)
    with transaction.atomic():
        current = (
            FailoverEvent.objects.select_for_update().filter(pk=event.pk).values("state").first()
        )
        if current is None or current["state"] not in allowed:
            return False
        now = timezone.now()
        fields.setdefault("worked_at", now)
        if to_state in {
            EventState.COMPLETED,
            EventState.RECOVERED,
            EventState.STOPPED,
            EventState.REPLACED,
            EventState.RESTORATION_STOPPED,
            EventState.FAILED,
        }:
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
    return True


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
        .filter(worked_at__lt=now - lease())
        .update(worked_at=now)
    )
    if won:
        event.worked_at = now
    return bool(won)


def release_lease(event: FailoverEvent) -> None:
    """Let the next worker (or the next probe cycle's retry) start at once."""
    FailoverEvent.objects.filter(pk=event.pk).update(worked_at=FREE_LEASE)
    event.worked_at = FREE_LEASE


def renew_lease(event: FailoverEvent) -> None:
    now = timezone.now()
    FailoverEvent.objects.filter(pk=event.pk).update(worked_at=now)
    event.worked_at = now


def bump_attempts(event: FailoverEvent) -> None:
    FailoverEvent.objects.filter(pk=event.pk).update(attempts=F("attempts") + 1)
