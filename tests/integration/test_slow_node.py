"""A node slow to answer holds no database lock: other requests write meanwhile.

Found in a test run: a node slow to answer a license change kept a transaction open
for 55 s; SQLite's write lock was held all along and other requests failed with
"database is locked" (PostgreSQL would have held the license's row lock instead). Here
a real agent sits behind a proxy that holds its requests until the test lets them
through, and two writes must be answered before that: an edit of another server in
the admin (any write, on SQLite) and an edit of the very license being installed (its
row, on PostgreSQL).
"""

from __future__ import annotations

import html
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections
from django.test import Client
from rest_framework.test import APIClient

from cms.inventory.models import License, Server

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
KEY = "SLOW-1234-NODE-5678"


class InThread:
    """Run `work` in a thread of its own (its own database connection, closed after)."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = work()
            except BaseException as exc:  # handed to the test by join()
                self.error = exc
            finally:
                connections.close_all()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout: float = 120) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the request did not finish"
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def slow_lobby(start_node, node_proxy, team):
    """A recording server whose node answers only when the test says so."""
    node = start_node(mode="recording", name="lobby")
    proxy = node_proxy(node)
    server = Server(team=team, role="recording", name="Lobby", host=proxy.host,
                    port=proxy.port, admin_password=node.password)  # fmt: skip
    server.full_clean()
    server.save()
    return server, node, proxy


def install_through(door: str, user: Any, lic: License, server: Server) -> Callable[[], str]:
    if door == "admin":
        client = Client()
        client.force_login(user)
        url = f"/admin/inventory/recordingserver/{server.pk}/licenses/add/"
        return lambda: html.unescape(
            client.post(url, {"license": lic.pk}, follow=True).content.decode()
        )
    api = APIClient()
    api.force_authenticate(user)
    url = f"/api/v1/licenses/{lic.pk}/install/"
    return lambda: api.post(url, {"server": server.pk}, format="json").content.decode()


@pytest.mark.parametrize("door", ["admin", "api"])
def test_other_requests_write_while_a_node_installs_a_license(
    door, slow_lobby, make_server, admin_user, admin_client, fresh_tokens
):
    server, node, proxy = slow_lobby
    standby = make_server(name="Standby", role="failover")
    lic = License.objects.create(key=KEY, team=server.team, cameras=4)

    proxy.hold()
    installing = InThread(install_through(door, admin_user, lic, server))
    proxy.wait_held()  # the install waits for the node now

    edited = admin_client.post(f"/admin/inventory/failoverserver/{standby.pk}/change/", {
        "team": standby.team_id, "name": "Standby renamed", "connection_type": "address",
        "host": standby.host, "port": standby.port, "quickconnect_id": "",
        "admin_username": "admin", "admin_password_input": "", "enabled": "on",
    })  # fmt: skip
    api = APIClient()
    api.force_authenticate(admin_user)
    noted = api.patch(f"/api/v1/licenses/{lic.pk}/", {"note": "bought in May"}, format="json")
    # Answered while the install still waits for the node (not after it gave up on it).
    assert installing.running and proxy.holding, "the writes had to wait for the node"
    assert edited.status_code == 302, edited.content.decode()[:2000]
    assert noted.status_code == 200, noted.content

    proxy.release()
    answer = installing.join()
    assert ("installed on Lobby" if door == "admin" else '"server":') in answer
    lic.refresh_from_db()
    standby.refresh_from_db()
    assert (lic.server_id, lic.note) == (server.pk, "bought in May")  # neither overwritten
    assert standby.name == "Standby renamed"
    assert {x["key"] for x in node.client().licenses()} == {KEY}
    assert list(lic.moves.values_list("to_server_name", flat=True)) == ["Lobby"]


def test_a_license_taken_meanwhile_is_not_overwritten(slow_lobby, start_node, team, fresh_tokens):
    """Two installs of one license race: the first to record wins, the other's node is
    put back as it was, and its caller hears why."""
    from cms.inventory import licenses
    from tests.fixtures.fleet import register

    server, node, proxy = slow_lobby
    garage_node = start_node(mode="recording", name="garage")
    garage = register(garage_node, team, "recording", "Garage")
    lic = License.objects.create(key=KEY, team=team)

    proxy.hold()
    slow = InThread(lambda: licenses.install(License.objects.get(pk=lic.pk), server, actor="a"))
    proxy.wait_held()
    licenses.install(License.objects.get(pk=lic.pk), garage, actor="b")
    proxy.release()
    with pytest.raises(licenses.LicenseMovedMeanwhile, match="installed on Garage meanwhile"):
        slow.join()

    lic.refresh_from_db()
    assert lic.server_id == garage.pk
    assert {x["key"] for x in garage_node.client().licenses()} == {KEY}
    assert node.client().licenses() == []  # the losing install was taken back
    assert lic.moves.count() == 1


def test_a_key_added_meanwhile_is_not_added_twice(
    slow_lobby, admin_user, admin_client, fresh_tokens
):
    """A new key typed on the server page is saved only once its node took it; if the
    same key was added meanwhile, the page says so and the node is put back."""
    server, node, proxy = slow_lobby
    proxy.hold()
    url = f"/admin/inventory/recordingserver/{server.pk}/licenses/add/"
    client = Client()
    client.force_login(admin_user)
    typing = InThread(lambda: html.unescape(
        client.post(url, {"key": KEY, "cameras": "4"}, follow=True).content.decode()
    ))  # fmt: skip
    proxy.wait_held()
    api = APIClient()
    api.force_authenticate(admin_user)
    added = api.post("/api/v1/licenses/", {"key": KEY, "team": server.team_id}, format="json")
    assert added.status_code == 201, added.content
    proxy.release()

    assert f"License {KEY} was added meanwhile; nothing was changed." in typing.join()
    lic = License.objects.get()
    assert (lic.pk, lic.server_id, lic.cameras) == (added.json()["id"], None, 1)
    assert node.client().licenses() == []
    assert not lic.moves.exists()


def test_the_same_on_postgresql(postgres_url, tmp_path):
    """The tests above, run again by a pytest of their own on PostgreSQL (row locks
    instead of SQLite's database lock)."""
    if connection.vendor == "postgresql":
        pytest.skip("this run is on PostgreSQL already: the tests above covered it")
    database = postgres_url.rsplit("/", 1)[0] + f"/cms_slow_node_{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k not in {"CELERY_BROKER_URL", "REDIS_URL"}}
    env.update(DATABASE_URL=database, CMS_VAR_DIR=str(tmp_path))  # its own keys and broker
    run = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-p", "no:cacheprovider",
         "-k", "not postgresql"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    assert "4 passed" in run.stdout and "database: postgresql" in run.stdout, run.stdout[-2000:]
