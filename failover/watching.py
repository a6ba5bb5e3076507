"""Evidence from the watch streams (cms/nodes/watch.py) turned into health and decisions.

A probe counts failures one by one and fails over after the team's count. What a watch
stream shows is stronger than one failed probe: the agent said itself that its volume
crashed or its service stopped, or its connection closed and its port refuses new ones,
or it went silent for longer than its own history makes likely. Such evidence counts
as the team's whole failure count at once; the engine then decides as after a probe
cycle (its gates give a silence the second opinion it needs before a failover).

Evidence changes nothing about a server that is disabled, deleted, or already in that
status with the full count; anything else than the statuses below is refused.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from cms.inventory.choices import HealthStatus
from cms.inventory.models import Server

from . import engine, probing
from .models import TeamSettings

log = logging.getLogger(__name__)

EVIDENCE = frozenset(
    {HealthStatus.DISCONNECTED, HealthStatus.VOLUME_ABNORMAL, HealthStatus.SERVICE_ABNORMAL}
)


def apply_evidence(server_id: int, status: str, message: str) -> list[int]:
    """Write what a watch stream showed about a server and decide on it; the events a
    worker should advance now."""
    if status not in EVIDENCE:
        log.warning("watch evidence for server %s refused: unknown status %r", server_id,
                    str(status)[:40])  # fmt: skip
        return []
    server = Server.objects.filter(pk=server_id, enabled=True).first()
    if server is None:
        return []
    settings = TeamSettings.load()
    team = settings.of(server.team_id)
    if server.status == status and server.consecutive_failures >= team.failures_before_failover:
        return []  # already known in full; a probe that saw it first counted only one
    now = timezone.now()
    result = probing.ProbeResult(server.pk, status, error=str(message)[:1000])
    probing.apply_result(server, result, team, now)
    server.consecutive_failures = team.failures_before_failover
    probing.write_health([server])
    log.info("server %s (%s): %s from its watch stream: %s", server.pk, server.name, status,
             result.error)  # fmt: skip
    return engine.after_probe_cycle([server], settings, timezone.now())
