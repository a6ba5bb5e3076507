"""Faults during faults, one decision at a time: a failover server that fails while it
acts, a recording server that fails again after it recovered or while it restores."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from cms.inventory.choices import HealthStatus
from failover import engine
from failover.choices import EventState
from failover.models import FailoverEvent
from tests.engine.test_decisions import cycle, event_in, probed


def acting(recording, failover, state=EventState.ACTIVE, **fields) -> FailoverEvent:
    return event_in(recording, state, failover_server=failover,
                    failover_server_name=failover.name, epoch=7, **fields)  # fmt: skip


def test_an_acting_failover_server_that_fails_is_replaced(protected, fo_settings):
    recording, (first, _) = protected
    event = acting(recording, first)
    assert cycle(probed(first, HealthStatus.DISCONNECTED, failures=2), settings=fo_settings) == []
    event.refresh_from_db()
    assert event.state == EventState.ACTIVE  # N - 1 failed probes: not yet

    woken = cycle(probed(first, HealthStatus.DISCONNECTED, failures=3), settings=fo_settings)
    event.refresh_from_db()
    assert woken == [event.pk]
    assert event.state == EventState.DETECTED
    assert event.failover_server is None and event.lease_expires_at is None
    [earlier] = event.earlier_failover_servers
    assert (earlier["id"], earlier["epoch"], earlier["released"]) == (first.pk, 7, False)
    assert "Standby 1 failed while acting" in event.transitions.last().reason
    # The failed one is no candidate; the next in protection order is.
    assert [s.name for s in engine.candidates(event)] == ["Standby 2"]


def test_a_failover_server_that_failed_is_told_to_stop_when_it_answers_again(
    protected, fo_settings
):
    recording, (first, second) = protected
    event = acting(recording, second, earlier_failover_servers=[
        {"id": first.pk, "name": first.name, "epoch": 7, "released": False}])  # fmt: skip
    assert cycle(probed(first, HealthStatus.DISCONNECTED, failures=3), settings=fo_settings) == []
    assert cycle(probed(first, HealthStatus.NORMAL, successes=1), settings=fo_settings) == [
        event.pk
    ]


def test_the_recording_server_back_does_not_end_a_cascaded_event(protected, fo_settings):
    recording, (first, _) = protected
    event = event_in(recording, EventState.DETECTED, earlier_failover_servers=[
        {"id": first.pk, "name": first.name, "epoch": 7, "released": False}])  # fmt: skip
    cycle(probed(recording, HealthStatus.NORMAL, successes=2), settings=fo_settings)
    event.refresh_from_db()
    assert event.state == EventState.DETECTED  # its recordings still wait for restoration


def test_an_acting_failover_server_that_fails_after_recovery_fails_back_at_once(
    protected, fo_settings
):
    recording, (first, _) = protected
    event = acting(recording, first, EventState.WAITING_FAILBACK, recovered_at=timezone.now())
    cycle(probed(first, HealthStatus.VOLUME_ABNORMAL, failures=3), settings=fo_settings)
    event.refresh_from_db()
    assert event.state == EventState.FAILING_BACK
    assert event.failover_server == first  # restoration pulls from it once it is back


def test_a_fault_after_recovery_restarts_the_hold_down(protected, fo_settings):
    recording, (first, _) = protected
    long_ago = timezone.now() - dt.timedelta(seconds=fo_settings.failback_hold_down + 5)
    event = acting(recording, first, EventState.WAITING_FAILBACK, recovered_at=long_ago)

    # One failed probe after it counted as recovered: back to acting.
    cycle(probed(recording, HealthStatus.SERVICE_ABNORMAL, failures=1), settings=fo_settings)
    event.refresh_from_db()
    assert (event.state, event.recovered_at) == (EventState.ACTIVE, None)

    cycle(probed(recording, HealthStatus.NORMAL, successes=2), settings=fo_settings)
    event.refresh_from_db()
    assert event.state == EventState.WAITING_FAILBACK
    assert event.recovered_at > long_ago  # the hold-down counts from the new recovery
    assert not engine.failback_due(event, fo_settings, timezone.now())
    later = timezone.now() + dt.timedelta(seconds=fo_settings.failback_hold_down)
    assert engine.failback_due(event, fo_settings, later)
    assert FailoverEvent.objects.count() == 1  # a flapping server fails over once


def test_a_recording_server_that_fails_while_restoring_is_failed_over_again(protected, fo_settings):
    recording, (first, _) = protected
    event = acting(recording, first, EventState.RESTORING)
    woken = cycle(probed(recording, HealthStatus.DISCONNECTED, failures=3), settings=fo_settings)
    event.refresh_from_db()
    assert woken == [event.pk]
    assert event.state == EventState.DETECTED
    assert [e["id"] for e in event.earlier_failover_servers] == [first.pk]
    # The failover server it failed back from is free, and first in protection order.
    assert [s.name for s in engine.candidates(event)] == ["Standby 1", "Standby 2"]


def test_one_failed_probe_while_restoring_is_not_a_failover(protected, fo_settings):
    recording, (first, _) = protected
    event = acting(recording, first, EventState.RESTORING)
    cycle(probed(recording, HealthStatus.DISCONNECTED, failures=1), settings=fo_settings)
    event.refresh_from_db()
    assert event.state == EventState.RESTORING


def test_the_restoration_sources_are_every_server_that_recorded_once(protected):
    from failover.restoration import sources

    recording, (first, second) = protected
    event = acting(recording, second, EventState.RESTORING, earlier_failover_servers=[
        {"id": first.pk, "epoch": 3}, {"id": second.pk, "epoch": 5},
        {"id": 99999, "epoch": 6}])  # fmt: skip
    assert [s.name for s in sources(event)] == ["Standby 2", "Standby 1"]


def test_a_name_taken_by_other_content_gets_a_name_with_the_sha256():
    from failover.restoration import conflict_name

    sha = "ab" * 32
    assert conflict_name("own/c1/2026/120000.123.ts", sha) == (
        "own/c1/2026/120000.123.abababababababab.ts"
    )
    assert conflict_name("own/c1/noext", sha) == "own/c1/noext.abababababababab"
