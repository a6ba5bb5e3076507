"""Protection, failover settings, configuration snapshots, failover events, restoration.

The database is the source of truth: every state change is a compare-and-set on
the event's state (see failover/events.py), and partial unique constraints allow
at most one open event per recording server and per failover server.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.color import no_style
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connection, models, transaction
from django.db.models import F, Q
from django.utils import timezone

from cms.inventory.choices import Role
from cms.inventory.models import Server, TeamScopedQuerySet

from .choices import (
    DrillState,
    EventState,
    FailbackMode,
    FileState,
    RestorationState,
    TransferPath,
    Trigger,
)
from .lifecycle import OPEN_STATES
from .limits import RANGES, InRange, clamp, log_corrections


class FailoverSettingsQuerySet(TeamScopedQuerySet):
    team_path = "team"


class FailoverSettings(models.Model):
    """The Failover Settings tab: the CMS's defaults (row 1, no team), which a superuser
    edits, and a team's own settings once the team saved them. A team without its own
    row is governed by the defaults."""

    team = models.OneToOneField(
        "inventory.Team",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="failover_settings",
        help_text="Empty for the CMS's defaults, which every team without its own "
        "settings follows.",
    )
    auto_failover = models.BooleanField("automatic failover", default=True)
    on_disconnection = models.BooleanField("fail over when the server disconnects", default=True)
    on_volume_abnormal = models.BooleanField("fail over when a volume is abnormal", default=True)
    on_service_abnormal = models.BooleanField(
        "fail over when the surveillance service is abnormal", default=True
    )
    probe_interval = models.PositiveIntegerField(
        "probe interval (seconds)",
        default=5,
        validators=[InRange("probe_interval")],
        help_text=f"How often every server is probed; {RANGES['probe_interval'].describe()}.",
    )
    probe_timeout = models.FloatField(
        "probe timeout (seconds)",
        default=3.0,
        validators=[InRange("probe_timeout")],
        help_text=f"How long a probe may take; {RANGES['probe_timeout'].describe()}, "
        "and not longer than the probe interval.",
    )
    failures_before_failover = models.PositiveIntegerField(
        default=3,
        validators=[InRange("failures_before_failover")],
        help_text="Consecutive failed probes before a recording server fails over; "
        f"{RANGES['failures_before_failover'].describe()}.",
    )
    successes_before_recovery = models.PositiveIntegerField(
        default=3,
        validators=[InRange("successes_before_recovery")],
        help_text="Consecutive good probes before a server counts as recovered; "
        f"{RANGES['successes_before_recovery'].describe()}.",
    )
    failback_mode = models.CharField(
        max_length=16, choices=FailbackMode.choices, default=FailbackMode.AUTOMATIC
    )
    failback_hold_down = models.PositiveIntegerField(
        "failback hold-down (seconds)",
        default=60,
        validators=[InRange("failback_hold_down")],
        help_text="How long a recovered server must stay healthy before automatic failback; "
        f"{RANGES['failback_hold_down'].describe()}.",
    )
    failback_window_start = models.TimeField(default=dt.time(2, 0))
    failback_window_end = models.TimeField(default=dt.time(5, 0))
    restore_recordings = models.BooleanField(
        "restore recordings and snapshots taken during failover", default=True
    )
    mass_failure_share = models.PositiveIntegerField(
        "mass-failure share (percent)",
        default=30,
        validators=[InRange("mass_failure_share")],
        help_text="When more than this share of the team's recording servers go down within "
        "the mass-failure window, automatic failover pauses for them until an operator "
        f"releases it; {RANGES['mass_failure_share'].describe()}, 0 turns the guard off.",
    )
    mass_failure_min_servers = models.PositiveIntegerField(
        "mass-failure minimum (servers)",
        default=3,
        validators=[InRange("mass_failure_min_servers")],
        help_text="The guard stands only when at least this many recording servers are down; "
        f"{RANGES['mass_failure_min_servers'].describe()}.",
    )
    mass_failure_window = models.PositiveIntegerField(
        "mass-failure window (seconds)",
        default=60,
        validators=[InRange("mass_failure_window")],
        help_text="Failures this close together count as one mass failure; "
        f"{RANGES['mass_failure_window'].describe()}.",
    )
    flap_failovers = models.PositiveIntegerField(
        "flapping: failovers",
        default=3,
        validators=[InRange("flap_failovers")],
        help_text="A recording server's failover that is its Nth automatic one within the "
        'flapping window does not fail back by itself; an operator\'s "Fail back now" ends it; '
        f"{RANGES['flap_failovers'].describe()}, 0 turns damping off.",
    )
    flap_window = models.PositiveIntegerField(
        "flapping window (seconds)",
        default=3600,
        validators=[InRange("flap_window")],
        help_text=f"{RANGES['flap_window'].describe()}.",
    )
    last_probe_cycle_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = FailoverSettingsQuerySet.as_manager()

    DEFAULTS_PK = 1
    # What a team's own row copies from the defaults when it is first saved.
    VALUE_FIELDS = (
        "auto_failover", "on_disconnection", "on_volume_abnormal", "on_service_abnormal",
        "probe_interval", "probe_timeout", "failures_before_failover",
        "successes_before_recovery", "failback_mode", "failback_hold_down",
        "failback_window_start", "failback_window_end", "restore_recordings",
        "mass_failure_share", "mass_failure_min_servers", "mass_failure_window",
        "flap_failovers", "flap_window",
    )  # fmt: skip

    class Meta:
        verbose_name = "failover settings"
        verbose_name_plural = "failover settings"
        ordering = [F("team__name").asc(nulls_first=True)]

    def __str__(self) -> str:
        if self.team_id is None:
            return "CMS defaults"
        return f"Failover settings of {self.team}"

    def clean(self) -> None:
        if (
            self.failback_mode == FailbackMode.SCHEDULED
            and self.failback_window_start == self.failback_window_end
        ):
            raise ValidationError({"failback_window_end": "The failback window must not be empty."})
        if (
            self.probe_timeout is not None
            and self.probe_interval
            and self.probe_timeout >= self.probe_interval + 0.001
        ):
            raise ValidationError(
                {
                    "probe_timeout": "The probe timeout must be shorter than the probe interval "
                    f"({self.probe_interval} seconds)."
                }
            )

    @classmethod
    def load(cls) -> FailoverSettings:
        """The CMS's defaults, with every value within its range whatever the database
        holds (see failover/limits.py); what had to be corrected is logged."""
        obj, created = cls.objects.get_or_create(pk=cls.DEFAULTS_PK, defaults={"team": None})
        if created:
            reset_id_sequence(cls)
        log_corrections(clamp(obj))
        return obj

    @classmethod
    def for_team(cls, team_id: int | None) -> FailoverSettings:
        """The settings that govern `team_id`'s servers: its own, or the defaults."""
        own = cls.objects.filter(team_id=team_id).first() if team_id is not None else None
        if own is None:
            return cls.load()
        log_corrections(clamp(own))
        return own

    @classmethod
    def own_or_copy(cls, team: Any) -> FailoverSettings:
        """The row to edit for `team` (None: the defaults): its own, or an unsaved copy of
        the defaults that becomes its own when saved."""
        if team is None:
            return cls.load()
        own = cls.objects.filter(team=team).first()
        if own is not None:
            log_corrections(clamp(own))
            return own
        return cls(team=team, **cls.load().values())

    def values(self) -> dict[str, Any]:
        """What a settings form edits (no team, no bookkeeping)."""
        return {name: getattr(self, name) for name in self.VALUE_FIELDS}

    def triggers(self) -> set[str]:
        enabled = set()
        if self.on_disconnection:
            enabled.add(Trigger.DISCONNECTED)
        if self.on_volume_abnormal:
            enabled.add(Trigger.VOLUME_ABNORMAL)
        if self.on_service_abnormal:
            enabled.add(Trigger.SERVICE_ABNORMAL)
        return enabled

    def in_failback_window(self, at: dt.datetime) -> bool:
        now = at.time()
        start, end = self.failback_window_start, self.failback_window_end
        if start <= end:
            return start <= now < end
        return now >= start or now < end  # a window across midnight


