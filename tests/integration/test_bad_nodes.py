"""A node that answers wrongly never stops anyone else.

Every kind of bad answer comes from a fake node on loopback (tests/fixtures/hostile.py),
answering the login like a node and then something hostile. For each: the client call
ends within its deadline with a clear error; in one probe cycle the bad server gets its
own status and message while a real healthy node gets its status and a failing real
recording server still fails over.
"""

from __future__ import annotations

import time

import pytest

from cms.inventory.models import Server
from cms.nodes.client import NodeClient
from cms.nodes.errors import NodeBadAnswer, NodeError, NodeUnreachable
from cms.nodes.prober import HealthProber, Target
from failover import engine, probing
from failover.choices import EventState
from failover.models import ConfigSnapshot, FailoverEvent, Protection
from protocol.messages import Health
from tests.fixtures import hostile as h
from tests.fixtures.hostile import elapsed

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_tokens")]

DEADLINE = 2.0
MARGIN = 3.0  # a loaded test machine; without the deadline these calls take 15 s to forever

# name -> (path, behaviour, client error, client message, probe status, probe message)
KINDS = {
    "volume as a string": ("/health", h.volume_as_string, NodeBadAnswer,
                           "bad answer to /health: volume must be an object (got a string)",
                           "bad_answer", "volume must be an object"),
    "expires_in as a string": ("/auth/scram/finish", h.expires_in_as_string, NodeBadAnswer,
                               "bad answer to /auth/scram/finish: expires_in must be a number",
                               "bad_answer", "expires_in must be a number"),
    "20 MB declared": ("/health", h.huge, NodeBadAnswer, "answer larger than 1 MiB",
                       "bad_answer", "answer larger than 1 MiB"),
    "20 MB undeclared": ("/health", lambda: h.huge(declared=False), NodeBadAnswer,
                         "answer larger than 1 MiB", "bad_answer", "answer larger than 1 MiB"),
    "endless body": ("/health", h.endless, NodeBadAnswer, "answer larger than 1 MiB",
                     "bad_answer", "answer larger than 1 MiB"),
    "nested 100000 deep": ("/health", h.nested, NodeBadAnswer,
                           "answer nested deeper than 32 levels", "bad_answer",
                           "answer nested deeper than 32 levels"),
    "dripping body": ("/health", h.drip, NodeBadAnswer, "/health: it did not finish within",
                      "bad_answer", "/health: it did not finish within"),
    "dripping status line": ("/health", lambda: h.drip(0.5, in_head=True), NodeUnreachable,
                             "did not answer /health within", "disconnected", "no answer from"),
    "black hole": ("/health", h.black_hole, NodeUnreachable, "did not answer /health within",
                   "disconnected", "no answer from"),
    "invalid JSON": ("/health", h.invalid_json, NodeBadAnswer, "answer is not valid JSON",
                     "bad_answer", "answer is not valid JSON"),
    "not an object": ("/health", h.not_an_object, NodeBadAnswer,
                      "answer must be a JSON object, not a list", "bad_answer",
                      "answer must be a JSON object, not a list"),
}  # fmt: skip


def client_of(node: h.HostileNode) -> NodeClient:
    return NodeClient("127.0.0.1", node.port, password=h.PASSWORD, timeout=(3.05, 15.0),
                      deadline=DEADLINE)  # fmt: skip


# -- the client ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_client_ends_a_bad_answer_within_its_deadline(hostile_node, kind):
    path, behaviour, error, message, _, _ = KINDS[kind]
    node = hostile_node({path: behaviour()})
    seconds, outcome = elapsed(client_of(node).health)
    assert isinstance(outcome, error), outcome
    assert message in str(outcome)
    assert seconds < DEADLINE + MARGIN


def test_a_retry_never_outlives_the_deadline(hostile_node):
    # GET is retried on a read error; the watchdog's cut must not start a second wait.
    node = hostile_node({"/health": h.drip(0.5, in_head=True)})
    client = NodeClient("127.0.0.1", node.port, password=h.PASSWORD, retries=3, deadline=1.0)
    seconds, outcome = elapsed(client.health)
    assert isinstance(outcome, NodeUnreachable)
    assert node.seen("/health") == 1
    assert seconds < 1.0 + MARGIN


