"""Failover endpoints: protection, settings, events and their actions, restorations."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from cms.api.errors import ConfirmationRequired, Conflict
from cms.api.views import CrudViewSet
from cms.api.viewsets import TeamScopedViewSet
from cms.inventory.models import Server

from .. import engine, replace, restoration
from ..choices import EventState
from ..events import actor_name
from ..models import FailoverEvent, FailoverSettings, Protection, RestorationJob
from . import serializers as s

ACCEPTED = inline_serializer(
    "EventAccepted", {"event": serializers.IntegerField(), "state": serializers.CharField()}
)


class ProtectionViewSet(CrudViewSet):
    model = Protection
    serializer_class = s.ProtectionSerializer
    queryset = Protection.objects.none()
    filterset_fields = ["recording_server", "failover_server"]
    ordering_fields = ["priority"]

    def get_queryset(self):
        return Protection.objects.for_user(self.request.user).select_related(
            "recording_server", "failover_server"
        )


class FailoverSettingsViewSet(TeamScopedViewSet):
    """The one settings row: GET and PUT/PATCH at /failover-settings/."""

    model = FailoverSettings
    serializer_class = s.FailoverSettingsSerializer
    queryset = FailoverSettings.objects.all()
    pagination_class = None
    filter_backends: list = []

    def get_queryset(self):
        return FailoverSettings.objects.all()

    def get_object(self) -> FailoverSettings:
        return FailoverSettings.load()

    @extend_schema(responses=s.FailoverSettingsSerializer)
    def read(self, request: Request) -> Response:
        return Response(self.get_serializer(self.get_object()).data)

    def update_settings(self, request: Request, partial: bool = False) -> Response:
        serializer = self.get_serializer(self.get_object(), data=request.data,
                                         partial=partial)  # fmt: skip
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(serializer.data)

    @extend_schema(request=s.FailoverSettingsSerializer, responses=s.FailoverSettingsSerializer)
    def put(self, request: Request) -> Response:
        return self.update_settings(request)

    @extend_schema(request=s.FailoverSettingsSerializer, responses=s.FailoverSettingsSerializer)
    def patch(self, request: Request) -> Response:
        return self.update_settings(request, partial=True)


class FailoverEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet):
    model = FailoverEvent
    serializer_class = s.FailoverEventSerializer
    queryset = FailoverEvent.objects.none()
    filterset_fields = {
        "state": ["exact", "in"],
        "trigger": ["exact"],
        "recording_server": ["exact"],
        "failover_server": ["exact"],
        "detected_at": ["gte", "lte"],
    }
    ordering_fields = ["detected_at", "ended_at", "state"]
    search_fields = ["recording_server_name", "failover_server_name"]
    action_permissions = {
        "fail_back": "fail_back",
        "stop_restoration": "stop_restoration",
        "replace": "replace_server",
    }

    def get_queryset(self):
        return (
            FailoverEvent.objects.for_user(self.request.user)
            .select_related("restoration")
            .prefetch_related("transitions")
        )

    @extend_schema(request=None, responses={202: ACCEPTED})
    @action(detail=True, methods=["post"], url_path="fail-back")
    def fail_back(self, request: Request, pk: str | None = None) -> Response:
        event = self.get_object()
        try:
            engine.fail_back_now(event, actor=actor_name(request.user))
        except engine.FailoverError as exc:
            raise Conflict(str(exc)) from None
        return Response({"event": event.pk, "state": event.state}, status=202)

    @extend_schema(request=None, responses=s.FailoverEventSerializer)
    @action(detail=True, methods=["post"], url_path="stop-restoration")
    def stop_restoration(self, request: Request, pk: str | None = None) -> Response:
        event = self.get_object()
        try:
            restoration.stop_restoration(event, actor=actor_name(request.user))
        except engine.FailoverError as exc:
            raise Conflict(str(exc)) from None
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(request=s.ReplaceSerializer, responses={200: s.FailoverEventSerializer,
                                                           202: ACCEPTED})  # fmt: skip
    @action(detail=True, methods=["post"])
    def replace(self, request: Request, pk: str | None = None) -> Response:
        event = self.get_object()
        params = s.ReplaceSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        target = (
            Server.objects.for_user(request.user)
            .filter(pk=params.validated_data["replacement"])
            .first()
        )
        if target is None:
            raise Conflict("No such server.", code="not_found")
        try:
            the_plan = replace.plan(event, target)
            if not params.validated_data["confirm"]:
                raise ConfirmationRequired(
                    "Replacing has these consequences; repeat with confirm=true.",
                    the_plan.consequences(),
                )
            replace.replace_protected_server(event, target, actor=actor_name(request.user))
        except engine.FailoverError as exc:
            raise Conflict(str(exc)) from None
        event.refresh_from_db()
        if event.state == EventState.RESTORING:
            return Response({"event": event.pk, "state": event.state}, status=202)
        return Response(self.get_serializer(event).data)


class RestorationJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet):
    model = RestorationJob
    serializer_class = s.RestorationJobSerializer
    queryset = RestorationJob.objects.none()
    filterset_fields = ["state", "event"]
    ordering_fields = ["started_at", "updated_at"]
