"""Failover settings stay within their ranges: refused at the doors, clamped on load."""

from __future__ import annotations

import html
import logging

import pytest
from django.db import connection, connections
from rest_framework.test import APIClient

from failover.models import FailoverSettings

URL = "/api/v1/failover-settings/"
VALID = {
    "auto_failover": True, "on_disconnection": True, "on_volume_abnormal": True,
    "on_service_abnormal": True, "probe_interval": 5, "probe_timeout": 3.0,
    "failures_before_failover": 3, "successes_before_recovery": 3,
    "failback_mode": "automatic", "failback_hold_down": 60,
    "failback_window_start": "02:00", "failback_window_end": "05:00",
    "restore_recordings": True,
}  # fmt: skip
OUT_OF_RANGE = [
    ("probe_interval", 0, "The probe interval must be between 1 and 3600 seconds (got 0)."),
    ("probe_interval", 86400, "between 1 and 3600 seconds (got 86400)"),
    ("probe_timeout", 0.05, "The probe timeout must be between 0.2 and 60 seconds (got 0.05)."),
    ("probe_timeout", 1e9, "between 0.2 and 60 seconds"),
    ("failures_before_failover", 0, "The failures before failover must be between 1 and 100"),
    ("failures_before_failover", 5000, "between 1 and 100 probes (got 5000)"),
    ("successes_before_recovery", 101, "successes before recovery must be between 1 and 100"),
    ("failback_hold_down", 604801, "between 0 and 604800 seconds (7 days) (got 604801)"),
]


def stored() -> dict:
    """The row as the database has it, without load()'s clamp."""
    return dict(FailoverSettings.objects.values().get(pk=1))


@pytest.fixture
def admin_api(admin_user):
    FailoverSettings.load()
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


@pytest.mark.parametrize(("field", "value", "message"), OUT_OF_RANGE)
@pytest.mark.parametrize("method", ["put", "patch"])
def test_the_api_refuses_a_value_out_of_range_and_changes_nothing(
    admin_api, method, field, value, message
):
    before = stored()
    body = {**VALID, field: value} if method == "put" else {field: value}
    response = getattr(admin_api, method)(URL, body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == [field]
    assert any(message in text for text in error["fields"][field])
    assert stored() == before


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"probe_interval": 2, "probe_timeout": 5}, "probe_timeout",
         "must be shorter than the probe interval (2 seconds)"),
        ({"failback_window_start": "25:00"}, "failback_window_start", "wrong format"),
        ({"failback_mode": "scheduled", "failback_window_start": "03:00",
          "failback_window_end": "03:00"}, "failback_window_end", "must not be empty"),
        ({"failback_mode": "sometimes"}, "failback_mode", "is not a valid choice"),
    ],
)  # fmt: skip
def test_the_api_refuses_settings_that_do_not_fit_together(admin_api, body, field, message):
    before = stored()
    response = admin_api.patch(URL, body, format="json")
    assert response.status_code == 400, response.content
    assert message in " ".join(response.json()["error"]["fields"][field])
    assert stored() == before


def test_the_api_accepts_the_edges_of_each_range(admin_api):
    edges = {"probe_interval": 3600, "probe_timeout": 60, "failures_before_failover": 100,
             "successes_before_recovery": 1, "failback_hold_down": 604800}  # fmt: skip
    response = admin_api.patch(URL, edges, format="json")
    assert response.status_code == 200, response.content
    assert {k: stored()[k] for k in edges} == edges
    low = {"probe_interval": 1, "probe_timeout": 0.2, "failback_hold_down": 0}
    assert admin_api.patch(URL, low, format="json").status_code == 200
    assert {k: stored()[k] for k in low} == low


def test_the_admin_form_names_the_field_and_its_range_and_saves_nothing(admin_client):
    obj = FailoverSettings.load()
    url = f"/admin/failover/failoversettings/{obj.pk}/change/"
    data = {
        "auto_failover": "on", "on_disconnection": "on", "probe_interval": "0",
        "probe_timeout": "3", "failures_before_failover": "3",
        "successes_before_recovery": "300", "failback_mode": "automatic",
        "failback_hold_down": "60", "failback_window_start": "02:00",
        "failback_window_end": "05:00",
    }  # fmt: skip
    before = stored()
    response = admin_client.post(url, data)
    assert response.status_code == 200  # the form again, with its errors
    form = response.context["adminform"].form
    assert form.errors["probe_interval"] == [
        "The probe interval must be between 1 and 3600 seconds (got 0)."
    ]
    assert "between 1 and 100 probes (got 300)" in form.errors["successes_before_recovery"][0]
    page = html.unescape(response.content.decode())
    assert "The probe interval must be between 1 and 3600 seconds (got 0)." in page
    assert stored() == before


def test_absurd_values_written_around_the_validation_are_clamped_on_load(db, caplog):
    FailoverSettings.load()
    with connection.cursor() as cursor:  # an old row, a restore, a hand-written UPDATE
        cursor.execute(
            "UPDATE failover_failoversettings SET probe_interval = 0, probe_timeout = 900, "
            "failures_before_failover = 0, successes_before_recovery = 100000, "
            "failback_hold_down = 99999999, failback_mode = 'sometimes' WHERE id = 1"
        )
    with caplog.at_level(logging.WARNING, logger="failover.limits"):
        settings = FailoverSettings.load()
        FailoverSettings.load()  # the loop loads every second: one line, not one a second
    assert (settings.probe_interval, settings.probe_timeout) == (1, 1.0)
    assert settings.failures_before_failover == 1
    assert settings.successes_before_recovery == 100
    assert settings.failback_hold_down == 604800
    assert settings.failback_mode == "automatic"
    settings.full_clean()  # what the loop sees would pass the validation
    [record] = caplog.records
    assert "probe_interval 0 -> 1" in record.getMessage()
    assert "failback_hold_down 99999999 -> 604800" in record.getMessage()
    assert stored()["probe_interval"] == 0  # loading does not write behind the operator


@pytest.mark.django_db(transaction=True)  # the cycle runs in a thread: it must see the rows
def test_the_probe_loop_runs_on_the_clamped_values(make_server):
    """A 15-minute probe timeout written into the row would hold every cycle that long
    for a node that accepts connections and never answers; clamped to the interval, the
    cycle ends and says so."""
    import socket
    import threading

    from cms.inventory.choices import HealthStatus
    from failover import probing

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        server = make_server(host="127.0.0.1", port=silent.getsockname()[1])
        FailoverSettings.load()
        FailoverSettings.objects.filter(pk=1).update(probe_interval=1, probe_timeout=900)

        def one_cycle() -> None:
            try:
                probing.run_cycle(force=True)
            finally:
                connections.close_all()

        cycle = threading.Thread(target=one_cycle, daemon=True)
        cycle.start()
        cycle.join(60)
        assert not cycle.is_alive(), "the cycle waited for the timeout stored in the row"
    server.refresh_from_db()
    assert server.status == HealthStatus.DISCONNECTED