def test_the_error_shape_is_read_bounded_too(hostile_node):
    node = hostile_node({"/health": h.raw(b"[" * 5000 + b"]" * 5000, status=409)})
    with pytest.raises(NodeError) as exc:
        client_of(node).health()
    assert exc.value.code == "not_a_node"  # not the node's error shape: said so, no crash
    assert "HTTP 409" in exc.value.message


# -- listings ---------------------------------------------------------------------------------


def item(n: int) -> dict:
    return {
        "path": f"own/cam1/2026-01-01/{n:06d}.000.seg", "kind": "recording", "camera": "cam1",
        "origin": "own", "on_behalf_of": None, "start": "2026-01-01T00:00:00.000Z",
        "end": "2026-01-01T00:00:05.000Z", "size": 10, "sha256": "0" * 64,
    }  # fmt: skip


def pages(next_cursor) -> h.Behaviour:
    """Valid pages of one item; ``next_cursor(n)`` names the next page after page n."""
    served = {"n": 0}

    def answer(conn, stop):
        served["n"] += 1
        body = {"items": [item(served["n"])], "next": next_cursor(served["n"])}
        return h.as_json(body)(conn, stop)

    return answer


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        (h.as_json({"items": "x", "next": None}), "items must be a list (got a string)"),
        (h.as_json({"items": [item(n) for n in range(1001)], "next": None}),
         "items has more than 1000 items"),
        (h.as_json({"items": [item(n) for n in range(600)], "next": None}),
         "a page of 600 items, more than the 500 asked for"),
        (pages(lambda n: f"c{n}"), "the listing did not end after 5 pages"),
        (pages(lambda n: "same"), "the listing goes round in a loop"),
    ],
)  # fmt: skip
def test_a_listing_with_too_many_items_or_pages_is_refused(hostile_node, behaviour, message):
    node = hostile_node({"/recordings": behaviour})
    with pytest.raises(NodeBadAnswer) as exc:
        list(client_of(node).list_recordings(max_pages=5))
    assert message in exc.value.message


# -- the prober ---------------------------------------------------------------------------------


@pytest.fixture
def health_prober():
    one = HealthProber(concurrency=64)
    yield one
    one.close()


def test_one_probe_round_isolates_every_bad_node(hostile_node, start_node, health_prober):
    good = start_node(mode="recording", cameras=1)
    bad = {kind: hostile_node({path: make()}) for kind, (path, make, *_) in KINDS.items()}
    targets = [Target(key=0, host="127.0.0.1", port=good.port, https=False, username="admin",
                      password=good.password)]  # fmt: skip
    names = list(bad)
    targets += [
        Target(key=i + 1, host="127.0.0.1", port=bad[kind].port, https=False, username="admin",
               password=h.PASSWORD, want_info=True)
        for i, kind in enumerate(names)
    ]  # fmt: skip
    started = time.monotonic()
    results = health_prober.probe_all(targets, timeout=DEADLINE)
    assert time.monotonic() - started < DEADLINE + MARGIN

    assert isinstance(results[0].answer, Health) and results[0].error == ""
    assert results[0].answer.service.state == "running"
    for kind, result in zip(names, results[1:], strict=True):
        expected_error = {"bad_answer": "bad_answer", "disconnected": "unreachable"}[KINDS[kind][4]]
        assert (result.error, result.answer) == (expected_error, None), (kind, result)
        assert KINDS[kind][5] in result.message, (kind, result.message)
        assert result.latency_ms < (DEADLINE + MARGIN) * 1000


# -- the probe cycle, failover and snapshots -------------------------------------------------


def register_fake(node: h.HostileNode, team, role: str, name: str) -> Server:
    server = Server(team=team, role=role, name=name, host="127.0.0.1", port=node.port,
                    admin_password=h.PASSWORD)  # fmt: skip
    server.full_clean()
    server.save()
    return server


