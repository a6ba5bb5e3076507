"""Restoring the recordings and snapshots taken during a failover.

The recording node pulls the files straight from the failover node with a short-lived
grant the CMS signs (``protocol.grants``); the CMS only says what to copy, watches the
progress and deletes each file on the failover node once the recording node verified
it. When the two nodes cannot reach each other, the CMS relays: files are streamed
from the failover node to the recording node through this worker in chunks (memory
stays flat whatever the size). Either way the recording node verifies size and
sha256 before it keeps a file; only then is the file deleted from the failover node. Each
file's progress is in the database and each upload is resumable on the node, so
a restoration interrupted by a dead worker or a dead node continues where it
stopped without copying finished files again.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from cms.inventory.models import Server
from cms.nodes.client import client_for
from cms.nodes.errors import NodeBadResponse, NodeError, NodeRefused
from protocol.grants import conflict_name

from .choices import EventState, FileState, RestorationState, TransferPath
from .errors import FailoverError
from .events import SYSTEM, note, renew_lease, transition
from .models import FailoverEvent, RestorationFile, RestorationJob

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
PROGRESS_EVERY = 0.5  # seconds between progress writes
COPIES = 2  # files copied at once
PULL_BATCH = 500  # files per grant and pull
WATCH = 1  # seconds a look at a direct pull's progress waits for a file to end
# The recording node's refusals that mean "relay instead": it cannot reach the failover
# node, the failover node does not take the grant, or an agent predates direct pulls.
# A recording server this CMS holds no pairing key for cannot be asked to pull.
FALL_BACK = ("source_unreachable", "grant_refused", "not_found", "method_not_allowed", "not_signed",
             "wrong_mode")  # fmt: skip


class RestorationStopped(Exception):
    """The operator stopped the restoration while a file was being copied."""


def target_path(path: str, node_tag: str) -> str:
    """failover/<tag>/<camera>/... on the failover node -> own/<camera>/... on the target."""
    prefix = f"failover/{node_tag}/"
    if not path.startswith(prefix):
        raise NodeBadResponse(f"unexpected path {path!r} for {node_tag}")
    return "own/" + path[len(prefix) :]


def sources(event: FailoverEvent) -> list[Server]:
    """Every failover server that recorded for the event and still exists: the current
    one first, then those that acted before it (a cascade, or a new fault while
    restoring), each once."""
    ids = [event.failover_server_id] + [e["id"] for e in event.earlier_failover_servers]
    ids = list(dict.fromkeys(i for i in ids if i is not None))
    found = Server.objects.in_bulk(ids)
    return [found[i] for i in ids if i in found]


def restore(event: FailoverEvent) -> bool:
    """Copy, verify, delete; True when the event is done restoring."""
    with transaction.atomic():
        # Under the event's lock: after an operator's stop, not even a job is created.
        if _locked_state(event) != EventState.RESTORING:
            return False
        job, _ = RestorationJob.objects.get_or_create(
            event=event, defaults={"target_server": event.replacement or event.recording_server}
        )
    if job.state in (RestorationState.STOPPED, RestorationState.COMPLETED):
        return job.state == RestorationState.COMPLETED
    servers = sources(event)
    if not servers or job.target_server is None:
        _fail(event, job, "The failover server or the target server was removed.")
        return False
    target = client_for(job.target_server)
    node_tag = event.node_tag
    # Older rows name no source: they are on the event's own failover server.
    if event.failover_server_id is not None:
        job.files.filter(source=None).update(source_id=event.failover_server_id)
    with transaction.atomic():
        started = _locked_state(event) == EventState.RESTORING and RestorationJob.objects.filter(
            pk=job.pk, state__in=[RestorationState.PENDING, RestorationState.RUNNING]
        ).update(state=RestorationState.RUNNING)
    if not started:
        return False  # stopped (or failed) meanwhile
    errors: list[str] = []
    for server in servers:
        # Each run takes the inventory again: a new fault while restoring adds what the
        # next failover recorded; files already restored are gone from the source.
        try:
            source = client_for(server)
            _take_inventory(job, source, server, node_tag)
            _copy_all(event, job, server, source, target, node_tag)
        except RestorationStopped:
            return False
        except NodeError as exc:
            errors.append(f"{server.name}: {exc}")
    if errors:
        error = "; ".join(errors)
        with while_restoring(event, job) as restoring:
            # An error met after an operator stopped it (its files purged under the
            # copy) is no interruption: the stop has the last word.
            if restoring:
                # Leave the job running and the lease free: the next probe cycle
                # resumes it.
                if error != job.last_error:  # one note per new trouble, not per retry
                    note(event, f"Restoration interrupted, will resume: {error}")
                RestorationJob.objects.filter(pk=job.pk).update(
                    last_error=error, errors=F("errors") + 1
                )
                FailoverEvent.objects.filter(pk=event.pk).update(
                    lease_expires_at=None, last_error=error
                )
        return False

    with while_restoring(event, job) as restoring:
        if not restoring:
            return False
        RestorationJob.objects.filter(pk=job.pk).update(
            state=RestorationState.COMPLETED, finished_at=timezone.now(), last_error="",
            rate_bps=0,
        )  # fmt: skip
        job.refresh_from_db()
        return transition(
            event,
            EventState.REPLACED if event.replacement_id else EventState.COMPLETED,
            from_states=[EventState.RESTORING],
            reason=f"Restored {job.files_done} file(s), {job.bytes_done} bytes",
        )


@contextmanager
def while_restoring(event: FailoverEvent, job: RestorationJob) -> Iterator[bool]:
    """Whether the worker may still write to the event and the job: True while the event
    restores and the job runs. The block runs under the event's row lock (the database
    write lock on SQLite), as stop_restoration's does: a stop that commits first wins,
    and nothing of the worker's lands after it."""
    with transaction.atomic():
        state = _locked_state(event)
        running = RestorationJob.objects.filter(pk=job.pk, state=RestorationState.RUNNING)
        yield state == EventState.RESTORING and running.exists()


