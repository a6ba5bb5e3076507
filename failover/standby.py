"""Standby configurations: every failover server holds the configurations of the
recording servers it protects, so that a takeover is one short call ("record rs7 at
epoch E, the version V you hold") and not a whole configuration sent at the worst time.

The copy on the failover server is a speed-up, never a dependency: a takeover whose
failover server holds another version, or none, sends the whole configuration as
before (engine._take_over_on). So a failure here is logged, confined to the one
failover server, and left to the next trigger:

* a new configuration snapshot stored by the probe cycle (probing.refresh_snapshots)
  -> sync() of that recording server;
* a protection saved or deleted (any path: admin, API, replace, a script), through
  the model's signals -> sync() of its recording server, or drop() from the failover
  server that no longer protects it;
* drift: a failover server whose /health ``standby`` versions differ from what its
  protections say it should hold, seen in the probe cycle -> reconcile() of that
  failover server, at most once per RESEND_SECONDS while nothing changes.

The triggers enqueue thin tasks by name once the current transaction has committed:
no web request and no probe cycle waits on a node for this.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import OuterRef, Subquery

from cms.celery import app as celery_app
from cms.inventory.choices import Role
from cms.inventory.models import Server
from cms.nodes.client import client_for
from cms.nodes.errors import NodeError
from cms.nodes.transport import deadline

from .models import ConfigSnapshot, Protection

log = logging.getLogger(__name__)

SYNC_TASK = "failover.tasks.sync_standby"
RECONCILE_TASK = "failover.tasks.reconcile_standby"
DROP_TASK = "failover.tasks.drop_standby"
# One failover server's call may take this long: a slow one does not hold up the others.
CALL_SECONDS = 5.0
# Drift that persists (a failover server that refuses, or cannot be reached for this)
# is retried at this pace, not at every probe cycle.
RESEND_SECONDS = 30.0

_drift_sent: dict[int, tuple[float, frozenset[tuple[str, str]]]] = {}


def owner_tag(recording_server_id: int) -> str:
    """The recording server's name on a failover node: the tag its takeovers carry."""
    return f"rs{recording_server_id}"


def latest_snapshot(recording_server_id: int) -> ConfigSnapshot | None:
    return (
        ConfigSnapshot.objects.filter(server_id=recording_server_id)
        .order_by("-taken_at", "-pk")
        .first()
    )


def _protectors(recording_server_id: int) -> list[Server]:
    return [
        p.failover_server
        for p in Protection.objects.filter(recording_server_id=recording_server_id)
        .select_related("failover_server")
        .order_by("priority", "pk")
        if p.failover_server.enabled and p.failover_server.role == Role.FAILOVER
    ]


def push(failover_server: Server, recording_server: Server, snapshot: ConfigSnapshot) -> bool:
    """Put one configuration on one failover server; False (logged) when it failed."""
    try:
        with deadline(CALL_SECONDS):
            client_for(failover_server).put_standby(
                owner_tag(recording_server.pk), recording_server.name[:64], snapshot.config
            )
    except NodeError as exc:
        log.warning("standby configuration of %s not put on %s: %s",
                    recording_server.name, failover_server.name, exc)  # fmt: skip
        return False
    return True


def sync(recording_server: Server) -> int:
    """Put the recording server's latest snapshot on every enabled failover server that
    protects it; returns how many took it. Nothing to put before the first snapshot."""
    if recording_server.role != Role.RECORDING:
        return 0
    snapshot = latest_snapshot(recording_server.pk)
    if snapshot is None:
        return 0
    return sum(push(fs, recording_server, snapshot) for fs in _protectors(recording_server.pk))


def drop(failover_server: Server, recording_server_id: int) -> bool:
    """Have the failover server forget what it holds for a recording server it no longer
    protects; False (logged) when it could not be told (drift tells it later)."""
    try:
        with deadline(CALL_SECONDS):
            client_for(failover_server).delete_standby(owner_tag(recording_server_id))
    except NodeError as exc:
        log.warning("standby configuration of server %s not dropped from %s: %s",
                    recording_server_id, failover_server.name, exc)  # fmt: skip
        return False
    return True


