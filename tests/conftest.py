"""Shared fixtures. Tests are grouped by what they need: unit/ (no database, no
processes), engine/ (the database only), integration/ (the database and real agents,
brokers and workers), browser/ (all that and Chromium)."""

from __future__ import annotations

import os

import pytest
from django.conf import settings

# Watch streams (cms/nodes/watch.py) are on by default in a deployment; here the tests
# that are about them turn them on (tests/integration/test_watch_streams.py,
# tests/faults/test_watch.py), so that every other test counts its probes as written,
# in this process and in the workers it starts (they inherit this environment).
os.environ.setdefault("CMS_WATCH", "0")
settings.CMS_WATCH = os.environ["CMS_WATCH"] not in ("0", "false", "no", "off")

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.celery",
    "tests.fixtures.nodes",
    "tests.fixtures.fleet",
    "tests.fixtures.api",
    "tests.fixtures.node_io",
    "tests.fixtures.proxy",
    "tests.fixtures.hostile",
    "tests.fixtures.faulty_network",
]


@pytest.fixture
def team(db):
    from cms.inventory.models import Team

    return Team.objects.create(name="Site A")


@pytest.fixture
def other_team(db):
    from cms.inventory.models import Team

    return Team.objects.create(name="Site B")


@pytest.fixture
def admin_user(db, django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123")


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def make_server(db, team):
    from cms.inventory.models import Server

    counter = {"n": 0}

    def make(**fields) -> Server:
        counter["n"] += 1
        values = {
            "team": team,
            "role": "recording",
            "name": f"Server {counter['n']}",
            "host": f"127.0.0.{counter['n'] % 250 + 1}",
            "port": 5000,
            "admin_password": "node-secret",
        }
        values.update(fields)
        server = Server(**values)
        server.full_clean()
        server.save()
        return server

    return make


def pytest_configure(config):
    # Password hashing is deliberately slow; tests log in hundreds of times.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Under pytest-xdist the controller starts the one broker before its workers and stops
    # it after them; every worker has its own queue (tests/fixtures/celery.py).
    if settings.CMS_EMBEDDED_BROKER and not hasattr(config, "workerinput"):
        # No CELERY_BROKER_URL: the tests' own private redis-server, as `make run` has.
        from cms import broker

        config.cms_started_broker = broker.start_daemon(settings.VAR_DIR)


def pytest_unconfigure(config):
    if getattr(config, "cms_started_broker", False):
        from cms import broker

        broker.stop(settings.VAR_DIR)


def pytest_report_header(config):
    db = settings.DATABASES["default"]
    return [
        f"database: {db['ENGINE'].rsplit('.', 1)[-1]}",
        f"broker: {settings.CELERY_BROKER_URL.split('://')[0]}",
        f"services required: {settings.CMS_REQUIRE_SERVICES}",
    ]