def _locked_state(event: FailoverEvent) -> str | None:
    """The event's state, its row locked until the caller's transaction ends."""
    return (
        FailoverEvent.objects.select_for_update()
        .filter(pk=event.pk)
        .values_list("state", flat=True)
        .first()
    )


def _take_inventory(job: RestorationJob, source: Any, server: Server, node_tag: str) -> None:
    items = list(source.list_recordings(origin="failover", on_behalf_of=node_tag))
    RestorationFile.objects.bulk_create(
        [
            RestorationFile(
                job=job,
                source=server,
                path=item["path"],
                kind=item.get("kind", "recording"),
                camera=item.get("camera", ""),
                start=recorded_time(item.get("start")),
                end=recorded_time(item.get("end")),
                size=int(item["size"]),
                sha256=item["sha256"],
            )
            for item in items
        ],
        ignore_conflicts=True,
    )
    totals = job.files.aggregate(size=Sum("size"))
    RestorationJob.objects.filter(pk=job.pk, state=RestorationState.RUNNING).update(
        files_total=job.files.count(),
        bytes_total=totals["size"] or 0,
        started_at=job.started_at or timezone.now(),
    )
    job.refresh_from_db()


def recorded_time(value: object) -> dt.datetime | None:
    """A listing's start or end (ISO 8601, UTC); None when the node gave none we can read:
    the file is still restored, indexed at the time it arrives (as older uploads were)."""
    if not isinstance(value, str):
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _wire_time(when: dt.datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _copy_all(
    event: FailoverEvent,
    job: RestorationJob,
    server: Server,
    source: Any,
    target: Any,
    node_tag: str,
) -> None:
    """Directly when the two nodes can, else relayed: COPIES files in flight, one file's
    verify, fsync and delete overlapping the next one's transfer. Each file still goes
    copy -> verified -> deleted on the source."""
    if settings.CMS_RESTORATION_PATH != "direct":
        _transfer_path(event, job, TransferPath.RELAYED, "the CMS relays the files, as set up")
    elif _copy_direct(event, job, server, source, target, node_tag):
        return
    meter = _Meter(event, job)
    todo = job.files.filter(source=server).exclude(state=FileState.DELETED).order_by("pk")
    pending = iter(list(todo))
    take = threading.Lock()

    def next_item() -> RestorationFile | None:
        with take:
            return None if meter.halted.is_set() else next(pending, None)

    def work(source: Any, target: Any) -> None:
        try:
            while (item := next_item()) is not None:
                if item.state == FileState.PENDING:
                    stored_as = _copy_one(item, source, target, node_tag, meter)
                    _verified(event, job, item, stored_as)
                _delete_on_source(source, item)
                meter.file_done(item.size)
        except BaseException:
            meter.halted.set()  # the other copy stops after its current chunk
            raise

    def helper() -> None:
        # Node sessions and the database connection are per thread: the helper's
        # connection is closed when it is done, not left to the pool thread.
        try:
            work(client_for(server), client_for(job.target_server))
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=COPIES - 1) as pool:
        helpers = [pool.submit(helper) for _ in range(COPIES - 1)]
        errors: list[BaseException | None] = []
        try:
            work(source, target)
        except BaseException as exc:  # re-raised below, once the helpers stopped
            errors.append(exc)
        errors += [f.exception() for f in helpers]  # waits for them
    # A real failure wins over the halt it caused in the other copy, so that a node
    # error is recorded and resumed, not taken for the operator's stop.
    for error in sorted(filter(None, errors), key=lambda e: isinstance(e, RestorationStopped)):
        raise error
    meter.flush(force=True)


