"""Failover RTO and recording gap per kind of fault, through the real processes.

    python bench/failover_rto.py --trials 5 [--fault kill|volume|service|blackhole|all]
                                 [--probe-interval 2 --failures 3 | --project-defaults]
                                 [--broker-url redis://127.0.0.1:6379/0]
                                 [--database-url postgres://postgres@127.0.0.1:5432/test]

Per trial, everything is fresh: a database (a SQLite file, or a new PostgreSQL
database on the server --database-url names), a CMS var folder, a recording agent
with 2 synthetic cameras and 1-second segments, a failover agent, a Celery worker
and a Celery beat (the embedded redis-server in the var folder, or --broker-url on
a queue of its own). Once the recording server has been probed normal, the
benchmark waits a random fraction of a probe interval (so the fault lands anywhere
in the probe cycle) and breaks the recording server:

* kill: SIGKILL of its agent (a crash: connections close at once);
* volume, service: the agent's own simulated fault (POST /fault); the agent stays up
  and answers, its cameras stop writing;
* blackhole: SIGSTOP of its agent (a hung host: connections stay open, nothing
  answers); the agent is killed once the trial has its figures.

and measures:

* RTO: fault -> the failover agent's /health shows every camera recording on behalf
  of the recording server with segments > 0 (polled every 50 ms);
* fault -> every such camera's stream open, when /health reports ``open`` per camera
  (null for agents that do not);
* gap per camera: end of the recording agent's last own segment (its sqlite index,
  read once the trial has its RTO) -> start of the failover agent's first segment
  for that camera (its /recordings listing);
* where the time went: fault -> event detected, and -> ACTIVE (from the database).

`--fault all` runs every kind in turn, `--trials` each. The targets (p95 of the RTO
and the worst camera gap at most 2 s for kill, volume and service, 3 s for a black
hole) are printed as met or missed, not asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import signal
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _harness import Agent, Processes, emit, log, machine, start_agent, summary, wait_until
from _stack import CmsStack

CAMERAS = 2
FAULTS = ("kill", "volume", "service", "blackhole")
# p95 of the RTO, and the worst camera gap, per fault (seconds).
TARGETS_S = {"kill": 2.0, "volume": 2.0, "service": 2.0, "blackhole": 3.0}


def parse_iso(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


def last_own_segments(data_dir: Path) -> dict[str, float]:
    """End of each camera's last finished segment, from the recording agent's index."""
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


def takeover_cameras(agent: Agent, node_tag: str) -> list[dict[str, Any]]:
    """The failover agent's cameras that record on behalf of `node_tag` (its /health)."""
    health = agent.client(timeout=(0.5, 2.0), retries=0).health()
    return [c for c in health["recording"]["cameras"] if c.get("on_behalf_of") == node_tag]


def break_server(agent: Agent, fault: str) -> None:
    if fault == "kill":
        agent.kill()
    elif fault == "blackhole":
        os.kill(agent.pid, signal.SIGSTOP)
    else:
        agent.client().set_fault(fault)


