"""Failover endpoints: protection, settings, events and their actions, restorations; and
manual failover, added to the inventory's recording server list (as the admin does)."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.http import HttpResponse
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from cms.api.errors import Conflict
from cms.api.filters import CmsFilterSet
from cms.api.serializers import ConfirmSerializer
from cms.api.viewsets import TeamScopedViewSet, confirmed
from cms.inventory.api import views as inventory_views
from cms.inventory.choices import HealthStatus, Role
from cms.inventory.models import Server, Team
from cms.permissions import may_change_failover_settings, may_see_failover_settings

from .. import actions, coverage, guard, planner
from ..admin_status import STATUSES, annotate_status, filter_by_status
from ..choices import EventState
from ..models import FailoverEvent, FailoverSettings, GuardHold, Protection, RestorationJob
from . import serializers as s

ACCEPTED = inline_serializer(
    "EventAccepted", {"event": serializers.IntegerField(), "state": serializers.CharField()}
)


COVERAGE_PARAMETERS = [
    OpenApiParameter("since", str, description="ISO 8601; default: an hour before until"),
    OpenApiParameter("until", str, description="ISO 8601; default: now"),
    OpenApiParameter("camera", str, description="one camera; default: all of the server's"),
]


class RecordingServerViewSet(inventory_views.RecordingServerViewSet):
    action_permissions = {
        **inventory_views.RecordingServerViewSet.action_permissions,
        "manual_failover": "trigger_failover",
    }

    @extend_schema(request=None, responses={202: inline_serializer("Accepted", {
        "event": serializers.IntegerField(), "state": serializers.CharField()})})  # fmt: skip
    @action(detail=True, methods=["post"], url_path="manual-failover")
    def manual_failover(self, request: Request, pk: str | None = None) -> Response:
        event = actions.manual_failover(request.user, self.get_object())
        return Response({"event": event.pk, "state": event.state}, status=202)

    @extend_schema(parameters=COVERAGE_PARAMETERS, responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def coverage(self, request: Request, pk: str | None = None) -> Response:
        """Which server recorded each camera when, and every gap, read from the nodes; a
        period longer than one request reads ends at `until`, and `next` continues it."""
        return Response(_coverage(request, self.get_object()).as_dict())

    @extend_schema(parameters=COVERAGE_PARAMETERS, responses={(200, "text/csv"): str})
    @action(detail=True, methods=["get"], url_path="coverage/csv")
    def coverage_csv(self, request: Request, pk: str | None = None) -> HttpResponse:
        """The same as CSV: one row per span and per gap."""
        found = _coverage(request, self.get_object())
        response = HttpResponse(coverage.as_csv(found), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{coverage.csv_name(found)}"'
        return response


def _coverage(request: Request, server: Server) -> coverage.Coverage:
    q = request.query_params
    try:
        since, until = coverage.period(q.get("since"), q.get("until"))
        return coverage.coverage(server, since, until, camera=q.get("camera") or None)
    except coverage.BadPeriod as exc:
        raise ValidationError(str(exc)) from None


STATUS_CHOICES = [(key, label) for key, (label, _) in STATUSES.items()]


class ChoiceInFilter(filters.BaseInFilter, filters.ChoiceFilter):
    pass


class FailoverServerFilter(CmsFilterSet):
    """`status` is what the server does, as the status panel counts it (standby, taking
    over, acting, restoring, abnormal, not probed yet, disabled); `health` is its probe
    result alone."""

    status = filters.ChoiceFilter(choices=STATUS_CHOICES, method="by_status")
    status__in = ChoiceInFilter(choices=STATUS_CHOICES, method="by_status")
    health = filters.ChoiceFilter(field_name="status", choices=HealthStatus.choices)
    health__in = ChoiceInFilter(field_name="status", choices=HealthStatus.choices,
                                lookup_expr="in")  # fmt: skip

    class Meta:
        model = Server
        fields = {
            "enabled": ["exact"],
            "connection_type": ["exact"],
            "team": ["exact"],
            "name": ["exact", "icontains"],
        }

    def by_status(self, queryset: QuerySet, name: str, value: str | list[str]) -> QuerySet:
        return filter_by_status(queryset, [value] if isinstance(value, str) else value)


class FailoverServerViewSet(inventory_views.FailoverServerViewSet):
    serializer_class = s.FailoverServerSerializer
    filterset_class = FailoverServerFilter
    filterset_fields = None

    def get_queryset(self) -> QuerySet:
        return annotate_status(super().get_queryset())


class ProtectionViewSet(inventory_views.CrudViewSet):
    serializer_class = s.ProtectionSerializer
    queryset = Protection.objects.select_related("recording_server", "failover_server")
    filterset_fields = ["recording_server", "failover_server"]
    ordering_fields = ["priority"]

    def perform_create(self, serializer: s.ProtectionSerializer) -> None:
        self._confirm_capacity(serializer)
        super().perform_create(serializer)

    def perform_update(self, serializer: s.ProtectionSerializer) -> None:
        data, saved = serializer.validated_data, serializer.instance
        if (data.get("recording_server") or saved.recording_server) != saved.recording_server or (
            data.get("failover_server") or saved.failover_server
        ) != saved.failover_server:  # a new priority alone asks nothing
            self._confirm_capacity(serializer)
        super().perform_update(serializer)

    def _confirm_capacity(self, serializer: s.ProtectionSerializer) -> None:
        """A protection no failover server of the recording server can carry is saved
        only with confirm=true (409 confirmation_required first)."""
        data, saved = serializer.validated_data, serializer.instance
        recording = data.get("recording_server") or saved.recording_server
        failover = data.get("failover_server") or saved.failover_server
        others = (
            Protection.objects.filter(recording_server=recording)
            .exclude(pk=saved.pk if saved else None)
            .select_related("failover_server")
        )
        servers = [p.failover_server for p in others if p.failover_server_id != failover.pk]
        actions.confirm_protection(recording, [*servers, failover],
                                   confirmed=confirmed(self.request))  # fmt: skip


WHAT_IF_PARAMETER = OpenApiParameter(
    "servers", str,
    description="The recording servers that fail at once: their ids, comma-separated "
    "(none: nothing fails).",
)  # fmt: skip


class CapacityViewSet(TeamScopedViewSet):
    """The capacity planner (`failover.planner`): `GET /capacity/` lists each protected
    recording server with its failover servers' capacity read from their nodes and
    whether one carries it whole; `GET /capacity/what-if/?servers=1,2` says who covers
    whom if those fail at once, by the engine's own choice, and who is left uncovered."""

    queryset = Server.objects.filter(role=Role.RECORDING)
    pagination_class = None
    filter_backends: list = []

    @extend_schema(responses=s.CapacityTableSerializer)
    def table(self, request: Request) -> Response:
        rows = [row.as_dict() for row in planner.capacity_table(self.get_queryset())]
        return Response(
            {
                "recording_servers": rows,
                "uncarried": [r["recording_server"] for r in rows if r["carried"] is False],
            }
        )

    @extend_schema(parameters=[WHAT_IF_PARAMETER], responses=s.WhatIfSerializer)
    def what_if(self, request: Request) -> Response:
        given = request.query_params.get("servers", "").strip()
        raw = [part.strip() for part in given.split(",")] if given else []
        if not all(part.isdigit() for part in raw):
            raise ValidationError(
                {"servers": ["Give the recording servers' ids, comma-separated."]}
            )
        ids = {int(part) for part in raw}
        servers = list(self.get_queryset().filter(pk__in=ids))
        missing = sorted(ids - {server.pk for server in servers})
        if missing:
            raise ValidationError({"servers": [f"No recording server with id {missing[0]}."]})
        outcomes = [o.as_dict() for o in planner.what_if(servers)]
        return Response(
            {
                "outcomes": outcomes,
                "uncovered": [o["recording_server"] for o in outcomes if o["covered_by"] is None],
            }
        )