@pytest.mark.django_db(transaction=True)
def test_bad_nodes_of_any_team_never_stop_a_failover(make_fleet, other_team, hostile_node,
                                                     failover_settings):  # fmt: skip
    fleet = make_fleet(failovers=1)
    # A failover server that answers wrongly, first in the protection order: never chosen.
    liar = register_fake(hostile_node({"/health": h.volume_as_string()}), fleet.recording.team,
                         "failover", "Liar")  # fmt: skip
    Protection.objects.filter(recording_server=fleet.recording).update(priority=1)
    Protection.objects.create(recording_server=fleet.recording, failover_server=liar, priority=0)
    bad = {
        kind: register_fake(hostile_node({path: make()}), other_team, "recording", f"Bad {i}")
        for i, (kind, (path, make, *_)) in enumerate(KINDS.items())
    }

    fleet.recording_node.client().set_fault("volume")
    for _ in range(failover_settings.failures_before_failover):
        started = time.monotonic()
        probing.run_cycle(force=True)
        assert time.monotonic() - started < failover_settings.probe_timeout + MARGIN

    fleet.refresh()
    assert fleet.recording.status == "volume_abnormal"
    assert fleet.failovers[0].status == "normal"
    liar.refresh_from_db()
    assert liar.status == "bad_answer"
    assert "bad answer to /health: volume must be an object" in liar.last_error
    for kind, server in bad.items():
        server.refresh_from_db()
        assert server.status == KINDS[kind][4], (kind, server.last_error)
        assert KINDS[kind][5] in server.last_error, kind
    assert not FailoverEvent.objects.exclude(recording_server=fleet.recording).exists()

    event = FailoverEvent.objects.get(recording_server=fleet.recording)
    assert event.trigger == "volume_abnormal"
    assert engine.advance(event.pk) == EventState.ACTIVE
    event.refresh_from_db()
    assert event.failover_server == fleet.failovers[0]


@pytest.mark.django_db(transaction=True)
def test_one_bad_configuration_does_not_stop_the_other_snapshots(make_fleet, hostile_node):
    fleet = make_fleet(failovers=1)
    liar_node = hostile_node({"/config": h.as_json({"version": 1, "cameras": "all of them"})})
    liar = register_fake(liar_node, fleet.recording.team, "recording", "Liar")
    Protection.objects.create(recording_server=liar, failover_server=fleet.failovers[0])
    client = fleet.recording_node.client()
    config = client.get_config()
    config["cameras"][0]["name"] = "Entrance (renamed)"
    client.put_config(config, etag=config["etag"])

    probing.run_cycle(force=True)

    latest = ConfigSnapshot.objects.filter(server=fleet.recording).order_by("-taken_at").first()
    assert latest.config["cameras"][0]["name"] == "Entrance (renamed)"
    assert liar_node.seen("/config") == 1  # asked, refused, and nothing stored for it
    assert not ConfigSnapshot.objects.filter(server=liar).exists()
    liar.refresh_from_db()
    assert liar.status == "normal"  # its health answer is fine; only its /config is not


@pytest.mark.django_db(transaction=True)
def test_a_password_no_key_decrypts_stays_with_its_server(make_fleet, other_team):
    from cryptography.fernet import Fernet

    from cms.inventory.secrets import Secret

    fleet = make_fleet(failovers=1)
    stranger = Server.objects.create(team=other_team, role="recording", name="Old keys",
                                     host="127.0.0.1", port=9, admin_password="x")  # fmt: skip
    foreign = Fernet(Fernet.generate_key()).encrypt(b"secret").decode()
    Server.objects.filter(pk=stranger.pk).update(admin_password=Secret.from_token(foreign))
    fleet.recording_node.client().set_fault("service")

    probing.run_cycle(force=True)
    probing.run_cycle(force=True)

    stranger.refresh_from_db()
    assert stranger.status == "auth_failed"
    assert "cannot be read" in stranger.last_error
    fleet.refresh()
    assert fleet.recording.status == "service_abnormal"
    assert FailoverEvent.objects.get(recording_server=fleet.recording).trigger == "service_abnormal"
