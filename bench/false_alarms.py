"""False alarms: failovers opened on a bad network with no real fault, then with the
CMS's link to the whole site cut.

    python bench/false_alarms.py --minutes 10 [--cut-minutes 1] [--seed 1]
                                 [--recording 6 --failover 2]
                                 [--probe-interval 2 --failures 3 | --project-defaults]
                                 [--broker-url ...] [--database-url ...]

One fresh CMS (database, var folder, broker, a Celery worker and a Celery beat, as in
failover_rto.py) and a fleet of real agents: recording agents with synthetic
cameras, failover agents, one team, every recording server protected by every
failover server. The CMS reaches each agent through a TCP proxy of its own
(tests/fixtures/faulty_network.py): each server is registered at its proxy's
address. The agents reach each other directly, as on a site's network, at the
address they listen on (which an agent reports itself where the protocol has it; the
JSON says how many servers the CMS knows a site address of).

Phase "noise", --minutes N: every proxy adds random latency spikes (each chunk with
probability --spike-probability waits up to --spike-max seconds), --loss of the
chunks wait a TCP retransmission timeout (0.2-0.4 s), and once a minute, at a random
moment, every connection through every proxy stalls --stall-seconds. No server
fails. Counted: failover events opened (target 0), and every server that left
"normal" at any time, when and why (its status and last error).

Phase "cut", --cut-minutes M: every proxy turns black hole and its open connections
are cut (the site's uplink down: nothing from the CMS reaches any agent, and nothing
answers), for M minutes; then the link is restored (with the noise) and the run
waits for every server to be probed normal again. Counted: failover events opened
(target 0), the servers that left "normal", and, asked of the agents directly
afterwards, whether every camera kept recording on its own server (the longest hole
in each camera's own segments during the cut) and whether a failover agent recorded
for anyone.

The JSON on the last line has one entry per phase, the settings and the machine.
Every process started is stopped at the end, on an error and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from _harness import Agent, Processes, emit, log, machine, start_agent, wait_until
from _stack import CmsStack

from tests.fixtures.faulty_network import FaultyProxy

# What the probes call a healthy server; leaving it is where a false alarm starts.
NORMAL = "normal"


class Watcher:
    """Polls every server's status from the database and keeps each change away from
    (and back to) normal, with the server's last error, on a thread of its own."""

    def __init__(self, stack: CmsStack, names: dict[int, str], t0: float) -> None:
        self.stack, self.names, self.t0 = stack, names, t0
        self.changes: list[dict[str, Any]] = []
        # (phase, server) -> the most consecutive failed probes seen, when any.
        self.failures: dict[tuple[str, str], int] = {}
        self.phase = "setup"
        self._last: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            try:
                rows = self.stack.db.query(
                    "SELECT id, status, last_error, consecutive_failures FROM inventory_server"
                )
            except Exception:  # noqa: S112 (a busy database: the next poll sees the change)
                continue
            for server_id, status, last_error, failures in rows:
                name = self.names.get(server_id, str(server_id))
                if failures:
                    key = (self.phase, name)
                    self.failures[key] = max(failures, self.failures.get(key, 0))
                before = self._last.get(server_id)
                self._last[server_id] = status
                if before is None or before == status:
                    continue
                self.changes.append(
                    {
                        "phase": self.phase,
                        "at_s": round(time.monotonic() - self.t0, 2),
                        "server": name,
                        "from": before,
                        "to": status,
                        "last_error": (last_error or "")[:200],
                        "consecutive_failures": failures,
                    }
                )
                log(f"{name}: {before} -> {status} {last_error or ''}")

    def failed_probes(self, phase: str) -> dict[str, int]:
        """Per server with any, the most consecutive failed probes seen in `phase`."""
        return {server: n for (p, server), n in sorted(self.failures.items()) if p == phase}

    def left_normal(self, phase: str) -> dict[str, list[dict[str, Any]]]:
        """Per server, its changes away from normal in `phase`: when, to what, why."""
        out: dict[str, list[dict[str, Any]]] = {}
        for change in self.changes:
            if change["phase"] == phase and change["from"] == NORMAL:
                out.setdefault(change["server"], []).append(
                    {k: change[k] for k in ("at_s", "to", "last_error")}
                )
        return out


