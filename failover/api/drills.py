"""Failover drills in the API: run one on chosen recording servers, read the history and
each drill's report (the admin's Drills tab)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from cms.api.viewsets import TeamScopedViewSet
from cms.inventory.choices import Role
from cms.inventory.models import Server

from .. import drills
from ..models import Drill, DrillServer


class DrillServerSerializer(serializers.ModelSerializer):
    worst_gap_seconds = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = DrillServer
        fields = ["server", "server_name", "state", "event", "failover_server_name",
                  "takeover_seconds", "camera_gaps", "worst_gap_seconds",
                  "restoration_seconds", "reason", "finished_at"]  # fmt: skip
        read_only_fields = fields


class DrillSerializer(serializers.ModelSerializer):
    report = DrillServerSerializer(source="servers", many=True, read_only=True)

    class Meta:
        model = Drill
        fields = ["id", "team", "state", "requested_by", "created_at", "started_at",
                  "finished_at", "reason", "max_takeover_seconds", "max_gap_seconds",
                  "max_restoration_seconds", "recording_seconds", "scheduled",
                  "failure_recorded_at", "report"]  # fmt: skip
        read_only_fields = fields


class DrillRequestSerializer(serializers.Serializer):
    servers = serializers.ListField(
        child=serializers.IntegerField(), min_length=1, max_length=100,
        help_text="The recording servers to drill, one after the other, in this order.",
    )  # fmt: skip


class DrillViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, TeamScopedViewSet
):
    serializer_class = DrillSerializer
    queryset = Drill.objects.prefetch_related("servers")
    filterset_fields = {"state": ["exact", "in"], "team": ["exact"], "created_at": ["gte", "lte"]}
    ordering_fields = ["created_at", "finished_at", "state"]
    action_permissions = {"create": "trigger_failover"}

    @extend_schema(request=DrillRequestSerializer, responses={202: DrillSerializer})
    def create(self, request: Request) -> Response:
        params = DrillRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        ids = list(dict.fromkeys(params.validated_data["servers"]))
        found = Server.objects.for_user(request.user).filter(role=Role.RECORDING).in_bulk(ids)
        missing = [i for i in ids if i not in found]
        if missing:
            raise ValidationError({"servers": f"No such recording server: {missing}."})
        drill = drills.request_drill(request.user, [found[i] for i in ids])
        drill = Drill.objects.prefetch_related("servers").get(pk=drill.pk)
        return Response(DrillSerializer(drill).data, status=202)
