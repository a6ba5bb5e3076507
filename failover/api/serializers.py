"""Serializers of failover: protection, settings, events with their timeline, restorations."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cms.api.serializers import VisibleField, model_clean
from cms.inventory.api.serializers import ServerSerializer
from cms.inventory.choices import Role
from cms.inventory.models import Server

from ..admin_status import STATUSES, annotate_status
from ..models import (
    EventTransition,
    FailoverEvent,
    FailoverSettings,
    Protection,
    RestorationJob,
)


@extend_schema_field(
    {"type": "string", "enum": list(STATUSES), "nullable": True,
     "description": "What the failover server does now, as the failover server list's status "
     "panel counts it: " + "; ".join(f"`{k}` {label}" for k, (label, _) in STATUSES.items())
     + ". Null while it is in none of these (e.g. failing over to it has just begun)."}
)  # fmt: skip
class StatusKeyField(serializers.ReadOnlyField):
    pass


class FailoverServerSerializer(ServerSerializer):
    duty = StatusKeyField(source="status_key")

    class Meta(ServerSerializer.Meta):
        fields = [*ServerSerializer.Meta.fields, "duty"]

    def to_representation(self, instance: Server) -> dict[str, Any]:
        if not hasattr(instance, "status_key"):  # a server just saved: not annotated
            found = annotate_status(Server.objects.filter(pk=instance.pk)).first()
            instance.status_key = found.status_key if found else None
        return super().to_representation(instance)


class ProtectionSerializer(serializers.ModelSerializer):
    recording_server = VisibleField(queryset=Server.objects.filter(role=Role.RECORDING))
    failover_server = VisibleField(queryset=Server.objects.filter(role=Role.FAILOVER))

    class Meta:
        model = Protection
        fields = ["id", "recording_server", "failover_server", "priority"]
        validators: list = []

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        model_clean(self.instance or Protection(), attrs, saved=self.instance)
        return attrs


@extend_schema_field({"type": "string", "pattern": r"^\d{2}:\d{2}(:\d{2})?$", "example": "02:00"})
class WindowTimeField(serializers.TimeField):
    """A time of day without a zone (the CMS's TIME_ZONE), as HH:MM[:SS]."""


class FailoverSettingsSerializer(serializers.ModelSerializer):
    team = serializers.PrimaryKeyRelatedField(
        read_only=True,
        allow_null=True,
        help_text="The team these settings govern; null for the CMS's defaults.",
    )
    follows_defaults = serializers.SerializerMethodField(
        help_text="True while the team has no settings of its own and follows the CMS's "
        "defaults (shown here); its first save gives it its own."
    )
    failback_window_start = WindowTimeField(required=False)
    failback_window_end = WindowTimeField(required=False)

    class Meta:
        model = FailoverSettings
        fields = ["team", "follows_defaults", *FailoverSettings.VALUE_FIELDS]

    def get_follows_defaults(self, settings: FailoverSettings) -> bool:
        return settings.team_id is not None and settings.pk is None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # On a copy: a refused request leaves the row as it was.
        current = self.instance
        trial = FailoverSettings(team=current.team, **current.values())
        model_clean(trial, attrs, exclude=["team", "last_probe_cycle_at"])
        return attrs


class TransitionSerializer(serializers.ModelSerializer):
    class Meta:
        model = EventTransition
        fields = ["at", "from_state", "to_state", "actor", "reason"]


class RestorationJobSerializer(serializers.ModelSerializer):
    percent = serializers.FloatField(read_only=True)
    seconds_left = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = RestorationJob
        fields = ["id", "event", "target_server", "state", "files_total", "files_done",
                  "bytes_total", "bytes_done", "rate_bps", "percent", "seconds_left", "errors",
                  "last_error", "transfer", "started_at", "updated_at",
                  "finished_at"]  # fmt: skip


class FailoverEventSerializer(serializers.ModelSerializer):
    timeline = TransitionSerializer(source="transitions", many=True, read_only=True)
    restoration = RestorationJobSerializer(read_only=True, allow_null=True)
    time_to_take_over = serializers.SerializerMethodField()

    class Meta:
        model = FailoverEvent
        fields = ["id", "team", "recording_server", "recording_server_name", "failover_server",
                  "failover_server_name", "trigger", "state", "epoch", "detected_at",
                  "taken_over_at", "recording_gap_seconds", "recovered_at", "failed_back_at",
                  "ended_at", "time_to_take_over", "attempts", "last_error", "replacement",
                  "earlier_failover_servers", "damped", "restoration",
                  "timeline"]  # fmt: skip
        read_only_fields = ["earlier_failover_servers", "damped"]

    def get_time_to_take_over(self, event: FailoverEvent) -> float | None:
        delta = event.time_to_take_over
        return delta.total_seconds() if delta else None


class GuardHoldSerializer(serializers.Serializer):
    server = serializers.IntegerField()
    name = serializers.CharField()
    since = serializers.DateTimeField()
    reason = serializers.CharField()


class GuardStateSerializer(serializers.Serializer):
    team = serializers.IntegerField()
    team_name = serializers.CharField()
    engaged = serializers.BooleanField(
        help_text="True while automatic failover is paused for the servers in `held`."
    )
    engaged_at = serializers.DateTimeField(allow_null=True)
    down = serializers.IntegerField(help_text="Recording servers down when it engaged.")
    recording_servers = serializers.IntegerField(help_text="The team's, when it engaged.")
    window_seconds = serializers.IntegerField()
    share_percent = serializers.IntegerField()
    held = GuardHoldSerializer(many=True)


class GuardReleaseSerializer(serializers.Serializer):
    servers = serializers.ListField(
        child=serializers.IntegerField(), required=False, allow_empty=False,
        help_text="The held recording servers to release (their ids).",
    )  # fmt: skip
    all = serializers.BooleanField(
        required=False, default=False,
        help_text="Release every server the guard holds in your teams (or in `team`).",
    )  # fmt: skip
    team = serializers.IntegerField(required=False, help_text="With `all`: one team only.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if bool(attrs.get("servers")) == bool(attrs.get("all")):
            raise serializers.ValidationError('Give either "servers" or "all": true.')
        return attrs


class GuardReleasedSerializer(serializers.Serializer):
    server = serializers.IntegerField()
    name = serializers.CharField()
    event = serializers.IntegerField(
        allow_null=True, help_text="The failover opened; null when the server was up again."
    )


class ReplaceSerializer(serializers.Serializer):
    replacement = serializers.IntegerField(
        help_text="The acting failover server, or a recording server in normal status."
    )
    confirm = serializers.BooleanField(
        default=False, help_text="Without it the answer lists the consequences; nothing changes."
    )


class CapacityProtectorSerializer(serializers.Serializer):
    failover_server = serializers.IntegerField()
    name = serializers.CharField()
    capacity = serializers.IntegerField(allow_null=True, help_text="cameras; null: unknown")
    licensed_cameras = serializers.IntegerField(allow_null=True)
    unknown_because = serializers.CharField(allow_blank=True)
    fits = serializers.BooleanField(allow_null=True)


class CapacityRowSerializer(serializers.Serializer):
    recording_server = serializers.IntegerField()
    name = serializers.CharField()
    cameras = serializers.IntegerField(allow_null=True, help_text="in its latest snapshot")
    carried = serializers.BooleanField(
        allow_null=True, help_text="a failover server carries it whole; null: not known"
    )
    protectors = CapacityProtectorSerializer(many=True)


class CapacityTableSerializer(serializers.Serializer):
    recording_servers = CapacityRowSerializer(many=True)
    uncarried = serializers.ListField(child=serializers.IntegerField())


class WhatIfOutcomeSerializer(serializers.Serializer):
    recording_server = serializers.IntegerField()
    name = serializers.CharField()
    cameras = serializers.IntegerField(allow_null=True)
    covered_by = serializers.IntegerField(allow_null=True)
    covered_by_name = serializers.CharField(allow_null=True)
    why = serializers.CharField()


class WhatIfSerializer(serializers.Serializer):
    outcomes = WhatIfOutcomeSerializer(many=True)
    uncovered = serializers.ListField(child=serializers.IntegerField())