class TeamSettings:
    """Every team's settings, read once (a probe cycle): `of(team_id)` is the team's own
    row, or the defaults."""

    def __init__(self, defaults: FailoverSettings, own: dict[int, FailoverSettings]) -> None:
        self.defaults = defaults
        self.own = own

    @classmethod
    def load(cls) -> TeamSettings:
        own = {}
        for row in FailoverSettings.objects.filter(team__isnull=False):
            log_corrections(clamp(row))
            own[row.team_id] = row
        return cls(FailoverSettings.load(), own)

    @classmethod
    def wrap(cls, settings: FailoverSettings | TeamSettings) -> TeamSettings:
        """One settings row for every team (as a test gives it), or already per team."""
        return settings if isinstance(settings, TeamSettings) else cls(settings, {})

    def of(self, team_id: int | None) -> FailoverSettings:
        return self.own.get(team_id, self.defaults) if team_id is not None else self.defaults

    def rows(self) -> list[FailoverSettings]:
        return [self.defaults, *self.own.values()]


def reset_id_sequence(model: type[models.Model]) -> None:
    """After a row was written with a chosen id (the defaults' row 1): PostgreSQL's id
    sequence does not move for it, and the next row (a team's own) would get id 1 again."""
    statements = connection.ops.sequence_reset_sql(no_style(), [model])
    if statements:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)


