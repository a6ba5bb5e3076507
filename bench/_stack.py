"""A CMS of its own for one benchmark run: a fresh database, a var folder, a broker, a
Celery worker and a Celery beat, all stopped by the run's :class:`Processes`.

    stack = CmsStack(folder, database_url=None, broker_url=None, queue="bench-x")
    stack.migrate()
    ids = stack.cmsctl("register", json.dumps(spec))
    stack.start_celery(procs, concurrency=2, hostname="bench-1")
    ...
    stack.close()          # drops the database, stops the embedded broker

The orchestrator holds no Django setup of its own: the Django-side steps run in
`bench/cmsctl.py` with this stack's environment.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from _harness import PYTHON, Database, Processes, cms_env, wait_for_log

from cms import broker as embedded


class CmsStack:
    def __init__(
        self,
        folder: Path,
        *,
        database_url: str | None,
        broker_url: str | None,
        queue: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.folder = folder
        self.queue = queue
        self.shared_broker = broker_url
        self.db = Database(database_url, folder)
        if broker_url:
            url = broker_url
        else:  # the embedded broker of `make run`, private to this run
            embedded.start_daemon(folder / "var")
            url = embedded.url(folder / "var")
        self.env = cms_env(folder / "var", self.db.url, url, queue)
        self.env.update(env or {})

    def migrate(self) -> None:
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def cmsctl(self, command: str, stdin: str = "") -> Any:
        done = subprocess.run(
            [PYTHON, "bench/cmsctl.py", command],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"cmsctl {command} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def start_celery(self, procs: Processes, *, concurrency: int, hostname: str) -> None:
        """A worker on this stack's queue (waited for until ready), then a beat."""
        worker_log, beat_log = self.folder / "worker.log", self.folder / "beat.log"
        worker_cmd = [
            PYTHON, "-m", "celery", "-A", "cms", "worker", "--queues", self.queue,
            "--hostname", f"{hostname}@%h", "--concurrency", str(concurrency),
            "--pool", "prefork" if concurrency > 1 else "solo",
            "--without-gossip", "--without-mingle", "--loglevel", "INFO",
        ]  # fmt: skip
        beat_cmd = [
            PYTHON, "-m", "celery", "-A", "cms", "beat", "--loglevel", "INFO",
            "--schedule", str(self.folder / "beat-schedule"),
        ]  # fmt: skip
        worker = procs.spawn("worker", worker_cmd, env=self.env, log_path=worker_log)
        wait_for_log(worker_log, " ready.", worker, 60)
        procs.spawn("beat", beat_cmd, env=self.env, log_path=beat_log)

    def close(self) -> None:
        """After the run's processes are stopped: the database and the broker's queue."""
        self.db.drop()
        if self.shared_broker:
            _purge_redis_queue(self.shared_broker, self.queue)
        else:
            embedded.stop(self.folder / "var")


def _purge_redis_queue(url: str, queue: str) -> None:
    """Expired probe ticks stay in our own queue; leave nothing behind in a shared Redis."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.delete(queue)
    finally:
        client.close()
