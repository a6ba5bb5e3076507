"""Health probing: every enabled server, concurrently, once per probe interval.

Probing measures; it decides nothing. A cycle's results go to the engine's one entry
point for probes (engine.after_probe_cycle), which answers with the events a worker
should advance now; the probe task enqueues those.

The database is written when something changes, not on every probe: counters
saturate at the thresholds (a server that has been fine for a week does not
count its millionth success), and last-seen is refreshed at a coarse grain.

One server never stops the others: a node that answers against the protocol gets
the bad-answer status with the reason, and an unexpected fault while handling one
server (its target, its result, its decisions, its snapshot) is logged and confined
to that server; the rest of the cycle goes on.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field, replace

from django.db import connection, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from cms import alerts
from cms.alerts.kinds import Kind
from cms.inventory.choices import ConnectionType, HealthStatus, Role
from cms.inventory.models import Server
from cms.inventory.secrets import Secret
from cms.nodes.directory import resolve
from cms.nodes.errors import NodeError
from cms.nodes.prober import HealthResult, Target, prober
from protocol.messages import Config, Health, Info

from . import engine, standby
from .models import ConfigSnapshot, FailoverEvent, FailoverSettings, ProbeShard, TeamSettings
from .shards import Shard

log = logging.getLogger(__name__)

LAST_SEEN_GRAIN = dt.timedelta(seconds=60)
HEALTH_FIELDS = [
    "status",
    "consecutive_failures",
    "consecutive_successes",
    "last_seen",
    "last_error",
    "latency_ms",
    "model",
    "serial",
    "software_version",
    "lan_address",
    "cms_mode",
    "locked",
]


@dataclass
class ProbeResult:
    server_id: int
    status: str
    latency_ms: float | None = None
    error: str = ""
    health: Health | None = None
    info: Info | None = None  # what the node says it is, read once


@dataclass
class CycleReport:
    ran: bool
    probed: int = 0
    written: int = 0
    changed: list[int] = field(default_factory=list)
    seconds: float = 0.0
    claimed_at: dt.datetime | None = None  # when its slot was claimed (the clock it used)
    wake: list[int] = field(default_factory=list)  # events a worker should advance now
    identity_changed: list[Server] = field(default_factory=list)  # newly, this cycle


def classify(health: Health) -> str:
    """A node's own (validated) health report, as one status."""
    if health.volume.state == "crashed":
        return HealthStatus.VOLUME_ABNORMAL
    if health.service.state != "running":
        return HealthStatus.SERVICE_ABNORMAL
    return HealthStatus.NORMAL


def target_for(server: Server) -> Target | None:
    """How to reach `server` now; None when a QuickConnect ID resolves to nothing."""
    if server.connection_type == ConnectionType.QUICKCONNECT:
        try:
            host, port = resolve(server.quickconnect_id)
        except NodeError:
            return None
        https = False
    else:
        host, port, https = server.host, server.port, server.use_https
    return Target(
        key=server.pk, host=host, port=port, https=https,
        username=server.admin_username or "admin", password=_revealed(server.admin_password),
        fingerprint=server.tls_fingerprint, want_info=not server.model, serial=server.serial,
        scram_cache=server.scram_cache or None, session=server.node_session or None,
    )  # fmt: skip


# Ciphertext -> password, for this process: decrypting every server's password at every
# cycle cost more than probing it. A changed password is new ciphertext, so a new entry.
_passwords: dict[str, str] = {}
_PASSWORDS_KEPT = 200_000


def _revealed(secret: Secret) -> str:
    if not secret:
        return ""
    token = secret.token()
    password = _passwords.get(token)
    if password is None:
        if len(_passwords) >= _PASSWORDS_KEPT:
            _passwords.clear()
        password = _passwords[token] = secret.reveal()
    return password


_STATUS_FOR_ERROR = {
    "certificate_changed": HealthStatus.CERTIFICATE_CHANGED,
    "identity_changed": HealthStatus.IDENTITY_CHANGED,
    "auth_failed": HealthStatus.AUTH_FAILED,
    "bad_answer": HealthStatus.BAD_ANSWER,
}


