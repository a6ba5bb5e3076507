"""The capacity planner: can the failover servers carry what they protect?

Each failover server's capacity is read from its node (`/health`'s `capacity`: the most
cameras it records at once, and the cameras its licenses cover); what a recording server
needs is the camera count of its last configuration snapshot, the one a takeover pushes.

- `capacity_table()`: every protected recording server with its protectors, and whether
  at least one of them can carry it whole. A node refuses a takeover bigger than its room
  (409 `over_capacity`), so a server none can carry is not failed over at all.
- `what_if()`: "if these recording servers fail at once, who covers whom". It asks the
  engine's own `engine.candidates()` (enabled, healthy, idle, in protection order) for
  each failed server, in the order a probe cycle opens their events (the servers' list
  order; workers running side by side may take them in another), and takes the first
  whose capacity fits, as the engine ends up doing when the nodes refuse the others.
  The events it needs so that a claimed server counts as busy for the next are written
  inside a transaction that is always rolled back.
- `protection_warnings()`: what to confirm before saving protections that cannot carry
  their recording server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django import db
from django.db import transaction

from cms.inventory.choices import HealthStatus, Role
from cms.inventory.models import Server
from cms.nodes.client import client_for
from cms.nodes.errors import NodeError
from cms.nodes.transport import deadline

from . import engine
from .choices import EventState, Trigger
from .models import ConfigSnapshot, FailoverEvent, Protection

log = logging.getLogger(__name__)

# Seconds to read one node's capacity; the nodes are asked side by side.
READ_SECONDS = 3.0
READERS = 8


@dataclass(frozen=True)
class Capacity:
    """What a failover server can take; `cameras` None: unknown (with the reason)."""

    cameras: int | None
    licensed_cameras: int | None = None
    unknown_because: str = ""

    def fits(self, cameras: int | None) -> bool | None:
        """Whether `cameras` fit whole; None when either side is unknown."""
        if self.cameras is None or cameras is None:
            return None
        return cameras <= self.cameras

    def describe(self) -> str:
        if self.cameras is None:
            return f"capacity unknown ({self.unknown_because})"
        return f"{self.cameras} camera{'' if self.cameras == 1 else 's'}"


def _unreadable(server: Server) -> Capacity | None:
    """The capacity of a server the engine would not choose anyway, without asking it."""
    if not server.enabled:
        return Capacity(None, unknown_because="disabled")
    if server.status != HealthStatus.NORMAL:
        return Capacity(None, unknown_because=server.get_status_display().lower())
    return None


def _ask(client: Any) -> Capacity:
    try:
        with deadline(READ_SECONDS):
            found = client.health().get("capacity")
    except NodeError as exc:
        return Capacity(None, unknown_because=str(exc)[:200])
    finally:
        db.connections.close_all()  # this thread's, if the client used one
    if not found:
        return Capacity(None, unknown_because="its agent does not report it")
    return Capacity(found["cameras"], found.get("licensed_cameras"))


def read_capacities(servers: Iterable[Server]) -> dict[int, Capacity]:
    """Every failover server's capacity by id, read from its node side by side: one slow
    node costs its own READ_SECONDS, never the others'."""
    found: dict[int, Capacity] = {}
    clients = {}
    for server in servers:
        known = _unreadable(server)
        if known is not None:
            found[server.pk] = known
            continue
        try:
            clients[server.pk] = client_for(server)  # here: it may read the database
        except NodeError as exc:
            found[server.pk] = Capacity(None, unknown_because=str(exc)[:200])
    if clients:
        with ThreadPoolExecutor(max_workers=min(READERS, len(clients))) as pool:
            found.update(zip(clients, pool.map(_ask, clients.values()), strict=True))
    return found


def camera_counts(recording_ids: Iterable[int]) -> dict[int, int]:
    """Each recording server's cameras in its latest configuration snapshot (servers
    with no snapshot yet are left out: nothing could be pushed for them)."""
    counts: dict[int, int] = {}
    for snapshot in ConfigSnapshot.objects.filter(server_id__in=list(recording_ids)).order_by(
        "server_id", "-taken_at", "-pk"
    ):
        counts.setdefault(snapshot.server_id, snapshot.camera_count)
    return counts


# -- the table ------------------------------------------------------------------------


@dataclass
class Protector:
    server: Server
    capacity: Capacity
    fits: bool | None


@dataclass
class Row:
    """A protected recording server and what could carry it."""

    server: Server
    cameras: int | None
    protectors: list[Protector] = field(default_factory=list)

    @property
    def carried(self) -> bool | None:
        """True: some protector carries it whole; False: none does; None: not known
        (no snapshot, or a capacity that could not be read and no one that fits)."""
        fits = [p.fits for p in self.protectors]
        if any(f is True for f in fits):
            return True
        if fits and all(f is False for f in fits):
            return False
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "recording_server": self.server.pk,
            "name": self.server.name,
            "cameras": self.cameras,
            "carried": self.carried,
            "protectors": [
                {
                    "failover_server": p.server.pk,
                    "name": p.server.name,
                    "capacity": p.capacity.cameras,
                    "licensed_cameras": p.capacity.licensed_cameras,
                    "unknown_because": p.capacity.unknown_because,
                    "fits": p.fits,
                }
                for p in self.protectors
            ],
        }


