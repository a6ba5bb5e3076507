"""The engine's decisions on made-up probe results: open, recover, wake a worker or not."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from cms.inventory.choices import HealthStatus
from cms.inventory.models import Server
from failover import engine
from failover.choices import EventState
from failover.events import lease_expired, release_lease, take_lease
from failover.models import FailoverEvent

NOW = timezone.now()


def probed(server: Server, status: str, failures: int = 0, successes: int = 0) -> Server:
    """The server as a probe cycle leaves it (what apply_result wrote)."""
    Server.objects.filter(pk=server.pk).update(
        status=status, consecutive_failures=failures, consecutive_successes=successes
    )
    server.refresh_from_db()
    return server


def event_in(server: Server, state: str, **fields) -> FailoverEvent:
    return FailoverEvent.objects.create(
        team=server.team, recording_server=server, recording_server_name=server.name,
        node_tag=f"rs{server.pk}", trigger=fields.pop("trigger", "disconnected"), state=state,
        **fields,
    )  # fmt: skip


def cycle(*servers: Server, settings) -> list[int]:
    return engine.after_probe_cycle(list(servers), settings, timezone.now())


# -- opening ---------------------------------------------------------------------------


def test_n_failed_probes_open_an_event_and_wake_a_worker(protected, fo_settings):
    recording, _ = protected
    assert (
        cycle(probed(recording, HealthStatus.DISCONNECTED, failures=2), settings=fo_settings) == []
    )
    assert not FailoverEvent.objects.exists()

    woken = cycle(probed(recording, HealthStatus.DISCONNECTED, failures=3), settings=fo_settings)
    event = FailoverEvent.objects.get()
    assert woken == [event.pk]
    assert (event.state, event.trigger, event.node_tag) == (
        EventState.DETECTED,
        "disconnected",
        f"rs{recording.pk}",
    )
    assert event.lease_expires_at is None  # free for the first worker
    assert "3 probes in a row" in event.transitions.get().reason


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"auto_failover": False}, HealthStatus.DISCONNECTED),
        ({"on_volume_abnormal": False}, HealthStatus.VOLUME_ABNORMAL),
        ({}, HealthStatus.AUTH_FAILED),  # it answers: its cameras likely record
        ({}, HealthStatus.CERTIFICATE_CHANGED),
        ({}, HealthStatus.BAD_ANSWER),
    ],
)
def test_no_event_without_an_enabled_trigger(protected, fo_settings, change, status):
    recording, _ = protected
    for field, value in change.items():
        setattr(fo_settings, field, value)
    assert cycle(probed(recording, status, failures=3), settings=fo_settings) == []
    assert not FailoverEvent.objects.exists()


def test_an_unprotected_server_gets_no_event(make_server, fo_settings):
    alone = make_server(role="recording")
    assert cycle(probed(alone, HealthStatus.DISCONNECTED, failures=3), settings=fo_settings) == []
    assert not FailoverEvent.objects.exists()


def test_a_failover_server_that_fails_gets_no_event(protected, fo_settings):
    _, (standby, _) = protected
    assert cycle(probed(standby, HealthStatus.DISCONNECTED, failures=3), settings=fo_settings) == []
    assert not FailoverEvent.objects.exists()


def test_one_open_event_per_recording_server(protected, fo_settings):
    recording, _ = protected
    down = probed(recording, HealthStatus.DISCONNECTED, failures=3)
    first = cycle(down, settings=fo_settings)
    event = FailoverEvent.objects.get()
    take_lease(event, EventState.DETECTED)  # a worker is on it
    assert cycle(down, settings=fo_settings) == []  # not twice, and not woken while held
    assert FailoverEvent.objects.count() == 1 and first == [event.pk]


# -- recovery --------------------------------------------------------------------------


def test_back_before_a_takeover_ends_the_event(protected, fo_settings):
    recording, _ = protected
    event = event_in(recording, EventState.NO_FAILOVER_SERVER)
    assert cycle(probed(recording, HealthStatus.NORMAL, successes=2), settings=fo_settings) == []
    event.refresh_from_db()
    assert event.state == EventState.RECOVERED and event.ended_at is not None


def test_one_good_probe_is_not_a_recovery(protected, fo_settings):
    recording, _ = protected
    event = event_in(recording, EventState.ACTIVE, lease_expires_at=None)
    cycle(probed(recording, HealthStatus.NORMAL, successes=1), settings=fo_settings)
    event.refresh_from_db()
    assert event.state == EventState.ACTIVE


def test_recovery_waits_for_the_hold_down_before_waking_anyone(protected, fo_settings):
    recording, _ = protected
    event = event_in(recording, EventState.ACTIVE)
    back = probed(recording, HealthStatus.NORMAL, successes=2)
    assert cycle(back, settings=fo_settings) == []  # hold-down 60 s
    event.refresh_from_db()
    assert event.state == EventState.WAITING_FAILBACK
    assert cycle(back, settings=fo_settings) == []  # still waiting: no task every cycle

    FailoverEvent.objects.filter(pk=event.pk).update(
        recovered_at=timezone.now() - dt.timedelta(seconds=61)
    )
    assert cycle(back, settings=fo_settings) == [event.pk]


def test_a_manual_failover_stays_until_the_operator_fails_back(protected, fo_settings):
    recording, _ = protected
    event = event_in(recording, EventState.ACTIVE, trigger="manual")
    assert cycle(probed(recording, HealthStatus.NORMAL, successes=2), settings=fo_settings) == []
    event.refresh_from_db()
    assert event.state == EventState.ACTIVE


# -- waiting events are woken when their wait is over -----------------------------------


def test_no_failover_server_is_woken_only_when_one_is_free(protected, fo_settings):
    recording, standbys = protected
    for standby in standbys:
        probed(standby, HealthStatus.DISCONNECTED, failures=3)
    event = event_in(recording, EventState.NO_FAILOVER_SERVER)
    down = probed(recording, HealthStatus.DISCONNECTED, failures=3)
    assert cycle(down, settings=fo_settings) == []

    probed(standbys[1], HealthStatus.NORMAL, successes=2)
    assert cycle(down, settings=fo_settings) == [event.pk]


def test_no_failover_server_is_not_woken_without_a_configuration_to_push(protected, fo_settings):
    from failover.models import ConfigSnapshot

    recording, _ = protected
    ConfigSnapshot.objects.all().delete()  # it died before its configuration was read
    event = event_in(recording, EventState.NO_FAILOVER_SERVER)
    down = probed(recording, HealthStatus.DISCONNECTED, failures=3)
    assert cycle(down, settings=fo_settings) == []
    FailoverEvent.objects.filter(pk=event.pk).update(trigger="manual")  # read at takeover
    assert cycle(down, settings=fo_settings) == [event.pk]


def test_no_failover_server_is_not_woken_for_a_busy_one(protected, fo_settings, make_server):
    recording, standbys = protected
    probed(standbys[1], HealthStatus.DISCONNECTED, failures=3)
    other = make_server(role="recording", name="Garage")
    event_in(other, EventState.ACTIVE, failover_server=standbys[0])
    event = event_in(recording, EventState.NO_FAILOVER_SERVER)
    assert engine.candidates(event) == []
    assert (
        cycle(probed(recording, HealthStatus.DISCONNECTED, failures=3), settings=fo_settings) == []
    )


def test_a_worker_that_died_is_replaced_once_its_lease_runs_out(protected, fo_settings):
    recording, _ = protected
    event = event_in(recording, EventState.TAKING_OVER)
    assert take_lease(event, EventState.TAKING_OVER)
    assert not take_lease(event, EventState.TAKING_OVER)  # held: nobody else
    down = probed(recording, HealthStatus.DISCONNECTED, failures=3)
    assert cycle(down, settings=fo_settings) == []
    FailoverEvent.objects.filter(pk=event.pk).update(
        lease_expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert cycle(down, settings=fo_settings) == [event.pk]


def test_release_frees_the_lease_at_once(protected):
    recording, _ = protected
    event = event_in(recording, EventState.RESTORING)
    assert take_lease(event, EventState.RESTORING)
    assert not lease_expired(event)
    release_lease(event)
    event.refresh_from_db()
    assert event.lease_expires_at is None and lease_expired(event)
    assert take_lease(event, EventState.RESTORING)


def test_an_event_of_a_disabled_server_is_still_driven(protected, fo_settings):
    recording, _ = protected
    event = event_in(recording, EventState.DETECTED)
    Server.objects.filter(pk=recording.pk).update(enabled=False)
    assert cycle(settings=fo_settings) == [event.pk]  # not probed, still woken


def test_an_event_of_a_deleted_server_is_woken_to_end(protected, fo_settings):
    recording, _ = protected
    event = event_in(recording, EventState.ACTIVE)
    FailoverEvent.objects.filter(pk=event.pk).update(recording_server=None)
    assert cycle(settings=fo_settings) == [event.pk]
    assert engine.step(event.pk) == EventState.STOPPED


# -- failback_due --------------------------------------------------------------------


def waiting(server, recovered_ago: float) -> FailoverEvent:
    return event_in(server, EventState.WAITING_FAILBACK,
                    recovered_at=NOW - dt.timedelta(seconds=recovered_ago))  # fmt: skip


def test_automatic_failback_is_due_after_the_hold_down(protected, fo_settings):
    event = waiting(protected[0], recovered_ago=59)
    assert not engine.failback_due(event, fo_settings, NOW)
    assert engine.failback_due(event, fo_settings, NOW + dt.timedelta(seconds=1))


def test_manual_failback_is_never_due_by_itself(protected, fo_settings):
    fo_settings.failback_mode = "manual"
    event = waiting(protected[0], recovered_ago=10**6)
    assert not engine.failback_due(event, fo_settings, NOW)


@pytest.mark.parametrize(
    ("start", "end", "at", "due"),
    [
        (dt.time(2), dt.time(5), dt.time(1, 59), False),
        (dt.time(2), dt.time(5), dt.time(2), True),
        (dt.time(2), dt.time(5), dt.time(4, 59), True),
        (dt.time(2), dt.time(5), dt.time(5), False),  # the end is outside
        (dt.time(23), dt.time(1), dt.time(23, 30), True),  # across midnight
        (dt.time(23), dt.time(1), dt.time(0, 30), True),
        (dt.time(23), dt.time(1), dt.time(12), False),
    ],
)
def test_scheduled_failback_is_due_in_its_window(protected, fo_settings, start, end, at, due):
    fo_settings.failback_mode = "scheduled"
    fo_settings.failback_window_start, fo_settings.failback_window_end = start, end
    event = waiting(protected[0], recovered_ago=0)
    local = timezone.localtime(NOW).replace(hour=at.hour, minute=at.minute, second=0)
    assert engine.failback_due(event, fo_settings, local) is due


def test_failback_is_due_only_while_waiting_for_it(protected, fo_settings):
    event = event_in(protected[0], EventState.ACTIVE, recovered_at=NOW - dt.timedelta(days=1))
    assert not engine.failback_due(event, fo_settings, NOW)


# -- candidates ----------------------------------------------------------------------


def test_candidates_in_protection_order_enabled_healthy_and_idle(protected, make_server):
    recording, (first, second) = protected
    event = event_in(recording, EventState.DETECTED)
    assert engine.candidates(event) == [first, second]

    Server.objects.filter(pk=first.pk).update(enabled=False)
    assert engine.candidates(event) == [second]
    Server.objects.filter(pk=first.pk).update(enabled=True, status=HealthStatus.AUTH_FAILED)
    assert engine.candidates(event) == [second]
    Server.objects.filter(pk=first.pk).update(status=HealthStatus.NORMAL)
    event_in(make_server(role="recording", name="Garage"), EventState.RESTORING,
             failover_server=second)  # fmt: skip
    assert engine.candidates(event) == [first]  # restoring from `second`: busy


def test_staying_on_the_failover_server_never_fails_back_by_itself(protected, fo_settings):
    fo_settings.failback_mode = "stay"
    fo_settings.full_clean()  # a choice the settings accept
    event = waiting(protected[0], recovered_ago=10**6)
    assert not engine.failback_due(event, fo_settings, NOW)
    assert not engine.needs_worker(event, fo_settings, NOW)
