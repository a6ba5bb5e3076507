"""Alerts from real failovers to a real webhook receiver, delivered by a real worker."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection

from cms.alerts.kinds import Kind
from cms.alerts.models import Alert, Channel
from cms.inventory.choices import HealthStatus
from cms.inventory.models import Server
from failover import engine, probing
from failover.choices import EventState
from failover.models import FailoverEvent
from tests.fixtures import hostile as h
from tests.fixtures.celery import SESSION_QUEUE, start_worker
from tests.fixtures.nodes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "hook-s3cret-Pw"
WORKER_ENV = {"CMS_ALERT_RETRY_SECONDS": "0.2", "CMS_ALERT_ATTEMPTS": "4"}


class Receiver:
    """A webhook receiver on 127.0.0.1: records every POST, answers `statuses` in turn
    (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[dict] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(size) or b"{}")
                receiver.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), **body}
                )
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "hook") -> str:
        return f"json://alerts:{PASSWORD}@127.0.0.1:{self.port}/{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator:
    made: list[Receiver] = []

    def make(statuses: list[int] | None = None) -> Receiver:
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def workers(tmp_path) -> Iterator:
    started = []

    def start():
        started.append(start_worker(tmp_path, queue=SESSION_QUEUE, **WORKER_ENV))
        return started[-1]

    yield start
    for worker in started:
        worker.stop()


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nobody listens there


def channel(team, url: str, name: str = "Webhook", **fields) -> Channel:
    return Channel.objects.create(team=team, name=name, type=Channel.APPRISE, url=url, **fields)


def test_a_failover_reaches_the_teams_webhook_and_no_other_team(
    make_fleet, team, other_team, receivers, workers, settings
):
    settings.CMS_BASE_URL = "https://cms.example.com"
    ours, theirs = receivers(), receivers()
    channel(team, ours.url())
    channel(other_team, theirs.url())
    fleet = make_fleet(failovers=1)
    worker = workers()

    event = fleet.fail_over()
    assert event.state == EventState.ACTIVE
    wait_until(lambda: ours.requests, timeout=30, message=f"the alert\n{worker.log()[-3000:]}")
    [got] = ours.requests
    assert got["title"] == "Failover opened: Lobby by Standby 1"
    assert f"Failover event #{event.pk} of Lobby" in got["message"]
    assert got["path"] == "/hook"
    link = f"https://cms.example.com/admin/failover/failoverevent/{event.pk}/change/"
    assert got["message"].endswith(link)
    # The stored URL was decrypted for the call: its credentials reached the receiver.
    assert got["auth"] == "Basic " + base64.b64encode(f"alerts:{PASSWORD}".encode()).decode()
    alert = Alert.objects.get(team=team)
    wait_until(lambda: Alert.objects.get(pk=alert.pk).state == Alert.SENT, timeout=10)
    assert (alert.kind, Alert.objects.get(pk=alert.pk).attempts) == (Kind.FAILOVER_OPENED, 1)
    assert theirs.requests == []
    assert not Alert.objects.filter(team=other_team).exists()
    assert PASSWORD not in worker.log()


def test_a_failing_channel_is_retried_by_the_worker_not_by_the_failover(
    make_fleet, team, receivers, workers
):
    flaky = receivers(statuses=[500, 500])
    channel(team, flaky.url(), name="Flaky")
    channel(team, f"json://alerts:{PASSWORD}@127.0.0.1:{refused_port()}/x", name="Refused")
    fleet = make_fleet(failovers=1)

    # No worker yet: the failover completes with every channel down and nothing sent;
    # its alerts wait in the queue.
    event = fleet.fail_over()
    assert event.state == EventState.ACTIVE
    assert flaky.requests == []
    assert set(Alert.objects.values_list("state", "attempts")) == {(Alert.QUEUED, 0)}

    worker = workers()
    flaky_alert = Alert.objects.get(channel__name="Flaky")
    refused_alert = Alert.objects.get(channel__name="Refused")
    wait_until(lambda: Alert.objects.get(pk=flaky_alert.pk).state == Alert.SENT, timeout=30,
               message=f"the retried alert\n{worker.log()[-3000:]}")  # fmt: skip
    assert len(flaky.requests) == 3  # 500, 500, then taken
    assert Alert.objects.get(pk=flaky_alert.pk).attempts == 3
    wait_until(lambda: Alert.objects.get(pk=refused_alert.pk).state == Alert.FAILED, timeout=30,
               message=f"the refused channel gives up\n{worker.log()[-3000:]}")  # fmt: skip
    refused_alert.refresh_from_db()
    assert refused_alert.attempts == 4
    assert "apprise could not deliver" in refused_alert.error
    assert PASSWORD not in refused_alert.error
    assert PASSWORD not in worker.log()
    FailoverEvent.objects.get(state=EventState.ACTIVE)  # the event never waited on them