class ProtectionQuerySet(TeamScopedQuerySet):
    team_path = "recording_server__team"


class Protection(models.Model):
    """A failover server that may take over a recording server, in preference order."""

    recording_server = models.ForeignKey(
        Server,
        on_delete=models.CASCADE,
        related_name="protections",
        limit_choices_to={"role": Role.RECORDING},
    )
    failover_server = models.ForeignKey(
        Server,
        on_delete=models.CASCADE,
        related_name="protects",
        limit_choices_to={"role": Role.FAILOVER},
    )
    priority = models.PositiveIntegerField(default=0)

    objects = ProtectionQuerySet.as_manager()

    class Meta:
        ordering = ["recording_server", "priority", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["recording_server", "failover_server"], name="unique_protection"
            )
        ]

    def __str__(self) -> str:
        return f"{self.failover_server} protects {self.recording_server} (#{self.priority})"

    def clean(self) -> None:
        errors = {}
        if self.recording_server_id and self.recording_server.role != Role.RECORDING:
            errors["recording_server"] = "Choose a recording server."
        if self.failover_server_id and self.failover_server.role != Role.FAILOVER:
            errors["failover_server"] = "Choose a failover server."
        if (
            self.recording_server_id
            and self.failover_server_id
            and self.recording_server.team_id != self.failover_server.team_id
        ):
            errors["failover_server"] = "The failover server belongs to another team."
        if errors:
            raise ValidationError(errors)


class ConfigSnapshot(models.Model):
    """The last known surveillance configuration of a recording server.

    Failover pushes this copy, because a dead server cannot be asked for it.
    """

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="config_snapshots")
    version = models.CharField(max_length=64)
    config = models.JSONField()
    taken_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-taken_at", "-pk"]
        get_latest_by = "taken_at"
        constraints = [
            models.UniqueConstraint(fields=["server", "version"], name="unique_snapshot_version")
        ]

    def __str__(self) -> str:
        return f"{self.server} config {self.version}"

    @property
    def camera_count(self) -> int:
        return len(self.config.get("cameras", []))


class Counter(models.Model):
    """Monotonic counters kept in the database (the fencing epoch)."""

    name = models.CharField(max_length=32, primary_key=True)
    value = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}={self.value}"

    @classmethod
    def next(cls, name: str) -> int:
        with transaction.atomic():
            cls.objects.get_or_create(name=name)
            cls.objects.filter(name=name).update(value=F("value") + 1)
            return cls.objects.get(name=name).value


class FailoverEventQuerySet(TeamScopedQuerySet):
    team_path = "team"

    def open(self) -> FailoverEventQuerySet:
        return self.filter(state__in=OPEN_STATES)