def to_probe_result(result: HealthResult) -> ProbeResult | None:
    """The prober's result as a status; None when the prober itself failed (the server
    keeps its status: a fault of the CMS says nothing about the node)."""
    if result.error == "internal":
        return None
    if result.answer is None:
        status = _STATUS_FOR_ERROR.get(result.error, HealthStatus.DISCONNECTED)
        return ProbeResult(result.key, status, error=result.message)
    status = classify(result.answer)
    error = "" if status == HealthStatus.NORMAL else _describe(result.answer)
    return ProbeResult(result.key, status, result.latency_ms, error, result.answer, result.info)


def probe_servers(
    servers: list[Server], timeout: float, timeouts: dict[int, float] | None = None
) -> list[ProbeResult | None]:
    """Probe all at once through the process's long-lived prober; None for a server that
    could not be probed because of a fault on this side (logged). `timeouts` gives some
    servers (by pk) a deadline of their own: one batch still, so a team with a long
    timeout never delays another team's results."""
    targets: dict[int, Target | None] = {}
    unreadable: dict[int, ProbeResult] = {}
    for server in servers:
        try:
            target = target_for(server)
            if target is not None and timeouts and server.pk in timeouts:
                target = replace(target, timeout=timeouts[server.pk])
            targets[server.pk] = target
        except Exception:  # e.g. a password no configured key decrypts
            log.exception("server %s (%s): cannot build its probe", server.pk, server.name)
            unreadable[server.pk] = ProbeResult(
                server.pk, HealthStatus.AUTH_FAILED,
                error="the stored credentials cannot be read (see the CMS log)",
            )  # fmt: skip
    reachable = [t for t in targets.values() if t is not None]
    by_key = {r.key: r for r in prober().probe_all(reachable, timeout)} if reachable else {}
    keep_login_state("scram_cache", {k: r.scram_cache for k, r in by_key.items() if r.scram_cache})
    keep_login_state("node_session", {k: r.session for k, r in by_key.items() if r.session})
    results: list[ProbeResult | None] = []
    for server in servers:
        if server.pk in unreadable:
            results.append(unreadable[server.pk])
            continue
        if targets[server.pk] is None:
            results.append(ProbeResult(server.pk, HealthStatus.DISCONNECTED,
                                       error="QuickConnect ID not registered"))  # fmt: skip
            continue
        found = by_key[server.pk]
        if found.fingerprint and not server.tls_fingerprint and server.use_https:
            # first contact: pin what was seen, unless another process pinned first
            Server.objects.filter(pk=server.pk, tls_fingerprint="").update(
                tls_fingerprint=found.fingerprint
            )
        results.append(to_probe_result(found))
    return results


def _describe(health: Health) -> str:
    return f"volume {health.volume.state}, surveillance service {health.service.state}"


def apply_result(
    server: Server, result: ProbeResult, settings: FailoverSettings, now: dt.datetime
) -> bool:
    """Update the server's health fields in memory; True if they need writing."""
    before = tuple(getattr(server, f) for f in HEALTH_FIELDS)
    # Unreachable from the CMS (its failover servers reached it) and still not answering
    # the CMS: the same failure goes on, its count too.
    still_unreachable = (
        server.status == HealthStatus.UNREACHABLE_FROM_CMS
        and result.status == HealthStatus.DISCONNECTED
    )
    if result.status == HealthStatus.NORMAL:
        server.consecutive_successes = min(
            server.consecutive_successes + 1, settings.successes_before_recovery
        )
        server.consecutive_failures = 0
    else:
        if result.status != server.status and not still_unreachable:
            server.consecutive_failures = 0  # a different failure starts a new count
        server.consecutive_failures = min(
            server.consecutive_failures + 1, settings.failures_before_failover
        )
        server.consecutive_successes = 0
    if still_unreachable:
        # Keeps its status and the second opinion's words: the gates ask the failover
        # servers again this cycle, and fail it over once they no longer reach it.
        return tuple(getattr(server, f) for f in HEALTH_FIELDS) != before
    server.status = result.status
    server.last_error = result.error[:1000]
    if result.info:
        server.model = result.info.model[:64]
        # The identity is read once (a server added before its node could be reached);
        # run_cycle keeps a node that is another server already from being taken twice.
        server.serial = server.serial or result.info.serial[:64]
        server.software_version = result.info.version[:32]
        server.lan_address = (result.info.lan or [""])[0][:262]
        server.locked = bool(result.info.locked)
    if result.health is not None:
        server.cms_mode = result.health.cms_mode or server.cms_mode
        if _last_seen_due(server, now):
            server.last_seen = now
    changed = tuple(getattr(server, f) for f in HEALTH_FIELDS) != before
    if changed and result.latency_ms is not None:
        server.latency_ms = result.latency_ms  # rides along; never a reason to write by itself
    return changed