def _verified(
    event: FailoverEvent, job: RestorationJob, item: RestorationFile, stored_as: str
) -> None:
    RestorationFile.objects.filter(pk=item.pk).update(
        state=FileState.VERIFIED, restored_as=stored_as
    )
    if stored_as:
        with while_restoring(event, job) as restoring:
            if restoring:
                note(
                    event,
                    f"{item.path}: the recording server already had another file under "
                    f"its name; both are kept, this one as {stored_as}",
                )


def _delete_on_source(source: Any, item: RestorationFile) -> None:
    try:
        source.delete_file(item.path)  # only after the target verified it
    except NodeRefused as exc:
        # Gone already (an operator's stop purged it): it is on the target.
        if exc.status != 404:
            raise
    RestorationFile.objects.filter(pk=item.pk).update(state=FileState.DELETED)


def _copy_direct(
    event: FailoverEvent,
    job: RestorationJob,
    server: Server,
    source: Any,
    target: Any,
    node_tag: str,
) -> bool:
    """The target pulls the files from the source itself; False when the two cannot
    reach each other (the caller relays). Raises like the relayed copy does."""
    todo = list(job.files.filter(source=server).exclude(state=FileState.DELETED).order_by("pk"))
    if not todo:
        return True
    meter = _Meter(event, job)
    for item in todo:
        if item.state == FileState.VERIFIED:  # copied before an interruption
            _delete_on_source(source, item)
            meter.file_done(item.size)
    pending = [item for item in todo if item.state == FileState.PENDING]
    # A grant names its files: batches keep it (and the pull's request) small.
    for start in range(0, len(pending), PULL_BATCH):
        batch = {item.path: item for item in pending[start : start + PULL_BATCH]}
        if not _pull_batch(event, job, server, source, target, node_tag, batch, meter):
            return False
    meter.flush(force=True)
    return True


def _pull_batch(
    event: FailoverEvent,
    job: RestorationJob,
    server: Server,
    source: Any,
    target: Any,
    node_tag: str,
    pending: dict[str, RestorationFile],
    meter: _Meter,
) -> bool:
    grant = source.restoration_grant(node_tag, event.epoch, list(pending))
    try:
        target.ensure_paired()  # only the paired CMS may make it pull (a signed request)
        pull = target.start_pull(
            source.transfer_source(), grant, [_pull_spec(i, node_tag) for i in pending.values()]
        )
    except (NodeRefused, NodeBadResponse) as exc:
        if exc.code not in FALL_BACK:
            raise
        _transfer_path(event, job, TransferPath.RELAYED, f"{server.name} and "
                       f"{job.target_server} cannot reach each other ({exc}); the CMS relays "
                       f"the files")  # fmt: skip
        return False
    _transfer_path(event, job, TransferPath.DIRECT,
                   f"{job.target_server} copies the files from {server.name} directly")  # fmt: skip
    try:
        failed = _watch_pull(event, job, pull["id"], pending, source, target, meter)
    except RestorationStopped:
        try:
            target.cancel_pull(pull["id"])
        except NodeError:
            pass  # the pull's grant and token expire on their own
        raise
    if failed:
        raise NodeBadResponse("; ".join(failed[:3]), code="pull_failed")
    return True


