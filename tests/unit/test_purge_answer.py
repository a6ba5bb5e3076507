"""The purge answer says what could not be removed; an older agent's still reads."""

from __future__ import annotations

import pytest

from protocol import BadAnswer, parse
from protocol.messages import PurgeAnswer


def test_an_older_agents_purge_answer_reads_as_nothing_failed():
    answer = parse(PurgeAnswer, b'{"deleted": 3}')
    assert (answer.deleted, answer.failed, answer.error) == (3, 0, "")


def test_a_purge_answer_names_what_could_not_be_removed():
    body = b'{"deleted": 80, "failed": 2, "error": "failover/rs1/c1/x.seg: Is a directory"}'
    answer = parse(PurgeAnswer, body)
    assert (answer.deleted, answer.failed) == (80, 2)
    assert answer.error.endswith("Is a directory")


@pytest.mark.parametrize(
    "body", [b'{"deleted": 1, "failed": -1}', b'{"deleted": 1, "failed": "2"}']
)
def test_a_wrong_purge_answer_is_refused(body):
    with pytest.raises(BadAnswer):
        parse(PurgeAnswer, body)