TEAM_PARAMETER = OpenApiParameter(
    "team", int, description="The team whose settings these are. Without it: a superuser's "
    "are the CMS's defaults (which every team without its own settings follows), a member "
    "of one team gets that team's; a member of several teams must say which.",
)  # fmt: skip


class FailoverSettingsViewSet(TeamScopedViewSet):
    """A team's failover settings, or the CMS's defaults: GET and PUT/PATCH at
    /failover-settings/ (`?team=`). Who may see and change which is
    `cms.permissions.may_see_failover_settings` / `may_change_failover_settings`."""

    serializer_class = s.FailoverSettingsSerializer
    queryset = FailoverSettings.objects.all()
    pagination_class = None
    filter_backends: list = []

    def get_queryset(self):
        return FailoverSettings.objects.for_user(self.request.user)

    def get_object(self) -> FailoverSettings:
        team = self._team()
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            allowed = may_see_failover_settings(self.request.user, team)
        else:
            allowed = may_change_failover_settings(self.request.user, team)
        if not allowed:
            raise PermissionDenied(
                "Only a superuser changes the CMS's defaults."
                if team is None
                else "Your role may not change this team's failover settings."
            )
        return FailoverSettings.own_or_copy(team)

    def _team(self) -> Team | None:
        user = self.request.user
        raw = self.request.query_params.get("team")
        teams = Team.objects.for_user(user)
        if raw is None:
            if user.is_superuser:
                return None
            mine = list(teams[:2])
            if len(mine) == 1:
                return mine[0]
            if not mine:
                raise NotFound("You belong to no team.")
            raise ValidationError({"team": ["You belong to several teams: say which (?team=)."]})
        if not raw.isdigit():
            raise ValidationError({"team": ["A team's id is a number."]})
        team = teams.filter(pk=int(raw)).first()
        if team is None:
            raise NotFound()
        return team

    @extend_schema(parameters=[TEAM_PARAMETER], responses=s.FailoverSettingsSerializer)
    def read(self, request: Request) -> Response:
        return Response(self.get_serializer(self.get_object()).data)

    def update_settings(self, request: Request, partial: bool = False) -> Response:
        serializer = self.get_serializer(self.get_object(), data=request.data,
                                         partial=partial)  # fmt: skip
        serializer.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                serializer.save()
        except IntegrityError:  # the team's first save, twice at once
            raise Conflict("The team's settings were saved meanwhile; reload and try again.",
                           code="conflict") from None  # fmt: skip
        return Response(serializer.data)

    @extend_schema(parameters=[TEAM_PARAMETER], request=s.FailoverSettingsSerializer,
                   responses=s.FailoverSettingsSerializer)  # fmt: skip
    def put(self, request: Request) -> Response:
        return self.update_settings(request)

    @extend_schema(parameters=[TEAM_PARAMETER], request=s.FailoverSettingsSerializer,
                   responses=s.FailoverSettingsSerializer)  # fmt: skip
    def patch(self, request: Request) -> Response:
        return self.update_settings(request, partial=True)


class FailoverEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet):
    serializer_class = s.FailoverEventSerializer
    queryset = FailoverEvent.objects.select_related("restoration").prefetch_related("transitions")
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

    @extend_schema(request=None, responses={202: ACCEPTED})
    @action(detail=True, methods=["post"], url_path="fail-back")
    def fail_back(self, request: Request, pk: str | None = None) -> Response:
        event = actions.fail_back(request.user, self.get_object())
        return Response({"event": event.pk, "state": event.state}, status=202)

    @extend_schema(
        request=ConfirmSerializer,
        responses=s.FailoverEventSerializer,
    )
    @action(detail=True, methods=["post"], url_path="stop-restoration")
    def stop_restoration(self, request: Request, pk: str | None = None) -> Response:
        event = self.get_object()
        actions.stop_restoration(request.user, event, confirmed=confirmed(request))
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
        actions.replace_protected_server(request.user, event, target,
                                         confirmed=params.validated_data["confirm"])  # fmt: skip
        event.refresh_from_db()
        if event.state == EventState.RESTORING:
            return Response({"event": event.pk, "state": event.state}, status=202)
        return Response(self.get_serializer(event).data)


class RestorationJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet):
    serializer_class = s.RestorationJobSerializer
    queryset = RestorationJob.objects.all()
    filterset_fields = ["state", "event"]
    ordering_fields = ["started_at", "updated_at"]


class GuardViewSet(TeamScopedViewSet):
    """The mass-failure guard (`failover.guard`): `GET /guard/` is its state in each of
    your teams and the recording servers it holds; `POST /guard/release/` releases
    `{"servers": [ids]}` or `{"all": true}` (optionally `"team"`): each one still down
    fails over now. Releasing needs the manual-failover permission."""

    queryset = GuardHold.objects.all()
    serializer_class = s.GuardReleaseSerializer  # what OPTIONS describes
    pagination_class = None
    filter_backends: list = []
    action_permissions = {"release": "trigger_failover"}

    @extend_schema(responses=s.GuardStateSerializer(many=True))
    def state(self, request: Request) -> Response:
        teams = Team.objects.for_user(request.user)
        return Response([state.as_dict() for state in guard.states(teams)])

    @extend_schema(request=s.GuardReleaseSerializer, responses=s.GuardReleasedSerializer(many=True))
    def release(self, request: Request) -> Response:
        params = s.GuardReleaseSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        teams = Team.objects.for_user(request.user)
        if "team" in data:
            teams = teams.filter(pk=data["team"])
            if not teams.exists():
                raise NotFound("No such team.")
        servers = None
        if data.get("servers"):
            ids = set(data["servers"])
            servers = list(Server.objects.for_user(request.user).filter(pk__in=ids))
            missing = sorted(ids - {server.pk for server in servers})
            if missing:
                raise NotFound(f"No recording server with id {missing[0]}.")
            held = set(
                GuardHold.objects.filter(server__in=servers).values_list("server_id", flat=True)
            )
            free = sorted(server.name for server in servers if server.pk not in held)
            if free:
                raise Conflict(f"Not held by the mass-failure guard: {', '.join(free)}.",
                               code="not_held")  # fmt: skip
        done = actions.release_guard(request.user, servers, list(teams))
        return Response(
            [
                {
                    "server": r.server.pk,
                    "name": r.server.name,
                    "event": r.event.pk if r.event else None,
                }
                for r in done
            ]
        )
