"""Camera sources: an allow-list, and URLs that reach ffmpeg only as an ``-i`` input."""

from __future__ import annotations

import pytest

from node.config import MAX_SOURCE_LENGTH, source_kind, validate_config
from node.errors import ApiError
from node.recorder import TEST_PATTERN_GRAPH, ffmpeg_input

ALLOWED = [
    ("synthetic", "synthetic"),
    ("testsrc", "pattern"),
    ("rtsp://10.0.0.5:554/stream1", "stream"),
    ("rtsp://user:p%40ss@cam.example/live?channel=1&subtype=0", "stream"),
    ("rtsps://cam.example/live", "stream"),
    ("http://192.0.2.7/mjpg/video.mjpg", "stream"),
    ("https://cam.example/hls/index.m3u8", "stream"),
    ("rtsp://[2001:db8::7]:8554/x", "stream"),
]

REFUSED = [
    # The reported attack: a filter graph that writes a file as the agent's user.
    "testsrc,metadata=mode=print:file=/tmp/pwned,nullsink;testsrc",
    "testsrc=size=1x1",
    "testsrc2",
    "smptebars",
    "lavfi",
    "-i",
    "",
    "file:///etc/passwd",
    "/etc/passwd",
    "concat:a.ts|b.ts",
    "subfile,,start,0,end,0,,:/etc/passwd",
    "data:video/mp2t;base64,AAAA",
    "tcp://10.0.0.5:554",
    "udp://239.0.0.1:1234",
    "RTSP://cam.example/live",
    "rtsp:cam.example/live",
    "rtsp://",
    "rtsp://:554/x",
    "rtsp://cam.example:99999/x",
    "rtsp://cam.example/a b",
    "rtsp://cam.example/a\tb",
    "rtsp://cam.example/\x00",
    "rtsp://cam.example/\n-f lavfi",
    "rtsp://cam.example/\u202egnp.exe",
    "https://\uff43\uff41\uff4d.example/",  # full-width letters
    "http://cam.example/" + "x" * MAX_SOURCE_LENGTH,
]


@pytest.mark.parametrize(("source", "kind"), ALLOWED)
def test_it_accepts_stream_urls_and_the_two_built_in_sources(source, kind):
    (cam,) = validate_config({"cameras": [{"id": "c1", "source": source}]})
    assert cam["source"] == source
    assert source_kind(source) == kind


@pytest.mark.parametrize("source", REFUSED)
def test_it_refuses_any_other_source_naming_the_camera(source):
    with pytest.raises(ApiError) as exc:
        validate_config({"cameras": [{"id": "lobby-east", "source": source}]})
    assert exc.value.status == 400 and exc.value.code == "invalid_config"
    assert exc.value.message.startswith("camera lobby-east: source")
    assert source_kind(source) is None


@pytest.mark.parametrize("source", [1, None, ["rtsp://x/"], {"url": "rtsp://x/"}])
def test_it_refuses_a_source_that_is_not_a_string(source):
    with pytest.raises(ApiError) as exc:
        validate_config({"cameras": [{"id": "c1", "source": source}]})
    assert exc.value.code == "invalid_config"


@pytest.mark.parametrize("source", [s for s, kind in ALLOWED if kind == "stream"])
def test_a_url_reaches_ffmpeg_only_as_an_input_limited_to_network_protocols(source):
    args = ffmpeg_input(source)
    assert args.count(source) == 1 and args[-2:] == ["-i", source]
    assert "lavfi" not in args and "-filter_complex" not in args and "-vf" not in args
    allowed = args[args.index("-protocol_whitelist") + 1].split(",")
    assert "file" not in allowed and "concat" not in allowed and "subfile" not in allowed


def test_the_test_pattern_is_a_fixed_graph():
    assert ffmpeg_input("testsrc") == ["-f", "lavfi", "-i", TEST_PATTERN_GRAPH]


@pytest.mark.parametrize("source", ["synthetic", *REFUSED])
def test_nothing_else_becomes_ffmpeg_arguments(source):
    # Also what a configuration stored by an older version meets in the recorder.
    with pytest.raises(ValueError):
        ffmpeg_input(source)
