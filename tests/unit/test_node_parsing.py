"""Numbers and times from outside are parsed strictly: a bad one is a 400, never a 500."""

from __future__ import annotations

import base64
import json
import logging
import sqlite3

import pytest

from node.errors import ApiError
from node.parsing import ascii_int
from node.storage import Storage, decode_cursor, encode_cursor, validate_upload_spec
from node.timeutil import parse_time

SHA = "0" * 64


@pytest.mark.parametrize(
    "text",
    ["²", "\u0661\u0662", "+5", "-5", " 5", "5 ", "1e3", "0x10", "1_000", "", "9" * 19, None],
)
def test_it_refuses_anything_but_ascii_digits(text):
    with pytest.raises(ApiError) as exc:
        ascii_int(text, "Upload-Offset header")
    assert exc.value.status == 400 and "Upload-Offset" in exc.value.message


def test_it_reads_ascii_digits_within_bounds():
    assert ascii_int("0042", "limit", minimum=1, maximum=1000) == 42
    with pytest.raises(ApiError):
        ascii_int("1001", "limit", minimum=1, maximum=1000)


@pytest.mark.parametrize(
    "value",
    [
        1e300,
        -1.0,
        float("nan"),
        float("inf"),
        10**400,
        "1e300",
        "nan",
        "inf",
        "-1",
        "\u0661\u0667" + "\u0660" * 8,  # Arabic-Indic digits: float() reads them
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
        "2200-01-01T00:00:00Z",
        "2026-01-01T00:00:00Z" + " " * 100,
        True,
        None,
        [],
    ],
)
def test_it_refuses_times_outside_a_sane_range(value):
    with pytest.raises(ApiError) as exc:
        parse_time(value, "start")
    assert exc.value.status == 400 and "start" in exc.value.message


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (1767225600, 1767225600.0),
        (1767225600.5, 1767225600.5),
        ("1767225600.25", 1767225600.25),
        ("2026-01-01T00:00:00Z", 1767225600.0),
        ("2026-01-01T01:00:00+01:00", 1767225600.0),
        ("2026-01-01T00:00:00", 1767225600.0),
    ],
)
def test_it_reads_iso_times_and_posix_seconds(value, seconds):
    assert parse_time(value, "start") == seconds


def test_an_upload_cannot_end_before_it_starts():
    spec = {"path": "own/c/x.seg", "size": 1, "sha256": SHA, "start": 2000, "end": 1000}
    with pytest.raises(ApiError, match="end must not be before start"):
        validate_upload_spec(spec, now=1767225600)


def _cursor(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor([1e300, "own/a"]),
        base64.urlsafe_b64encode(b"[NaN, 1]").decode(),
        _cursor([1.0, 5]),
        # Nesting deep enough to exhaust the JSON parser's recursion.
        base64.urlsafe_b64encode(b"[" * 700).decode(),
        "A" * 5000,
    ],
)
def test_it_refuses_forged_cursors(cursor):
    with pytest.raises(ApiError) as exc:
        decode_cursor(cursor)
    assert exc.value.status == 400


def test_it_round_trips_a_cursor():
    assert decode_cursor(encode_cursor(1767225600.5, "own/a")) == (1767225600.5, "own/a")


def test_rows_stored_by_an_older_version_do_not_break_listings(tmp_path, caplog):
    storage = Storage(tmp_path)
    storage.close()
    with sqlite3.connect(tmp_path / "index.sqlite3") as db:  # what an old version let in
        for path, start in (("own/c/bad.seg", 1e300), ("own/c/good.seg", 1767225600.0)):
            db.execute(
                "INSERT INTO files VALUES (?, 'recording', 'c', 'own', NULL, ?, ?, 1, ?, 0)",
                (path, start, start, SHA),
            )
    with caplog.at_level(logging.WARNING, logger="node.storage"):
        storage = Storage(tmp_path)
    try:
        items, nxt = storage.list()
        assert [i.path for i in items] == ["own/c/good.seg"] and nxt is None
        assert [i.to_api()["start"] for i in items] == ["2026-01-01T00:00:00.000Z"]
        assert "1 indexed file(s)" in caplog.text and "own/c/bad.seg" in caplog.text
    finally:
        storage.close()
