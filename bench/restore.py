"""Restoration throughput beside rsync, and the peak memory of every process.

    python bench/restore.py --size 1073741824 [--files 8] [--rounds 3] [--database-url URL]

Two real agents: a failover agent holding F files (BYTES in total) uploaded as
recordings taken during a failover (`upload(..., origin="failover",
on_behalf_of=TAG)`), and a recording agent to restore them to. Then, in one run:

1. rsync copies the same files from the failover agent's data folder to a fresh
   folder in the recording agent's data folder (timed; `rsync -a`, and
   `rsync -a --fsync` since restoration fsyncs every file it keeps);
2. the restoration runs for real, once on each path: an event in RESTORING state and
   `failover.engine.advance()` in this process. Direct: the recording agent pulls
   each file from the failover agent with the grant this process signed, and this
   process watches and deletes each verified file on the failover agent. Relayed:
   this process streams each file from the failover agent to the recording agent.
   Either way the recording agent verifies size and sha256 before it keeps a file.
   The files are uploaded again before the second path (restoration deletes them).

"Bytes through the CMS" is what this process received and sent on its sockets while
the restoration ran: every file's bytes twice when it relays; for the direct path only
the HTTP calls that start, watch and finish the pull.

Both copies read files the upload has just written, so both read from the page
cache; dirty pages are flushed (`sync`, untimed) before each timed step.
Peak RSS (VmHWM) is reset before the restoration, so the figures cover it alone;
the upload phase's peaks are reported too. rsync's peak is from wait4().

`--phases` (for finding the bottleneck; leave it off for the headline figures)
splits the restoration's wall time in this process by wrapping the node client
(nothing in cms/ or failover/ edited): waiting for download data, handing chunks to
the upload request (the socket send), finishing (last byte sent -> the node's
answer: its fsync, rename and index), deleting on the source, progress writes; and
reads CPU time per thread of every process from /proc/PID/task/TID/stat (the
event loop is the main thread, TID = PID).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import resource
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _harness import (
    Agent,
    Database,
    Processes,
    cms_env,
    emit,
    log,
    machine,
    peak_rss_mb,
    reset_peak_rss,
    setup_django,
    start_agent,
)

TAG = "rs1"
TARGET_RATIO, TARGET_RSS_MB = 0.9, 200.0
WRITE_CHUNK = 4 * 1024 * 1024


def make_files(
    agent: Agent, folder: Path, size: int, files: int, n: int, tag: str = TAG
) -> list[dict[str, Any]]:
    """Upload `files` random files (incompressible, like video) to the failover agent."""
    client = agent.client(timeout=(2.0, 120.0))
    made = []
    base = size // files
    for i in range(files):
        length = base + (size - base * files if i == files - 1 else 0)
        scratch = folder / f"scratch-{i}"
        digest = hashlib.sha256()
        with open(scratch, "wb") as fh:
            left = length
            while left:
                chunk = os.urandom(min(WRITE_CHUNK, left))
                digest.update(chunk)
                fh.write(chunk)
                left -= len(chunk)
        camera = f"cam{i % 2 + 1}"
        path = f"failover/{tag}/{camera}/2026-01-01/{n:02d}{i:04d}.000.seg"  # unique per round
        start = 1767225600 + i * 60
        with open(scratch, "rb") as fh:
            client.upload(
                path, fh, length, digest.hexdigest(), kind="recording", camera=camera,
                origin="failover", on_behalf_of=tag, start=start, end=start + 60,
            )  # fmt: skip
        scratch.unlink()
        made.append({"path": path, "size": length})
    return made


def timed_rsync(source: Path, dest: Path, extra: list[str]) -> dict[str, Any]:
    dest.mkdir(parents=True)
    subprocess.run(["sync"], check=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(["rsync", "-a", *extra, f"{source}/", f"{dest}/"])
    # wait4's ru_maxrss would report this (large) Python process's peak, which the child
    # inherits at fork; VmHWM belongs to the exec'd image, so poll it for the rsync tree.
    peak = 0.0
    while process.poll() is None:
        for pid in process_tree(process.pid):
            peak = max(peak, peak_rss_mb(pid) or 0.0)
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode:
        raise RuntimeError(f"rsync exited with {process.returncode}")
    copied = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    shutil.rmtree(dest)
    return {
        "command": " ".join(["rsync", "-a", *extra]),
        "seconds": round(seconds, 3),
        "bytes": copied,
        "mb_per_s": round(copied / seconds / 1e6, 1),
        "peak_rss_mb": peak,
        "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
    }


def process_tree(root: int) -> list[int]:
    """`root` and its descendants (rsync forks a receiver, which forks a generator)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a live process (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds per thread of a live process."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(task.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def thread_split(pid: int, before: dict[int, float]) -> dict[str, Any]:
    """Main thread (the event loop) against the others, and the busiest other thread."""
    after = thread_cpu(pid)
    delta = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    others = [v for tid, v in delta.items() if tid != pid]
    return {
        "main_thread": round(delta.get(pid, 0.0), 2),
        "other_threads": round(sum(others), 2),
        "busiest_other": round(max(others, default=0.0), 2),
        "threads_used": sum(1 for v in others if v > 0),
    }


class PhaseTimer:
    """Where the restoration's wall time goes in this process (wraps the node client)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self._source_done = 0.0

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        from cms.nodes.client import Download, NodeClient
        from failover import restoration

        timer, seconds = self, self.seconds
        originals = {
            "chunks": Download.chunks,
            "upload": NodeClient.upload,
            "delete_file": NodeClient.delete_file,
            "open_download": NodeClient.open_download,
            "flush": restoration._Meter.flush,
        }

        def chunks(download: Any, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
            inner = originals["chunks"](download, chunk_size)
            handed = None
            while True:
                asked = time.perf_counter()
                if handed is not None:
                    seconds["upload_send"] += asked - handed  # the consumer had the chunk
                try:
                    chunk = next(inner)
                except StopIteration:
                    timer._source_done = time.perf_counter()
                    return
                handed = time.perf_counter()
                seconds["download_wait"] += handed - asked
                timer.counts["chunks"] += 1
                yield chunk

        def timed(name: str) -> Any:
            original = originals[name]

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    ended = time.perf_counter()
                    seconds[name] += ended - started
                    timer.counts[name] += 1
                    if name == "upload" and timer._source_done >= started:
                        seconds["finish"] += ended - timer._source_done

            return wrapper

        Download.chunks = chunks
        for name in ("upload", "delete_file", "open_download"):
            setattr(NodeClient, name, timed(name))
        restoration._Meter.flush = timed("flush")
        try:
            yield
        finally:
            Download.chunks = originals["chunks"]
            for name in ("upload", "delete_file", "open_download"):
                setattr(NodeClient, name, originals[name])
            restoration._Meter.flush = originals["flush"]

    def report(self, total: float) -> dict[str, Any]:
        s = self.seconds
        in_upload = s["download_wait"] + s["upload_send"] + s["finish"]
        # the progress flushes run inside upload_send (the meter sits in the chunk stream)
        rows = {
            "download_wait_s": s["download_wait"],
            "upload_send_s": s["upload_send"] - s["flush"],
            "finish_s": s["finish"],
            "upload_other_s": s["upload"] - in_upload,  # POST /uploads, opening the download
            "delete_on_source_s": s["delete_file"],
            "progress_writes_s": s["flush"],
        }
        rows["outside_copies_s"] = total - s["upload"] - s["delete_file"]
        result: dict[str, Any] = {k: round(v, 3) for k, v in rows.items()}
        result["counts"] = dict(self.counts)
        return result


def breakdown(source: Agent, target: Agent, item: dict[str, Any]) -> dict[str, Any]:
    """Each stage of the restoration pipeline alone, on one restored file."""
    from failover.restoration import CHUNK

    path, size = item["path"], item["size"]
    local = target.data_dir / "media" / path
    started = time.perf_counter()
    digest = hashlib.sha256()
    with open(local, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    sha_s = time.perf_counter() - started

    started = time.perf_counter()
    with target.client(timeout=(2.0, 120.0)).open_download(path) as download:
        for _ in download.chunks(CHUNK):
            pass
    download_s = time.perf_counter() - started

    client = source.client(timeout=(2.0, 120.0))
    started = time.perf_counter()
    with open(local, "rb") as fh:
        client.upload("own/breakdown/000000.000.seg", fh, size, digest.hexdigest())
    upload_s = time.perf_counter() - started
    client.delete_file("own/breakdown/000000.000.seg")

    def rate(seconds: float) -> float:
        return round(size / seconds / 1e6, 1)

    return {
        "file_bytes": size,
        "sha256_mb_per_s": rate(sha_s),
        "download_only_mb_per_s": rate(download_s),
        "upload_only_mb_per_s": rate(upload_s),
    }


def register(
    source: Agent,
    target: Agent,
    n: int,
    tag: str = TAG,
    names: tuple[str, str] = ("Lobby", "Standby"),
) -> int:
    """The event a failback leaves behind: RESTORING, failover server known."""
    from cms.inventory.models import Server, Team
    from failover.choices import EventState, Trigger
    from failover.models import FailoverEvent, FailoverSettings

    settings = FailoverSettings.load()
    settings.restore_recordings = True
    settings.save()
    team, _ = Team.objects.get_or_create(name="Bench")
    servers = {}
    for role, agent, name in (("recording", target, names[0]), ("failover", source, names[1])):
        servers[role], _ = Server.objects.get_or_create(
            team=team, role=role, name=name, host=agent.host, port=agent.port,
            defaults={"admin_password": agent.password, "status": "normal"},
        )  # fmt: skip
    event = FailoverEvent.objects.create(
        team=team,
        recording_server=servers["recording"],
        recording_server_name=names[0],
        node_tag=tag,
        failover_server=servers["failover"],
        failover_server_name=names[1],
        trigger=Trigger.DISCONNECTED,
        state=EventState.RESTORING,
        lease_expires_at=None,  # free for the restoring worker
    )
    return event.pk


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Restoration throughput beside rsync")
    parser.add_argument("--size", type=int, default=1024**3, help="bytes in total")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="repeat and report medians")
    parser.add_argument("--database-url", help="PostgreSQL server to create a fresh db on")
    parser.add_argument("--workdir", type=Path, default=None, help="where the data folders go")
    parser.add_argument(
        "--phases",
        action="store_true",
        help="split the restoration's time by phase and its CPU by thread (instrumented)",
    )
    parser.add_argument(
        "--two-at-once",
        action="store_true",
        help="then two direct restorations at once (two more agents), each against one alone",
    )
    args = parser.parse_args(argv)
    if args.files < 1 or args.size < args.files:
        parser.error("--size must be at least --files bytes")

    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="bench-restore-", dir=args.workdir) as tmp:
        folder = Path(tmp)
        free = shutil.disk_usage(folder).free
        need = args.size * 3.2  # source + target + one rsync copy, with room to spare
        if free < need:
            parser.error(f"{folder} has {free / 1024**3:.1f} GiB free, {need / 1024**3:.1f} needed")
        db = Database(args.database_url, folder)
        try:
            result = run(args, procs, folder, db)
        finally:
            procs.stop_all()
            db.drop()
    emit(result)
    return 0


def run(args: argparse.Namespace, procs: Processes, folder: Path, db: Database) -> dict[str, Any]:
    setup_django(cms_env(folder / "var", db.url, "memory://", "bench-restore"))
    from failover import restoration

    source = start_agent(procs, folder / "standby", mode="failover", name="standby")
    target = start_agent(procs, folder / "lobby", mode="recording", name="lobby")
    rounds = [one_round(n, args, folder, source, target) for n in range(1, args.rounds + 1)]
    stages = rounds[-1].pop("stages_alone")

    def median(key: str, field: str = "mb_per_s") -> float:
        return round(statistics.median(r[key][field] for r in rounds), 1)

    restored, plain, fsync = median("restoration"), median("rsync"), median("rsync_fsync")
    relayed = median("relayed")
    peaks: dict[str, float] = {}
    for r in rounds:
        for phase in ("peak_rss_upload_phase_mb", "peak_rss_restoration_mb", "peak_rss_relayed_mb"):
            for name, value in r[phase].items():
                peaks[name] = max(peaks.get(name, 0.0), value or 0.0)
    peaks["rsync_mb"] = max(
        max(r["rsync"]["peak_rss_mb"], r["rsync_fsync"]["peak_rss_mb"]) for r in rounds
    )
    ratio = restored / plain
    both = two_at_once(args, procs, folder, source, target, restored) if args.two_at_once else None
    return {
        "two_at_once": both,
        "benchmark": "restore",
        "settings": {
            "bytes": args.size,
            "files": args.files,
            "rounds": args.rounds,
            "database": db.kind,
            "chunk_bytes": restoration.CHUNK,
            "phases_instrumented": args.phases,
        },
        "machine": machine(),
        "median_mb_per_s": {
            "direct": restored,
            "relayed": relayed,
            "rsync": plain,
            "rsync_fsync": fsync,
        },
        "ratio_to_rsync": round(ratio, 3),
        "ratio_to_rsync_fsync": round(restored / fsync, 3),
        "relayed_ratio_to_rsync_fsync": round(relayed / fsync, 3),
        "max_bytes_through_cms": {
            path: max(r[key]["bytes_through_cms"] for r in rounds)
            for path, key in (("direct", "restoration"), ("relayed", "relayed"))
        },
        "peak_rss_mb": peaks,
        "stages_alone": stages,
        "target": {
            "ratio_to_rsync_fsync": TARGET_RATIO,
            "ratio_met": restored / fsync >= TARGET_RATIO,
            "rss_mb": TARGET_RSS_MB,
            "rss_met": all(p < TARGET_RSS_MB for p in peaks.values()),
        },
        "rounds": rounds,
    }


def one_round(
    n: int, args: argparse.Namespace, folder: Path, source: Agent, target: Agent
) -> dict[str, Any]:
    """Upload, rsync, rsync --fsync, restore directly; upload again, restore relayed;
    then clean the target for the next round."""
    event_id = register(source, target, n)
    log(f"round {n}: uploading {args.files} files, {args.size / 1024**2:.0f} MiB")
    made = make_files(source, folder, args.size, args.files, n)
    upload_peaks = {
        "cms_mb": peak_rss_mb(os.getpid()),
        "failover_agent_mb": peak_rss_mb(source.pid),
        "recording_agent_mb": peak_rss_mb(target.pid),
    }

    media = source.data_dir / "media" / "failover" / TAG
    rsync = timed_rsync(media, target.data_dir / "rsync-dest", [])
    log(f"round {n}: rsync: {rsync}")
    rsync_fsync = timed_rsync(media, target.data_dir / "rsync-dest", ["--fsync"])
    log(f"round {n}: rsync --fsync: {rsync_fsync}")

    pids = {"cms": os.getpid(), "failover_agent": source.pid, "recording_agent": target.pid}
    restored, peaks = restore_once(event_id, "direct", pids, phases=False)
    log(f"round {n}: direct restoration: {restored}")
    left = list(source.client().list_recordings(origin="failover", on_behalf_of=TAG))
    kept = list(target.client().list_recordings(origin="own"))
    stages = breakdown(source, target, max(kept, key=lambda item: item["size"])) if kept else {}
    log(f"round {n}: stages alone: {stages}")
    for item in kept:  # room for the relayed path
        target.client().delete_file(item["path"])

    relayed_event = register(source, target, n)
    log(f"round {n}: uploading the files again for the relayed path")
    make_files(source, folder, args.size, args.files, n)
    relayed, relayed_peaks = restore_once(relayed_event, "relayed", pids, phases=args.phases)
    log(f"round {n}: relayed restoration: {relayed}")
    for item in target.client().list_recordings(origin="own"):  # room for the next round
        target.client().delete_file(item["path"])
    return {
        "round": n,
        "restoration": restored,
        "relayed": relayed,
        "rsync": rsync,
        "rsync_fsync": rsync_fsync,
        "ratio_to_rsync": round(restored["mb_per_s"] / rsync["mb_per_s"], 3),
        "peak_rss_restoration_mb": peaks,
        "peak_rss_relayed_mb": relayed_peaks,
        "peak_rss_upload_phase_mb": upload_peaks,
        "check": {
            "files_made": len(made),
            "restored_on_recording_agent": len(kept),
            "left_on_failover_agent": len(left),
        },
        "stages_alone": stages,
    }


def two_at_once(
    args: argparse.Namespace,
    procs: Processes,
    folder: Path,
    source: Agent,
    target: Agent,
    alone: float,
) -> dict[str, Any]:
    """Two direct restorations at once (the first pair and a second pair of agents), each
    one's MB/s against the median of one alone."""
    from django.conf import settings
    from django.db import connection

    from failover import engine
    from failover.models import FailoverEvent

    settings.CMS_RESTORATION_PATH = "direct"
    source2 = start_agent(procs, folder / "standby2", mode="failover", name="standby2")
    target2 = start_agent(procs, folder / "lobby2", mode="recording", name="lobby2")
    pairs = [(source, target, TAG, ("Lobby", "Standby")),
             (source2, target2, "rs2", ("Garage", "Standby 2"))]  # fmt: skip
    events = []
    for src, tgt, tag, names in pairs:
        events.append(register(src, tgt, 90, tag, names))
        make_files(src, folder, args.size, args.files, 90, tag)
    subprocess.run(["sync"], check=True)
    results: dict[int, float] = {}

    def run_one(event_id: int) -> None:
        started = time.perf_counter()
        try:
            engine.advance(event_id)
            results[event_id] = time.perf_counter() - started
        finally:
            connection.close()

    threads = [threading.Thread(target=run_one, args=(e,)) for e in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rates = []
    for event_id in events:
        job = FailoverEvent.objects.get(pk=event_id).restoration
        rates.append(round(job.bytes_done / results[event_id] / 1e6, 1))
    log(f"two at once: {rates} MB/s, alone {alone}")
    return {
        "mb_per_s": rates,
        "alone_mb_per_s": alone,
        "ratio_to_alone": [round(r / alone, 3) for r in rates],
        "target_ratio": 0.8,
    }


class SocketMeter:
    """Bytes this process received and sent on its sockets (every HTTP call to an agent;
    the SQLite database is a file, not counted): wraps `socket.socket`'s methods."""

    def __init__(self) -> None:
        self.bytes = 0
        self._lock = threading.Lock()

    def _add(self, n: int) -> None:
        with self._lock:
            self.bytes += n

    @contextlib.contextmanager
    def installed(self) -> Iterator[SocketMeter]:
        cls = socket.socket
        names = ("recv", "recv_into", "send", "sendall")
        originals = {name: getattr(cls, name) for name in names}
        meter = self

        def recv(sock: Any, *args: Any, **kwargs: Any) -> bytes:
            data = originals["recv"](sock, *args, **kwargs)
            meter._add(len(data))
            return data

        def recv_into(sock: Any, *args: Any, **kwargs: Any) -> int:
            n = originals["recv_into"](sock, *args, **kwargs)
            meter._add(n)
            return n

        def send(sock: Any, data: Any, *args: Any) -> int:
            n = originals["send"](sock, data, *args)
            meter._add(n)
            return n

        def sendall(sock: Any, data: Any, *args: Any) -> None:
            originals["sendall"](sock, data, *args)
            meter._add(memoryview(data).nbytes)

        for name, fn in (("recv", recv), ("recv_into", recv_into), ("send", send),
                         ("sendall", sendall)):  # fmt: skip
            setattr(cls, name, fn)
        try:
            yield self
        finally:
            for name, fn in originals.items():
                setattr(cls, name, fn)


def restore_once(
    event_id: int, path: str, pids: dict[str, int], phases: bool
) -> tuple[dict[str, Any], dict[str, float | None]]:
    """Run one restoration on `path` (direct or relayed) and measure it."""
    from django.conf import settings

    from failover import engine
    from failover.models import FailoverEvent

    settings.CMS_RESTORATION_PATH = path
    subprocess.run(["sync"], check=True)
    for pid in pids.values():
        reset_peak_rss(pid)
    timer = PhaseTimer()
    threads_before = {name: thread_cpu(pid) for name, pid in pids.items()}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    with (
        SocketMeter().installed() as sockets,
        timer.installed() if phases else contextlib.nullcontext(),
    ):
        state = engine.advance(event_id)
    seconds = time.perf_counter() - started
    through_cms = sockets.bytes
    cpu = {name: round(cpu_seconds(pid) - cpu_before[name], 2) for name, pid in pids.items()}
    threads = {name: thread_split(pid, threads_before[name]) for name, pid in pids.items()}
    job = FailoverEvent.objects.get(pk=event_id).restoration
    restored: dict[str, Any] = {
        "path": job.transfer,
        "seconds": round(seconds, 3),
        "final_state": state,
        "files_done": job.files_done,
        "bytes": job.bytes_done,
        "mb_per_s": round(job.bytes_done / seconds / 1e6, 1),
        "rate_reported_mb_per_s": round(job.rate_bps / 1e6, 1),
        "bytes_through_cms": through_cms,
        # CPU seconds per process while it ran: far below `seconds` for all three means
        # the copy waits (disk, fsync), not computes.
        "cpu_s": cpu,
        "cpu_s_by_thread": threads,
    }
    if phases:
        restored["phases"] = timer.report(seconds)
    peaks = {name + "_mb": peak_rss_mb(pid) for name, pid in pids.items()}
    return restored, peaks


if __name__ == "__main__":
    raise SystemExit(main())
