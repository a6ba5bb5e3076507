"""The allowed range of each numeric failover setting, in one table.

The table serves twice: as validators on the model (so the admin form and the API
refuse an absurd value with a message naming the field and its range), and as a clamp
where the settings are loaded (so the probe loop never runs on a value written around
the validation: an old row, raw SQL, a restored backup).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

log = logging.getLogger(__name__)

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
    # 0 turns the guard off (and 100 never trips: "more than all" cannot happen).
    "mass_failure_share": Range("mass-failure share", 0, 100, "percent"),
    "mass_failure_min_servers": Range("mass-failure minimum", 1, 10000, "servers"),
    "mass_failure_window": Range("mass-failure window", 1, 3600, "seconds"),
    # 0 turns damping off.
    "flap_failovers": Range("flapping failovers", 0, 100, "failovers"),
    "flap_window": Range("flapping window", 60, WEEK, "seconds", " (7 days)"),
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


def clamp(settings: Any) -> list[str]:
    """Bring every numeric setting of `settings` (in memory) into its range; returns
    what was corrected, for the log. A value that is no number at all takes the
    field's default."""
    corrections = []
    for name, limits in RANGES.items():
        value = getattr(settings, name)
        field = type(settings)._meta.get_field(name)
        if not isinstance(value, int | float) or math.isnan(value):
            fixed: float = field.get_default()
        else:
            fixed = min(max(value, limits.low), limits.high)
        if fixed != value:
            setattr(settings, name, fixed)
            corrections.append(f"{name} {value!r} -> {fixed!r}")
    if settings.probe_timeout > settings.probe_interval:
        corrections.append(
            f"probe_timeout {settings.probe_timeout!r} -> {settings.probe_interval!r} "
            "(not longer than the interval)"
        )
        settings.probe_timeout = float(settings.probe_interval)
    mode = type(settings)._meta.get_field("failback_mode")
    if settings.failback_mode not in dict(mode.choices):
        corrections.append(f"failback_mode {settings.failback_mode!r} -> {mode.get_default()!r}")
        settings.failback_mode = mode.get_default()
    return corrections


_last_logged: tuple[str, ...] = ()


def log_corrections(corrections: list[str]) -> None:
    """One warning per process for the same corrections: the probe loop loads the
    settings every second and must not fill the log with the same line."""
    global _last_logged
    key = tuple(corrections)
    if key and key != _last_logged:
        log.warning(
            "failover settings out of range in the database; using %s. Save the Failover "
            "Settings page to store valid values.",
            "; ".join(corrections),
        )
    _last_logged = key


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
