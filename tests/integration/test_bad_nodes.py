"""A node that answers wrongly never stops anyone else.

Every kind of bad answer comes from a fake node on loopback (tests/fixtures/hostile.py),
answering the login like a node and then something hostile. For each: the client call
ends within its deadline with a clear error.
"""

from __future__ import annotations

import pytest

from cms.nodes.client import NodeClient
from cms.nodes.errors import NodeBadAnswer, NodeError, NodeUnreachable
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
    "expires_in as a string": ("/auth/login", h.expires_in_as_string, NodeBadAnswer,
                               "bad answer to /auth/login: expires_in must be a number",
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