def test_failback_and_no_failover_server_alerts_are_recorded(make_fleet, team):
    channel(team, "json://127.0.0.1:9/hook")  # never reached here: no worker
    identity_only = Channel.objects.create(
        team=team, name="Mail", type=Channel.EMAIL, emails="ops@example.com",
        kinds=[Kind.IDENTITY_CHANGED],
    )  # fmt: skip
    fleet = make_fleet(failovers=1)
    event = fleet.fail_over("volume")
    fleet.recording_node.client().set_fault("clear")
    for _ in range(2):
        probing.run_cycle(force=True)
    assert engine.advance(event.pk) == EventState.COMPLETED
    kinds = list(Alert.objects.filter(channel__name="Webhook").order_by("pk")
                 .values_list("kind", flat=True))  # fmt: skip
    assert kinds == [Kind.FAILOVER_OPENED, Kind.FAILBACK_DONE]

    fleet.failover_nodes[0].kill()  # nobody can take over next time
    fleet.recording_node.client().set_fault("volume")  # (a fault that needs no second opinion)
    for _ in range(2):
        probing.run_cycle(force=True)
    second = FailoverEvent.objects.exclude(pk=event.pk).get()
    assert engine.advance(second.pk) == EventState.NO_FAILOVER_SERVER
    assert Alert.objects.filter(channel__name="Webhook", kind=Kind.NO_FAILOVER_SERVER).count() == 1
    # A channel takes only the kinds it asked for.
    assert identity_only.alerts.count() == 0


def test_identity_changed_alerts_once(team, make_server, hostile_node, failover_settings):
    mail = Channel.objects.create(team=team, name="Mail", type=Channel.EMAIL,
                                  emails="ops@example.com")  # fmt: skip
    other = hostile_node({})  # answers /info as serial BAD0000001
    server = make_server(host="127.0.0.1", port=other.port, admin_password=h.PASSWORD)
    Server.objects.filter(pk=server.pk).update(serial="REAL0000001", model="CMS-NODE")
    probing.run_cycle(force=True)
    probing.run_cycle(force=True)  # still another device: no second alert
    assert Server.objects.get(pk=server.pk).status == HealthStatus.IDENTITY_CHANGED
    [alert] = mail.alerts.all()
    assert alert.kind == Kind.IDENTITY_CHANGED
    assert alert.subject == f"Identity changed: {server.name}"
    assert "BAD0000001" in alert.body


