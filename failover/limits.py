"""The allowed range of each numeric failover setting, in one table.

Validators on the model use it, so the admin form and the API refuse an absurd value
with a message naming the field and its range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

WEEK = 7 * 24 * 3600


@dataclass(frozen=True)
class Range:
    label: str
    low: float
    high: float
    unit: str
    note: str = ""  # the range in other words, where seconds say little

    def describe(self) -> str:
        return f"between {_number(self.low)} and {_number(self.high)} {self.unit}{self.note}"


RANGES: dict[str, Range] = {
    # Whole seconds from 1: beat ticks once a second, so a shorter interval could not
    # be kept anyway; an hour is the longest a failover may wait to be noticed.
    "probe_interval": Range("probe interval", 1, 3600, "seconds"),
    "probe_timeout": Range("probe timeout", 0.2, 60, "seconds"),
    "failures_before_failover": Range("failures before failover", 1, 100, "probes"),
    "successes_before_recovery": Range("successes before recovery", 1, 100, "probes"),
    "failback_hold_down": Range("failback hold-down", 0, WEEK, "seconds", " (7 days)"),
}


@deconstructible
class InRange:
    """Model-field validator: the value lies in RANGES[field]."""

    def __init__(self, field: str) -> None:
        self.field = field

    def __call__(self, value: Any) -> None:
        limits = RANGES[self.field]
        if value is None or not limits.low <= value <= limits.high:
            raise ValidationError(
                "The %(label)s must be %(range)s (got %(value)s).",
                code="out_of_range",
                params={"label": limits.label, "range": limits.describe(), "value": value},
            )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, InRange) and other.field == self.field

    def __hash__(self) -> int:
        return hash(self.field)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
