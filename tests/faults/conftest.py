"""What the fault tests share: a CMS host (a Celery worker and a Celery beat) started per
test, killed at its end."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.celery import SESSION_QUEUE, WorkerProcess, purge, start_beat, start_worker

# A dead worker's claim runs out in 3 s, so the bounds below stay about the fault tested.
HOST_ENV = {"CMS_EVENT_LEASE_SECONDS": "3", "CMS_TAKEOVER_CONFIRM_SECONDS": "20"}


@pytest.fixture
def cms_host(tmp_path: Path) -> Iterator[Callable[..., list[WorkerProcess]]]:
    """``cms_host(name, **env)``: a worker and a beat on the session queue, [worker, beat]."""
    started: list[WorkerProcess] = []
    purge(SESSION_QUEUE)

    def start(name: str = "host", **env: str) -> list[WorkerProcess]:
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        env = {**HOST_ENV, **env}
        processes = [
            start_worker(folder, queue=SESSION_QUEUE, **env),
            start_beat(folder, f"beat-{name}", **env),
        ]
        started.extend(processes)
        return processes

    yield start
    for process in started:
        process.stop(signal.SIGKILL)


@pytest.fixture(params=["direct", "relayed"])
def restoration_path(request, monkeypatch, settings) -> str:
    """Restoration straight between the nodes, or relayed through the CMS: in this process
    and in every CMS host started after it."""
    monkeypatch.setenv("CMS_RESTORATION_PATH", request.param)
    settings.CMS_RESTORATION_PATH = request.param
    return request.param