def test_a_channel_url_is_write_only_in_the_api_and_never_logged(
    admin_client, team, receivers, workers, caplog
):
    caplog.set_level(logging.DEBUG)
    url = f"json://alerts:{PASSWORD}@127.0.0.1:{refused_port()}/hook"
    created = admin_client.post(
        "/api/v1/alert-channels/",
        {"team": team.pk, "name": "Chat", "type": "apprise", "url": url},
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["has_url"] is True
    assert "url" not in created.json()
    channel_id = created.json()["id"]
    for path in ("/api/v1/alert-channels/", f"/api/v1/alert-channels/{channel_id}/"):
        answer = admin_client.get(path)
        assert answer.status_code == 200
        assert PASSWORD not in answer.content.decode()
    # Encrypted at rest.
    stored = raw_url(channel_id)
    assert stored and PASSWORD not in stored
    assert Channel.objects.get(pk=channel_id).url.reveal() == url
    # A change without a URL keeps the stored one.
    kept = admin_client.patch(f"/api/v1/alert-channels/{channel_id}/", {"name": "Chat 2"},
                              content_type="application/json")  # fmt: skip
    assert kept.status_code == 200
    assert Channel.objects.get(pk=channel_id).url.reveal() == url
    # Bad input: a clear error, nothing saved, the URL not echoed.
    bad = admin_client.post(
        "/api/v1/alert-channels/",
        {"team": team.pk, "name": "Bad", "type": "apprise", "url": f"nope://{PASSWORD}"},
        content_type="application/json",
    )
    assert bad.status_code == 400
    assert PASSWORD not in bad.content.decode()
    assert not Channel.objects.filter(name="Bad").exists()

    worker = workers()
    from cms.alerts import service

    service.test(Channel.objects.get(pk=channel_id))
    wait_until(lambda: Alert.objects.filter(state=Alert.FAILED).exists(), timeout=30,
               message=f"the failed alert\n{worker.log()[-3000:]}")  # fmt: skip
    history = admin_client.get("/api/v1/alerts/").content.decode()
    assert "apprise could not deliver" in history
    for text in (history, worker.log(), caplog.text):
        assert PASSWORD not in text
    page = admin_client.get(f"/admin/alerts/channel/{channel_id}/change/")
    assert page.status_code == 200
    assert PASSWORD not in page.content.decode()


def test_another_teams_channels_are_invisible_in_the_api(client, django_user_model, team,
                                                          other_team):  # fmt: skip
    from django.contrib.auth.models import Group

    from cms.inventory.models import TeamMembership

    channel(other_team, "json://127.0.0.1:9/x", name="Theirs")
    user = django_user_model.objects.create_user("admin-a", password="pw-a-123456")
    user.groups.add(Group.objects.get(name="Administrator"))
    TeamMembership.objects.create(team=team, user=user)
    client.force_login(user)
    assert client.get("/api/v1/alert-channels/").json()["results"] == []
    made = client.post(
        "/api/v1/alert-channels/",
        {"team": other_team.pk, "name": "Sneaky", "type": "email", "emails": "a@example.com"},
        content_type="application/json",
    )
    assert made.status_code == 400
    assert not Channel.objects.filter(name="Sneaky").exists()


def raw_url(channel_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT url FROM alerts_channel WHERE id = %s", [channel_id])
        return cursor.fetchone()[0]


def test_key_rotation_reencrypts_the_channel_urls(team, settings):
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CMS_SECRET_KEYS = [old_key]
    url = f"json://alerts:{PASSWORD}@127.0.0.1:9/hook"
    made = channel(team, url)
    old_token = raw_url(made.pk)
    settings.CMS_SECRET_KEYS = [new_key, old_key]
    call_command("rotate_secrets")
    assert raw_url(made.pk) != old_token
    settings.CMS_SECRET_KEYS = [new_key]  # the old key is gone
    assert Channel.objects.get(pk=made.pk).url.reveal() == url


def fresh_pools(app) -> None:
    from kombu import pools

    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


def test_a_broker_outage_never_fails_a_failover(make_fleet, team, private_broker, caplog):
    from cms import broker
    from cms.celery import app

    channel(team, "json://127.0.0.1:9/hook")
    fleet = make_fleet(failovers=1)
    # This process's producer now talks to a broker of its own, which then stops. kombu
    # keeps its connection pools process-wide: they are all closed and forgotten on the
    # way in and out, so the next send (here and in later tests) opens fresh ones.
    original = app.conf.broker_url
    app.conf.broker_url = broker.url(private_broker)
    fresh_pools(app)
    broker.stop(private_broker)
    try:
        event = fleet.fail_over()
    finally:
        app.conf.broker_url = original
        fresh_pools(app)
    assert event.state == EventState.ACTIVE
    # Recorded, waiting for the sweep to enqueue it once the broker is back.
    [alert] = Alert.objects.all()
    assert (alert.kind, alert.state, alert.attempts) == (Kind.FAILOVER_OPENED, Alert.QUEUED, 0)