def _watch_pull(
    event: FailoverEvent,
    job: RestorationJob,
    pull_id: str,
    pending: dict[str, RestorationFile],
    source: Any,
    target: Any,
    meter: _Meter,
) -> list[str]:
    """Follow the pull to its end: each file the target verified is deleted on the
    source at once; progress goes to the meter (which raises on a stop). Returns what
    failed."""
    finished: set[str] = set()
    version = None
    while True:
        # Answered as soon as a file ends (its delete on the source follows at once), or
        # after WATCH with the progress of the files in flight.
        status = target.pull_status(pull_id, after=version, wait=WATCH)
        version = status["version"]
        in_flight: dict[int, int] = {}
        failed: list[str] = []
        for entry in status["files"]:
            item = pending.get(entry["path"])
            if item is None or entry["path"] in finished:
                continue
            if entry["state"] == "done":
                _verified(event, job, item, entry["stored_as"])
                _delete_on_source(source, item)
                finished.add(entry["path"])
                meter.file_done(item.size, key=item.pk)
            elif entry["state"] == "copying":
                in_flight[item.pk] = min(entry["bytes"], item.size)
            elif entry["state"] in ("failed", "cancelled"):
                failed.append(f"{item.path}: {entry['error'] or entry['state']}")
        meter.progress(in_flight, status["bytes"])
        if status["state"] != "running":
            return failed


def _pull_spec(item: RestorationFile, node_tag: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "from": item.path,
        "path": target_path(item.path, node_tag),
        "size": item.size,
        "sha256": item.sha256,
        "kind": item.kind,
        "camera": item.camera or "unknown",
        "origin": "own",
    }
    start = _wire_time(item.start)
    end = _wire_time(item.end if item.start and item.end and item.end >= item.start else None)
    if start is not None:
        spec["start"] = start
    if end is not None:
        spec["end"] = end
    return spec


def _transfer_path(event: FailoverEvent, job: RestorationJob, path: str, text: str) -> None:
    """The event says which way the files travel, once per change of way."""
    with while_restoring(event, job) as restoring:
        if restoring and job.transfer != path:
            RestorationJob.objects.filter(pk=job.pk).update(transfer=path)
            job.transfer = path
            note(event, f"Restoration path: {text}.")


def _copy_one(item: RestorationFile, source: Any, target: Any, node_tag: str, meter: _Meter) -> str:
    """Copy one file; returns the other name it was stored under, or "" for its own.

    The target never overwrites: a file of the same name with the same sha256 counts as
    restored (the node answers complete), one with another sha256 (both servers
    recorded the camera in the failback overlap, in the same millisecond) stays, and
    this one is stored next to it under a name with its own sha256.
    """
    downloads: list[Any] = []

    def chunks_from(offset: int) -> Iterable[bytes]:
        if offset >= item.size:
            # Every byte arrived before the target died, but it never completed the
            # upload: an empty request at the end makes it verify and keep the file.
            return iter(())
        download = source.open_download(item.path, offset, etag=item.sha256)
        downloads.append(download)
        if download.offset != offset:
            raise NodeBadResponse(f"{item.path} changed on the failover server")
        return meter.count(download.chunks(CHUNK))

    def upload(path: str) -> None:
        target.upload(
            path,
            chunks_from,
            item.size,
            item.sha256,
            kind=item.kind,
            camera=item.camera or "unknown",
            origin="own",
            # Its own time: a search of the recording server for the failover period
            # finds it there.
            start=_wire_time(item.start),
            end=_wire_time(
                item.end if item.start and item.end and item.end >= item.start else None
            ),
        )

    path = target_path(item.path, node_tag)
    try:
        try:
            upload(path)
            return ""
        except NodeRefused as exc:
            if exc.code != "file_exists":
                raise
        other = conflict_name(path, item.sha256)
        upload(other)  # the same refusal again would be a real error: it propagates
        return other
    finally:
        for download in downloads:
            download.close()


