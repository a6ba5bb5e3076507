"""Replace protected server: the two variants of the product, during a failover.

(a) With the acting failover server: the original recording server leaves the list;
    the failover server becomes the recording server with the same configuration;
    all licenses migrate to it.
(b) With another recording server in normal status: the original leaves the list;
    the failover stops; the chosen server takes the original's configuration and
    name; the original's licenses migrate to it and overwrite those it had.

The nodes are changed first (configuration, licenses, release, mode): if one
refuses or fails part-way, what was already changed on the nodes is put back (the
configuration, licenses, mode and lock as they were; a released takeover resumes
under a new epoch), the database is untouched and the operator sees why. Then one
transaction moves the inventory (undone on the nodes too if it cannot); the
original's licenses are removed from it only after that. Nothing recorded during
the failover is lost: in (a) it stays on the server that now records; in (b) it is
restored to the replacement when restoration is enabled, and otherwise stays on the
failover server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from cms.inventory.choices import HealthStatus, Role
from cms.inventory.licenses import LicenseMovedMeanwhile, record_move
from cms.inventory.models import License, Server
from cms.inventory.validators import name_key
from cms.nodes.client import client_for
from cms.nodes.errors import EpochRefused, NodeError, NodeRefused

from .choices import EventState
from .engine import refresh_snapshot, release_failover_server, wait_until_records, wake
from .errors import FailoverError
from .events import note, transition
from .lifecycle import REPLACEABLE_STATES as REPLACEABLE
from .models import Counter, FailoverEvent, FailoverSettings, Protection


@dataclass
class ReplacePlan:
    """What a replacement will do, to show before the operator confirms."""

    original: str
    replacement: str
    variant: str  # "acting" or "other"
    licenses_moving: list[str]
    licenses_overwritten: list[str]
    renamed: bool
    restore: bool
    # Other recording servers the acting failover server protected: it no longer can.
    losing_protection: list[str] = field(default_factory=list)
    left_unprotected: list[str] = field(default_factory=list)

    def consequences(self) -> list[str]:
        lines = [f"{self.original} is removed from the recording server list."]
        if self.variant == "acting":
            lines.append(
                f"Failover server {self.replacement} becomes a recording server with "
                f"{self.original}'s configuration."
            )
        else:
            lines.append("The failover stops; the failover server goes back to standby.")
            lines.append(
                f"{self.replacement} takes {self.original}'s configuration and is renamed "
                f"{self.original!r}."
            )
            if self.restore:
                lines.append("Recordings made during the failover are restored to it.")
        if self.losing_protection:
            lines.append(
                f"{self.replacement} stops protecting "
                + ", ".join(self.losing_protection)
                + (
                    "; left without any failover server: " + ", ".join(self.left_unprotected)
                    if self.left_unprotected
                    else ""
                )
                + "."
            )
        if self.licenses_moving:
            lines.append("Licenses moving: " + ", ".join(self.licenses_moving) + ".")
        if self.licenses_overwritten:
            lines.append(
                "Licenses overwritten (uninstalled from the replacement): "
                + ", ".join(self.licenses_overwritten)
                + "."
            )
        return lines


def replacement_choices(event: FailoverEvent) -> list[Server]:
    """The acting failover server, then recording servers in normal status of the team."""
    choices = [event.failover_server] if event.failover_server else []
    busy = FailoverEvent.objects.open().values_list("recording_server_id", flat=True)
    choices += list(
        Server.objects.filter(
            role=Role.RECORDING, team_id=event.team_id, enabled=True, status=HealthStatus.NORMAL
        )
        .exclude(pk=event.recording_server_id)
        .exclude(pk__in=busy)
        .order_by("name")
    )
    return choices


def plan(event: FailoverEvent, replacement: Server) -> ReplacePlan:
    event.refresh_from_db()
    if event.state not in REPLACEABLE:
        raise FailoverError(
            f"The event is {event.get_state_display().lower()}: a protected server can be "
            "replaced only while its failover is active."
        )
    original = event.recording_server
    if original is None:
        raise FailoverError("The original recording server was already removed.")
    acting = replacement.pk == event.failover_server_id
    if not acting:
        if replacement.pk not in {s.pk for s in replacement_choices(event)}:
            raise FailoverError(
                f"{replacement.name} cannot replace {original.name}: choose the acting failover "
                "server or an enabled recording server of the same team in normal status "
                "without its own failover."
            )
    elif (
        Server.objects.filter(role=Role.RECORDING, name_key=name_key(replacement.name))
        .exclude(pk=original.pk)
        .exists()
    ):
        raise FailoverError(
            f"A recording server named {replacement.name!r} already exists; rename the failover "
            "server first."
        )
    moving = list(License.objects.filter(server=original).values_list("key", flat=True))
    overwritten = (
        []
        if acting
        else list(License.objects.filter(server=replacement).values_list("key", flat=True))
    )
    losing, unprotected = [], []
    if acting:
        protected = (
            Protection.objects.filter(failover_server=replacement)
            .exclude(recording_server=original)
            .annotate(protectors=Count("recording_server__protections"))
            .values_list("recording_server__name", "protectors")
            .order_by("recording_server__name")
        )
        for name, protectors in protected:
            losing.append(name)
            if protectors == 1:  # this failover server was its only one
                unprotected.append(name)
    return ReplacePlan(
        original=original.name,
        replacement=replacement.name,
        variant="acting" if acting else "other",
        licenses_moving=moving,
        licenses_overwritten=overwritten,
        renamed=not acting,
        restore=not acting and FailoverSettings.for_team(event.team_id).restore_recordings,
        losing_protection=losing,
        left_unprotected=unprotected,
    )


def replace_protected_server(
    event: FailoverEvent, replacement: Server, *, actor: str
) -> ReplacePlan:
    the_plan = plan(event, replacement)
    if not event.config:
        raise FailoverError("The failover has no configuration snapshot to hand over.")
    if the_plan.variant == "acting":
        _replace_with_acting(event, replacement, the_plan, actor)
    else:
        _replace_with_other(event, replacement, the_plan, actor)
    return the_plan


def _licenses_of(server: Server) -> list[License]:
    return list(License.objects.filter(server=server).order_by("key"))


class _Undo:
    """What a replace has changed on the nodes so far, to put back when a later step
    fails or is refused: a replace is all or nothing on the nodes too."""

    def __init__(self, event: FailoverEvent, actor: str) -> None:
        self.event = event
        self.actor = actor
        self.steps: list[tuple[str, Callable[[], object]]] = []

    def add(self, what: str, step: Callable[[], object]) -> None:
        self.steps.append((what, step))

    def run(self) -> str:
        """Undo in reverse order; says what was put back, and what could not be."""
        if not self.steps:
            return "Nothing was changed."
        failed = []
        for what, step in reversed(self.steps):
            try:
                step()
            except (NodeError, TimeoutError) as exc:
                failed.append(f"{what} ({exc})")
        self.steps.clear()
        if not failed:
            return "What it had changed on the servers was put back; nothing was replaced."
        text = "Nothing was replaced, but this could not be put back: " + "; ".join(failed)
        note(self.event, text, actor=self.actor)
        return text


def _take_over_again(event: FailoverEvent, server: Server, client: Any, actor: str) -> None:
    """Undo a release: the failover server records for the event again, under a new epoch
    (the released one is spent on the node)."""
    epoch = Counter.next("epoch")
    if not FailoverEvent.objects.filter(
        pk=event.pk, state__in=REPLACEABLE, failover_server=server
    ).update(epoch=epoch):
        return  # ended or handed on meanwhile: whoever did it told the server to stop
    event.epoch = epoch
    owner = {"id": event.node_tag, "name": event.recording_server_name[:64]}
    client.takeover(epoch, owner, event.config)
    note(event, f"{server.name} records for it again (epoch {epoch}): the replace was undone",
         actor=actor)  # fmt: skip


def _replace_with_acting(
    event: FailoverEvent, fs: Server, the_plan: ReplacePlan, actor: str
) -> None:
    original = event.recording_server
    licenses = _licenses_of(original)
    client = client_for(fs)
    locked = fs.locked
    undo = _Undo(event, actor)
    try:
        config_before = client.get_config()
        licenses_before = client.licenses()
        undo.add(f"the configuration of {fs.name}",
                 lambda: client.put_config(config_before["cameras"]))  # fmt: skip
        client.put_config(event.config)  # records as its own: an overlap
        installed = {x["key"] for x in licenses_before}
        missing = [lic for lic in licenses if lic.key not in installed]
        if missing:
            undo.add(f"the licenses of {fs.name}",
                     lambda: client.replace_licenses(licenses_before))  # fmt: skip
        for lic in missing:
            client.install_license(lic.key, lic.cameras)
        try:
            client.release(event.epoch)
            undo.add(f"the takeover by {fs.name}",
                     lambda: _take_over_again(event, fs, client, actor))  # fmt: skip
        except EpochRefused:
            pass
        # Same security lock as before, in its new mode.
        paired = client.enable_cms(
            "recording", refuse_other_hosts=locked, refuse_local_changes=locked
        )
        undo.add(
            f"the failover mode of {fs.name}",
            lambda: client.enable_cms(
                "failover", refuse_other_hosts=locked, refuse_local_changes=locked
            ),
        )
        fs.locked = bool(paired.get("locked"))
    except NodeError as exc:
        raise FailoverError(f"{fs.name} refused: {exc}. {undo.run()}") from exc

    try:
        with transaction.atomic():
            if not transition(
                event, EventState.REPLACED, from_states=REPLACEABLE, actor=actor,
                reason=f"{fs.name} replaces {original.name} (the acting failover server)",
                replacement=fs,
            ):  # fmt: skip
                raise FailoverError("The event changed meanwhile; nothing was replaced.")
            _move_licenses(event, licenses, original, fs,
                           f"Replace {original.name} with {fs.name}", actor)  # fmt: skip
            Protection.objects.filter(failover_server=fs).delete()
            Protection.objects.filter(recording_server=original).update(recording_server=fs)
            Server.objects.filter(pk=fs.pk).update(
                role=Role.RECORDING, locked=fs.locked, updated_at=timezone.now()
            )
            original.delete()
    except Exception:
        fs.locked = locked
        undo.run()
        raise
    # The original's copies of the licenses go once the inventory has moved them.
    _remove_licenses_from(original, licenses, event)
    _snapshot_after(fs, event)


def _replace_with_other(
    event: FailoverEvent, new: Server, the_plan: ReplacePlan, actor: str
) -> None:
    original = event.recording_server
    licenses = _licenses_of(original)
    overwritten = _licenses_of(new)
    client = client_for(new)
    undo = _Undo(event, actor)
    try:
        config_before = client.get_config()
        licenses_before = client.licenses()
        undo.add(f"the configuration of {new.name}",
                 lambda: client.put_config(config_before["cameras"]))  # fmt: skip
        client.put_config(event.config)
        undo.add(f"the licenses of {new.name}",
                 lambda: client.replace_licenses(licenses_before))  # fmt: skip
        client.replace_licenses([{"key": x.key, "cameras": x.cameras} for x in licenses])
        wait_until_records(new)  # it records before the failover server stops
    except (NodeError, TimeoutError) as exc:
        raise FailoverError(
            f"{new.name} could not take the configuration: {exc}. {undo.run()}"
        ) from exc
    acting = event.failover_server
    if acting is not None and release_failover_server(event, acting, actor=actor):
        undo.add(f"the takeover by {acting.name}",
                 lambda: _take_over_again(event, acting, client_for(acting), actor))  # fmt: skip

    restore = the_plan.restore and event.failover_server_id is not None
    try:
        with transaction.atomic():
            if not transition(
                event,
                EventState.RESTORING if restore else EventState.REPLACED,
                from_states=REPLACEABLE,
                actor=actor,
                reason=f"{new.name} replaces {original.name} and takes its name",
                replacement=new,
                failed_back_at=timezone.now(),
                lease_expires_at=None,  # free for the restoring worker
            ):
                raise FailoverError("The event changed meanwhile; nothing was replaced.")
            reason = f"Replace {original.name} with {new.name}"
            _move_licenses(event, overwritten, new, None, f"{reason}: overwritten", actor)
            _move_licenses(event, licenses, original, new, reason, actor)
            Protection.objects.filter(recording_server=new).delete()
            Protection.objects.filter(recording_server=original).update(recording_server=new)
            name, name_source = original.name, original.name_source
            original.delete()
            Server.objects.filter(pk=new.pk).update(
                name=name, name_source=name_source, updated_at=timezone.now()
            )
    except Exception:
        undo.run()
        raise
    _remove_licenses_from(original, licenses, event)
    _snapshot_after(new, event)
    if restore:
        wake(event.pk)


def _move_licenses(
    event: FailoverEvent,
    licenses: list[License],
    from_server: Server,
    to_server: Server | None,
    reason: str,
    actor: str,
) -> None:
    """Record the moves of licenses read before the nodes were changed; one moved
    meanwhile by someone else stays where it is now (it is not taken back)."""
    for lic in licenses:
        try:
            record_move(lic, to_server, reason=reason, actor=actor, expected_from=from_server.pk)
        except LicenseMovedMeanwhile as exc:
            note(event, f"{exc} It was left where it is.", actor=actor)


def _snapshot_after(server: Server, event: FailoverEvent) -> None:
    """The new recording server's configuration, as its node now reports it."""
    try:
        refresh_snapshot(Server.objects.get(pk=server.pk))
    except NodeError as exc:
        note(event, f"The configuration of {server.name} could not be read yet: {exc}")


def _remove_licenses_from(server: Server, licenses: list[License], event: FailoverEvent) -> None:
    """Best effort: the original is usually down; the CMS's record is what counts."""
    try:
        client = client_for(server)
        for lic in licenses:
            try:
                client.remove_license(lic.key)
            except NodeRefused:
                pass  # not installed there
    except NodeError as exc:
        note(event, f"Licenses could not be removed from {server.name}: {exc}")
