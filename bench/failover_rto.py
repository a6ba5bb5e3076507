"""Failover RTO and recording gap, through the real processes.

    python bench/failover_rto.py --trials 5 [--probe-interval 2 --failures 3]
                                 [--broker-url redis://127.0.0.1:6379/0]
                                 [--database-url postgres://postgres@127.0.0.1:5432/test]

Per trial, everything is fresh: a database (a SQLite file, or a new PostgreSQL
database on the server --database-url names), a CMS var folder, a recording agent
with 2 synthetic cameras and 1-second segments, a failover agent, a Celery worker
and a Celery beat (the embedded redis-server in the var folder, or --broker-url on
a queue of its own). Once the recording server has been probed normal, the
benchmark waits a random fraction of a probe interval (so the kill lands anywhere
in the probe cycle), SIGKILLs the recording agent and measures:

* RTO: kill -> the failover agent's /health shows every camera recording on behalf
  of the recording server with segments > 0 (polled every 50 ms);
* gap per camera: end of the recording agent's last own segment (read from its
  sqlite index after the kill) -> start of the failover agent's first segment for
  that camera (its /recordings listing);
* where the time went: kill -> event detected, and -> ACTIVE (from the database).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sqlite3
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _harness import (
    PYTHON,
    Agent,
    Database,
    Processes,
    cms_env,
    emit,
    log,
    machine,
    start_agent,
    summary,
    wait_for_log,
    wait_until,
)

from cms import broker as embedded

CAMERAS = 2
TARGET_P95_S = 8.0


def parse_iso(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


def last_own_segments(data_dir: Path) -> dict[str, float]:
    """End of each camera's last finished segment, from a dead agent's index."""
    conn = sqlite3.connect(data_dir / "index.sqlite3", timeout=10)
    try:
        rows = conn.execute(
            "SELECT camera, MAX(end) FROM files WHERE origin = 'own' AND kind = 'recording' "
            "GROUP BY camera"
        ).fetchall()
    finally:
        conn.close()
    return {camera: float(end) for camera, end in rows}


def first_failover_segments(agent: Agent, node_tag: str) -> dict[str, float]:
    first: dict[str, float] = {}
    for item in agent.client().list_recordings(
        origin="failover", on_behalf_of=node_tag, kind="recording", limit=1000
    ):
        start = parse_iso(item["start"])
        first[item["camera"]] = min(start, first.get(item["camera"], start))
    return first


def recording_for(agent: Agent, node_tag: str) -> bool:
    """True when every camera records on behalf of `node_tag` and has written a segment."""
    health = agent.client(timeout=(0.5, 2.0), retries=0).health()
    ours = [c for c in health["recording"]["cameras"] if c.get("on_behalf_of") == node_tag]
    return len(ours) >= CAMERAS and all(c.get("segments") for c in ours)


def run_trial(
    n: int, args: argparse.Namespace, rng: random.Random, procs: Processes
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-rto-{n}-") as tmp:
        folder = Path(tmp)
        db = Database(args.database_url, folder)
        try:
            return _trial(n, args, rng, procs, folder, db)
        finally:
            procs.stop_all()
            db.drop()
            if args.broker_url:
                _purge_redis_queue(args.broker_url, args.queue)
            else:
                embedded.stop(folder / "var")


def _trial(
    n: int,
    args: argparse.Namespace,
    rng: random.Random,
    procs: Processes,
    folder: Path,
    db: Database,
) -> dict[str, Any]:
    if args.broker_url:
        broker_url = args.broker_url
    else:  # the embedded broker of `make run`, private to this trial
        embedded.start_daemon(folder / "var")
        broker_url = embedded.url(folder / "var")
    env = cms_env(folder / "var", db.url, broker_url, args.queue)
    env["CMS_TAKEOVER_CONFIRM_SECONDS"] = "20"
    log(f"trial {n}: migrating a fresh {db.kind} database")
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    recording = start_agent(
        procs, folder / "rec", mode="recording", name="rec", cameras=CAMERAS, segment_seconds=1
    )
    standby = start_agent(procs, folder / "standby", mode="failover", name="standby")
    spec = {
        "settings": {
            "probe_interval": args.probe_interval,
            "probe_timeout": args.probe_timeout,
            "failures_before_failover": args.failures,
            "successes_before_recovery": 3,
            "failback_mode": "manual",  # nothing happens after the failover
            "restore_recordings": False,
        },
        "recording": _node(recording, "Lobby"),
        "failover": _node(standby, "Standby"),
    }
    ids = json.loads(_cmsctl(env, "register", json.dumps(spec)))
    node_tag = ids["node_tag"]

    worker_log, beat_log = folder / "worker.log", folder / "beat.log"
    worker_cmd = [
        PYTHON, "-m", "celery", "-A", "cms", "worker", "--queues", args.queue,
        "--hostname", f"{args.queue}-{n}@%h", "--concurrency", str(args.concurrency),
        "--pool", "prefork" if args.concurrency > 1 else "solo",
        "--without-gossip", "--without-mingle", "--loglevel", "INFO",
    ]  # fmt: skip
    beat_cmd = [
        PYTHON, "-m", "celery", "-A", "cms", "beat", "--loglevel", "INFO",
        "--schedule", str(folder / "beat-schedule"),
    ]  # fmt: skip
    worker = procs.spawn(
        "worker",
        worker_cmd,
        env=env,
        log_path=worker_log,
    )
    wait_for_log(worker_log, " ready.", worker, 60)
    procs.spawn(
        "beat",
        beat_cmd,
        env=env,
        log_path=beat_log,
    )

    def probed_normal() -> bool:
        rows = db.query(
            "SELECT status, consecutive_successes FROM inventory_server WHERE id = %s",
            [ids["recording_id"]],
        )
        return bool(rows) and rows[0][0] == "normal" and rows[0][1] >= 2

    if not wait_until(probed_normal, timeout=60, interval=0.2):
        raise RuntimeError(f"trial {n}: the recording server was never probed normal")
    phase = rng.uniform(0, args.probe_interval)
    time.sleep(phase)

    killed_at, killed_mono = time.time(), time.monotonic()
    recording.kill()
    log(f"trial {n}: killed the recording agent ({phase:.2f} s into a probe interval)")
    rto = None
    deadline = killed_mono + args.timeout
    while time.monotonic() < deadline:
        try:
            if recording_for(standby, node_tag):
                rto = time.monotonic() - killed_mono
                break
        except Exception:  # noqa: S112 (the failover agent answers; a slow poll is retried)
            continue
        time.sleep(0.05)

    own_end = last_own_segments(recording.data_dir)
    failover_start = first_failover_segments(standby, node_tag) if rto is not None else {}
    gaps = {
        camera: round(failover_start[camera] - end, 3)
        for camera, end in sorted(own_end.items())
        if camera in failover_start
    }
    events = json.loads(_cmsctl(env, "timeline"))
    event = events[0] if events else {}
    detected = event.get("detected_at")
    active = event.get("taken_over_at")
    trial = {
        "trial": n,
        "rto_s": round(rto, 3) if rto is not None else None,
        "gap_s": gaps,
        "kill_phase_s": round(phase, 3),
        "kill_to_detected_s": round(detected - killed_at, 3) if detected else None,
        "kill_to_active_s": round(active - killed_at, 3) if active else None,
        "event_state": event.get("state"),
        "events": len(events),
    }
    log(f"trial {n}: {trial}")
    return trial


def _node(agent: Agent, name: str) -> dict[str, Any]:
    return {"name": name, "host": agent.host, "port": agent.port, "password": agent.password}


def _cmsctl(env: dict[str, str], command: str, stdin: str = "") -> str:
    done = subprocess.run(
        [PYTHON, "bench/cmsctl.py", command],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"cmsctl {command} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def _purge_redis_queue(url: str, queue: str) -> None:
    """Expired probe ticks stay in our own queue; leave nothing behind in a shared Redis."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.delete(queue)
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Failover RTO and recording gap")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--probe-interval", type=int, default=2)
    parser.add_argument("--failures", type=int, default=3)
    parser.add_argument("--probe-timeout", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--broker-url", help="e.g. redis://127.0.0.1:6379/0 (default: embedded)")
    parser.add_argument("--database-url", help="PostgreSQL server to create fresh dbs on")
    parser.add_argument("--timeout", type=float, default=60.0, help="per trial, after the kill")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    # A queue of our own: a shared Redis may carry someone else's tasks.
    args.queue = f"bench-rto-{uuid.uuid4().hex[:10]}"
    rng = random.Random(args.seed)
    procs = Processes()

    trials = []
    for n in range(1, args.trials + 1):
        try:
            trials.append(run_trial(n, args, rng, procs))
        except Exception as exc:  # one broken trial is a result too, not the end of the run
            log(f"trial {n} failed: {exc}")
            trials.append({"trial": n, "rto_s": None, "error": str(exc)[:500]})
    rtos = [t["rto_s"] for t in trials if t.get("rto_s") is not None]
    gaps = [g for t in trials for g in (t.get("gap_s") or {}).values()]
    detected = [t["kill_to_detected_s"] for t in trials if t.get("kill_to_detected_s")]
    active = [t["kill_to_active_s"] for t in trials if t.get("kill_to_active_s")]
    p95 = summary(rtos)["p95"]
    emit(
        {
            "benchmark": "failover_rto",
            "settings": {
                "trials": args.trials,
                "probe_interval_s": args.probe_interval,
                "failures_before_failover": args.failures,
                "probe_timeout_s": args.probe_timeout,
                "cameras": CAMERAS,
                "segment_seconds": 1,
                "worker_concurrency": args.concurrency,
                "broker": "redis" if args.broker_url else "embedded redis",
                "database": "postgresql" if args.database_url else "sqlite",
            },
            "machine": machine(),
            "rto_s": summary(rtos),
            "gap_s": summary(gaps),
            "kill_to_detected_s": summary(detected),
            "kill_to_active_s": summary(active),
            "failed_trials": sum(1 for t in trials if t.get("rto_s") is None),
            "target": {
                "p95_rto_s": TARGET_P95_S,
                "met": p95 is not None and p95 <= TARGET_P95_S and len(rtos) == len(trials),
            },
            "trials": trials,
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
