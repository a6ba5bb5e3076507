"""The Prometheus endpoint: who may scrape it, and figures that match the database."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from failover import metrics
from failover.models import FailoverEvent, RestorationJob

pytestmark = pytest.mark.django_db

TOKEN = "scrape-token-123"


def scrape(client, **headers) -> dict[str, list]:
    answer = client.get("/metrics", **headers)
    assert answer.status_code == 200, answer.content
    assert answer["Content-Type"].startswith("text/plain")
    families = text_string_to_metric_families(answer.content.decode())
    return {family.name: family.samples for family in families}


def value(samples: list, name: str, **labels: str) -> float:
    [found] = [s.value for s in samples if s.name == name and s.labels == labels]
    return found


def event(team, name: str, state: str, *, takeover: float | None = None,
          gap: float | None = None) -> FailoverEvent:  # fmt: skip
    made = FailoverEvent.objects.create(team=team, recording_server_name=name, node_tag=name,
                                        trigger="disconnected", state=state)  # fmt: skip
    detected = timezone.now() - dt.timedelta(hours=1)
    FailoverEvent.objects.filter(pk=made.pk).update(
        detected_at=detected, recording_gap_seconds=gap,
        taken_over_at=detected + dt.timedelta(seconds=takeover) if takeover else None,
    )  # fmt: skip
    return made


@pytest.fixture
def fleet_rows(team, make_server):
    make_server(status="normal")
    make_server(status="normal")
    make_server(status="disconnected")
    make_server(role="failover", status="normal")
    make_server(role="failover", status="normal", enabled=False)  # not counted
    event(team, "A", "active", takeover=12.5)
    event(team, "B", "no_failover_server")
    done = event(team, "C", "restoring", takeover=40.0, gap=3.0)
    event(team, "D", "completed", takeover=8.0, gap=25.0)
    RestorationJob.objects.create(event=done, state="running", rate_bps=2_500_000.0)


def test_only_the_token_or_a_staff_login_may_scrape(client, settings, django_user_model):
    settings.CMS_METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    user = django_user_model.objects.create_user("viewer", password="pw-viewer-123")
    client.force_login(user)
    assert client.get("/metrics").status_code == 401  # a login, but not staff
    user.is_staff = True
    user.save()
    assert client.get("/metrics").status_code == 200


def test_no_token_configured_lets_no_bearer_in(client, settings):
    settings.CMS_METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_the_figures_match_the_database(admin_client, fleet_rows, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    metrics.record_cycle(probed=4, seconds=0.35)
    got = scrape(admin_client)

    servers = got["cms_servers"]
    assert value(servers, "cms_servers", role="recording", status="normal") == 2
    assert value(servers, "cms_servers", role="recording", status="disconnected") == 1
    assert value(servers, "cms_servers", role="failover", status="normal") == 1
    events = got["cms_open_events"]
    assert value(events, "cms_open_events", state="active") == 1
    assert value(events, "cms_open_events", state="no_failover_server") == 1
    assert value(events, "cms_open_events", state="restoring") == 1
    assert value(events, "cms_open_events", state="taking_over") == 0

    takeover = got["cms_time_to_take_over_seconds"]
    assert value(takeover, "cms_time_to_take_over_seconds_count") == 3
    assert value(takeover, "cms_time_to_take_over_seconds_sum") == pytest.approx(60.5)
    assert value(takeover, "cms_time_to_take_over_seconds_bucket", le="10.0") == 1
    assert value(takeover, "cms_time_to_take_over_seconds_bucket", le="15.0") == 2
    assert value(takeover, "cms_time_to_take_over_seconds_bucket", le="+Inf") == 3
    gaps = got["cms_recording_gap_seconds"]
    assert value(gaps, "cms_recording_gap_seconds_count") == 2
    assert value(gaps, "cms_recording_gap_seconds_sum") == pytest.approx(28.0)
    assert value(gaps, "cms_recording_gap_seconds_bucket", le="5.0") == 1

    rate = got["cms_restoration_bytes_per_second"]
    assert value(rate, "cms_restoration_bytes_per_second") == 2_500_000.0
    assert value(got["cms_probe_cycle_seconds"], "cms_probe_cycle_seconds") == 0.35
    assert value(got["cms_probe_cycle_servers"], "cms_probe_cycle_servers") == 4
    interval = max(settings_interval(), 1)
    assert value(got["cms_probes_per_second"], "cms_probes_per_second") == 4 / interval

    # A change in the database shows at the next scrape.
    FailoverEvent.objects.filter(recording_server_name="A").update(state="completed")
    again = scrape(admin_client)
    assert value(again["cms_open_events"], "cms_open_events", state="active") == 0


def settings_interval() -> int:
    from failover.models import FailoverSettings

    return FailoverSettings.load().probe_interval


def test_no_probe_cycle_yet_leaves_its_figures_out(admin_client, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    got = scrape(admin_client)
    assert "cms_probe_cycle_seconds" not in got
    assert "cms_servers" in got


def test_shard_cycles_add_up_and_a_stalled_shard_shows_in_the_age(admin_client, settings, tmp_path):
    from failover.shards import Shard

    settings.VAR_DIR = tmp_path
    metrics.record_cycle(probed=99, seconds=3.0, shard=Shard(2, 3))  # when there were 3
    metrics.record_cycle(probed=2500, seconds=0.4, shard=Shard(0, 2))
    metrics.record_cycle(probed=2499, seconds=0.6, shard=Shard(1, 2))
    got = scrape(admin_client)
    assert value(got["cms_probe_cycle_servers"], "cms_probe_cycle_servers") == 4999
    assert value(got["cms_probe_cycle_seconds"], "cms_probe_cycle_seconds") == 0.6

    # One shard's cycles stop: the age is that shard's, though the other goes on.
    stalled = metrics.shard_stats_path(1)
    figures = json.loads(stalled.read_text())
    stalled.write_text(json.dumps({**figures, "at": figures["at"] - 120}))
    metrics.record_cycle(probed=2500, seconds=0.4, shard=Shard(0, 2))
    age = value(scrape(admin_client)["cms_probe_cycle_age_seconds"], "cms_probe_cycle_age_seconds")
    assert age >= 120
