"""Fast tests of one engine step at a time: the database only, no agents, no worker.

Servers here have addresses nobody listens on; the tests give them the health a probe
would have written and call one decision or step directly.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_second_opinion(settings):
    """No node answers here, so no failover server could give a second opinion (it
    would hold every disconnection): tests/integration/test_second_opinion.py has it
    against real agents."""
    settings.CMS_SECOND_OPINION = False


@pytest.fixture
def fo_settings(db):
    from failover.models import FailoverSettings

    settings = FailoverSettings.load()
    settings.failures_before_failover = 3
    settings.successes_before_recovery = 2
    settings.failback_mode = "automatic"
    settings.failback_hold_down = 60
    settings.save()
    return settings


@pytest.fixture
def protected(make_server):
    """A recording server protected by two failover servers, in that order; all normal."""
    from failover.models import ConfigSnapshot, Protection

    recording = make_server(role="recording", name="Lobby", status="normal")
    failovers = [make_server(role="failover", name=f"Standby {i}", status="normal") for i in (1, 2)]
    for priority, server in enumerate(failovers):
        Protection.objects.create(
            recording_server=recording, failover_server=server, priority=priority
        )
    ConfigSnapshot.objects.create(
        server=recording, version="1", config={"version": "1", "cameras": [{"id": "c1"}]}
    )
    return recording, failovers