def _last_seen_due(server: Server, now: dt.datetime) -> bool:
    """Once a minute per server, each at its own second, so writes do not come in waves."""
    if server.last_seen is None:
        return True
    grain = LAST_SEEN_GRAIN.total_seconds()
    phase = server.pk % int(grain)
    return (now.timestamp() + phase) // grain != (server.last_seen.timestamp() + phase) // grain


def write_health(servers: list[Server]) -> None:
    """Write the health columns of `servers` in one statement batch.

    bulk_update builds one CASE expression per column over every row, which costs
    seconds for thousands of rows; one UPDATE per row through executemany does not.
    """
    if not servers:
        return
    fields = [Server._meta.get_field(name) for name in HEALTH_FIELDS]
    table = connection.ops.quote_name(Server._meta.db_table)
    assignments = ", ".join(f"{connection.ops.quote_name(f.column)} = %s" for f in fields)
    rows = [
        [f.get_db_prep_save(getattr(server, f.attname), connection) for f in fields] + [server.pk]
        for server in servers
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(f"UPDATE {table} SET {assignments} WHERE id = %s", rows)  # noqa: S608


def keep_login_state(column_name: str, blobs: dict[int, str]) -> None:
    """Store what the logins got, encrypted: the SaltedPasswords (`scram_cache`), so the
    next process logs in without PBKDF2, and the session tokens (`node_session`), so it
    probes at once. A failure costs a login later, no more."""
    if not blobs:
        return
    field = Server._meta.get_field(column_name)
    table = connection.ops.quote_name(Server._meta.db_table)
    column = connection.ops.quote_name(field.column)
    rows = [[field.get_db_prep_save(blob, connection), pk] for pk, blob in blobs.items()]
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(f"UPDATE {table} SET {column} = %s WHERE id = %s", rows)  # noqa: S608
    except Exception:
        log.exception("the login state of %s servers was not kept", len(rows))


def _slot(settings: FailoverSettings, now: dt.datetime) -> tuple[dt.datetime, int]:
    interval = max(int(settings.probe_interval), 1)
    return dt.datetime.fromtimestamp(now.timestamp() // interval * interval, tz=dt.UTC), interval


def _unclaimed(field: str, slot: dt.datetime, interval: int) -> Q:
    return (
        Q(**{f"{field}__isnull": True})
        | Q(**{f"{field}__lt": slot})
        | Q(**{f"{field}__gt": slot + dt.timedelta(seconds=interval)})
    )


def claim_shard(settings: FailoverSettings, shard: Shard, now: dt.datetime) -> bool:
    """claim_cycle for one shard of `settings`' servers: the first task of a slot for
    the shard wins it, on any worker; a shard never seen before gets its row first."""
    slot, interval = _slot(settings, now)
    for _ in (1, 2):
        claimed = (
            ProbeShard.objects.filter(settings=settings, shard=shard.index)
            .filter(_unclaimed("last_cycle_at", slot, interval))
            .update(last_cycle_at=slot)
        )
        if claimed:
            return True
        if ProbeShard.objects.filter(settings=settings, shard=shard.index).exists():
            return False
        ProbeShard.objects.bulk_create(
            [ProbeShard(settings=settings, shard=shard.index)], ignore_conflicts=True
        )
    return False


def claim_cycle(settings: FailoverSettings, now: dt.datetime) -> bool:
    """One probe cycle per interval, whatever the number of beats, workers or their phase.

    Time is cut into slots of one interval (on the epoch, so every process cuts it the
    same way); the cycle of a slot is claimed by compare-and-set of the slot's start,
    and the first tick of a slot wins it. A clock set back by more than an interval
    starts counting again from the new time, rather than waiting for the old one.
    """
    slot, interval = _slot(settings, now)
    return bool(
        FailoverSettings.objects.filter(pk=settings.pk)
        .filter(_unclaimed("last_probe_cycle_at", slot, interval))
        .update(last_probe_cycle_at=slot)
    )


def run_cycle(*, force: bool = False, shard: Shard | None = None) -> CycleReport:
    """Probe the servers whose team's probe interval is due (each team's settings, or
    the defaults, claim their own slots); `force` probes every enabled server. With a
    `shard`, only that shard's servers, claimed per shard (shards.py)."""
    started = time.monotonic()
    settings = TeamSettings.load()
    now = timezone.now()
    if shard is None:
        due = {row.pk for row in settings.rows() if force or claim_cycle(row, now)}
    else:
        due = {row.pk for row in settings.rows() if force or claim_shard(row, shard, now)}
    if not due:
        return CycleReport(ran=False)
    enabled = Server.objects.filter(enabled=True)
    if shard is not None:
        enabled = shard.servers(enabled)
    servers = [server for server in enabled if settings.of(server.team_id).pk in due]
    report = CycleReport(ran=True, probed=len(servers), claimed_at=now)
    results = probe_by_timeout(servers, settings)
    dirty = []
    by_id: dict[int, tuple[Server, ProbeResult]] = {}
    unread = {s.pk for s in servers if not s.serial}
    taken: set[str] | None = None  # every serial stored, read once if a new one comes
    for server, result in zip(servers, results, strict=True):
        if result is None:
            continue
        try:
            was = server.status
            changed = apply_result(server, result, settings.of(server.team_id), now)
            if server.status == HealthStatus.IDENTITY_CHANGED != was:
                report.identity_changed.append(server)
            if server.pk in unread and server.serial:
                if taken is None:
                    stored = Server.objects.exclude(serial="").values_list("serial", flat=True)
                    taken = set(stored)
                if server.serial in taken:  # already a server (or two rows, one node)
                    server.serial = ""
                taken.add(server.serial)
            if changed:
                dirty.append(server)
        except Exception:
            log.exception("server %s (%s): its probe result was not applied", server.pk,
                          server.name)  # fmt: skip
            server.refresh_from_db()  # nothing half-applied is written or decided on
            continue
        by_id[server.pk] = (server, result)
    write_health(dirty)
    _alert_identity_changed(report.identity_changed)
    report.written = len(dirty)
    report.changed = [s.pk for s in dirty]
    stale = stale_snapshots(by_id, shard)
    try:
        decided = [server for server, _ in by_id.values()]
        report.wake = engine.after_probe_cycle(decided, settings, timezone.now(), shard=shard)
    finally:
        # Before the refresh: a version stored now is synced by its own task, so this
        # cycle does not also count it as drift.
        check_standby(by_id)
        refresh_snapshots(stale)
    report.seconds = time.monotonic() - started
    return report


def _alert_identity_changed(servers: list[Server]) -> None:
    for server in servers:
        alerts.notify(
            server.team_id, Kind.IDENTITY_CHANGED, f"Identity changed: {server.name}",
            f"{server.name} ({server.address}) answers as another device: {server.last_error}",
        )  # fmt: skip


def probe_by_timeout(servers: list[Server], settings: TeamSettings) -> list[ProbeResult | None]:
    """probe_servers() with each server's team's probe timeout, all in one batch."""
    timeouts = {server.pk: settings.of(server.team_id).probe_timeout for server in servers}
    if not servers:
        return []
    return probe_servers(servers, max(timeouts.values()), timeouts)


def stale_snapshots(
    by_id: dict[int, tuple[Server, ProbeResult]], shard: Shard | None = None
) -> list[Server]:
    """Protected recording servers without an open event that answer normally with a
    configuration version other than the last snapshot's: a failover needs their
    configuration as it is now (an open event keeps the copy it took). With a `shard`,
    only that shard's rows are read."""
    recording = Server.objects.filter(role=Role.RECORDING, protections__isnull=False)
    events = FailoverEvent.objects.open()
    if shard is not None:
        recording = shard.servers(recording)
        events = shard.of(events, "recording_server_id")
    protected = set(recording.values_list("pk", flat=True)) - set(
        events.values_list("recording_server_id", flat=True)
    )
    # Only the newest version per server: the snapshot history grows, this query must not.
    newest = ConfigSnapshot.objects.filter(server=OuterRef("pk")).order_by("-taken_at", "-pk")
    latest_versions = dict(
        Server.objects.filter(pk__in=protected)
        .annotate(version=Subquery(newest.values("version")[:1]))
        .values_list("pk", "version")
    )
    stale = []
    for server_id, (server, result) in by_id.items():
        if (
            server_id in protected
            and server.role == Role.RECORDING
            and result.status == HealthStatus.NORMAL
            and result.health is not None
        ):
            reported = result.health.config_version
            if reported is None or str(reported) != latest_versions.get(server_id):
                stale.append(server)
    return stale


def check_standby(by_id: dict[int, tuple[Server, ProbeResult]]) -> None:
    """Failover servers whose /health says they hold other standby configurations than
    their protections want are reconciled by a worker (failover/standby.py). Never
    fails the cycle: the standby copies are a speed-up, not a dependency."""
    reported = {
        pk: dict(result.health.standby)
        for pk, (server, result) in by_id.items()
        if server.role == Role.FAILOVER
        and result.status == HealthStatus.NORMAL
        and result.health is not None
        and result.health.standby is not None  # None: an older agent holds none
    }
    try:
        standby.after_drift(standby.drifted(reported))
    except Exception:
        log.exception("the standby configurations' drift check failed")


def refresh_snapshots(servers: list[Server]) -> None:
    """Read the changed configurations, all at once through the prober's connections
    and tokens (a cold start reads them all), and store the new versions; the failover
    servers protecting them are then given the new versions (failover/standby.py)."""
    if not servers:
        return
    targets = []
    for server in servers:
        try:
            target = target_for(server)
        except Exception:
            log.exception("server %s (%s): cannot build its probe", server.pk, server.name)
            continue
        if target is not None:
            targets.append(target)
    settings = TeamSettings.load()
    timeout = max(settings.of(server.team_id).probe_timeout for server in servers)
    by_pk = {s.pk: s for s in servers}
    snapshots = []
    for result in prober().probe_all(targets, timeout * 2, path="/config"):
        if not isinstance(result.answer, Config):
            log.warning("could not read the configuration of %s: %s",
                        by_pk[result.key].name, result.message)  # fmt: skip
            continue
        config = result.answer.to_json()
        version = str(config["version"])
        snapshot = {"version": version, "cameras": config["cameras"]}
        snapshots.append(ConfigSnapshot(server_id=result.key, version=version, config=snapshot))
    stored = _store_snapshots(snapshots, by_pk)
    try:
        standby.after_snapshots(stored)
    except Exception:  # the drift check sends them later
        log.exception("the new configurations were not handed to their failover servers")


def _store_snapshots(snapshots: list[ConfigSnapshot], by_pk: dict[int, Server]) -> list[int]:
    """All at once; if that fails, one by one, so one bad row does not lose the others.
    Returns the servers whose snapshot was stored."""
    try:
        with transaction.atomic():
            ConfigSnapshot.objects.bulk_create(snapshots, ignore_conflicts=True, batch_size=500)
        return [s.server_id for s in snapshots]
    except Exception:
        log.exception("storing %s configuration snapshots at once failed", len(snapshots))
    stored = []
    for snapshot in snapshots:
        try:
            with transaction.atomic():
                ConfigSnapshot.objects.bulk_create([snapshot], ignore_conflicts=True)
            stored.append(snapshot.server_id)
        except Exception:
            log.exception("the configuration snapshot of %s was not stored",
                          by_pk[snapshot.server_id].name)  # fmt: skip
    return stored