class FailoverEvent(models.Model):
    """One incident, from detection to its end, with an append-only timeline."""

    team = models.ForeignKey("inventory.Team", on_delete=models.PROTECT, related_name="+")
    recording_server = models.ForeignKey(
        Server, on_delete=models.SET_NULL, null=True, blank=True, related_name="events"
    )
    recording_server_name = models.CharField(max_length=64)
    node_tag = models.CharField(
        max_length=64,
        help_text="How the failover node tags what it records for the recording server; "
        "kept here because the recording server may be replaced and removed.",
    )
    failover_server = models.ForeignKey(
        Server, on_delete=models.SET_NULL, null=True, blank=True, related_name="acting_events"
    )
    failover_server_name = models.CharField(max_length=64, blank=True)
    # Every failover server that acted for the event before the current one, in order:
    # {"id", "name", "epoch", "until", "why", "released"}. What each one recorded is
    # still on it, under `node_tag`: restoration pulls from all of them.
    earlier_failover_servers = models.JSONField(default=list, blank=True)
    trigger = models.CharField(max_length=24, choices=Trigger.choices)
    state = models.CharField(
        max_length=24, choices=EventState.choices, default=EventState.DETECTED, db_index=True
    )
    epoch = models.BigIntegerField(default=0, help_text="Fencing token sent with node commands.")
    snapshot = models.ForeignKey(
        ConfigSnapshot, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    config = models.JSONField(
        null=True,
        blank=True,
        help_text="The configuration pushed to the failover server (a copy: it outlives "
        "the snapshot when the recording server is replaced).",
    )
    detected_at = models.DateTimeField(auto_now_add=True, db_index=True)
    taken_over_at = models.DateTimeField(null=True, blank=True)
    recording_gap_seconds = models.FloatField(
        null=True,
        blank=True,
        help_text="The worst camera's time recorded nowhere, measured at failback.",
    )
    recovered_at = models.DateTimeField(null=True, blank=True)
    failed_back_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # Empty when no worker holds the event; a worker renews it while it works, so a
    # time in the past means the worker died and another may take over.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    replacement = models.ForeignKey(
        Server, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    damped = models.CharField(
        max_length=200,
        blank=True,
        help_text="Why the event does not fail back by itself (its server flaps); empty "
        "when it follows the failback mode.",
    )

    objects = FailoverEventQuerySet.as_manager()

    class Meta:
        ordering = ["-detected_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["recording_server"],
                condition=Q(state__in=sorted(OPEN_STATES)),
                name="one_open_event_per_recording_server",
            ),
            models.UniqueConstraint(
                fields=["failover_server"],
                condition=Q(state__in=sorted(OPEN_STATES)) & Q(failover_server__isnull=False),
                name="one_open_event_per_failover_server",
            ),
        ]
        permissions = [
            ("trigger_failover", "Can trigger a manual failover"),
            ("fail_back", "Can fail back now"),
            ("replace_server", "Can replace a protected server"),
            ("stop_restoration", "Can stop a restoration"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.recording_server_name}: {self.get_state_display()}"

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def time_to_take_over(self) -> dt.timedelta | None:
        if self.taken_over_at:
            return self.taken_over_at - self.detected_at
        return None


class EventTransition(models.Model):
    """Append-only: every state change with its time, actor and reason."""

    event = models.ForeignKey(FailoverEvent, on_delete=models.CASCADE, related_name="transitions")
    from_state = models.CharField(max_length=24, choices=EventState.choices, blank=True)
    to_state = models.CharField(max_length=24, choices=EventState.choices)
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=150, default="system")
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.from_state or '-'} -> {self.to_state} by {self.actor}"


class RestorationJobQuerySet(TeamScopedQuerySet):
    team_path = "event__team"

    def update(self, **kwargs: Any) -> int:
        # Progress is written with update(), which auto_now does not see: every write
        # moves `updated_at`, so a client can tell a job that runs from one that stalled.
        kwargs.setdefault("updated_at", timezone.now())
        return super().update(**kwargs)


