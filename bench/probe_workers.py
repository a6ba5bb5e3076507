"""`bench/probe.py --workers W`: probing in shards over W real Celery worker processes.

The driver sends `probe_tick` at every whole second, as beat does; the workers run the
`probe_shard` tasks each tick sends. Every shard's cycle leaves its figures in
var/run/probe-cycle/shard-N.json (metrics.record_cycle) after its servers were probed
and written; the driver reads those files to time each slot of the probe interval.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import uuid
from pathlib import Path
from typing import Any

from _harness import (
    PYTHON,
    Database,
    Processes,
    cms_env,
    log,
    machine,
    setup_django,
    summary,
    wait_for_log,
)

TARGET_SERVERS, TARGET_SECONDS = 20000, 2.0


class Workers:
    def __init__(self, procs: Processes, env: dict[str, str], folder: Path, queue: str) -> None:
        self.procs, self.env, self.folder, self.queue = procs, env, folder, queue
        self.running: list[Any] = []
        self.generation = 0

    def start(self, count: int) -> None:
        self.generation += 1
        for n in range(count):
            log_path = self.folder / f"worker-{self.generation}-{n}.log"
            cmd = [
                PYTHON, "-m", "celery", "-A", "cms", "worker", "--queues", self.queue,
                "--hostname", f"w{self.generation}-{n}@%h", "--concurrency", "1",
                "--pool", "solo", "--without-gossip", "--without-mingle",
                "--loglevel", "INFO",
            ]  # fmt: skip
            process = self.procs.spawn(f"worker-{n}", cmd, env=self.env, log_path=log_path)
            self.running.append((process, log_path))
        for process, log_path in self.running:
            wait_for_log(log_path, "ready.", process, 90)

    def stop(self) -> None:
        for process, _ in self.running:
            self.procs.stop(process)
        self.running.clear()


class SlotClock:
    """Sends the ticks and reads what each shard's cycles reported."""

    def __init__(self, var_dir: Path, interval: int) -> None:
        self.folder = var_dir / "run" / "probe-cycle"
        self.interval = interval
        self.seen: dict[int, float] = {}  # shard -> the `at` of its last report read
        self.cycles: list[dict[str, Any]] = []  # every shard cycle reported

    def poll(self) -> None:
        if not self.folder.is_dir():
            return
        for path in self.folder.glob("shard-*.json"):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # replaced while read: the next poll reads it
            index = int(path.stem.split("-")[1])
            if self.seen.get(index) == data["at"]:
                continue
            self.seen[index] = data["at"]
            start = data.get("claimed", data["at"] - data["seconds"])
            slot = math.floor(start / self.interval) * self.interval
            self.cycles.append({**data, "shard": index, "slot": slot})

    def run(self, seconds: float) -> None:
        """Tick at every whole second for `seconds`, reading the reports meanwhile."""
        from failover.tasks import probe_tick

        end = time.time() + seconds
        next_tick = math.ceil(time.time())
        while time.time() < end:
            now = time.time()
            if now >= next_tick:
                probe_tick.apply_async(expires=2)
                next_tick = math.floor(now) + 1
            self.poll()
            time.sleep(0.01)
        self.poll()

    def slots(self, since: float, shards: int) -> list[dict[str, Any]]:
        """Per slot from `since`: when its last shard finished, counted from its start."""
        by_slot: dict[float, list[dict[str, Any]]] = {}
        for cycle in self.cycles:
            if cycle["slot"] >= since:
                by_slot.setdefault(cycle["slot"], []).append(cycle)
        rows = []
        for slot in sorted(by_slot):
            cycles = by_slot[slot]
            done = {c["shard"] for c in cycles}
            finished = max(c["at"] for c in cycles) - slot
            probed = sum(c["probed"] for c in cycles)
            rows.append({
                "slot": slot,
                "complete": len(done) == shards,
                "shards_run": len(done),
                "probed": probed,
                "seconds": round(finished, 3),
                "probes_per_s": round(probed / finished, 1) if finished > 0 else None,
                "longest_shard_s": round(max(c["seconds"] for c in cycles), 3),
                "shard_seconds_total": round(sum(c["seconds"] for c in cycles), 3),
            })  # fmt: skip
        return rows

    def first_full_round(self, since: float, shards: int) -> float | None:
        """Seconds from `since` until every shard had finished a cycle begun after it."""
        first: dict[int, float] = {}
        for cycle in self.cycles:
            if cycle["at"] - cycle["seconds"] >= since and cycle["shard"] not in first:
                first[cycle["shard"]] = cycle["at"]
        if len(first) < shards:
            return None
        return round(max(first.values()) - since, 3)


