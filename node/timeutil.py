"""Times on the wire are ISO 8601 in UTC; inside the node they are POSIX seconds."""

from __future__ import annotations

from datetime import UTC, datetime

from node.errors import bad_request


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: object, field: str) -> float:
    """Accept ISO 8601 (``Z`` or an offset; naive means UTC) or POSIX seconds."""
    if isinstance(value, bool):
        raise bad_request(f"{field} must be a time")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise bad_request(f"{field} is not an ISO 8601 time: {value[:40]!r}") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    raise bad_request(f"{field} must be a time")