class RestorationJob(models.Model):
    event = models.OneToOneField(
        FailoverEvent, on_delete=models.CASCADE, related_name="restoration"
    )
    target_server = models.ForeignKey(
        Server, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    state = models.CharField(
        max_length=16, choices=RestorationState.choices, default=RestorationState.PENDING
    )
    files_total = models.PositiveIntegerField(default=0)
    files_done = models.PositiveIntegerField(default=0)
    bytes_total = models.BigIntegerField(default=0)
    bytes_done = models.BigIntegerField(default=0)
    rate_bps = models.FloatField(default=0)
    errors = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    transfer = models.CharField(
        max_length=8,
        choices=TransferPath.choices,
        blank=True,
        help_text="How the files travel: directly between the servers, or through the CMS.",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = RestorationJobQuerySet.as_manager()

    def __str__(self) -> str:
        return f"Restoration of event #{self.event_id}: {self.get_state_display()}"

    @property
    def percent(self) -> float:
        if self.bytes_total:
            return round(100.0 * self.bytes_done / self.bytes_total, 1)
        return 100.0 if self.state == RestorationState.COMPLETED else 0.0

    @property
    def seconds_left(self) -> float | None:
        """None unless it runs: a stopped, failed or finished job has no time left."""
        if self.state != RestorationState.RUNNING:
            return None
        if self.rate_bps > 0 and self.bytes_total >= self.bytes_done:
            return (self.bytes_total - self.bytes_done) / self.rate_bps
        return None


class RestorationFile(models.Model):
    job = models.ForeignKey(RestorationJob, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=500)
    kind = models.CharField(max_length=16, default="recording")
    camera = models.CharField(max_length=64, blank=True)
    # When the failover server recorded it: the upload carries both, so the target
    # indexes the file at its own time, not the restoration's. Empty in rows from before.
    start = models.DateTimeField(null=True, blank=True)
    end = models.DateTimeField(null=True, blank=True)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=FileState.choices, default=FileState.PENDING)
    # The failover server the file is on (an event may have had several, one after the
    # other); empty for the event's own failover server in rows from before sources.
    source = models.ForeignKey(
        Server, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Where it was stored on the target when another file already had its name (never
    # overwritten: both are kept); empty when stored under its own name.
    restored_as = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "source", "path"], name="unique_restoration_file_per_source"
            )
        ]

    def __str__(self) -> str:
        return self.path


# -- failover drills -----------------------------------------------------------------


DRILL_OPEN_STATES = frozenset({DrillState.QUEUED, DrillState.RUNNING})


class DrillTargetsQuerySet(TeamScopedQuerySet):
    team_path = "team"


class DrillTargets(models.Model):
    """What a team's drill must achieve to pass; a team without its own row is held to
    the field defaults."""

    team = models.OneToOneField(
        "inventory.Team", on_delete=models.CASCADE, related_name="drill_targets"
    )
    max_takeover_seconds = models.FloatField(
        "time to take over (seconds)",
        default=30.0,
        help_text="From the manual failover to the failover server recording every camera.",
    )
    max_gap_seconds = models.FloatField(
        "recording gap (seconds)",
        default=10.0,
        help_text="The longest time any camera may record nowhere.",
    )
    max_restoration_seconds = models.FloatField(
        "restoration time (seconds)",
        default=600.0,
        help_text="From the failback to the end of the restoration.",
    )
    recording_seconds = models.PositiveIntegerField(
        "recording time (seconds)",
        default=30,
        help_text="How long the failover server records during a drill before failing back.",
    )

    monthly_day = models.PositiveSmallIntegerField(
        "drill every month on day",
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(28)],
        help_text="1 to 28; empty for no scheduled drill. Every protected recording server "
        "of the team is drilled in the maintenance window of that day.",
    )
    window_start = models.TimeField("maintenance window start", default=dt.time(2, 0))
    window_hours = models.PositiveSmallIntegerField(
        "maintenance window (hours)", default=2, validators=[MinValueValidator(1),
                                                             MaxValueValidator(23)]
    )  # fmt: skip

    objects = DrillTargetsQuerySet.as_manager()

    class Meta:
        verbose_name = "drill targets"
        verbose_name_plural = "drill targets"

    def __str__(self) -> str:
        return f"Drill targets of {self.team}"

    @classmethod
    def for_team(cls, team_id: int) -> DrillTargets:
        return cls.objects.filter(team_id=team_id).first() or cls(team_id=team_id)


class DrillQuerySet(TeamScopedQuerySet):
    team_path = "team"