def run_workers(
    args: argparse.Namespace, procs: Processes, folder: Path, db: Database
) -> dict[str, Any]:
    from cms import broker as embedded

    var_dir = folder / "var"
    if args.broker_url:
        broker_url = args.broker_url
    else:
        var_dir.mkdir(parents=True, exist_ok=True)
        embedded.start_daemon(var_dir)
        broker_url = embedded.url(var_dir)
    queue = f"bench-probe-{uuid.uuid4().hex[:8]}"
    env = cms_env(var_dir, db.url, broker_url, queue)
    env["CMS_PROBE_SHARDS"] = str(args.shards)
    log(f"database {db.kind}; migrating")
    setup_django(env)
    try:
        return _measure(args, procs, folder, var_dir, env, queue)
    finally:
        if not args.broker_url:
            procs.stop_all()
            embedded.stop(var_dir)


def _measure(
    args: argparse.Namespace,
    procs: Processes,
    folder: Path,
    var_dir: Path,
    env: dict[str, str],
    queue: str,
) -> dict[str, Any]:
    from probe import Emulator, asyncio_loop, register

    from cms.inventory.models import Server
    from failover import shards
    from failover.models import FailoverSettings

    emulator = Emulator(procs, args.servers, folder / "emulator.log")
    log(f"emulator on port {emulator.port}; registering {args.servers} servers")
    register(args.servers, emulator.port, args.failover_every)
    settings = FailoverSettings.load()
    settings.probe_interval = args.interval
    settings.probe_timeout = float(args.interval)
    settings.save()
    total = shards.count()
    interval = args.interval

    workers = Workers(procs, env, folder, queue)
    clock = SlotClock(var_dir, interval)
    log(f"{args.workers} workers, {total} shards: first-ever slots (PBKDF2, snapshots)")
    workers.start(args.workers)
    since = time.time()
    clock.run(3 * interval)
    deadline = time.time() + 600
    while clock.first_full_round(since, total) is None and time.time() < deadline:
        clock.run(interval)
    first_ever = clock.first_full_round(since, total)
    # Until every node was logged in to once (the emulator computes its verifiers on
    # first use, so early logins time out) and its snapshot is stored.
    while time.time() < deadline and (
        Server.objects.exclude(scram_cache="").count() < args.servers
        or Server.objects.exclude(status="normal").exists()
    ):
        clock.run(interval)
    clock.run(2 * interval)
    kept = Server.objects.exclude(scram_cache="").count()
    log(f"first-ever round {first_ever} s; SCRAM keys kept for {kept} servers; restarting")
    workers.stop()

    workers.start(args.workers)
    emulator.reset()
    restarted = math.ceil(time.time() / interval) * interval  # the next slot's start
    time.sleep(max(restarted - time.time(), 0))
    clock.run(interval * 3)
    deadline = time.time() + 300
    while clock.first_full_round(restarted, total) is None and time.time() < deadline:
        clock.run(interval)
    cold = clock.first_full_round(restarted, total)
    logins = emulator.stats()
    # Three slots more before the warm ones: until then every row is still written (the
    # counters climb to their thresholds), which is not the steady state.
    clock.run(interval * 3)
    warm_since = time.time()
    clock.run(interval * (args.slots + 1))
    warm = [row for row in clock.slots(warm_since, total) if row["complete"]]
    workers.stop()
    log(f"cold start {cold} s; warm slots {[row['seconds'] for row in warm]}")
    log("the asyncio floor, with the workers stopped")
    # A long deadline: the floor logs in first (PBKDF2 in its loop), and must not count
    # a slow login as a fast failure.
    floor = asyncio_loop(list(Server.objects.filter(enabled=True)), 30.0, 3, emulator)
    floor_rate = max(row["probes_per_s"] for row in floor[1:])

    warm_seconds = [row["seconds"] for row in warm]
    warm_rates = [row["probes_per_s"] for row in warm if row["probes_per_s"]]
    p95 = summary(warm_seconds)["p95"]
    rate = summary(warm_rates)["p50"]
    return {
        "benchmark": "probe_workers",
        "servers": args.servers,
        "workers": args.workers,
        "shards": total,
        "interval_s": interval,
        "settings": {
            "failover_every": args.failover_every,
            "database": db_kind(env),
            "transport": "http, one emulator process, 127.0.x.y per server",
        },
        "machine": machine(),
        "first_ever_round_s": first_ever,
        "scram_keys_kept": kept,
        "cold_start_round_s": cold,
        "cold_start_requests": {k: v for k, v in logins.items() if k.startswith(("GET", "POST"))},
        "warm_slot_s": summary(warm_seconds),
        "warm_probes_per_s": summary(warm_rates),
        "warm_slots_incomplete": len(clock.slots(warm_since, total)) - len(warm),
        "asyncio_floor_probes_per_s": floor_rate,
        "share_of_floor": round(rate / floor_rate, 3) if rate else None,
        "target": {
            "servers": TARGET_SERVERS,
            "seconds": TARGET_SECONDS,
            "met": bool(
                args.servers >= TARGET_SERVERS
                and p95 is not None
                and p95 <= TARGET_SECONDS
                and cold is not None
                and cold <= interval
            )
            if args.servers >= TARGET_SERVERS
            else None,
        },
        "floor": floor,
        "slots": clock.slots(warm_since, total),
    }


def db_kind(env: dict[str, str]) -> str:
    return "sqlite" if env["DATABASE_URL"].startswith("sqlite") else "postgresql"
