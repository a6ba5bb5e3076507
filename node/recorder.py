"""The recorder: one thread per camera of the active configuration.

Each thread cuts the camera's stream into segments of ``segment_seconds`` and takes
a snapshot every ``snapshot_every`` segments, writing each file atomically and
indexing it. Two sources:

* ``synthetic``: deterministic bytes derived from the camera id and the segment's
  start time; no dependency, used by tests and demos.
* ``testsrc`` or an ``rtsp(s)://`` / ``http(s)://`` stream URL when ``ffmpeg`` is
  installed: real MP4 segments and JPEG snapshots. Without ffmpeg such a camera
  reports an error instead of recording.

Sources are checked by :func:`node.config.source_kind` (a configuration stored by an
older version is checked again here): a URL reaches ffmpeg only as an ``-i`` input
limited to network protocols, and the test pattern is a fixed graph, never user text.

A fault (``cms-node fault``) is checked at every segment: while the volume is
"crashed" or the service "stopped", nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node.config import SOURCE_RULE, STREAM_SCHEMES, schedule_active, source_kind
from node.state import FaultWatcher
from node.storage import FileMeta, Storage
from node.timeutil import iso

log = logging.getLogger("node.recorder")

SYNTHETIC_BYTES_PER_SECOND = 4096
JANITOR_INTERVAL = 60.0


def camera_folder(origin: str, on_behalf_of: str | None, camera: str) -> str:
    if origin == "failover":
        return f"failover/{on_behalf_of}/{camera}"
    return f"own/{camera}"


def file_name(start: float, ext: str) -> tuple[str, str]:
    dt = datetime.fromtimestamp(start, UTC)
    return dt.strftime("%Y-%m-%d"), dt.strftime("%H%M%S") + f".{dt.microsecond // 1000:03d}.{ext}"


def synthetic_bytes(camera: str, kind: str, start: float, end: float) -> bytes:
    """Deterministic content: the same camera and time always give the same bytes."""
    header = (
        json.dumps(
            {
                "format": "cms-node-synthetic/1",
                "camera": camera,
                "kind": kind,
                "start": iso(start),
                "end": iso(end),
            },
            sort_keys=True,
        ).encode()
        + b"\n"
    )
    n = 1024 if kind == "snapshot" else max(256, int((end - start) * SYNTHETIC_BYTES_PER_SECOND))
    seed = f"{camera}|{kind}|{round(start * 1000)}".encode()
    return header + hashlib.shake_256(seed).digest(n)


TEST_PATTERN_GRAPH = "testsrc=size=320x240:rate=10"
# Protocols ffmpeg may open for a stream URL, nested ones included (an HLS playlist
# names its segments, RTSP opens TCP/UDP/RTP): network only, so no file:, concat:,
# subfile: or data: can be smuggled in through a playlist or a redirect.
PROTOCOL_WHITELIST = {
    "rtsp": "rtsp,rtp,srtp,tcp,udp,http,httpproxy",
    "rtsps": "rtsps,rtsp,rtp,srtp,tcp,udp,tls,http,https,httpproxy",
    "http": "http,tcp,httpproxy,crypto",
    "https": "https,http,tcp,tls,httpproxy,crypto",
}
assert set(PROTOCOL_WHITELIST) == set(STREAM_SCHEMES)


def uses_ffmpeg(source: str) -> bool:
    return source_kind(source) in ("pattern", "stream")


def ffmpeg_input(source: str) -> list[str]:
    """The ffmpeg arguments that open ``source``; ValueError for a source not allowed."""
    kind = source_kind(source)
    if kind == "pattern":
        return ["-f", "lavfi", "-i", TEST_PATTERN_GRAPH]
    if kind != "stream":
        raise ValueError("not an ffmpeg source")
    scheme = source.partition("://")[0]
    transport = ["-rtsp_transport", "tcp"] if scheme.startswith("rtsp") else []
    return ["-protocol_whitelist", PROTOCOL_WHITELIST[scheme], *transport, "-i", source]


class CameraWorker(threading.Thread):
    def __init__(
        self,
        recorder: Recorder,
        camera: dict[str, Any],
        origin: str,
        on_behalf_of: dict[str, str] | None,
    ) -> None:
        super().__init__(name=f"camera-{camera['id']}", daemon=True)
        self.recorder = recorder
        self.camera = camera
        self.origin = origin
        self.on_behalf_of = on_behalf_of
        self.stop_event = threading.Event()
        self.segments = 0
        self.last_segment_at: float | None = None
        self.state = "starting"
        self.error: str | None = None
        self.crashed = False
        # Whether the source is open for this recording, and since when: what a takeover
        # is confirmed by, a segment length before the first segment is written.
        self.open = False
        self.opened_at: float | None = None

    @property
    def obo_id(self) -> str | None:
        return self.on_behalf_of["id"] if self.on_behalf_of else None

    def run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a bug must show in /health, not kill silently
            log.exception("camera %s crashed", self.camera["id"])
            self.crashed, self.state, self.error = True, "error", f"recorder crashed: {exc}"

    def _loop(self) -> None:
        seconds = self.recorder.segment_seconds
        while not self.stop_event.is_set():
            start = time.time()
            if not self._may_record(start):
                self.stop_event.wait(min(seconds, 1.0))
                continue
            source = self.camera["source"]
            if source_kind(source) is None:
                self._refuse_source(source)
                continue
            if uses_ffmpeg(source):
                self._ffmpeg_segment(source, start, seconds)
                continue
            self._opened(start)  # synthetic bytes: open at the start of the segment
            # Wait for the segment to elapse; on stop, keep the partial segment so that
            # a failback overlap never loses the last seconds.
            stopped = self.stop_event.wait(seconds)
            end = time.time()
            if stopped and end - start < 0.2:
                return
            if not self._may_record(end):
                continue
            self._write_synthetic(start, end)

    def _opened(self, at: float) -> None:
        if not self.open:
            self.open, self.opened_at = True, at

    def _closed(self) -> None:
        self.open, self.opened_at = False, None

    def _refuse_source(self, source: object) -> None:
        """A source stored by an older version that the rules refuse now: never read."""
        self._closed()
        if self.error is None or not self.error.startswith("source not allowed"):
            log.warning("camera %s: source %.60r is not allowed; not recording", self.name, source)
        self.state = "error"
        self.error = f"source not allowed: use {SOURCE_RULE}"
        self.stop_event.wait(self.recorder.segment_seconds)

    def _may_record(self, now: float) -> bool:
        faults = self.recorder.faults.current()
        if faults["volume"] or faults["service"]:
            self.state = "paused"
            self.error = "volume crashed" if faults["volume"] else "service stopped"
            self._closed()
            return False
        if not schedule_active(self.camera.get("schedule"), datetime.now()):
            self.state, self.error = "idle", None
            self._closed()
            return False
        return True

    def _meta(
        self, kind: str, start: float, end: float, ext: str, data_size: int, sha: str
    ) -> FileMeta:
        day, name = file_name(start, ext)
        folder = camera_folder(self.origin, self.obo_id, self.camera["id"])
        return FileMeta(
            path=f"{folder}/{day}/{name}",
            kind=kind,
            camera=self.camera["id"],
            origin=self.origin,
            on_behalf_of=self.obo_id,
            start=start,
            end=end,
            size=data_size,
            sha256=sha,
        )

    def _written(self, end: float) -> None:
        self.segments += 1
        self.last_segment_at = end
        self.state, self.error = "recording", None

    def _write_synthetic(self, start: float, end: float) -> None:
        storage = self.recorder.storage
        try:
            data = synthetic_bytes(self.camera["id"], "recording", start, end)
            storage.store_bytes(
                self._meta(
                    "recording", start, end, "seg", len(data), hashlib.sha256(data).hexdigest()
                ),
                data,
            )
            if self.segments % self.recorder.snapshot_every == 0:
                snap = synthetic_bytes(self.camera["id"], "snapshot", end, end)
                storage.store_bytes(
                    self._meta(
                        "snapshot", end, end, "snap", len(snap), hashlib.sha256(snap).hexdigest()
                    ),
                    snap,
                )
            self._written(end)
        except OSError as exc:
            self.state, self.error = "error", f"cannot write: {exc.strerror or exc}"

    def _ffmpeg_segment(self, source: str, start: float, seconds: float) -> None:
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            self.state, self.error = "error", "ffmpeg is not installed for source " + source[:40]
            self._closed()
            self.stop_event.wait(seconds)
            return
        tmp_dir = self.recorder.tmp_dir
        tmp = tmp_dir / f"{self.name}-{round(start * 1000)}.mp4"
        src = ffmpeg_input(source)
        if source_kind(source) == "pattern":
            codec = ["-c:v", "mpeg4", "-q:v", "5"]
        else:
            codec = ["-c", "copy"]
        reading = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *src]
        cmd = [*reading, "-t", str(seconds), *codec, "-movflags", "+faststart", str(tmp)]
        if not self._run(cmd, seconds + 15, opens=tmp):
            self._closed()
            tmp.unlink(missing_ok=True)
            return
        end = time.time()
        if not self._may_record(end):
            tmp.unlink(missing_ok=True)
            return
        try:
            self.recorder.storage.store_file(
                self._meta("recording", start, end, "mp4", tmp.stat().st_size, _sha(tmp)), tmp
            )
            if self.segments % self.recorder.snapshot_every == 0:
                jpg = tmp_dir / f"{self.name}-{round(start * 1000)}.jpg"
                if self._run([*reading, "-frames:v", "1", str(jpg)], 15):
                    self.recorder.storage.store_file(
                        self._meta("snapshot", end, end, "jpg", jpg.stat().st_size, _sha(jpg)),
                        jpg,
                    )
            self._written(end)
        except OSError as exc:
            self.state, self.error = "error", f"cannot write: {exc.strerror or exc}"

    def _run(self, cmd: list[str], timeout: float, opens: Path | None = None) -> bool:
        """Run ffmpeg to its end; with ``opens`` (its output file) the source counts as open
        once that file exists: ffmpeg creates its output only after it has opened and
        probed the input."""
        proc = subprocess.Popen(  # noqa: S603 (fixed argv, no shell)
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if opens is not None and not self.open and opens.exists():
                self._opened(time.time())
            if self.stop_event.is_set() or time.monotonic() > deadline:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                if not self.stop_event.is_set():
                    self.state, self.error = "error", "ffmpeg did not finish in time"
                return False
            time.sleep(0.05 if opens is not None and not self.open else 0.1)
        if opens is not None and proc.returncode == 0:
            self._opened(time.time())  # finished before a poll saw its file
        if proc.returncode != 0:
            err = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace")
            self.state, self.error = "error", f"ffmpeg failed: {err.strip()[-200:]}"
            return False
        return True

    def status(self) -> dict[str, Any]:
        return {
            "id": self.camera["id"],
            "name": self.camera["name"],
            "origin": self.origin,
            "on_behalf_of": self.obo_id,
            "state": self.state,
            "error": self.error,
            "last_segment_at": iso(self.last_segment_at),
            "segments": self.segments,
            "open": self.open,
            "opened_at": iso(self.opened_at),
        }


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


class Recorder:
    """Owns the camera threads; :meth:`apply` makes them match the active config."""

    def __init__(
        self,
        storage: Storage,
        faults: FaultWatcher,
        segment_seconds: float = 5.0,
        snapshot_every: int = 5,
    ) -> None:
        self.storage = storage
        self.faults = faults
        self.segment_seconds = segment_seconds
        self.snapshot_every = max(1, snapshot_every)
        self.tmp_dir = storage.data_dir / "tmp"
        self.tmp_dir.mkdir(exist_ok=True)
        self._workers: dict[tuple[str, str | None, str], CameraWorker] = {}
        self._lock = threading.Lock()
        self._retention: dict[str, int] = {}
        self._stop = threading.Event()
        self._janitor = threading.Thread(target=self._janitor_loop, name="janitor", daemon=True)
        self._janitor.start()

    def apply(self, specs: list[tuple[dict[str, Any], str, dict[str, str] | None]]) -> None:
        """Record exactly ``specs``: (camera, origin, on_behalf_of) triples.

        Cameras that keep their key keep their thread (no gap in recording); a changed
        source or schedule is picked up at the next segment.
        """
        wanted = {
            (origin, obo["id"] if obo else None, cam["id"]): (cam, origin, obo)
            for cam, origin, obo in specs
        }
        stopping = []
        with self._lock:
            for key, worker in list(self._workers.items()):
                if key not in wanted:
                    worker.stop_event.set()
                    stopping.append(worker)
                    del self._workers[key]
                else:
                    worker.camera = wanted[key][0]
            for key, (cam, origin, obo) in wanted.items():
                if key not in self._workers:
                    worker = CameraWorker(self, cam, origin, obo)
                    self._workers[key] = worker
                    worker.start()
            self._retention = {
                cam["id"]: cam["retention_days"] for cam, origin, _ in specs if origin == "own"
            }
        for worker in stopping:
            worker.join(timeout=20)

    def status(self) -> list[dict[str, Any]]:
        with self._lock:
            return [w.status() for w in self._workers.values()]

    def crashed(self) -> bool:
        with self._lock:
            return any(w.crashed for w in self._workers.values())

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for w in workers:
            w.stop_event.set()
        for w in workers:
            w.join(timeout=20)

    def _janitor_loop(self) -> None:
        while not self._stop.wait(JANITOR_INTERVAL):
            for camera, days in dict(self._retention).items():
                try:
                    self.storage.expire(camera, "own", time.time() - days * 86400)
                except Exception:  # retention must never stop recording
                    log.exception("retention of %s failed", camera)
