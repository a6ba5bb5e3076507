"""Soak: the `make run` stack for N minutes under a fault injector; does the CMS fail first?

    .venv/bin/python bench/soak.py --minutes 30 [--seed 1] [--port-base 5201]

It runs `manage.py run_stack` (supervisord with web, worker, beat, the embedded
broker and the demo fleet) in a fresh var folder of its own, with a fresh SQLite
database, and then, at random times, injects faults:

- on the servers: a volume or a surveillance-service fault on a recording server,
  cleared after a while; a recording agent killed with SIGKILL and started again
  (supervisorctl start) after a while;
- on the CMS: SIGKILL of the worker, of beat, of web, and of the broker (the
  supervisor is expected to bring each back).

After the last fault it clears everything, starts every agent, and waits for the
open failover events to end. The JSON on the last line of stdout has: process
exits that the injector did not cause (target 0), restarts by the supervisor,
events opened, completed and left open ("stuck", target 0), the recording gap of
every failback (the longest camera gap), the worst time from detection to a
failover server recording, and each process's memory at the start and the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import PYTHON, REPO, emit, log, machine, summary

from cms.supervision import control

RECORDING = ("lobby", "garage", "warehouse")
CMS_PROGRAMS = ("cms:web", "cms:worker", "cms:beat", "broker:redis")
OPEN_STATES = (
    "detected", "no_failover_server", "taking_over", "active",
    "waiting_failback", "failing_back", "restoring",
)  # fmt: skip
EXIT_LINE = re.compile(r"^(\S+ \S+),\d+ \w+ exited: (\S+) \((.*)\)$")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (Celery's pool, gunicorn's workers)."""
    total = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(child) for child in children]
    for one in pids:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return round(total / 1024, 1)


