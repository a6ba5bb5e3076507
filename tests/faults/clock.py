"""A node agent whose wall clock is off by a given number of seconds.

The agent is a Python process: a `sitecustomize` module on its PYTHONPATH shifts
`time.time()` (and `time.time_ns()`) before the agent starts, so every time it stamps
(segments, snapshots, health, uploads) is off as a misset clock would make it, while
its monotonic clock (timeouts, recording cadence) runs true.
"""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.nodes import REPO_ROOT

SHIM = """\
import os
import time

_offset = float(os.environ.get("CMS_TEST_CLOCK_OFFSET", "0"))
if _offset:
    _time, _time_ns = time.time, time.time_ns
    time.time = lambda: _time() + _offset
    time.time_ns = lambda: _time_ns() + int(_offset * 1e9)
"""


def skewed_env(folder: Path, offset_seconds: float) -> dict[str, str]:
    """The environment to give `start_node(env=...)` for a clock `offset_seconds` off."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SHIM)
    return {
        "PYTHONPATH": f"{folder}:{REPO_ROOT}",
        "CMS_TEST_CLOCK_OFFSET": str(offset_seconds),
    }
