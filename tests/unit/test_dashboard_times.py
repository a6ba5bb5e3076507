"""How long ago, as the dashboard says it: never "0 minutes"; the exact time as a tooltip."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from failover.templatetags.dashboard import ago, moment


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0, "just now"), (3, "just now"), (42, "42 s ago"), (119, "119 s ago"),
     (300, "5 min ago"), (3 * 3600 + 12 * 60, "3 h 12 min ago"), (5 * 86400, "5 days ago")],
)  # fmt: skip
def test_ago_says_seconds_then_minutes_then_hours(seconds, said):
    html = ago(timezone.now() - dt.timedelta(seconds=seconds, milliseconds=200))
    assert re.fullmatch(rf'<time datetime="[^"]+" title="[^"]+">{said}</time>', html)


def test_a_moment_shows_seconds_and_the_exact_time_as_its_title():
    at = dt.datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=dt.UTC)
    html = moment(at)
    assert ">2026-03-04 05:06:07</time>" in html
    assert 'title="2026-03-04T05:06:07.890+00:00"' in html
    assert ago(None) == moment(None) == "-"