class Staller:
    """Once a minute, at a random moment, every connection through every proxy stalls."""

    def __init__(
        self, proxies: list[FaultyProxy], seconds: float, rng: random.Random, t0: float
    ) -> None:
        self.proxies, self.seconds, self.rng, self.t0 = proxies, seconds, rng, t0
        self.stalls_at: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while True:
            offset = self.rng.uniform(0, 60 - self.seconds)
            if self._stop.wait(offset):
                return
            for proxy in self.proxies:
                proxy.stall(self.seconds)
            self.stalls_at.append(round(time.monotonic() - self.t0, 2))
            if self._stop.wait(60 - offset):
                return


def events_after(stack: CmsStack, last_id: int) -> list[dict[str, Any]]:
    rows = stack.db.query(
        "SELECT id, recording_server_name, failover_server_name, state "
        "FROM failover_failoverevent WHERE id > %s ORDER BY id",
        [last_id],
    )
    return [
        {"id": row[0], "recording_server": row[1], "failover_server": row[2], "state": row[3]}
        for row in rows
    ]


def last_event_id(stack: CmsStack) -> int:
    rows = stack.db.query("SELECT COALESCE(MAX(id), 0) FROM failover_failoverevent")
    return int(rows[0][0])


def own_segments(agent: Agent, since: float, until: float) -> dict[str, list[tuple]]:
    """Each camera's own segments (start, end) that overlap [since, until], from the
    agent's index (read directly, as a site's technician would)."""
    conn = sqlite3.connect(agent.data_dir / "index.sqlite3", timeout=10)
    try:
        rows = conn.execute(
            "SELECT camera, start, end FROM files WHERE origin = 'own' AND kind = 'recording' "
            "AND end >= ? AND start <= ? ORDER BY camera, start",
            (since, until),
        ).fetchall()
    finally:
        conn.close()
    out: dict[str, list[tuple]] = {}
    for camera, start, end in rows:
        out.setdefault(camera, []).append((float(start), float(end)))
    return out


def longest_hole(segments: list[tuple], since: float, until: float) -> float:
    """The longest stretch of [since, until] that no segment covers."""
    hole, covered = 0.0, since
    for start, end in segments:
        hole = max(hole, start - covered)
        covered = max(covered, end)
    return round(max(hole, until - covered), 3)


def recorded_on_own_servers(
    recording: list[Agent], failover: list[Agent], since: float, until: float, segment_s: float
) -> dict[str, Any]:
    """Asked of the agents after the cut: did every camera keep recording at home?"""
    holes: dict[str, float] = {}
    for agent in recording:
        cameras = agent.client().health()["recording"]["cameras"]
        segments = own_segments(agent, since, until)
        for camera in cameras:
            if camera.get("origin", "own") != "own":
                continue
            holes[f"{agent.name}/{camera['id']}"] = longest_hole(
                segments.get(camera["id"], []), since, until
            )
    taken_over = {
        agent.name: sorted(
            {c["on_behalf_of"] for c in agent.client().health()["recording"]["cameras"]} - {None}
        )
        for agent in failover
    }
    # A segment is written when it ends: a hole up to about two segments is the
    # recorder's own rhythm at the window's edges, not a stop.
    kept = bool(holes) and max(holes.values()) <= 2 * segment_s + 1
    return {
        "cameras_kept_recording": kept,
        "longest_own_hole_s": max(holes.values()) if holes else None,
        "own_hole_s": holes,
        "failover_agents_recording_for": {k: v for k, v in taken_over.items() if v},
    }


def site_addresses_known(stack: CmsStack) -> int | None:
    """Servers whose address on their site the CMS knows (None: it keeps none)."""
    try:
        rows = stack.db.query("SELECT COUNT(*) FROM inventory_server WHERE lan_address <> ''")
    except Exception:  # no such column: this version of the CMS keeps no site address
        return None
    return int(rows[0][0])


