"""Restoring the recordings and snapshots taken during a failover.

Files are streamed from the failover node to the recording node in chunks (memory
stays flat whatever the size); the recording node verifies size and sha256 before
it keeps a file; only then is the file deleted from the failover node. Each
file's progress is in the database and each upload is resumable on the node, so
a restoration interrupted by a dead worker or a dead node continues where it
stopped without copying finished files again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import F, Sum
from django.utils import timezone

from cms.nodes.client import client_for
from cms.nodes.errors import NodeBadResponse, NodeError

from .choices import EventState, FileState, RestorationState
from .engine import on_behalf_of
from .events import FREE_LEASE, SYSTEM, note, renew_lease, transition
from .models import FailoverEvent, RestorationFile, RestorationJob

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
PROGRESS_EVERY = 0.5  # seconds between progress writes


class RestorationStopped(Exception):
    """The operator stopped the restoration while a file was being copied."""


def target_path(path: str, obo_id: str) -> str:
    """failover/<obo>/<camera>/... on the failover node -> own/<camera>/... on the target."""
    prefix = f"failover/{obo_id}/"
    if not path.startswith(prefix):
        raise NodeBadResponse(f"unexpected path {path!r} for {obo_id}")
    return "own/" + path[len(prefix) :]


def restore(event: FailoverEvent) -> bool:
    """Copy, verify, delete; True when the event is done restoring."""
    job, _ = RestorationJob.objects.get_or_create(
        event=event, defaults={"target_server": event.replacement or event.recording_server}
    )
    if job.state in (RestorationState.STOPPED, RestorationState.COMPLETED):
        return job.state == RestorationState.COMPLETED
    if event.failover_server is None or job.target_server is None:
        _fail(event, job, "The failover server or the target server was removed.")
        return False
    source = client_for(event.failover_server)
    target = client_for(job.target_server)
    obo_id = on_behalf_of(event)["id"]
    try:
        if job.started_at is None:
            _take_inventory(job, source, obo_id)
        RestorationJob.objects.filter(pk=job.pk, state=RestorationState.PENDING).update(
            state=RestorationState.RUNNING
        )
        _copy_all(event, job, source, target, obo_id)
    except RestorationStopped:
        return False
    except NodeError as exc:
        # Leave the job running and the lease free: the resume task tries again soon.
        RestorationJob.objects.filter(pk=job.pk).update(last_error=str(exc), errors=F("errors") + 1)
        FailoverEvent.objects.filter(pk=event.pk).update(worked_at=FREE_LEASE, last_error=str(exc))
        note(event, f"Restoration interrupted, will resume: {exc}")
        return False

    finished = RestorationJob.objects.filter(pk=job.pk, state=RestorationState.RUNNING).update(
        state=RestorationState.COMPLETED, finished_at=timezone.now(), last_error=""
    )
    if not finished:
        return False
    done_state = EventState.REPLACED if event.replacement_id else EventState.COMPLETED
    job.refresh_from_db()
    return transition(
        event,
        done_state,
        from_states=[EventState.RESTORING],
        reason=f"Restored {job.files_done} file(s), {job.bytes_done} bytes",
    )


def _take_inventory(job: RestorationJob, source: Any, obo_id: str) -> None:
    items = list(source.list_recordings(origin="failover", on_behalf_of=obo_id))
    RestorationFile.objects.bulk_create(
        [
            RestorationFile(
                job=job,
                path=item["path"],
                kind=item.get("kind", "recording"),
                camera=item.get("camera", ""),
                size=int(item["size"]),
                sha256=item["sha256"],
            )
            for item in items
        ],
        ignore_conflicts=True,
    )
    totals = job.files.aggregate(n=Sum(1), size=Sum("size"))
    RestorationJob.objects.filter(pk=job.pk).update(
        files_total=job.files.count(),
        bytes_total=totals["size"] or 0,
        started_at=timezone.now(),
    )
    job.refresh_from_db()


def _copy_all(
    event: FailoverEvent, job: RestorationJob, source: Any, target: Any, obo_id: str
) -> None:
    meter = _Meter(event, job)
    for item in job.files.exclude(state=FileState.DELETED).order_by("pk").iterator():
        if item.state == FileState.PENDING:
            _copy_one(item, source, target, obo_id, meter)
            RestorationFile.objects.filter(pk=item.pk).update(state=FileState.VERIFIED)
        source.delete_file(item.path)  # only after the target verified it
        RestorationFile.objects.filter(pk=item.pk).update(state=FileState.DELETED)
        meter.file_done(item.size)
    meter.flush(force=True)


def _copy_one(item: RestorationFile, source: Any, target: Any, obo_id: str, meter: _Meter) -> None:
    downloads: list[Any] = []

    def chunks_from(offset: int) -> Iterable[bytes]:
        download = source.open_download(item.path, offset, etag=item.sha256)
        downloads.append(download)
        if download.offset != offset:
            raise NodeBadResponse(f"{item.path} changed on the failover server")
        return meter.count(download.chunks(CHUNK))

    try:
        target.upload(
            target_path(item.path, obo_id),
            chunks_from,
            item.size,
            item.sha256,
            kind=item.kind,
            camera=item.camera or "unknown",
            origin="own",
        )
    finally:
        for download in downloads:
            download.close()


class _Meter:
    """Progress in the database every half second: bytes, files, rate; and the stop check."""

    def __init__(self, event: FailoverEvent, job: RestorationJob) -> None:
        self.event = event
        self.job = job
        self.base_done = (
            job.files.filter(state=FileState.DELETED).aggregate(s=Sum("size"))["s"] or 0
        )
        self.files_done = job.files.filter(state=FileState.DELETED).count()
        self.in_file = 0
        self.copied = 0
        self.started = time.monotonic()
        self.last = 0.0

    def count(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        self.in_file = 0
        for chunk in chunks:
            self.in_file += len(chunk)
            self.copied += len(chunk)
            self.flush()
            yield chunk

    def file_done(self, size: int) -> None:
        self.base_done += size
        self.files_done += 1
        self.in_file = 0
        self.flush()

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < PROGRESS_EVERY:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-6)
        updated = RestorationJob.objects.filter(
            pk=self.job.pk, state=RestorationState.RUNNING
        ).update(
            bytes_done=min(self.base_done + self.in_file, self.job.bytes_total),
            files_done=self.files_done,
            rate_bps=self.copied / elapsed,
        )
        if not updated:
            raise RestorationStopped()
        renew_lease(self.event)


def stop_restoration(event: FailoverEvent, *, actor: str = SYSTEM) -> int:
    """Stop it; the failover server's recordings from that failover are removed."""
    event.refresh_from_db()
    job = getattr(event, "restoration", None)
    if not transition(
        event,
        EventState.RESTORATION_STOPPED,
        from_states=[EventState.RESTORING],
        actor=actor,
        reason="Restoration stopped; the recordings left on the failover server are removed.",
    ):
        from .engine import FailoverError

        raise FailoverError("This event is not restoring recordings.")
    if job is not None:
        RestorationJob.objects.filter(pk=job.pk).exclude(state=RestorationState.COMPLETED).update(
            state=RestorationState.STOPPED, finished_at=timezone.now()
        )
    deleted = 0
    if event.failover_server is not None:
        try:
            deleted = client_for(event.failover_server).purge_failover(on_behalf_of(event)["id"])
            note(event, f"Removed {deleted} file(s) from the failover server.", actor=actor)
        except NodeError as exc:
            note(event, f"Could not remove the files from the failover server: {exc}", actor=actor)
    return deleted


def _fail(event: FailoverEvent, job: RestorationJob, reason: str) -> None:
    RestorationJob.objects.filter(pk=job.pk).update(
        state=RestorationState.FAILED, last_error=reason, finished_at=timezone.now()
    )
    transition(event, EventState.FAILED, from_states=[EventState.RESTORING], reason=reason)
