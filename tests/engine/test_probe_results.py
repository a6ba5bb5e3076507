"""apply_result: a probe's outcome as counters and fields, written only when it changes."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from cms.inventory.choices import HealthStatus
from failover.probing import ProbeResult, apply_result

NOW = timezone.now()


def probe(server, status: str, error: str = "", latency: float | None = None) -> ProbeResult:
    return ProbeResult(server.pk, status, latency_ms=latency, error=error)


def test_failures_count_up_to_the_threshold_and_stop_there(make_server, fo_settings):
    server = make_server(status=HealthStatus.NORMAL)
    changed = [apply_result(server, probe(server, HealthStatus.DISCONNECTED), fo_settings, NOW)
               for _ in range(5)]  # fmt: skip
    assert server.consecutive_failures == fo_settings.failures_before_failover == 3
    # A server down for a week does not count its millionth failure: no write.
    assert changed == [True, True, True, False, False]
    assert server.consecutive_successes == 0


def test_a_different_failure_starts_a_new_count(make_server, fo_settings):
    server = make_server(status=HealthStatus.NORMAL)
    for _ in range(2):
        apply_result(server, probe(server, HealthStatus.DISCONNECTED), fo_settings, NOW)
    apply_result(server, probe(server, HealthStatus.VOLUME_ABNORMAL, "volume crashed"),
                 fo_settings, NOW)  # fmt: skip
    assert (server.status, server.consecutive_failures) == (HealthStatus.VOLUME_ABNORMAL, 1)
    assert server.last_error == "volume crashed"


def test_unreachable_from_the_cms_keeps_its_count_while_the_cms_cannot_reach_it(
    make_server, fo_settings
):
    """Its failover servers reached it last time: a failed probe goes on with the same
    failure (count, status and the second opinion's words kept, nothing written), so
    the gates ask again on this very cycle and it fails over on the first cycle they
    stop reaching it. Any other outcome is a new story."""
    held = "the CMS cannot reach it, but Standby 1 can"
    server = make_server(status=HealthStatus.UNREACHABLE_FROM_CMS, consecutive_failures=3,
                         last_error=held)  # fmt: skip
    assert not apply_result(server, probe(server, HealthStatus.DISCONNECTED, "timed out"),
                            fo_settings, NOW)  # fmt: skip
    assert (server.status, server.consecutive_failures, server.last_error) == (
        HealthStatus.UNREACHABLE_FROM_CMS, 3, held,
    )  # fmt: skip

    apply_result(server, probe(server, HealthStatus.SERVICE_ABNORMAL, "service stopped"),
                 fo_settings, NOW)  # fmt: skip
    assert (server.status, server.consecutive_failures) == (HealthStatus.SERVICE_ABNORMAL, 1)

    server = make_server(status=HealthStatus.UNREACHABLE_FROM_CMS, consecutive_failures=3)
    apply_result(server, probe(server, HealthStatus.NORMAL), fo_settings, NOW)
    assert (server.status, server.consecutive_failures) == (HealthStatus.NORMAL, 0)


def test_one_good_probe_resets_the_failures_and_counts_towards_recovery(make_server, fo_settings):
    server = make_server(status=HealthStatus.NORMAL)
    for _ in range(3):
        apply_result(server, probe(server, HealthStatus.SERVICE_ABNORMAL), fo_settings, NOW)
    for _ in range(4):
        apply_result(server, probe(server, HealthStatus.NORMAL), fo_settings, NOW)
    assert server.consecutive_failures == 0
    assert server.consecutive_successes == fo_settings.successes_before_recovery == 2
    assert server.last_error == ""


def test_latency_alone_is_no_reason_to_write(make_server, fo_settings):
    server = make_server(status=HealthStatus.NORMAL)
    for _ in range(2):
        apply_result(server, probe(server, HealthStatus.NORMAL, latency=3.0), fo_settings, NOW)
    assert not apply_result(server, probe(server, HealthStatus.NORMAL, latency=900.0),
                            fo_settings, NOW)  # fmt: skip
    assert server.latency_ms == 3.0  # it rides along with a real change only


def test_a_long_error_is_cut_to_what_the_column_holds(make_server, fo_settings):
    server = make_server()
    apply_result(server, probe(server, HealthStatus.DISCONNECTED, "x" * 5000), fo_settings,
                 NOW + dt.timedelta(seconds=1))  # fmt: skip
    assert len(server.last_error) == 1000