def run(args: argparse.Namespace, procs: Processes, folder: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    proxies: list[FaultyProxy] = []
    staller: Staller | None = None
    watcher: Watcher | None = None
    stack: CmsStack | None = None
    try:
        stack = CmsStack(
            folder,
            database_url=args.database_url,
            broker_url=args.broker_url,
            queue=f"bench-alarms-{uuid.uuid4().hex[:10]}",
            env={"CMS_TAKEOVER_CONFIRM_SECONDS": "20"},
        )
        log(f"migrating a fresh {stack.db.kind} database")
        stack.migrate()
        recording = [
            start_agent(
                procs,
                folder / f"rec{i}",
                mode="recording",
                name=f"rec{i}",
                cameras=args.cameras,
                segment_seconds=args.segment_seconds,
            )
            for i in range(1, args.recording + 1)
        ]
        failover = [
            start_agent(procs, folder / f"fo{i}", mode="failover", name=f"fo{i}")
            for i in range(1, args.failover + 1)
        ]
        agents = recording + failover
        for agent in agents:
            proxies.append(FaultyProxy((agent.host, agent.port), seed=rng.randrange(2**32)))
        nodes = {
            agent.name: {
                "name": agent.name.upper(),
                "host": proxy.host,
                "port": proxy.port,
                "password": agent.password,
            }
            for agent, proxy in zip(agents, proxies, strict=True)
        }
        spec = {
            "team": "Site",
            "settings": {
                **detection_settings(args),
                "failback_mode": "manual",
                "restore_recordings": False,
            },
            "recording": [nodes[a.name] for a in recording],
            "failover": [nodes[a.name] for a in failover],
        }
        ids = stack.cmsctl("fleet", json.dumps(spec))
        names = dict(zip(ids["recording"] + ids["failover"], [a.name for a in agents], strict=True))
        stack.start_celery(procs, concurrency=args.concurrency, hostname="bench-alarms")

        def all_normal() -> bool:
            rows = stack.db.query("SELECT status FROM inventory_server")
            return len(rows) == len(agents) and all(row[0] == NORMAL for row in rows)

        if not wait_until(all_normal, timeout=120, interval=0.5):
            raise RuntimeError("the fleet was never probed normal (before any fault)")
        log(f"{len(agents)} servers normal; phase noise for {args.minutes} min")

        t0 = time.monotonic()
        watcher = Watcher(stack, names, t0)
        watcher.start()
        for proxy in proxies:
            proxy.spikes = (args.spike_probability, args.spike_max)
            proxy.loss = args.loss
        staller = Staller(proxies, args.stall_seconds, rng, t0)
        staller.start()
        watcher.phase = "noise"
        first_event = last_event_id(stack)
        time.sleep(args.minutes * 60)
        noise_events = events_after(stack, first_event)
        noise = {
            "phase": "noise",
            "minutes": args.minutes,
            "failovers_opened": len(noise_events),
            "events": noise_events,
            "servers_left_normal": watcher.left_normal("noise"),
            "most_consecutive_failed_probes": watcher.failed_probes("noise"),
            "stalls_at_s": list(staller.stalls_at),
            "chunks_delayed": sum(p.delayed for p in proxies),
            "target": {"failovers_opened": 0, "met": not noise_events},
        }
        log(f"phase noise: {noise['failovers_opened']} failovers opened")

        log(f"phase cut: the CMS's link to the site down for {args.cut_minutes} min")
        watcher.phase = "cut"
        first_event = last_event_id(stack)
        cut_from = time.time()
        for proxy in proxies:
            proxy.mode = "black_hole"
            proxy.cut()
        time.sleep(args.cut_minutes * 60)
        cut_until = time.time()
        for proxy in proxies:
            proxy.mode = "pass"
        log("link restored; waiting for every server to be probed normal")
        recovered = wait_until(all_normal, timeout=args.recovery_timeout, interval=0.5)
        normal_after = round(time.time() - cut_until, 1) if recovered else None
        # What the engine does once it sees the servers again (an event opened during
        # the cut may take over now) belongs to the cut's figures.
        time.sleep(args.settle)
        recorded = recorded_on_own_servers(
            recording, failover, cut_from, cut_until, args.segment_seconds
        )
        cut_events = events_after(stack, first_event)
        cut = {
            "phase": "cut",
            "minutes": args.cut_minutes,
            "failovers_opened": len(cut_events),
            "events": cut_events,
            "servers_left_normal": watcher.left_normal("cut"),
            "most_consecutive_failed_probes": watcher.failed_probes("cut"),
            "all_normal_after_s": normal_after,
            **recorded,
            "target": {"failovers_opened": 0, "met": not cut_events},
        }
        log(f"phase cut: {cut['failovers_opened']} failovers opened")
        return {
            "phases": [noise, cut],
            "settings_saved": ids["settings"],
            "site_addresses_known": site_addresses_known(stack),
        }
    finally:
        if staller:
            staller.stop()
        if watcher:
            watcher.stop()
        procs.stop_all()
        for proxy in proxies:
            proxy.close()
        if stack:
            stack.close()


def detection_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The probe settings the run sets (none with --project-defaults)."""
    if args.project_defaults:
        return {}
    return {
        "probe_interval": args.probe_interval,
        "probe_timeout": args.probe_timeout,
        "failures_before_failover": args.failures,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Failovers opened with no real fault")
    parser.add_argument("--minutes", type=float, default=10, help="the noise phase")
    parser.add_argument("--cut-minutes", type=float, default=1, help="the site cut off")
    parser.add_argument("--recording", type=int, default=6, help="recording agents")
    parser.add_argument("--failover", type=int, default=2, help="failover agents")
    parser.add_argument("--cameras", type=int, default=2, help="per recording agent")
    parser.add_argument("--segment-seconds", type=float, default=2.0)
    parser.add_argument("--spike-probability", type=float, default=0.05, help="per chunk")
    parser.add_argument("--spike-max", type=float, default=0.3, help="seconds")
    parser.add_argument("--loss", type=float, default=0.02, help="share of chunks")
    parser.add_argument("--stall-seconds", type=float, default=1.0, help="once a minute")
    parser.add_argument("--probe-interval", type=int, default=2)
    parser.add_argument("--failures", type=int, default=3)
    parser.add_argument("--probe-timeout", type=float, default=1.0)
    parser.add_argument(
        "--project-defaults",
        action="store_true",
        help="keep the project's default probe settings instead of the three above",
    )
    parser.add_argument("--recovery-timeout", type=float, default=120.0, help="after the cut")
    parser.add_argument(
        "--settle", type=float, default=15.0, help="seconds after recovery before counting"
    )
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--broker-url", help="e.g. redis://127.0.0.1:6379/0 (default: embedded)")
    parser.add_argument("--database-url", help="PostgreSQL server to create a fresh db on")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if args.recording < 1 or args.failover < 1 or args.minutes < 0 or args.cut_minutes < 0:
        parser.error("at least one recording and one failover agent, and no negative minutes")
    procs = Processes()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-alarms-") as tmp:
            figures = run(args, procs, Path(tmp))
    except KeyboardInterrupt:  # everything started is stopped by now (run's finally)
        log("interrupted")
        return 130
    emit(
        {
            "benchmark": "false_alarms",
            "phases": figures["phases"],
            "settings": {
                "minutes": args.minutes,
                "cut_minutes": args.cut_minutes,
                "recording_agents": args.recording,
                "failover_agents": args.failover,
                "cameras_per_agent": args.cameras,
                "segment_seconds": args.segment_seconds,
                "spikes": {"probability": args.spike_probability, "max_s": args.spike_max},
                "loss": args.loss,
                "stall_s_per_minute": args.stall_seconds,
                "seed": args.seed,
                "project_defaults": args.project_defaults,
                "cms": figures["settings_saved"],
                "site_addresses_known": figures["site_addresses_known"],
                "worker_concurrency": args.concurrency,
                "broker": "redis" if args.broker_url else "embedded redis",
                "database": "postgresql" if args.database_url else "sqlite",
            },
            "machine": machine(),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
