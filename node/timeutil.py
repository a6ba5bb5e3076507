"""Times on the wire are ISO 8601 in UTC; inside the node they are POSIX seconds.

Every time that comes from outside is finite and within ``EARLIEST``..``LATEST``:
a start of ``1e300`` or ``NaN`` would be stored in the index and break every later
listing (a ``datetime`` cannot hold it).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from node.errors import bad_request

EARLIEST = 0.0  # 1970-01-01T00:00:00Z
LATEST = 4102444800.0  # 2100-01-01T00:00:00Z
MAX_TIME_TEXT = 64
# POSIX seconds as text: ASCII digits only (float() also takes "1e300", "nan" and
# digits of other scripts).
SECONDS_RE = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def in_range(ts: object) -> bool:
    """Whether ``ts`` is a time the node can store, list and show."""
    return (
        isinstance(ts, int | float)
        and not isinstance(ts, bool)
        and math.isfinite(ts)
        and EARLIEST <= ts <= LATEST
    )


def parse_time(value: object, field: str) -> float:
    """Accept ISO 8601 (``Z`` or an offset; naive means UTC) or POSIX seconds."""
    if isinstance(value, bool):
        raise bad_request(f"{field} must be a time")
    if isinstance(value, int | float):
        return _checked(value, field)
    if isinstance(value, str):
        if len(value) > MAX_TIME_TEXT or not value.isascii():
            raise bad_request(f"{field} is not an ISO 8601 time or POSIX seconds")
        if SECONDS_RE.fullmatch(value):
            return _checked(float(value), field)
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise bad_request(f"{field} is not an ISO 8601 time: {value[:40]!r}") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        try:
            return _checked(dt.timestamp(), field)
        except OverflowError:  # year 1 or 9999 with an offset
            raise bad_request(f"{field} is out of range") from None
    raise bad_request(f"{field} must be a time")


def _checked(ts: int | float, field: str) -> float:
    # A huge JSON integer would overflow float(); compare before converting.
    if isinstance(ts, int) and not EARLIEST <= ts <= LATEST:
        raise bad_request(f"{field} must be between 1970-01-01 and 2100-01-01")
    if not in_range(float(ts)):
        raise bad_request(f"{field} must be between 1970-01-01 and 2100-01-01")
    return float(ts)
