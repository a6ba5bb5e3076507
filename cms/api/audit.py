"""The audit trail's API: `audit/` lists the entries `cms.audit.visible_entries()` allows."""

from __future__ import annotations

from auditlog.models import LogEntry
from rest_framework import mixins, serializers

from cms.audit import visible_entries

from .viewsets import TeamScopedViewSet


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
