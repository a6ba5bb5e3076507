"""Shared plumbing for the benchmarks: child processes, node agents, databases, figures.

Every benchmark prints progress to stderr and one JSON object as the last line of
stdout. Every process a benchmark starts is registered with :class:`Processes`,
which kills it (and its process group: Celery prefork children) on exit, on an
error, and on SIGINT/SIGTERM, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the scripts run as `python bench/NAME.py` from anywhere
    sys.path.insert(0, str(REPO))
PYTHON = sys.executable
AGENT_PASSWORD = "bench-pw"  # noqa: S105 (a throwaway credential for local agents)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    """The one JSON line on stdout; everything else went to stderr."""
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    sys.stdout.flush()


# -- processes -------------------------------------------------------------------


class Processes:
    """Children started by a benchmark; all of them are stopped when it ends."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []
        atexit.register(self.stop_all)
        # SIGTERM would otherwise end the interpreter without running atexit.
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    def spawn(
        self, name: str, cmd: Sequence[str], *, env: dict[str, str], log_path: Path
    ) -> subprocess.Popen:
        with open(log_path, "ab") as out:
            # A session of its own: killing the group also reaches Celery's pool children.
            process = subprocess.Popen(
                list(cmd),
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.children.append((name, process))
        return process

    def adopt(self, name: str, process: subprocess.Popen) -> subprocess.Popen:
        """Track a process started elsewhere (one whose stdout the caller reads)."""
        self.children.append((name, process))
        return process

    @staticmethod
    def stop(process: subprocess.Popen, timeout: float = 8.0) -> None:
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        # A stopped process (a benchmark's SIGSTOP: a hung host) acts on SIGTERM only
        # once it runs again.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGCONT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def stop_all(self) -> None:
        for _, process in reversed(self.children):
            self.stop(process)
        self.children.clear()


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM of a live process, in MB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS, so the next reading covers one phase only."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# -- node agents -----------------------------------------------------------------


@dataclass
class Agent:
    name: str
    data_dir: Path
    process: subprocess.Popen
    port: int
    host: str = "127.0.0.1"
    password: str = AGENT_PASSWORD

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self, timeout: tuple[float, float] = (2.0, 30.0), retries: int = 1) -> Any:
        from cms.nodes.client import NodeClient

        return NodeClient(
            self.host, self.port, password=self.password, timeout=timeout, retries=retries
        )

    def kill(self) -> None:
        """SIGKILL: a crash, not a shutdown (no segment is finished, nothing is flushed)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(10)


def start_agent(
    procs: Processes,
    data_dir: Path,
    *,
    mode: str,
    name: str,
    cameras: int = 0,
    segment_seconds: float = 1.0,
) -> Agent:
    """A real `cms-node serve` on a free loopback port (the agent picks it: no races)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        PYTHON, "-m", "node", "serve", "--data-dir", str(data_dir),
        "--host", "127.0.0.1", "--port", "0", "--mode", mode, "--name", name,
        "--segment-seconds", str(segment_seconds), "--snapshot-every", "5",
        "--discovery-port", "0", "--log-level", "warning",
        "--allow-fault-injection",  # benchmarks break servers on purpose
    ]  # fmt: skip
    if cameras:
        cmd += ["--cameras", str(cameras)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMS_NODE_")}
    env["CMS_NODE_ADMIN_PASSWORD"] = AGENT_PASSWORD  # not on the command line (ps)
    env["PYTHONPATH"] = str(REPO)
    (data_dir / "run.json").unlink(missing_ok=True)
    process = procs.spawn(
        f"agent {name}", cmd, env=env, log_path=data_dir.parent / f"{data_dir.name}.log"
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"agent {name} exited with {process.returncode}; see its log")
        try:
            run = json.loads((data_dir / "run.json").read_text())
        except (OSError, ValueError):
            run = None
        if run and run.get("pid") == process.pid:
            port = int(run["port"])
            try:
                url = f"http://127.0.0.1:{port}/api/v1/info"
                with urllib.request.urlopen(url, timeout=2):
                    return Agent(name, data_dir, process, port)
            except (OSError, urllib.error.URLError):
                pass
        time.sleep(0.05)
    raise RuntimeError(f"agent {name} did not answer in time")


# -- the CMS side: databases, environment, Celery --------------------------------


class Database:
    """A fresh database for one run: a SQLite file, or a new PostgreSQL database created
    on the server that `--database-url` names (dropped afterwards; the named database
    itself is never written)."""

    def __init__(self, base_url: str | None, folder: Path) -> None:
        self.base_url = base_url
        self.created: str | None = None
        if not base_url or base_url.startswith("sqlite"):
            self.kind = "sqlite"
            self.url = f"sqlite:///{folder / 'cms.sqlite3'}"
            return
        import psycopg

        self.kind = "postgresql"
        name = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(_libpq(base_url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created = name
        parts = urlsplit(base_url)
        self.url = urlunsplit(parts._replace(path=f"/{name}"))

    def drop(self) -> None:
        # This process's own connections first (a benchmark that ran Django here).
        if "django.db" in sys.modules:
            from django.db import connections

            connections.close_all()
        if not self.created or not self.base_url:
            return
        import psycopg

        with psycopg.connect(_libpq(self.base_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.created}" WITH (FORCE)')
        self.created = None

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        """Raw SQL from outside Django (the orchestrator holds no Django setup)."""
        if self.kind == "sqlite":
            path = self.url.removeprefix("sqlite:///")
            conn = sqlite3.connect(path, timeout=30)
            try:
                return conn.execute(sql.replace("%s", "?"), tuple(params)).fetchall()
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(_libpq(self.url)) as conn:
            return conn.execute(sql, tuple(params)).fetchall()


def _libpq(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


def cms_env(var_dir: Path, database_url: str, broker_url: str, queue: str) -> dict[str, str]:
    """What web, worker and beat read: one var folder, database, broker and queue."""
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "cms.settings",
            "CMS_VAR_DIR": str(var_dir),
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": broker_url,
            "CMS_CELERY_QUEUE": queue,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


def setup_django(env: dict[str, str]) -> None:
    """Configure this process's Django from `env` and migrate (output to stderr)."""
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False, stdout=sys.stderr)


def wait_for_log(path: Path, marker: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{path.name}: exited with {process.returncode}")
        if path.exists() and marker in path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{path.name}: no {marker!r} after {timeout:.0f} s")


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = predicate()
            if value:
                return value
        time.sleep(interval)
    return None


# -- figures ---------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between the nearest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo), 3)


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    return {
        "n": len(values),
        "min": round(min(values), 3) if values else None,
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": round(max(values), 3) if values else None,
    }


def machine() -> dict[str, Any]:
    mem_kb = 0
    with contextlib.suppress(Exception):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024**2, 1),
        "python": sys.version.split()[0],
    }