class Drill(models.Model):
    """One failover drill on chosen recording servers, one after the other, with a report
    per server (DrillServer)."""

    team = models.ForeignKey("inventory.Team", on_delete=models.PROTECT, related_name="+")
    state = models.CharField(
        max_length=16, choices=DrillState.choices, default=DrillState.QUEUED, db_index=True
    )
    requested_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True, help_text="Why it failed, was refused or stopped.")
    # The targets it was held to, copied when it was requested.
    max_takeover_seconds = models.FloatField()
    max_gap_seconds = models.FloatField()
    max_restoration_seconds = models.FloatField()
    recording_seconds = models.PositiveIntegerField()
    scheduled = models.BooleanField(default=False, help_text="Started by the monthly schedule.")
    # Moved by the worker while it runs the drill: a running drill whose heartbeat stopped
    # was left by a worker that died (drills.abandoned()).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # drill_failed() records the failure here; whoever sends alerts reads and clears it.
    failure_recorded_at = models.DateTimeField(null=True, blank=True)

    objects = DrillQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"Drill #{self.pk}: {self.get_state_display()}"


class DrillServer(models.Model):
    """One recording server's report in a drill."""

    drill = models.ForeignKey(Drill, on_delete=models.CASCADE, related_name="servers")
    server = models.ForeignKey(
        Server, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    server_name = models.CharField(max_length=64)
    position = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=16, choices=DrillState.choices, default=DrillState.QUEUED)
    event = models.ForeignKey(
        FailoverEvent, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    failover_server_name = models.CharField(max_length=64, blank=True)
    takeover_seconds = models.FloatField(null=True, blank=True)
    camera_gaps = models.JSONField(
        default=dict, blank=True, help_text="Each camera's recording gap in seconds."
    )
    restoration_seconds = models.FloatField(null=True, blank=True)
    reason = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["drill", "position", "pk"]

    def __str__(self) -> str:
        return f"{self.server_name}: {self.get_state_display()}"

    @property
    def worst_gap_seconds(self) -> float | None:
        values = [v for v in self.camera_gaps.values() if v is not None]
        return max(values) if values else None


class ProbeShard(models.Model):
    """One shard of the servers (pk modulo the shard count) under one settings row: the
    slot its last probe cycle claimed, by compare-and-set (probing.claim_shard)."""

    settings = models.ForeignKey(FailoverSettings, on_delete=models.CASCADE,
                                 related_name="probe_shards")  # fmt: skip
    shard = models.PositiveIntegerField()
    last_cycle_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["settings", "shard"], name="probe_shard_unique")
        ]

    def __str__(self) -> str:
        return f"shard {self.shard} of settings {self.settings_id}"


class GuardQuerySet(TeamScopedQuerySet):
    team_path = "team"


class MassFailureGuard(models.Model):
    """A team's mass-failure guard (failover/guard.py): the row every decision on the
    team's failovers locks, so that two workers deciding at once see each other."""

    team = models.OneToOneField(
        "inventory.Team", on_delete=models.CASCADE, related_name="mass_failure_guard"
    )
    engaged_at = models.DateTimeField(null=True, blank=True)
    # The recording servers counted as down: {server id: {"at": ISO time first seen
    # down, "spent": true once a release counted it}}; a server leaves when it is up.
    down = models.JSONField(default=dict, blank=True)
    # What the guard saw when it engaged, for the banner and the alert.
    down_count = models.PositiveIntegerField(default=0)
    team_size = models.PositiveIntegerField(default=0)
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.CharField(max_length=150, blank=True)

    objects = GuardQuerySet.as_manager()

    def __str__(self) -> str:
        state = "engaged" if self.engaged_at else "standing by"
        return f"Mass-failure guard of {self.team}: {state}"


class GuardHoldQuerySet(TeamScopedQuerySet):
    team_path = "team"


class GuardHold(models.Model):
    """A recording server whose automatic failover the mass-failure guard holds."""

    team = models.ForeignKey("inventory.Team", on_delete=models.CASCADE, related_name="+")
    server = models.OneToOneField(Server, on_delete=models.CASCADE, related_name="guard_hold")
    since = models.DateTimeField(default=timezone.now)
    reason = models.TextField(blank=True)

    objects = GuardHoldQuerySet.as_manager()

    class Meta:
        ordering = ["since", "pk"]

    def __str__(self) -> str:
        return f"{self.server} held by the mass-failure guard"