def expected(failover_server_ids: Iterable[int] | None = None) -> dict[int, dict[str, str]]:
    """What each failover server should hold: {failover server id: {owner tag: version}},
    the latest snapshot of every recording server it protects (none before the first)."""
    newest = ConfigSnapshot.objects.filter(server=OuterRef("recording_server")).order_by(
        "-taken_at", "-pk"
    )
    rows = Protection.objects.annotate(version=Subquery(newest.values("version")[:1]))
    if failover_server_ids is not None:
        rows = rows.filter(failover_server_id__in=list(failover_server_ids))
    wanted: dict[int, dict[str, str]] = {}
    for fs_id, rs_id, version in rows.values_list(
        "failover_server_id", "recording_server_id", "version"
    ):
        held = wanted.setdefault(fs_id, {})
        if version is not None:
            held[owner_tag(rs_id)] = version
    return wanted


def reconcile(failover_server: Server) -> tuple[int, int]:
    """Make the failover server hold exactly what its protections say: put what is
    missing or stale, drop what it should not hold; returns (put, dropped)."""
    if not failover_server.enabled or failover_server.role != Role.FAILOVER:
        return 0, 0
    try:
        with deadline(CALL_SECONDS):
            held = {e["id"]: e["version"] for e in client_for(failover_server).list_standby()}
    except NodeError as exc:
        log.warning("standby configurations of %s not read: %s", failover_server.name, exc)
        return 0, 0
    put = dropped = 0
    wanted: set[str] = set()
    protections = Protection.objects.filter(failover_server=failover_server).select_related(
        "recording_server"
    )
    for protection in protections:
        recording = protection.recording_server
        snapshot = latest_snapshot(recording.pk)
        if snapshot is None:
            continue
        wanted.add(owner_tag(recording.pk))
        if held.get(owner_tag(recording.pk)) != snapshot.version:
            put += push(failover_server, recording, snapshot)
    for tag in held.keys() - wanted:
        try:
            with deadline(CALL_SECONDS):
                dropped += client_for(failover_server).delete_standby(tag)
        except NodeError as exc:
            log.warning("standby configuration %s not dropped from %s: %s",
                        tag, failover_server.name, exc)  # fmt: skip
    return put, dropped


# -- triggers ---------------------------------------------------------------------------


def _enqueue(task: str, *args: Any) -> None:
    """After the current transaction commits (at once outside one); a broker that cannot
    take it is logged: the probe cycle's drift check sends it again later."""

    def send() -> None:
        try:
            celery_app.send_task(task, args=list(args))
        except Exception:
            log.exception("could not enqueue %s%s", task, args)

    transaction.on_commit(send)


def after_snapshots(recording_server_ids: Iterable[int]) -> None:
    """New configuration versions were stored: their failover servers get them."""
    for pk in dict.fromkeys(recording_server_ids):
        _enqueue(SYNC_TASK, pk)


def after_protection_saved(protection: Protection) -> None:
    _enqueue(SYNC_TASK, protection.recording_server_id)


def after_protection_deleted(protection: Protection) -> None:
    _enqueue(DROP_TASK, protection.failover_server_id, protection.recording_server_id)


def drifted(reported: dict[int, dict[str, str]], now: float | None = None) -> list[int]:
    """Failover servers whose reported standby versions ({server id: {tag: version}}, from
    this cycle's /health) differ from what they should hold; each is returned again only
    when what it should hold changed, or after RESEND_SECONDS."""
    if not reported:
        return []
    now = time.monotonic() if now is None else now
    wanted = expected(reported)
    out = []
    for pk, held in reported.items():
        should = wanted.get(pk, {})
        if held == should:
            _drift_sent.pop(pk, None)
            continue
        key = frozenset(should.items())
        last = _drift_sent.get(pk)
        if last is not None and last[1] == key and now - last[0] < RESEND_SECONDS:
            continue
        _drift_sent[pk] = (now, key)
        out.append(pk)
    return out


def after_drift(failover_server_ids: Iterable[int]) -> None:
    for pk in failover_server_ids:
        _enqueue(RECONCILE_TASK, pk)
