"""Schemathesis against a real agent and its own OpenAPI description.

No 5xx, and every answer documented (status, content type, body). The agent runs
without ffmpeg on its PATH, so that fuzzed stream URLs are never opened: nothing
leaves this machine. A run stays well under a minute on two cores.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from node.openapi import build_schema
from tests.fixtures.nodes import RunningNode, StartNode, token_of

pytestmark = pytest.mark.integration

# No 5xx; every answer documented; and what the description calls invalid is refused
# (it is no looser than the agent).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

schema = schemathesis.openapi.from_dict(build_schema(allow_fault_injection=False))
# An endless stream has no end to validate; tests/integration/test_node_watch.py covers it.
fuzzed = schema.exclude(path="/watch")


@pytest.fixture(scope="module")
def agent(start_module_node: StartNode) -> RunningNode:
    return start_module_node(
        mode="failover",
        name="fuzzed",
        # Long segments and no ffmpeg: fuzzed configurations cost threads, not processes.
        segment_seconds=60,
        allow_faults=False,
        env={"PATH": "/nonexistent"},
    )


class Tokens:
    """One token for every request, and throwaway ones for logout (which revokes its own).

    Logged in before the fuzzing starts: fuzzed logins with wrong passwords make the
    agent slow this client down."""

    def __init__(self, node: RunningNode, spare: int = 20) -> None:
        self.main = token_of(node)
        self.spare = [token_of(node) for _ in range(spare)]

    def for_operation(self, path: str) -> str:
        if path.endswith("/auth/logout"):
            return self.spare.pop() if self.spare else "spent"
        return self.main


@pytest.fixture(scope="module")
def tokens(agent: RunningNode) -> Iterator[Tokens]:
    yield Tokens(agent)


def test_the_agent_serves_this_description(agent):
    with urllib.request.urlopen(agent.url + "/openapi.json", timeout=5) as resp:  # noqa: S310
        assert json.loads(resp.read()) == json.loads(json.dumps(schema.raw_schema))


@fuzzed.parametrize()
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_agent_matches_its_description(case, agent, tokens):
    token = tokens.for_operation(case.operation.path)
    case.call_and_validate(
        base_url=agent.url,
        headers={"Authorization": f"Bearer {token}"},
        checks=CHECKS,
        timeout=30,
    )
