"""The audit trail (django-auditlog): what is recorded, and who may read which entries."""

from __future__ import annotations

from typing import Any

from auditlog.models import LogEntry
from auditlog.registry import auditlog
from django.contrib.contenttypes.models import ContentType
from django.db.models import Q, QuerySet
from rest_framework import mixins, serializers

from .viewsets import TeamScopedViewSet


def register_models() -> None:
    """Called from the apps' ready(): every model an admin or a script changes."""
    from cms.inventory.models import (
        FailoverServer,
        License,
        RecordingServer,
        Server,
        Team,
        TeamMembership,
    )
    from failover.models import FailoverEvent, FailoverSettings, Protection

    # The secret never enters the trail; its change shows as password_changed_at. The
    # name's uniqueness key follows the name, which the trail already shows.
    # Signals name the instance's own class, so the admin tabs' proxies are registered too.
    for model in (Server, RecordingServer, FailoverServer):
        if not auditlog.contains(model):
            auditlog.register(model, exclude_fields=["admin_password", "pairing_key", "name_key"])
    for model in (License, Team, TeamMembership, Protection, FailoverSettings, FailoverEvent):
        if not auditlog.contains(model):
            auditlog.register(model)


def visible_entries(user: Any) -> QuerySet:
    """Superusers read everything; others the entries about their teams' objects."""
    entries = LogEntry.objects.select_related("actor", "content_type")
    if user.is_superuser:
        return entries
    from cms.inventory.models import License, Server
    from failover.models import FailoverEvent, Protection

    scope = Q(actor=user)
    for model in (Server, License, FailoverEvent, Protection):
        ids = model.objects.for_user(user).values("pk")
        cts = ContentType.objects.get_for_models(model, for_concrete_models=False).values()
        scope |= Q(content_type__in=list(cts), object_id__in=ids)
    return entries.filter(scope)


class LogEntrySerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField()
    object_type = serializers.CharField(source="content_type.model", read_only=True)
    action = serializers.CharField(source="get_action_display", read_only=True)

    class Meta:
        model = LogEntry
        fields = ["id", "timestamp", "actor", "action", "object_type", "object_id",
                  "object_repr", "changes", "remote_addr"]  # fmt: skip

    def get_actor(self, entry: LogEntry) -> str:
        return entry.actor.get_username() if entry.actor else "system"


class AuditViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet):
    serializer_class = LogEntrySerializer
    queryset = LogEntry.objects.none()
    filterset_fields = {
        "action": ["exact"],
        "content_type__model": ["exact"],
        "object_id": ["exact"],
        "timestamp": ["gte", "lte"],
        "actor__username": ["exact"],
    }
    ordering_fields = ["timestamp"]
    ordering = ["-timestamp"]
    search_fields = ["object_repr"]

    def get_queryset(self):
        return visible_entries(self.request.user).order_by("-timestamp", "-pk")
