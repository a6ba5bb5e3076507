"""apply_evidence: what a watch stream showed, written at the full failure count and
decided on at once; nothing else changes."""

from __future__ import annotations

import pytest

from cms.inventory.choices import HealthStatus
from cms.inventory.models import Server
from cms.nodes.watch import EVIDENCE_TASK
from failover.choices import EventState
from failover.models import FailoverEvent
from failover.watching import apply_evidence

HEALTH = ["status", "consecutive_failures", "consecutive_successes", "last_error"]


def health_of(server: Server) -> tuple:
    server.refresh_from_db()
    return tuple(getattr(server, f) for f in HEALTH)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (HealthStatus.VOLUME_ABNORMAL, "the agent reported it on its watch stream: volume"),
        (HealthStatus.SERVICE_ABNORMAL, "the agent reported it on its watch stream: service"),
        (HealthStatus.DISCONNECTED, "the agent's watch stream closed and its port refuses"),
        (HealthStatus.DISCONNECTED, "the agent's watch stream was silent for 1.4 s (phi 12)"),
    ],
)
def test_evidence_counts_as_the_full_failure_count_and_opens_the_event(
    protected, fo_settings, status, message
):
    recording, _ = protected
    wake = apply_evidence(recording.pk, status, message)
    recording.refresh_from_db()
    assert recording.status == status and recording.last_error == message
    assert recording.consecutive_failures == fo_settings.failures_before_failover
    event = FailoverEvent.objects.get(recording_server=recording)
    assert event.state == EventState.DETECTED
    assert wake == [event.pk]


def test_evidence_about_a_server_already_known_in_full_changes_nothing(protected, fo_settings):
    recording, _ = protected
    Server.objects.filter(pk=recording.pk).update(
        status=HealthStatus.DISCONNECTED,
        consecutive_failures=fo_settings.failures_before_failover,
        last_error="no answer",
    )
    before = health_of(recording)
    assert apply_evidence(recording.pk, HealthStatus.DISCONNECTED, "silent") == []
    assert health_of(recording) == before


def test_evidence_after_a_probe_that_saw_the_fault_first_counts_in_full(protected, fo_settings):
    """A probe that timed out first counted one failure; the stream's evidence must not be
    dropped for having the same status, or the failover waits for two more probes."""
    recording, _ = protected
    Server.objects.filter(pk=recording.pk).update(
        status=HealthStatus.DISCONNECTED, consecutive_failures=1, last_error="no answer"
    )
    wake = apply_evidence(recording.pk, HealthStatus.DISCONNECTED, "silent for 1.3 s")
    recording.refresh_from_db()
    assert recording.consecutive_failures == fo_settings.failures_before_failover
    event = FailoverEvent.objects.get(recording_server=recording)
    assert wake == [event.pk]


def test_a_disabled_or_deleted_server_is_ignored(protected, fo_settings):
    recording, _ = protected
    Server.objects.filter(pk=recording.pk).update(enabled=False)
    before = health_of(recording)
    assert apply_evidence(recording.pk, HealthStatus.VOLUME_ABNORMAL, "volume") == []
    assert health_of(recording) == before
    assert apply_evidence(10_000, HealthStatus.VOLUME_ABNORMAL, "volume") == []
    assert not FailoverEvent.objects.exists()


@pytest.mark.parametrize("status", [HealthStatus.NORMAL, "bad_answer", "nonsense", ""])
def test_only_fault_statuses_are_evidence(protected, fo_settings, status):
    recording, _ = protected
    before = health_of(recording)
    assert apply_evidence(recording.pk, status, "x") == []
    assert health_of(recording) == before


def test_a_failover_server_that_is_not_acting_just_shows_the_fault(protected, fo_settings):
    _, (standby, _) = protected
    apply_evidence(standby.pk, HealthStatus.DISCONNECTED, "refuses")
    standby.refresh_from_db()
    assert standby.status == HealthStatus.DISCONNECTED
    assert not FailoverEvent.objects.exists()


def test_an_acting_failover_server_that_dies_is_replaced_at_once(protected, fo_settings):
    recording, (standby, _) = protected
    Server.objects.filter(pk=recording.pk).update(status=HealthStatus.DISCONNECTED,
                                                  consecutive_failures=3)  # fmt: skip
    event = FailoverEvent.objects.create(
        team=recording.team, recording_server=recording, recording_server_name=recording.name,
        node_tag=f"rs{recording.pk}", trigger="disconnected", state=EventState.ACTIVE,
        failover_server=standby, epoch=1,
    )  # fmt: skip
    wake = apply_evidence(standby.pk, HealthStatus.DISCONNECTED, "refuses connections")
    event.refresh_from_db()
    assert wake == [event.pk]
    assert event.state == EventState.DETECTED  # the next failover server takes over
    assert [e["id"] for e in event.earlier_failover_servers] == [standby.pk]


def test_the_task_the_watcher_sends_by_name_exists():
    from cms.celery import app

    app.loader.import_default_modules()
    assert EVIDENCE_TASK in app.tasks