class _Meter:
    """Progress in the database every half second: bytes, files, rate; and the stop check.

    Shared by the copies in flight: counters under a lock, bytes of the file in
    progress per thread.
    """

    def __init__(self, event: FailoverEvent, job: RestorationJob) -> None:
        self.event = event
        self.job = job
        self.base_done = (
            job.files.filter(state=FileState.DELETED).aggregate(s=Sum("size"))["s"] or 0
        )
        self.files_done = job.files.filter(state=FileState.DELETED).count()
        self.in_file: dict[int, int] = {}  # thread id -> bytes of its current file
        self.copied = 0
        self.started = time.monotonic()
        self.last = 0.0
        self.lock = threading.Lock()
        self.halted = threading.Event()  # a copy failed or the operator stopped it

    def count(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        me = threading.get_ident()
        with self.lock:
            self.in_file[me] = 0
        for chunk in chunks:
            if self.halted.is_set():
                raise RestorationStopped()
            with self.lock:
                self.in_file[me] += len(chunk)
                self.copied += len(chunk)
            self.flush()
            yield chunk

    def file_done(self, size: int, key: int | None = None) -> None:
        with self.lock:
            self.base_done += size
            self.files_done += 1
            self.in_file.pop(threading.get_ident() if key is None else key, None)
        self.flush()

    def progress(self, in_flight: dict[int, int], copied: int) -> None:
        """A direct pull's bytes: of the files in flight, and copied since it started."""
        with self.lock:
            self.in_file = dict(in_flight)
            self.copied = copied
        self.flush()

    def flush(self, force: bool = False) -> None:
        with self.lock:
            now = time.monotonic()
            if not force and now - self.last < PROGRESS_EVERY:
                return
            self.last = now
            elapsed = max(now - self.started, 1e-6)
            bytes_done = min(self.base_done + sum(self.in_file.values()), self.job.bytes_total)
            files_done, rate = self.files_done, self.copied / elapsed
        updated = RestorationJob.objects.filter(
            pk=self.job.pk, state=RestorationState.RUNNING
        ).update(bytes_done=bytes_done, files_done=files_done, rate_bps=rate)
        if not updated or not renew_lease(self.event):
            # Stopped by an operator, or the event moved on (the recording server
            # failed again): the next restoring run resumes where this one stopped.
            self.halted.set()
            raise RestorationStopped()


def stop_restoration(event: FailoverEvent, *, actor: str = SYSTEM) -> int:
    """Stop it; the failover server's recordings from that failover are removed. Returns
    how many files were removed.

    The stop is one compare-and-set on the event and the job together: a worker that is
    copying finds the job stopped at its next write (see `while_restoring`) and writes
    nothing more to either. Then every source is purged and the timeline says exactly
    how many files each removed, and which it could not remove, and why.
    """
    event.refresh_from_db()
    with transaction.atomic():
        if not transition(
            event,
            EventState.RESTORATION_STOPPED,
            from_states=[EventState.RESTORING],
            actor=actor,
            reason="Restoration stopped; the recordings left on the failover server are removed.",
        ):
            raise FailoverError("This event is not restoring recordings.")
        RestorationJob.objects.filter(event=event).exclude(state=RestorationState.COMPLETED).update(
            state=RestorationState.STOPPED, finished_at=timezone.now(), rate_bps=0
        )
    deleted = 0
    for server in sources(event):  # every failover server that recorded for it
        try:
            report = client_for(server).purge_failover_report(event.node_tag)
        except NodeError as exc:
            note(event, f"Could not remove the files from {server.name}: {exc}", actor=actor)
            continue
        deleted += report["deleted"]
        text = f"Removed {report['deleted']} file(s) from {server.name}"
        if report["failed"]:
            text += (
                f"; {report['failed']} could not be removed and are still there "
                f"({report['error'] or 'no reason given'})"
            )
        else:
            text += "; none is left there"
        note(event, text + ".", actor=actor)
    return deleted


def _fail(event: FailoverEvent, job: RestorationJob, reason: str) -> None:
    RestorationJob.objects.filter(
        pk=job.pk, state__in=[RestorationState.PENDING, RestorationState.RUNNING]
    ).update(state=RestorationState.FAILED, last_error=reason, finished_at=timezone.now())
    transition(event, EventState.FAILED, from_states=[EventState.RESTORING], reason=reason)
