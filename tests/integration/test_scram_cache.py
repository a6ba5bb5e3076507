"""The login state kept per server: with the SaltedPassword a restarted CMS logs in to
its nodes without PBKDF2, and with the session token it probes without logging in; a
node whose password changed gets a fresh key, a kept key that is wrong or another
server's logs in as nobody, and a kept token the node refuses costs one login.

Real node agents over HTTP; the probe cycle runs in this process. "A restarted
process" is what a new worker starts with: no prober (so no session tokens) and an
empty in-memory SaltedPassword cache.
"""

from __future__ import annotations

import json
import os

import pytest
from django.db import connection

from cms.inventory.models import Server
from cms.nodes import prober as prober_module
from failover import probing
from node.state import make_verifier
from protocol import scram
from tests.fixtures.fleet import register

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def restart(monkeypatch):
    """Call to stand for a restart of every CMS process."""

    def restarted() -> None:
        monkeypatch.setattr(prober_module, "_prober", None)
        monkeypatch.setattr(scram, "_salted_cache", {})

    restarted()
    return restarted


def without_kept_tokens() -> None:
    """The kept session tokens gone (expired, say): the next probe must log in."""
    Server.objects.update(node_session="")


def stored_column(server: Server) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT scram_cache FROM inventory_server WHERE id = %s", [server.pk])
        return cursor.fetchone()[0]


def kept(server: Server) -> tuple[bytes, int, bytes] | None:
    server.refresh_from_db()
    return scram.load_salted(server.scram_cache.reveal(), server.admin_password.reveal())


def probe(server: Server) -> str:
    probing.run_cycle(force=True)
    server.refresh_from_db()
    return server.status


def test_a_restarted_cms_logs_in_without_pbkdf2(start_node, team, restart):
    node = start_node(mode="recording", password="first-password-1")
    server = register(node, team, "recording", "Lobby")
    runs = scram.pbkdf2_runs()
    assert probe(server) == "normal"
    assert scram.pbkdf2_runs() == runs + 1
    salt, iterations, salted = kept(server)
    assert salted == scram.salted_password("first-password-1", salt, iterations)
    # At rest it is ciphertext: neither the key nor the password shows in the column.
    raw = stored_column(server)
    assert raw and scram.b64(salted) not in raw and "first-password-1" not in raw
    assert "first-password-1" not in repr(server.scram_cache)

    restart()
    without_kept_tokens()
    for _ in range(2):
        assert probe(server) == "normal"
    assert scram.pbkdf2_runs() == runs + 1  # logged in again, PBKDF2 not run again
    assert session_token(server)  # and that login's token is kept


def test_a_changed_node_password_computes_a_new_key(start_node, team, restart):
    node = start_node(mode="recording", password="first-password-1")
    server = register(node, team, "recording", "Lobby")
    assert probe(server) == "normal"
    old = kept(server)
    # The node's password changes (a new verifier, a new salt), and the CMS is told.
    node.stop()
    state_path = node.data_dir / "state.json"
    state = json.loads(state_path.read_text())
    state["admin"] = {"username": "admin", **make_verifier("second-password-2")}
    state_path.write_text(json.dumps(state))
    node.start()
    server.admin_password = "second-password-2"
    server.save()

    restart()
    runs = scram.pbkdf2_runs()
    assert probe(server) == "normal"
    assert scram.pbkdf2_runs() == runs + 1
    new = kept(server)
    assert new is not None and new[0] != old[0]
    assert new[2] == scram.salted_password("second-password-2", new[0], new[1])


def test_a_wrong_or_foreign_kept_key_logs_in_as_nobody(start_node, team, restart):
    a = register(start_node(mode="recording", password="password-of-a"), team, "recording", "A")
    b = register(start_node(mode="recording", password="password-of-b"), team, "recording", "B")
    assert probe(a) == "normal" and probe(b) == "normal"
    salt_b, iterations_b, right_b = kept(b)

    # A's key stored on B (a mix-up at rest): it is not B's password's, so it is not used.
    Server.objects.filter(pk=b.pk).update(scram_cache=Server.objects.get(pk=a.pk).scram_cache)
    restart()
    without_kept_tokens()
    runs = scram.pbkdf2_runs()
    assert probe(b) == "normal"
    assert scram.pbkdf2_runs() == runs + 1
    assert kept(b)[2] == right_b

    # A key that claims to be B's but is wrong: B refuses it, the CMS computes the real
    # one and logs in with that; the wrong one is replaced.
    wrong = scram.dump_salted("password-of-b", salt_b, iterations_b, os.urandom(32))
    b.refresh_from_db()
    b.scram_cache = wrong
    b.save(update_fields=["scram_cache"])
    restart()
    without_kept_tokens()
    runs = scram.pbkdf2_runs()
    assert probe(b) == "normal"
    assert scram.pbkdf2_runs() == runs + 1
    assert kept(b)[2] == right_b
    # A still logs in with its own key, without PBKDF2.
    restart()
    without_kept_tokens()
    assert probe(a) == "normal"
    assert scram.pbkdf2_runs() == runs + 1


def test_the_kept_key_is_never_in_the_api(start_node, team, admin_client):
    server = register(start_node(mode="recording", password="first-password-1"), team,
                      "recording", "Lobby")  # fmt: skip
    assert probe(server) == "normal"
    salted = kept(server)[2]
    for path in (f"/api/v1/recording-servers/{server.pk}/", "/api/v1/recording-servers/"):
        answer = admin_client.get(path)
        assert answer.status_code == 200
        body = answer.content.decode()
        assert "scram" not in body and scram.b64(salted) not in body
        assert "node_session" not in body and session_token(server) not in body


def session_token(server: Server) -> str:
    server.refresh_from_db()
    return json.loads(server.node_session.reveal())["token"]


def test_a_restarted_cms_probes_with_the_kept_token_and_logs_in_when_refused(
    start_node, team, restart
):
    node = start_node(mode="recording", password="first-password-1")
    server = register(node, team, "recording", "Lobby")
    assert probe(server) == "normal"
    token = session_token(server)
    assert token not in stored_column(server)  # encrypted at rest

    restart()
    assert probe(server) == "normal"
    assert session_token(server) == token  # no login: the kept token was used

    # The node restarts and forgets its sessions: the kept token is refused, the CMS
    # logs in once more (with the kept key, no PBKDF2) and keeps the new token.
    node.restart()
    restart()
    runs = scram.pbkdf2_runs()
    assert probe(server) == "normal"
    assert session_token(server) != token
    assert scram.pbkdf2_runs() == runs


def test_a_kept_token_is_not_used_after_the_password_changed(start_node, team, restart):
    node = start_node(mode="recording", password="first-password-1")
    server = register(node, team, "recording", "Lobby")
    assert probe(server) == "normal"
    token = session_token(server)
    server.admin_password = "not-the-password-9"  # a wrong password typed in the CMS
    server.save()
    restart()
    assert probe(server) == "auth_failed"  # not "normal" on the strength of the old token
    server.refresh_from_db()
    assert json.loads(server.node_session.reveal())["token"] == token  # nothing new kept
