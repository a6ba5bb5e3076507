"""The rate limit of ``/qc/register``: refused registrations per client address.

Counted in the database (`RegistrationRefusal`), so every web process and every CMS
host share one count. Only refusals count: a bound node refreshing its address every
60 s is accepted and never recorded, and it is accepted even from an address over the
limit (the view asks `directory.register` for a refresh only, then). Requests refused
for being over the limit are not recorded either: the window slides, and an address
gets at most `LIMIT` answers that say anything about IDs and secrets per `WINDOW`.
Concurrent requests may each see the count just under the limit; the overshoot is at
most one per process.
"""

from __future__ import annotations

import math
from datetime import timedelta

from django.utils import timezone

from cms.nodes.models import RegistrationRefusal

LIMIT = 20
WINDOW = timedelta(minutes=10)


def retry_after(address: str) -> int | None:
    """Seconds until `address` may try again, or None when it is under the limit."""
    now = timezone.now()
    recent = RegistrationRefusal.objects.filter(address=address, at__gte=now - WINDOW)
    count = recent.count()
    if count < LIMIT:
        return None
    # Under the limit again once enough of the oldest refusals have left the window.
    frees = recent.order_by("at").values_list("at", flat=True)[count - LIMIT]
    return max(1, math.ceil((frees + WINDOW - now).total_seconds()))


def record_refusal(address: str) -> None:
    now = timezone.now()
    RegistrationRefusal.objects.filter(at__lt=now - WINDOW).delete()  # out of every window
    RegistrationRefusal.objects.create(address=address, at=now)
