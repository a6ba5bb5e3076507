"""An event's timeline as a picture: the phases from detection to the end, to scale."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .choices import EventState
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


def moment(value: dt.datetime | None, text: str | None = None) -> SafeString | str:
    """A time to the second (server's time zone); the exact ISO time as its tooltip."""
    if value is None:
        return "-"
    local = timezone.localtime(value)
    exact = local.isoformat(timespec="milliseconds")
    shown = text or local.strftime("%Y-%m-%d %H:%M:%S")
    return format_html('<time datetime="{}" title="{}">{}</time>', exact, exact, shown)


def picture(event: FailoverEvent) -> SafeString:
    """A bar of the phases, widths to scale, and below it each phase in words: its name
    in full, its duration and when it started (labels never squeezed into the bar)."""
    parts = phases(event)
    total = sum(p.seconds for p in parts) or 1.0
    starts = [getattr(event, start) for _, start, _, _ in PHASES if getattr(event, start)]
    bar = format_html_join(
        "",
        '<span class="cms-segment" style="flex:{} 0 0; background:{}"></span>',
        ((round(p.seconds / total, 4), p.colour) for p in parts),
    )
    items = format_html_join(
        "",
        '<li><span class="cms-swatch" style="background:{}"></span>'
        '<span class="cms-phase-label">{}</span> <strong>{}</strong> '
        '<span class="cms-phase-start">from {}</span></li>',
        ((p.colour, p.label, _duration(p.seconds), moment(start))
         for p, start in zip(parts, starts, strict=True)),
    )  # fmt: skip
    ending = event.get_state_display() if not event.is_open else "in progress"
    return format_html(
        '<div class="cms-timeline"><div class="cms-timeline-bar" aria-hidden="true">{}</div>'
        '<ol class="cms-phases" aria-label="Event timeline">{}</ol>'
        "<p>Time to take over: {}. Recording gap: {}. Ending: {}.</p></div>",
        bar,
        items,
        _duration(event.time_to_take_over.total_seconds()) if event.time_to_take_over else "-",
        recording_gap(event),
        ending,
    )


def history(event: FailoverEvent) -> list[dict[str, object]]:
    """Every state change in words: when, what the event became (after what), why, who."""
    rows = []
    for t in event.transitions.all():
        became = EventState(t.to_state).label
        after = EventState(t.from_state).label if t.from_state else ""
        rows.append({
            "at": moment(t.at), "state": became, "after": after, "reason": t.reason,
            "actor": "the CMS" if t.actor == "system" else t.actor,
        })  # fmt: skip
    return rows


def recording_gap(event: FailoverEvent) -> str:
    """The worst camera's gap, once failback measured it."""
    if event.recording_gap_seconds is not None:
        return f"{_duration(event.recording_gap_seconds)} (the worst camera)"
    if event.failed_back_at or not event.is_open:
        return "not measured"
    return "measured at failback"
