"""Probe throughput: `failover.probing.run_cycle` against N emulated servers.

    python bench/probe.py --servers 5000 [--cycles 5] [--flip 10] [--database-url URL]

Registers N servers (nine in ten recording servers, each protected by one of the
failover servers) in a fresh database, points them at `bench/emulator.py`, and
runs `run_cycle(force=True)` in this process, as the Celery task would:

* cycle 1 is cold (a login per server, and a configuration snapshot per protected
  recording server) and is reported on its own;
* then `--cycles` warm cycles: probes/second and full-cycle seconds;
* then `--flip` servers fail (half unreachable, half "volume crashed") for
  failures+1 cycles and recover for successes+1 cycles: `CycleReport.written` per
  cycle shows that the database is written for status changes only.

Each cycle is split into the probe phase (`probing.probe_servers`, i.e. the
process's aiohttp prober in `cms/nodes/prober.py`), the decisions (reported as
`evaluate`: `engine.after_probe_cycle()` with the concurrent snapshot reads), and
the rest (loading servers, applying results, the executemany write); the emulator
counts requests and new TCP connections, which shows whether connections are kept
alive between cycles. Automatic failover is off so that no event is opened by the
flips.

`--alternatives` also times, over the same servers, a stdlib asyncio probe loop
(raw HTTP/1.1 on kept-alive streams: a floor for what one event loop can do here)
and `bulk_update` against `executemany` for a full-fleet write. (The earlier
"one thread pool kept across cycles" prototype is gone: the engine no longer has a
threaded probe to time.)

    python bench/probe.py --servers 20000 --workers 2 [--interval 2] [--slots 8]
        [--shards 0] [--broker-url redis://...] --database-url postgres://...

`--workers W` measures probing as it runs in production instead: W real Celery worker
processes (concurrency 1 each) on a real broker (the embedded redis-server, or
`--broker-url`), and a driver that sends `probe_tick` every second as beat does; each
tick sends one `probe_shard` task per shard (failover/shards.py). Per slot of the probe
interval it reports the time from the slot's start until every shard's cycle had
probed and written its servers (each shard's figures file, metrics.record_cycle), and
the servers per second that makes. Phases: the first-ever slots (PBKDF2 per node,
configuration snapshots), then every worker is restarted and the first slot after
that is the cold start (the SCRAM keys kept in the database: a login per node, no
PBKDF2), then warm slots. The asyncio floor (`asyncio_loop`) is measured in the same
run against the same emulator. Use PostgreSQL: SQLite serialises the workers' writes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _harness import (
    PYTHON,
    REPO,
    Database,
    Processes,
    cms_env,
    emit,
    log,
    machine,
    setup_django,
    summary,
)
from emulator import address

TARGET_SERVERS, TARGET_SECONDS = 5000, 5.0


class Emulator:
    def __init__(self, procs: Processes, servers: int, log_path: Path) -> None:
        with open(log_path, "ab") as err:
            self.process = procs.adopt(
                "emulator",
                subprocess.Popen(
                    [PYTHON, str(REPO / "bench" / "emulator.py"), "--servers", str(servers)],
                    stdout=subprocess.PIPE,
                    stderr=err,
                    start_new_session=True,
                ),
            )
        assert self.process.stdout is not None
        ready = json.loads(self.process.stdout.readline() or "{}")
        if "port" not in ready:
            raise RuntimeError("the emulator did not start; see its log")
        self.port = int(ready["port"])

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
        )
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            return json.loads(resp.read())

    def stats(self) -> dict[str, int]:
        return self._call("GET", "/_emulator/stats")

    def reset(self) -> None:
        self._call("POST", "/_emulator/reset", {})

    def set_mode(self, servers: list[int], mode: str) -> None:
        self._call("POST", "/_emulator/mode", {"servers": servers, "mode": mode})


def register(servers: int, port: int, failover_every: int) -> None:
    """N servers in bulk (full_clean per row would dominate the set-up, not the cycle)."""
    from cms.inventory.models import Server, Team
    from failover.models import FailoverSettings, Protection

    settings = FailoverSettings.load()
    settings.auto_failover = False
    settings.probe_interval = 5
    settings.probe_timeout = 3.0
    settings.failures_before_failover = 3
    settings.successes_before_recovery = 3
    settings.save()
    team = Team.objects.create(name="Bench")
    rows = []
    for i in range(servers):
        role = "failover" if i % failover_every == 0 else "recording"
        rows.append(
            Server(
                team=team,
                role=role,
                name=f"EMU-{i}",
                host=address(i),
                port=port,
                admin_password="emulated",  # noqa: S106 (the emulator's password)
            )
        )
    Server.objects.bulk_create(rows, batch_size=1000)
    by_role: dict[str, list[int]] = {"recording": [], "failover": []}
    for pk, role in Server.objects.order_by("pk").values_list("pk", "role"):
        by_role[role].append(pk)
    failovers = by_role["failover"]
    Protection.objects.bulk_create(
        [
            Protection(recording_server_id=pk, failover_server_id=failovers[n % len(failovers)])
            for n, pk in enumerate(by_role["recording"])
        ],
        batch_size=1000,
    )


class CycleTimer:
    """Splits run_cycle into phases by wrapping what it calls (nothing in failover/ edited)."""

    def __init__(self) -> None:
        self.pool = 0.0
        self.evaluate = 0.0
        self.queries = 0
        self.writes = 0

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        from django.db import connection

        from failover import engine, probing

        timer = self
        # The decisions after the probes: stale snapshots, the engine's verdicts, and
        # reading the changed configurations.
        decisions = [
            (probing, "stale_snapshots"),
            (engine, "after_probe_cycle"),
            (probing, "refresh_snapshots"),
        ]
        originals = [(module, name, getattr(module, name)) for module, name in decisions]
        original_probe = probing.probe_servers

        def timed_probe(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original_probe(*args, **kwargs)
            finally:
                timer.pool += time.perf_counter() - started

        def timed(original: Any) -> Any:
            def run(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    timer.evaluate += time.perf_counter() - started

            return run

        def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            timer.queries += 1
            if sql.lstrip()[:6].upper() in ("UPDATE", "INSERT", "DELETE"):
                timer.writes += len(params) if many else 1
            return execute(sql, params, many, context)

        probing.probe_servers = timed_probe
        for module, name, original in originals:
            setattr(module, name, timed(original))
        try:
            with connection.execute_wrapper(count):
                yield
        finally:
            probing.probe_servers = original_probe
            for module, name, original in originals:
                setattr(module, name, original)


def one_cycle(emulator: Emulator, label: str, flipped: int = 0) -> dict[str, Any]:
    from failover import probing

    emulator.reset()
    timer = CycleTimer()
    started = time.perf_counter()
    with timer.installed():
        report = probing.run_cycle(force=True)
    seconds = time.perf_counter() - started
    stats = emulator.stats()
    health = stats.get("GET /api/v1/health", 0)
    row = {
        "label": label,
        "seconds": round(seconds, 3),
        "probed": report.probed,
        "probes_per_s": round(report.probed / seconds, 1),
        "probe_phase_s": round(timer.pool, 3),
        "probe_phase_per_s": round(report.probed / timer.pool, 1) if timer.pool else None,
        "evaluate_s": round(timer.evaluate, 3),
        "rest_s": round(seconds - timer.pool - timer.evaluate, 3),
        "written": report.written,
        "flipped": flipped,
        "db_queries": timer.queries,
        "db_write_statements": timer.writes,
        "requests": {k: v for k, v in stats.items() if k.startswith(("GET", "POST"))},
        "health_requests": health,
        "new_connections": stats.get("connections", 0),
        "resets": stats.get("reset", 0),
    }
    log(
        f"{label}: {seconds:.2f} s ({row['probes_per_s']}/s; pool {timer.pool:.2f} s, "
        f"evaluate {timer.evaluate:.2f} s), written {report.written}, "
        f"new connections {row['new_connections']}"
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Probe throughput against emulated servers")
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=5, help="warm cycles after the first")
    parser.add_argument("--flip", type=int, default=10, help="servers flipped to a failure")
    parser.add_argument("--failover-every", type=int, default=10, help="1 in N is a failover")
    parser.add_argument("--database-url", help="PostgreSQL server to create a fresh db on")
    parser.add_argument("--workers", type=int, default=0, help="W Celery workers (see above)")
    parser.add_argument("--interval", type=int, default=2, help="probe interval (--workers)")
    parser.add_argument("--slots", type=int, default=6, help="warm slots measured (--workers)")
    parser.add_argument("--shards", type=int, default=0, help="CMS_PROBE_SHARDS (0: auto)")
    parser.add_argument("--broker-url", help="a redis broker instead of the embedded one")
    parser.add_argument(
        "--alternatives",
        action="store_true",
        help="also time a stdlib asyncio probe loop (a floor) and bulk_update vs executemany",
    )
    args = parser.parse_args(argv)

    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="bench-probe-") as tmp:
        folder = Path(tmp)
        db = Database(args.database_url, folder)
        try:
            if args.workers:
                from probe_workers import run_workers

                result = run_workers(args, procs, folder, db)
            else:
                result = run(args, procs, folder, db)
        finally:
            procs.stop_all()
            db.drop()
    emit(result)
    return 0


def run(args: argparse.Namespace, procs: Processes, folder: Path, db: Database) -> dict[str, Any]:
    log(f"database {db.kind}; migrating")
    setup_django(cms_env(folder / "var", db.url, "memory://", "bench-probe"))
    emulator = Emulator(procs, args.servers, folder / "emulator.log")
    log(f"emulator on port {emulator.port}; registering {args.servers} servers")
    register(args.servers, emulator.port, args.failover_every)
    from cms.nodes.prober import prober
    from failover.models import FailoverSettings

    settings = FailoverSettings.load()

    cold = one_cycle(emulator, "cycle 1 (cold: logins and snapshots)")
    warm = [one_cycle(emulator, f"warm cycle {n}") for n in range(1, args.cycles + 1)]

    flip = list(range(1, args.servers, max(1, args.servers // max(args.flip, 1))))[: args.flip]
    down, volume = flip[0::2], flip[1::2]
    emulator.set_mode(down, "down")
    emulator.set_mode(volume, "volume")
    flips = [
        one_cycle(emulator, f"{len(flip)} failing, cycle {n}", len(flip))
        for n in range(1, settings.failures_before_failover + 2)
    ]
    emulator.set_mode(flip, "ok")
    flips += [
        one_cycle(emulator, f"{len(flip)} recovered, cycle {n}", len(flip))
        for n in range(1, settings.successes_before_recovery + 2)
    ]

    alternatives: dict[str, Any] = {}
    if args.alternatives:
        from cms.inventory.models import Server

        servers = list(Server.objects.filter(enabled=True))
        log("alternatives: stdlib asyncio probe loop, full-fleet write costs")
        alternatives = {
            "asyncio_kept_alive": asyncio_loop(
                servers, settings.probe_timeout, args.cycles, emulator
            ),
            "writes": write_costs(args.servers),
        }
        log(f"alternatives: {alternatives}")

    warm_seconds = [c["seconds"] for c in warm]
    warm_rates = [c["probes_per_s"] for c in warm]
    p95 = summary(warm_seconds)["p95"]
    return {
        "benchmark": "probe",
        "servers": args.servers,
        "settings": {
            "max_concurrency": prober().concurrency,
            "probe_timeout_s": settings.probe_timeout,
            "failures_before_failover": settings.failures_before_failover,
            "successes_before_recovery": settings.successes_before_recovery,
            "failover_every": args.failover_every,
            "database": db.kind,
            "transport": "http, one emulator process, 127.0.x.y per server",
        },
        "machine": machine(),
        "first_cycle_s": cold["seconds"],
        "warm_cycle_s": summary(warm_seconds),
        "warm_probes_per_s": summary(warm_rates),
        "warm_new_connections_per_cycle": [c["new_connections"] for c in warm],
        "writes_per_cycle": [
            {"label": c["label"], "written": c["written"], "flipped": c["flipped"]}
            for c in [cold, *warm, *flips]
        ],
        "target": {
            "servers": TARGET_SERVERS,
            "seconds": TARGET_SECONDS,
            "met": (args.servers >= TARGET_SERVERS and p95 is not None and p95 <= TARGET_SECONDS)
            if args.servers >= TARGET_SERVERS
            else None,
        },
        "alternatives": alternatives,
        "cycles": [cold, *warm, *flips],
    }


# -- reference points: a stdlib probe loop and the write alternatives (not engine code) --


def asyncio_loop(servers: list[Any], timeout: float, cycles: int, emulator: Emulator) -> list:
    """One event loop, one kept-alive connection per server, at most 1,000 in flight: the
    design DESIGN.md section 6 asks for, with the engine's classify()."""
    import asyncio

    from failover import probing
    from protocol import parse
    from protocol.messages import Health
    from protocol.scram import ScramFailed, ScramLogin

    targets = [(s.pk, s.host, s.port, s.admin_password.reveal()) for s in servers]
    conns: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
    tokens: dict[int, str] = {}
    limit = 1000

    async def exchange(pk: int, host: str, port: int, request: bytes) -> tuple[int, bytes]:
        for _ in (1, 2):  # a kept-alive connection the node closed: reconnect once
            fresh = pk not in conns
            if fresh:
                conns[pk] = await asyncio.open_connection(host, port)
            reader, writer = conns[pk]
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split(" ", 2)[1])
                length = next(
                    int(line.split(":", 1)[1])
                    for line in lines
                    if line.lower().startswith("content-length:")
                )
                return status, await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration):
                conns.pop(pk, (None, writer))[1].close()
                if fresh:
                    raise
        raise ConnectionError("reconnect failed")

    async def probe(pk: int, host: str, port: int, password: str, sem: asyncio.Semaphore) -> str:
        async with sem:
            try:
                async with asyncio.timeout(timeout):
                    if pk not in tokens:
                        login = ScramLogin("admin", password)
                        body = json.dumps(login.start()).encode()
                        _, answer = await exchange(
                            pk, host, port, _post(host, "/auth/scram/start", body)
                        )
                        start = json.loads(answer)
                        body = json.dumps(login.finish(start["session"], start["server_first"]))
                        _, answer = await exchange(
                            pk, host, port, _post(host, "/auth/scram/finish", body.encode())
                        )
                        finish = json.loads(answer)
                        login.verify(finish["server_final"])
                        tokens[pk] = finish["token"]
                    status, answer = await exchange(
                        pk, host, port, _get(host, "/health", tokens[pk])
                    )
            except (OSError, TimeoutError, ValueError, KeyError, ScramFailed):
                return "disconnected"
            return probing.classify(parse(Health, answer)) if status == 200 else "error"

    async def cycle() -> list[str]:
        sem = asyncio.Semaphore(limit)
        return await asyncio.gather(*(probe(*t, sem) for t in targets))

    rows = []
    loop = asyncio.new_event_loop()
    try:
        for n in range(cycles + 1):
            emulator.reset()
            started = time.perf_counter()
            results = loop.run_until_complete(cycle())
            seconds = time.perf_counter() - started
            rows.append(_alt_row(n, seconds, results, emulator))
    finally:
        for _, writer in conns.values():
            writer.close()
        loop.close()
    return rows


