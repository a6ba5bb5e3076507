"""The protocol package: bounded parsing, readable refusals, and both sides agreeing."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from protocol import BadAnswer, json_depth, loads_bounded, parse
from protocol.messages import (
    Config,
    ErrorAnswer,
    Health,
    Info,
    Licenses,
    LoginAnswer,
    RecordingsPage,
    ScramFinishAnswer,
    ScramStartAnswer,
    TakeoverAnswer,
)

ROOT = Path(__file__).resolve().parents[2]

HEALTH = {
    "state": "normal",
    "volume": {"state": "normal", "free_bytes": 1, "total_bytes": 2},
    "service": {"state": "running"},
    "faults": {"volume": False, "service": False},
    "recording": {"cameras": [], "on_behalf_of": None, "takeover_epoch": None},
    "epoch": 0, "cms_mode": "recording", "config_version": 3, "time": "2026-01-01T00:00:00.000Z",
}  # fmt: skip


def refusal(model, body) -> str:
    with pytest.raises(BadAnswer) as exc:
        parse(model, json.dumps(body).encode() if not isinstance(body, bytes) else body)
    return exc.value.message


@pytest.mark.parametrize(
    ("model", "body", "message"),
    [
        (Health, {**HEALTH, "volume": "crashed-string"}, "volume must be an object (got a string)"),
        (Health, {**HEALTH, "volume": {"state": 5}},
         "volume.state must be one of 'normal', 'degraded' or 'crashed'"),
        (Health, {**HEALTH, "service": {}}, "service.state is missing"),
        (Health, {**HEALTH, "recording": {"cameras": [{"id": 7, "origin": "own",
                                                       "state": "recording"}]}},
         "recording.cameras[0].id must be a string (got a number)"),
        (Health, {**HEALTH, "epoch": "3"}, "epoch must be an integer (got a string)"),
        (Health, {**HEALTH, "faults": {"volume": "no"}},
         "faults.volume must be true or false (got a string)"),
        (LoginAnswer, {"token": "t", "expires_in": "3600"},
         "expires_in must be a number (got a string)"),
        (LoginAnswer, {"token": "t", "expires_in": 1e30}, "expires_in is out of range"),
        (RecordingsPage, {"items": "x"}, "items must be a list (got a string)"),
        (Config, {"version": 1, "cameras": [{"id": "c", "schedule": 5}]},
         "cameras[0].schedule has neither of its allowed forms"),
        (Health, {}, "state is missing (and 2 more problems)"),
    ],
)  # fmt: skip
def test_it_says_which_field_is_wrong(model, body, message):
    assert message in refusal(model, body)


def test_it_never_quotes_the_value_it_refuses():
    message = refusal(LoginAnswer, {"token": ["s3cr3t-token"], "expires_in": 1})
    assert message == "token must be a string (got a list)"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1, 2, 3]", "answer must be a JSON object, not a list"),
        (b'"text"', "answer must be a JSON object, not a string"),
        (b"{not json", "answer is not valid JSON"),
        (b'{"token": "t", "expires_in": NaN}', "NaN is not a JSON number"),
        (b'{"epoch": ' + b"9" * 5000 + b"}", "answer is not valid JSON"),
        (b"\xff\xfe{", "answer is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "answer nested deeper than 32 levels"),
        (b'{"a": "' + b"x" * (1024 * 1024) + b'"}', "answer larger than 1 MiB"),
    ],
)
def test_it_refuses_what_is_not_a_small_shallow_json_object(body, message):
    assert message in refusal(Health, body)


def test_depth_counts_brackets_outside_strings_only():
    assert json_depth(b'{"a": [[1], {"b": []}]}') == 4
    assert json_depth(b'{"a": "[[[[{{{{", "b": "\\"[[[["}') == 1
    assert json_depth(b'["\\\\", [["x"]]]') == 3
    assert json_depth(b"") == 0
    shallow = b"[" * 32 + b"]" * 32
    assert loads_bounded(shallow) is not None
    with pytest.raises(BadAnswer):
        loads_bounded(b"[" + shallow + b"]")


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "body", [b'"\\' * 400_000, b'"' * 800_000, b'["' * 400_000, b'"\\"' * 300_000]
)
def test_depth_is_one_pass_whatever_the_quotes(body):
    # A string pattern that backtracks or restarts at each quote takes hours on these.
    assert json_depth(body) >= 0


def test_unknown_fields_are_ignored_and_known_ones_kept():
    page = parse(RecordingsPage, json.dumps({"items": [], "next": None, "future": 1}).encode())
    assert page.to_json() == {"items": [], "next": None}
    error = parse(ErrorAnswer, b'{"error": {"code": "stale_epoch", "message": "m", '
                               b'"newest_epoch": 9}}')  # fmt: skip
    assert error.error.model_extra == {"newest_epoch": 9}
    config = parse(Config, b'{"version": 2, "cameras": [{"id": "c1", "added_later": true}]}')
    assert config.to_json() == {"version": 2, "cameras": [{"id": "c1", "added_later": True}]}


def test_the_agent_answers_with_the_models(tmp_path):
    from node.core import NodeRuntime, Options
    from node.state import StateStore, new_state
    from protocol import scram

    store = StateStore(tmp_path)
    store.create(new_state("UNIT-1", "TEST", "failover", "pw"))
    runtime = NodeRuntime(tmp_path, store, Options(segment_seconds=60))
    runtime.start()
    try:
        runtime.install_license({"key": "ABCD-1234", "cameras": 4})
        exchange = scram.ScramLogin("admin", "pw")
        first = exchange.start()
        started = runtime.scram_start(first["username"], first["client_first"], "127.0.0.1")
        final = exchange.finish(started["session"], started["server_first"])
        login = runtime.scram_finish(final["session"], final["client_final"], "127.0.0.1")
        exchange.verify(login["server_final"])
        serial = runtime.info()["serial"]
        key = scram.new_pairing_key()
        runtime.enable_cms(
            {"mode": "failover",
             "pairing": scram.wrap_pairing_key(key, exchange.server_key(), serial)},
            "cms-a", False,
        )  # fmt: skip
        taken = runtime.takeover({"epoch": 3, "on_behalf_of": {"id": "rs1", "name": "Lobby"},
                                  "proof": scram.epoch_proof(key, 3, serial, "takeover"),
                                  "config": {"cameras": [{"id": "cam1"}]}})  # fmt: skip
        for model, answer in [
            (Info, runtime.info()),
            (Health, runtime.health()),
            (ScramStartAnswer, started),
            (ScramFinishAnswer, login),
            (Licenses, runtime.licenses()),
            (TakeoverAnswer, taken),
            (Config, runtime.get_config()),
        ]:
            assert model.model_validate(answer).to_json() == answer, model.__name__
        health = Health.model_validate(runtime.health())
        assert health.recording.on_behalf_of.id == "rs1"
        assert [c.id for c in health.recording.cameras] == ["cam1"]
        assert login["expires_in"] == 3600 and isinstance(login["expires_in"], int)
    finally:
        runtime.stop()


def _imports(package: str) -> set[str]:
    """Top-level names of every module imported anywhere in ``package``."""
    names = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_the_agent_and_the_cms_share_only_the_protocol():
    assert not _imports("node") & {"cms", "failover"}
    assert not _imports("protocol") & {"cms", "failover", "node", "django"}
    assert "node" not in _imports("cms") | _imports("failover")
    assert "protocol" in _imports("node") and "protocol" in _imports("cms")
