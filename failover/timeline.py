"""An event's timeline as a picture: the phases from detection to the end, to scale."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .models import FailoverEvent

# (label, start field, end field, colour): the phases an event can go through.
PHASES = [
    ("Taking over", "detected_at", "taken_over_at", "#d9822b"),
    ("Failover server records", "taken_over_at", "recovered_at", "#2b7bb9"),
    ("Recovered, waiting for failback", "recovered_at", "failed_back_at", "#7a9a3a"),
    ("Restoring recordings", "failed_back_at", "ended_at", "#8a5cb8"),
]


@dataclass
class Phase:
    label: str
    seconds: float
    colour: str


def phases(event: FailoverEvent, now: dt.datetime | None = None) -> list[Phase]:
    """Each phase that started, with its duration (until now for the one in progress)."""
    now = now or timezone.now()
    result = []
    for label, start_field, end_field, colour in PHASES:
        start = getattr(event, start_field)
        if start is None:
            continue
        end = getattr(event, end_field) or event.ended_at or now
        result.append(Phase(label, max((end - start).total_seconds(), 0.0), colour))
    return result


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def picture(event: FailoverEvent) -> SafeString:
    """A bar of the phases, widths to scale, each labelled with its duration."""
    parts = phases(event)
    total = sum(p.seconds for p in parts) or 1.0
    bars = format_html_join(
        "",
        '<div role="listitem" title="{0}: {1}" style="flex:{2} 0 0; min-width:4.5em; '
        'background:{3}; color:#fff; padding:4px 6px; overflow:hidden; white-space:nowrap">'
        "{0}<br><strong>{1}</strong></div>",
        ((p.label, _duration(p.seconds), round(p.seconds / total, 4), p.colour) for p in parts),
    )
    ending = event.get_state_display() if not event.is_open else "in progress"
    return format_html(
        '<div role="list" aria-label="Event timeline" class="cms-timeline" '
        'style="display:flex; gap:2px; max-width:60em">{}</div>'
        "<p>Time to take over: {}. Recording gap: {}. Ending: {}.</p>",
        bars,
        _duration(event.time_to_take_over.total_seconds()) if event.time_to_take_over else "-",
        recording_gap(event),
        ending,
    )


def recording_gap(event: FailoverEvent) -> str:
    """The worst camera's gap, once failback measured it."""
    if event.recording_gap_seconds is not None:
        return f"{_duration(event.recording_gap_seconds)} (the worst camera)"
    if event.failed_back_at or not event.is_open:
        return "not measured"
    return "measured at failback"