def _get(host: str, path: str, token: str) -> bytes:
    return (
        f"GET /api/v1{path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()


def _post(host: str, path: str, body: bytes) -> bytes:
    return (
        f"POST /api/v1{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _alt_row(n: int, seconds: float, results: list[Any], emulator: Emulator) -> dict[str, Any]:
    stats = emulator.stats()
    statuses = [getattr(r, "status", r) for r in results]
    return {
        "cycle": n,
        "seconds": round(seconds, 3),
        "probes_per_s": round(len(results) / seconds, 1),
        "normal": sum(1 for s in statuses if s == "normal"),
        "new_connections": stats.get("connections", 0),
    }


def write_costs(count: int) -> dict[str, float]:
    """What writing `count` servers' health costs: the engine's bulk_update (CASE WHEN per
    field) against one parameterised UPDATE per row, executemany in one transaction."""
    from django.db import connection, transaction
    from django.utils import timezone

    from cms.inventory.models import Server
    from failover import probing

    servers = list(Server.objects.order_by("pk")[:count])
    now = timezone.now()
    for server in servers:
        server.last_seen = now
    started = time.perf_counter()
    Server.objects.bulk_update(servers, probing.HEALTH_FIELDS, batch_size=500)
    bulk = time.perf_counter() - started

    fields = probing.HEALTH_FIELDS
    table = Server._meta.db_table
    columns = [Server._meta.get_field(f) for f in fields]
    sql = (
        f"UPDATE {table} SET "  # noqa: S608 (names from the model, values parameterised)
        + ", ".join(f"{c.column} = %s" for c in columns)
        + " WHERE id = %s"
    )
    rows = [
        [c.get_db_prep_save(getattr(s, c.attname), connection) for c in columns] + [s.pk]
        for s in servers
    ]
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, rows)
    many = time.perf_counter() - started
    return {"rows": len(servers), "bulk_update_s": round(bulk, 3), "executemany_s": round(many, 3)}


if __name__ == "__main__":
    raise SystemExit(main())
