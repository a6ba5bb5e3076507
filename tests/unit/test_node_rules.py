"""Pure rules of the node agent: path safety, config validation, schedules, cursors."""

from __future__ import annotations

from datetime import datetime

import pytest

from node.auth import FREE_ATTEMPTS, LoginThrottle
from node.config import schedule_active, validate_config
from node.errors import ApiError
from node.recorder import synthetic_bytes
from node.storage import Storage, decode_cursor, encode_cursor, safe_relpath


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/etc/passwd",
        "../x",
        "own/../../x",
        "own/./x",
        "own//x",
        ".hidden",
        "own/%2e%2e/x",
        "own\\..\\x",
        "own/\x00",
        "a/" * 300,
    ],
)
def test_it_refuses_unsafe_relative_paths(path):
    with pytest.raises(ApiError) as exc:
        safe_relpath(path)
    assert exc.value.code == "bad_path"


def test_it_accepts_ordinary_media_paths():
    assert (
        safe_relpath("own/cam1/2026-01-01/000000.000.seg") == "own/cam1/2026-01-01/000000.000.seg"
    )


def test_it_refuses_a_symlink_that_leaves_the_media_folder(tmp_path):
    storage = Storage(tmp_path / "data")
    (tmp_path / "elsewhere").mkdir()
    (storage.media / "own").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ApiError) as exc:
        storage.resolve("own/x.seg")
    assert exc.value.code == "bad_path"
    storage.close()


def test_it_validates_and_normalises_cameras():
    cams = validate_config({"cameras": [{"id": "c1"}]})
    assert cams == [
        {
            "id": "c1",
            "name": "c1",
            "source": "synthetic",
            "schedule": "always",
            "retention_days": 30,
        }
    ]
    for bad in (
        {"cameras": [{"id": "c1"}, {"id": "c1"}]},
        {"cameras": [{"id": "a/b"}]},
        {"cameras": [{"id": "c", "retention_days": 0}]},
        {"cams": []},
        {"cameras": [{"id": "c", "schedule": [{"start": "25:00", "end": "01:00"}]}]},
    ):
        with pytest.raises(ApiError) as exc:
            validate_config(bad)
        assert exc.value.code == "invalid_config"


def test_it_follows_weekly_schedules_including_overnight_windows():
    night = [{"days": [0], "start": "22:00", "end": "06:00"}]
    monday_23h = datetime(2026, 1, 5, 23, 0)
    assert schedule_active(night, monday_23h)
    assert not schedule_active(night, datetime(2026, 1, 5, 12, 0))
    assert schedule_active("always", monday_23h) and not schedule_active("never", monday_23h)


def test_it_round_trips_cursors_and_refuses_forged_ones():
    assert decode_cursor(encode_cursor(12.5, "own/a")) == (12.5, "own/a")
    with pytest.raises(ApiError):
        decode_cursor("not-a-cursor")


def test_synthetic_content_is_deterministic():
    assert synthetic_bytes("c", "recording", 10.0, 11.0) == synthetic_bytes(
        "c", "recording", 10.0, 11.0
    )
    assert synthetic_bytes("c", "recording", 10.0, 11.0) != synthetic_bytes(
        "d", "recording", 10.0, 11.0
    )


def test_it_makes_a_client_wait_after_repeated_failures():
    throttle = LoginThrottle()
    for _ in range(FREE_ATTEMPTS):
        assert throttle.wait_needed("1.2.3.4") == 0
        throttle.failed("1.2.3.4")
    assert throttle.wait_needed("1.2.3.4") > 0
    assert throttle.wait_needed("5.6.7.8") == 0  # per client
    throttle.succeeded("1.2.3.4")
    assert throttle.wait_needed("1.2.3.4") == 0