def capacity_table(recording_servers: Iterable[Server]) -> list[Row]:
    """The protected ones of `recording_servers` (already restricted to what the user
    may see), each with its protectors in protection order."""
    servers = {s.pk: s for s in recording_servers if s.role == Role.RECORDING}
    protections = list(
        Protection.objects.filter(recording_server_id__in=list(servers))
        .select_related("failover_server")
        .order_by("priority", "pk")
    )
    failover = {p.failover_server_id: p.failover_server for p in protections}
    capacities = read_capacities(failover.values())
    counts = camera_counts(servers)
    rows: dict[int, Row] = {}
    for p in protections:
        row = rows.setdefault(
            p.recording_server_id,
            Row(servers[p.recording_server_id], counts.get(p.recording_server_id)),
        )
        capacity = capacities[p.failover_server_id]
        row.protectors.append(Protector(p.failover_server, capacity, capacity.fits(row.cameras)))
    return sorted(rows.values(), key=lambda r: r.server.name)


# -- what if these fail at once ----------------------------------------------------------


@dataclass
class Outcome:
    server: Server
    cameras: int | None
    covered_by: Server | None = None
    why: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "recording_server": self.server.pk,
            "name": self.server.name,
            "cameras": self.cameras,
            "covered_by": self.covered_by.pk if self.covered_by else None,
            "covered_by_name": self.covered_by.name if self.covered_by else None,
            "why": self.why,
        }


class _Rollback(Exception):
    """Ends the what-if's transaction: nothing it wrote stays."""


def what_if(failing: Iterable[Server]) -> list[Outcome]:
    """Who covers whom if `failing` (recording servers) fail at once, as the engine would
    choose now; the database is left as it was."""
    # The probe cycle's order (the servers' list order), in which their events open.
    failing = list(Server.objects.filter(pk__in=[s.pk for s in failing], role=Role.RECORDING))
    protecting = Server.objects.filter(
        role=Role.FAILOVER, protects__recording_server__in=[s.pk for s in failing]
    ).distinct()
    capacities = read_capacities(protecting)  # before the transaction: no node call inside
    counts = camera_counts(s.pk for s in failing)
    outcomes: list[Outcome] = []
    try:
        with transaction.atomic():
            for server in failing:
                outcomes.append(_cover(server, counts.get(server.pk), capacities))
            raise _Rollback
    except _Rollback:
        pass
    return outcomes


def _cover(server: Server, cameras: int | None, capacities: dict[int, Capacity]) -> Outcome:
    outcome = Outcome(server, cameras)
    open_event = FailoverEvent.objects.open().filter(recording_server=server).first()
    if open_event is not None:
        outcome.covered_by = open_event.failover_server
        outcome.why = f"already failed over ({open_event.get_state_display().lower()})"
        return outcome
    if not server.enabled:
        outcome.why = "disabled: not probed, so never failed over"
        return outcome
    if cameras is None:
        outcome.why = "no configuration snapshot yet: nothing to push to a failover server"
        return outcome
    if not Protection.objects.filter(recording_server=server).exists():
        outcome.why = "no failover server protects it"
        return outcome
    # The event the probe cycle would open; engine.candidates() counts the servers the
    # events before it claimed as busy.
    event = engine.open_failover(server, Trigger.DISCONNECTED, reason="capacity what-if")
    if event is None:  # opened by the engine meanwhile
        outcome.why = "already failed over"
        return outcome
    refused = []
    for candidate in engine.candidates(event):
        fits = capacities.get(candidate.pk, Capacity(None, unknown_because="not read"))
        if fits.fits(cameras) is False:
            refused.append(f"{candidate.name} has room for {fits.cameras}")
            continue
        FailoverEvent.objects.filter(pk=event.pk).update(
            state=EventState.ACTIVE, failover_server=candidate
        )
        outcome.covered_by = candidate
        outcome.why = (
            f"{candidate.name} ({fits.describe()})"
            if not refused
            else f"{candidate.name}, after {'; '.join(refused)}"
        )
        return outcome
    outcome.why = "; ".join(refused) or "no enabled, healthy and idle failover server left"
    return outcome


# -- before saving protections -------------------------------------------------------------


def protection_warnings(recording_server: Server, failover_servers: Iterable[Server]) -> list[str]:
    """What saving `failover_servers` as `recording_server`'s protectors leaves uncarried:
    empty when one of them can carry its cameras whole (or nothing is known yet)."""
    failover_servers = list(failover_servers)
    cameras = camera_counts([recording_server.pk]).get(recording_server.pk)
    if cameras is None or not failover_servers:
        return []
    capacities = read_capacities(failover_servers)
    fits = [capacities[s.pk].fits(cameras) for s in failover_servers]
    if not all(f is False for f in fits):
        return []
    rooms = ", ".join(f"{s.name}: {capacities[s.pk].describe()}" for s in failover_servers)
    return [
        f"No failover server protecting {recording_server.name} can carry its {cameras} "
        f"cameras whole ({rooms}): if it fails, no failover server takes it over."
    ]