def run_trial(
    n: int, fault: str, args: argparse.Namespace, rng: random.Random, procs: Processes
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-rto-{fault}-{n}-") as tmp:
        folder = Path(tmp)
        stack = CmsStack(
            folder,
            database_url=args.database_url,
            broker_url=args.broker_url,
            queue=args.queue,
            env={"CMS_TAKEOVER_CONFIRM_SECONDS": "20"},
        )
        try:
            return _trial(n, fault, args, rng, procs, stack)
        finally:
            procs.stop_all()
            stack.close()


def _trial(
    n: int,
    fault: str,
    args: argparse.Namespace,
    rng: random.Random,
    procs: Processes,
    stack: CmsStack,
) -> dict[str, Any]:
    folder = stack.folder
    log(f"{fault} trial {n}: migrating a fresh {stack.db.kind} database")
    stack.migrate()
    recording = start_agent(
        procs, folder / "rec", mode="recording", name="rec", cameras=CAMERAS, segment_seconds=1
    )
    standby = start_agent(procs, folder / "standby", mode="failover", name="standby")
    spec = {
        "settings": {
            **detection_settings(args),
            "successes_before_recovery": 3,
            "failback_mode": "manual",  # nothing happens after the failover
            "restore_recordings": False,
        },
        "recording": _node(recording, "Lobby"),
        "failover": _node(standby, "Standby"),
    }
    ids = stack.cmsctl("register", json.dumps(spec))
    node_tag = ids["node_tag"]
    stack.start_celery(procs, concurrency=args.concurrency, hostname=f"{args.queue}-{n}")

    def probed_normal() -> bool:
        rows = stack.db.query(
            "SELECT status, consecutive_successes FROM inventory_server WHERE id = %s",
            [ids["recording_id"]],
        )
        return bool(rows) and rows[0][0] == "normal" and rows[0][1] >= 2

    if not wait_until(probed_normal, timeout=60, interval=0.2):
        raise RuntimeError(f"{fault} trial {n}: the recording server was never probed normal")
    interval = float(ids["settings"].get("probe_interval") or 1)
    phase = rng.uniform(0, interval)
    time.sleep(phase)

    fault_at, fault_mono = time.time(), time.monotonic()
    break_server(recording, fault)
    log(f"{fault} trial {n}: fault injected ({phase:.2f} s into a probe interval)")
    rto = opened = None
    open_reported = False
    deadline = fault_mono + args.timeout
    while time.monotonic() < deadline:
        try:
            ours = takeover_cameras(standby, node_tag)
        except Exception:  # noqa: S112 (the failover agent answers; a slow poll is retried)
            continue
        now = time.monotonic()
        open_reported = open_reported or any("open" in c for c in ours)
        if opened is None and len(ours) >= CAMERAS and all(c.get("open") is True for c in ours):
            opened = now - fault_mono
        if len(ours) >= CAMERAS and all(c.get("segments") for c in ours):
            rto = now - fault_mono
            break
        time.sleep(0.05)

    if fault == "blackhole":  # the hung agent's index is read after its end, as a crash's
        recording.kill()
    own_end = last_own_segments(recording.data_dir)
    failover_start = first_failover_segments(standby, node_tag) if rto is not None else {}
    gaps = {
        camera: round(failover_start[camera] - end, 3)
        for camera, end in sorted(own_end.items())
        if camera in failover_start
    }
    events = stack.cmsctl("timeline")
    event = events[0] if events else {}
    detected = event.get("detected_at")
    active = event.get("taken_over_at")
    trial = {
        "trial": n,
        "fault": fault,
        "rto_s": round(rto, 3) if rto is not None else None,
        "open_s": round(opened, 3) if opened is not None else None,
        "open_reported": open_reported,
        "gap_s": gaps,
        "fault_phase_s": round(phase, 3),
        "fault_to_detected_s": round(detected - fault_at, 3) if detected else None,
        "fault_to_active_s": round(active - fault_at, 3) if active else None,
        "event_state": event.get("state"),
        "events": len(events),
        "settings": ids["settings"],
    }
    log(f"{fault} trial {n}: { {k: v for k, v in trial.items() if k != 'settings'} }")
    return trial


def detection_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The probe settings the run sets (none with --project-defaults)."""
    if args.project_defaults:
        return {}
    return {
        "probe_interval": args.probe_interval,
        "probe_timeout": args.probe_timeout,
        "failures_before_failover": args.failures,
    }


def _node(agent: Agent, name: str) -> dict[str, Any]:
    return {"name": name, "host": agent.host, "port": agent.port, "password": agent.password}


def fault_figures(fault: str, trials: list[dict[str, Any]]) -> dict[str, Any]:
    rtos = [t["rto_s"] for t in trials if t.get("rto_s") is not None]
    opens = [t["open_s"] for t in trials if t.get("open_s") is not None]
    worst_gaps = [max(t["gap_s"].values()) for t in trials if t.get("gap_s")]
    gaps = [g for t in trials for g in (t.get("gap_s") or {}).values()]
    detected = [t["fault_to_detected_s"] for t in trials if t.get("fault_to_detected_s")]
    active = [t["fault_to_active_s"] for t in trials if t.get("fault_to_active_s")]
    rto = summary(rtos)
    gap = summary(gaps)
    target = TARGETS_S[fault]
    complete = len(rtos) == len(trials) and bool(trials)
    rto_met = complete and rto["p95"] is not None and rto["p95"] <= target
    gap_met = complete and bool(worst_gaps) and max(worst_gaps) <= target
    return {
        "rto_s": rto,
        # After the failover server opened every camera's stream; null when its /health
        # does not report `open` per camera.
        "open_s": summary(opens) if any(t.get("open_reported") for t in trials) else None,
        "gap_s": gap,
        "worst_camera_gap_s": summary(worst_gaps),
        "fault_to_detected_s": summary(detected),
        "fault_to_active_s": summary(active),
        "failed_trials": sum(1 for t in trials if t.get("rto_s") is None),
        "target": {
            "p95_rto_s": target,
            "max_gap_s": target,
            "rto_met": rto_met,
            "gap_met": gap_met,
            "met": rto_met and gap_met,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Failover RTO and recording gap per fault")
    parser.add_argument("--trials", type=int, default=5, help="per fault")
    parser.add_argument("--fault", choices=[*FAULTS, "all"], default="kill")
    parser.add_argument("--probe-interval", type=int, default=2)
    parser.add_argument("--failures", type=int, default=3)
    parser.add_argument("--probe-timeout", type=float, default=1.0)
    parser.add_argument(
        "--project-defaults",
        action="store_true",
        help="keep the project's default probe settings instead of the three above",
    )
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--broker-url", help="e.g. redis://127.0.0.1:6379/0 (default: embedded)")
    parser.add_argument("--database-url", help="PostgreSQL server to create fresh dbs on")
    parser.add_argument("--timeout", type=float, default=60.0, help="per trial, after the fault")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    # A queue of our own: a shared Redis may carry someone else's tasks.
    args.queue = f"bench-rto-{uuid.uuid4().hex[:10]}"
    rng = random.Random(args.seed)
    procs = Processes()
    faults = FAULTS if args.fault == "all" else (args.fault,)

    trials: list[dict[str, Any]] = []
    for fault in faults:
        for n in range(1, args.trials + 1):
            try:
                trials.append(run_trial(n, fault, args, rng, procs))
            except Exception as exc:  # one broken trial is a result too, not the end of the run
                log(f"{fault} trial {n} failed: {exc}")
                trials.append({"trial": n, "fault": fault, "rto_s": None, "error": str(exc)[:500]})
    per_fault = {f: fault_figures(f, [t for t in trials if t["fault"] == f]) for f in faults}
    for fault, figures in per_fault.items():
        target = figures["target"]
        log(
            f"{fault}: RTO p95 {figures['rto_s']['p95']} s, worst gap "
            f"{figures['worst_camera_gap_s']['max']} s (target {target['p95_rto_s']} s): "
            + ("met" if target["met"] else "missed")
        )
    cms_settings = next((t["settings"] for t in trials if t.get("settings")), None)
    for trial in trials:
        trial.pop("settings", None)
    result: dict[str, Any] = {
        "benchmark": "failover_rto",
        "settings": {
            "faults": list(faults),
            "trials_per_fault": args.trials,
            "seed": args.seed,
            "project_defaults": args.project_defaults,
            "cms": cms_settings,  # every failover setting as the run saved it
            "cameras": CAMERAS,
            "segment_seconds": 1,
            "worker_concurrency": args.concurrency,
            "broker": "redis" if args.broker_url else "embedded redis",
            "database": "postgresql" if args.database_url else "sqlite",
        },
        "machine": machine(),
        "faults": per_fault,
    }
    if len(faults) == 1:  # the figures of one fault at the top too, as before --fault
        result.update(per_fault[faults[0]])
    result["trials"] = trials
    emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
