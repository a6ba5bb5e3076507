"""Validation of the surveillance configuration (cameras) and recording schedules."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from node.errors import ApiError

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
HHMM_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
MAX_CAMERAS = 256

# Camera sources: the agent's own synthetic bytes, ffmpeg's test pattern (a graph the
# agent builds from fixed parameters, see node/recorder.py), or a stream URL that
# ffmpeg only ever opens as an ``-i`` input. Anything else could reach ffmpeg's
# filter-graph or protocol parsers (``testsrc,metadata=...:file=/x`` writes files).
SYNTHETIC = "synthetic"
TEST_PATTERN = "testsrc"
STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")
MAX_SOURCE_LENGTH = 1024
SOURCE_RULE = (
    f"'{SYNTHETIC}', '{TEST_PATTERN}' or an rtsp://, rtsps://, http:// or https:// stream URL"
)
SourceKind = Literal["synthetic", "pattern", "stream"]


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_config", message)


def validate_id(value: object, what: str) -> str:
    """Ids become folder names, so they are limited to a safe alphabet."""
    if not isinstance(value, str) or not ID_RE.match(value):
        raise ApiError(
            400,
            "bad_request",
            f"{what} must be 1-64 characters among letters, digits, '-' and '_'",
        )
    return value


def source_problem(source: object) -> str | None:
    """Why ``source`` is not an allowed camera source, or None when it is."""
    if not isinstance(source, str) or not source:
        return f"source must be {SOURCE_RULE}"
    if source in (SYNTHETIC, TEST_PATTERN):
        return None
    if len(source) > MAX_SOURCE_LENGTH:
        return f"source URL is longer than {MAX_SOURCE_LENGTH} characters"
    # Printable ASCII only: no spaces, control characters or look-alikes (a URL
    # percent-encodes anything else).
    if not all("!" <= ch <= "~" for ch in source):
        return "source URL must not contain spaces, control or non-ASCII characters"
    scheme = source.partition("://")[0]
    if scheme not in STREAM_SCHEMES or not source.startswith(scheme + "://"):
        return f"source must be {SOURCE_RULE}, not {source[:40]!r}"
    try:
        parts = urlsplit(source)
        parts.port  # noqa: B018 (raises on a port that is not a number in range)
    except ValueError:
        return "source URL is malformed (host or port)"
    if not parts.hostname:
        return "source URL has no host"
    return None


def source_kind(source: object) -> SourceKind | None:
    """How the recorder reads an allowed source; None for one it must refuse."""
    if source_problem(source) is not None:
        return None
    if source == SYNTHETIC:
        return "synthetic"
    return "pattern" if source == TEST_PATTERN else "stream"


def _schedule(value: object, cam: str) -> Any:
    if value is None or value in ("always", "never"):
        return value or "always"
    if not isinstance(value, list) or len(value) > 64:
        raise invalid(f"camera {cam}: schedule must be 'always', 'never' or a list of windows")
    windows = []
    for w in value:
        if not isinstance(w, dict):
            raise invalid(f"camera {cam}: a schedule window must be an object")
        days = w.get("days", list(range(7)))
        start, end = w.get("start"), w.get("end")
        if (
            not isinstance(days, list)
            or not all(type(d) is int and 0 <= d <= 6 for d in days)  # not True/False
            or not (isinstance(start, str) and HHMM_RE.match(start))
            or not (isinstance(end, str) and HHMM_RE.match(end))
        ):
            raise invalid(f"camera {cam}: window needs days (0=Monday..6) and start/end as HH:MM")
        windows.append({"days": sorted(set(days)), "start": start, "end": end})
    return windows


def validate_config(body: object) -> list[dict[str, Any]]:
    """Return the normalised camera list, or raise 400 ``invalid_config``."""
    if not isinstance(body, dict) or not isinstance(body.get("cameras"), list):
        raise invalid("config must be an object with a 'cameras' list")
    cameras = body["cameras"]
    if len(cameras) > MAX_CAMERAS:
        raise invalid(f"at most {MAX_CAMERAS} cameras")
    seen: set[str] = set()
    out = []
    for cam in cameras:
        if not isinstance(cam, dict):
            raise invalid("each camera must be an object")
        try:
            cid = validate_id(cam.get("id"), "camera id")
        except ApiError as exc:
            raise invalid(exc.message) from None
        if cid in seen:
            raise invalid(f"camera id {cid!r} appears twice")
        seen.add(cid)
        name = cam.get("name", cid)
        source = cam.get("source", "synthetic")
        retention = cam.get("retention_days", 30)
        if not isinstance(name, str) or not 1 <= len(name) <= 64:
            raise invalid(f"camera {cid}: name must be 1-64 characters")
        problem = source_problem(source)
        if problem:
            raise invalid(f"camera {cid}: {problem}")
        if isinstance(retention, bool) or not isinstance(retention, int):
            raise invalid(f"camera {cid}: retention_days must be an integer")
        if not 1 <= retention <= 3650:
            raise invalid(f"camera {cid}: retention_days must be between 1 and 3650")
        out.append(
            {
                "id": cid,
                "name": name,
                "source": source,
                "schedule": _schedule(cam.get("schedule", "always"), cid),
                "retention_days": retention,
            }
        )
    return out


def schedule_active(schedule: Any, now: datetime) -> bool:
    """Whether a camera should record at local time ``now``."""
    if schedule in (None, "always"):
        return True
    if schedule == "never":
        return False
    hhmm = now.strftime("%H:%M")
    for w in schedule:
        if now.weekday() in w["days"]:
            start, end = w["start"], w["end"]
            # A window may cross midnight (22:00-06:00).
            if (start <= end and start <= hhmm < end) or (
                start > end and (hhmm >= start or hhmm < end)
            ):
                return True
    return False


def synthetic_cameras(count: int) -> list[dict[str, Any]]:
    """The demo cameras used when a fresh node is started with ``--cameras N``."""
    return [
        {
            "id": f"cam{i}",
            "name": f"Camera {i}",
            "source": "synthetic",
            "schedule": "always",
            "retention_days": 7,
        }
        for i in range(1, count + 1)
    ]
