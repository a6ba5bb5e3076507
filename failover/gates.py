"""What stands between "the probes say this server is down" and opening its failover.

The engine hands the gates every recording server that wants a failover in one probe
cycle at once (engine.after_probe_cycle), because what such a set means depends on
the set: one server down is a fault of that server; a whole site down at once may be
a fault of the CMS's own network. A gate returns the openings it lets through; the
rest are held, and the gate itself says why (the server's status, an alert).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import guard, second_opinion

if TYPE_CHECKING:
    from cms.inventory.models import Server

    from .models import TeamSettings


@dataclass(frozen=True)
class Opening:
    """A recording server that its probes say should be failed over."""

    server: Server
    trigger: str
    reason: str


def admit(openings: Sequence[Opening], teams: TeamSettings, now: dt.datetime) -> list[Opening]:
    """The openings that may become failover events now."""
    # The guard first: a team's mass failure is held whole, and asks nobody.
    return second_opinion.confirm(guard.admit(openings, teams, now), teams)
