"""`make run`'s supervisor: a CMS process that dies comes back, and Ctrl-C stops all."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Connection

from cms import broker
from cms.inventory.models import WorkerHeartbeat
from cms.inventory.tasks import worker_heartbeat
from cms.supervision import control
from tests.fixtures.celery import ROOT, SESSION_QUEUE, child_env
from tests.fixtures.nodes import wait_until

CMS_PROGRAMS = ("cms:web", "cms:worker", "cms:beat", "broker:redis")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def running(rpc, settled: float = 0.0) -> dict[str, int]:
    """Pids of the programs RUNNING (for at least `settled` seconds)."""
    return {
        f"{p['group']}:{p['name']}": p["pid"]
        for p in rpc.getAllProcessInfo()
        if p["statename"] == "RUNNING" and p["now"] - p["start"] >= settled
    }


def settle(rpc) -> dict[str, int]:
    """Wait until every CMS program has run for longer than its start-up check."""
    return wait_until(
        lambda: (pids := running(rpc, settled=4)).keys() >= set(CMS_PROGRAMS) and pids,
        timeout=60,
        message="every CMS program to run steadily",
    )


@pytest.fixture
def stack(transactional_db) -> Iterator[tuple[subprocess.Popen, Path]]:
    """`manage.py run_stack --no-fleet` on its own embedded broker, against the test database."""
    var_dir = Path(tempfile.mkdtemp(prefix="cms-stack-", dir="/tmp"))
    env = child_env(CMS_VAR_DIR=str(var_dir))
    env.pop("CELERY_BROKER_URL")
    env.pop("REDIS_URL", None)
    log = open(var_dir / "stack.log", "wb")  # noqa: SIM115 (closed at teardown)
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_stack", "--no-fleet", "--bind",
         f"127.0.0.1:{free_port()}"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(lambda: (var_dir / "run" / "supervisor.sock").exists(), timeout=30,
                   message="supervisord to start")  # fmt: skip
        wait_until(lambda: set(CMS_PROGRAMS) <= running(control(var_dir)).keys(), timeout=60,
                   message="web, worker, beat and the broker to run")  # fmt: skip
        yield process, var_dir
    finally:
        if process.poll() is None:
            # Ctrl-C first: supervisord stops its programs, each in a process group of its
            # own that killing supervisord's group would not reach.
            process.send_signal(signal.SIGINT)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        log.close()
        shutil.rmtree(var_dir, ignore_errors=True)


def test_it_restarts_any_cms_process_that_dies_and_stops_all_on_ctrl_c(stack):
    process, var_dir = stack
    rpc = control(var_dir)
    for name in CMS_PROGRAMS:
        before = settle(rpc)
        os.kill(before[name], signal.SIGKILL)
        wait_until(
            lambda name=name, before=before: running(rpc).get(name, before[name]) != before[name],
            timeout=30,
            message=f"{name} to be started again",
        )
        after = settle(rpc)
        others = {k: v for k, v in before.items() if k != name}
        assert {k: after.get(k) for k in others} == others, f"killing {name} touched others"
    assert "not expected" in (var_dir / "log" / "supervisord.log").read_text()

    # The worker started again (on the broker started again) still runs tasks.
    note = f"after the kills {uuid.uuid4()}"
    with Connection(broker.url(var_dir)) as conn:
        worker_heartbeat.apply_async(kwargs={"note": note}, queue=SESSION_QUEUE, connection=conn)
    wait_until(lambda: WorkerHeartbeat.objects.filter(last_note=note).exists(), timeout=60,
               message="the restarted worker to run a task")  # fmt: skip

    pids = list(running(rpc).values())
    started = time.monotonic()
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
    process.wait(10)
    stopped_in = time.monotonic() - started
    alive = [pid for pid in pids if _alive(pid)]
    assert not alive, f"still running after Ctrl-C: {alive}"
    log = (var_dir / "log" / "supervisord.log").read_text()
    assert "SIGKILL" not in log.split("received SIGINT")[-1], log[-2000:]
    assert stopped_in < 10


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