class Stack:
    def __init__(self, folder: Path, port_base: int) -> None:
        self.var = folder / "var"
        self.var.mkdir()
        outside = ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL")  # the embedded defaults
        self.env = {k: v for k, v in os.environ.items() if k not in outside}
        self.env.update(
            {
                "CMS_VAR_DIR": str(self.var),
                "CMS_DEMO_PORT_BASE": str(port_base),
                "DJANGO_SETTINGS_MODULE": "cms.settings",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.process: subprocess.Popen | None = None
        self.injected: list[tuple[float, str]] = []  # (time, program) the injector stopped

    def start(self) -> None:
        manage = [PYTHON, str(REPO / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=self.env, check=True)
        self.process = subprocess.Popen(
            [*manage, "run_stack", "--bind", f"127.0.0.1:{free_port()}"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, Exception):
                states = {self.name(p): p["statename"] for p in self.rpc.getAllProcessInfo()}
                if states.get("fleet:register") == "EXITED" and all(
                    states.get(n) == "RUNNING" for n in CMS_PROGRAMS
                ):
                    return
            time.sleep(0.5)
        raise RuntimeError("the stack did not come up within 90 s")

    @property
    def rpc(self) -> Any:
        return control(self.var)

    @staticmethod
    def name(info: dict[str, Any]) -> str:
        return f"{info['group']}:{info['name']}"

    def pids(self) -> dict[str, int]:
        return {self.name(p): p["pid"] for p in self.rpc.getAllProcessInfo() if p["pid"]}

    def kill(self, program: str) -> None:
        pid = self.pids().get(program)
        if pid:
            self.injected.append((time.time(), program.split(":")[1]))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def start_program(self, program: str) -> None:
        with contextlib.suppress(Exception):  # already running
            self.rpc.startProcess(program, True)

    def fault(self, agent: str, kind: str) -> None:
        subprocess.run(
            [PYTHON, "-m", "node", "fault", "--data-dir", str(self.var / "demo" / agent), kind],
            env=self.env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def query(self, sql: str) -> list[tuple]:
        with contextlib.closing(sqlite3.connect(self.var / "cms.sqlite3", timeout=30)) as db:
            return db.execute(sql).fetchall()

    def execute(self, sql: str) -> None:
        with contextlib.closing(sqlite3.connect(self.var / "cms.sqlite3", timeout=30)) as db:
            db.execute(sql)
            db.commit()

    def stop(self) -> float:
        if self.process is None or self.process.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        return round(time.monotonic() - started, 2)

    def unexpected_exits(self) -> tuple[list[str], dict[str, int]]:
        """Exits the supervisor logged that the injector did not cause, and the starts of
        each program after its first."""
        unexpected: list[str] = []
        starts: dict[str, int] = {}
        for line in (self.var / "log" / "supervisord.log").read_text().splitlines():
            if " spawned: '" in line:
                program = line.split(" spawned: '")[1].split("'")[0]
                starts[program] = starts.get(program, 0) + 1
            match = EXIT_LINE.match(line)
            if not match or "not expected" not in match.group(3):
                continue
            when = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
            program = match.group(2)
            if not any(p == program and -1 <= when - t <= 5 for t, p in self.injected):
                unexpected.append(line)
        return unexpected, starts


def soak(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="soak-", dir="/tmp") as tmp:
        stack = Stack(Path(tmp), args.port_base)
        log(f"starting the stack in {tmp}")
        stack.start()
        # The injector faults the same three servers every minute or two: flapping by
        # design. Damped, their events would wait for an operator this soak does not play.
        stack.execute("UPDATE failover_failoversettings SET flap_failovers = 0")
        time.sleep(20)  # let the first probe cycles and snapshots settle
        memory_start = {name: rss_mb(pid) for name, pid in stack.pids().items()}
        injected: dict[str, int] = {}
        end = time.monotonic() + args.minutes * 60
        server_fault_at = time.monotonic() + rng.uniform(10, 30)
        cms_kill_at = time.monotonic() + rng.uniform(30, 90)
        pending: list[tuple[float, str, str]] = []  # (when, what, target) to undo
        memory_peak = dict(memory_start)
        while time.monotonic() < end:
            now = time.monotonic()
            for item in [p for p in pending if p[0] <= now]:
                pending.remove(item)
                _, what, target = item
                if what == "clear":
                    stack.fault(target, "clear")
                else:
                    stack.start_program(f"fleet:{target}")
            if now >= server_fault_at and not pending:
                target = rng.choice(RECORDING)
                kind = rng.choice(["volume", "service", "kill"])
                log(f"fault: {kind} on {target}")
                injected[f"server_{kind}"] = injected.get(f"server_{kind}", 0) + 1
                if kind == "kill":
                    stack.kill(f"fleet:{target}")
                    pending.append((now + rng.uniform(20, 40), "start", target))
                else:
                    stack.fault(target, kind)
                    pending.append((now + rng.uniform(20, 40), "clear", target))
                server_fault_at = now + rng.uniform(60, 120)
            if now >= cms_kill_at:
                program = rng.choice(CMS_PROGRAMS)
                log(f"fault: SIGKILL {program}")
                injected[program] = injected.get(program, 0) + 1
                stack.kill(program)
                cms_kill_at = now + rng.uniform(40, 100)
            for name, pid in stack.pids().items():
                memory_peak[name] = max(memory_peak.get(name, 0.0), rss_mb(pid))
            time.sleep(1)

        log("clearing every fault and waiting for the open events to end")
        for target in RECORDING:
            stack.fault(target, "clear")
            stack.start_program(f"fleet:{target}")
        quiet_deadline = time.monotonic() + args.settle
        while time.monotonic() < quiet_deadline:
            placeholders = ",".join(f"'{s}'" for s in OPEN_STATES)
            open_now = stack.query(
                f"SELECT COUNT(*) FROM failover_failoverevent WHERE state IN ({placeholders})"  # noqa: S608
            )[0][0]
            if not open_now:
                break
            time.sleep(2)
        memory_end = {name: rss_mb(pid) for name, pid in stack.pids().items()}
        events = stack.query(
            "SELECT state, trigger, recording_gap_seconds, "
            "(julianday(taken_over_at) - julianday(detected_at)) * 86400 "
            "FROM failover_failoverevent"
        )
        unexpected, starts = stack.unexpected_exits()
        stop_seconds = stack.stop()
    by_state: dict[str, int] = {}
    for state, *_ in events:
        by_state[state] = by_state.get(state, 0) + 1
    gaps = [g for _, _, g, _ in events if g is not None]
    takeovers = [t for _, _, _, t in events if t is not None]
    return {
        "benchmark": "soak",
        "minutes": args.minutes,
        "seed": args.seed,
        "faults_injected": injected,
        "unexpected_process_exits": len(unexpected),
        "unexpected_exit_lines": unexpected[:20],
        "restarts": {program: n - 1 for program, n in sorted(starts.items()) if n > 1},
        "events_opened": len(events),
        "events_by_state": by_state,
        "events_stuck": sum(by_state.get(s, 0) for s in OPEN_STATES),
        "recording_gap_seconds": summary(gaps) | {"max": max(gaps) if gaps else None},
        "detection_to_takeover_seconds": summary(takeovers),
        "memory_mb": {
            name: {
                "start": memory_start.get(name),
                "end": memory_end.get(name),
                "peak": memory_peak.get(name),
            }
            for name in sorted(memory_end)
        },
        "ctrl_c_seconds": stop_seconds,
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--port-base", type=int, default=5201, help="the demo fleet's ports")
    parser.add_argument("--settle", type=float, default=240,
                        help="seconds to wait for open events after the last fault")  # fmt: skip
    emit(soak(parser.parse_args()))


if __name__ == "__main__":
    main()
