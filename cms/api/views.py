"""Inventory endpoints: teams, the two server lists with their actions, licenses."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from cms.inventory import licenses as license_service
from cms.inventory.batch import batch_add
from cms.inventory.choices import Role
from cms.inventory.locking import set_lock
from cms.inventory.models import FailoverServer, License, RecordingServer, Server, Team
from cms.nodes import directory, enrollment
from cms.nodes.discovery import search
from cms.nodes.services import ConnectionReport, test_connection
from cms.nodes.webcalls import address_of, web_node_call
from cms.permissions import may_use_stored_password
from failover import engine
from failover.events import actor_name

from . import serializers as s
from .errors import ConfirmationRequired, Conflict
from .viewsets import TeamScopedViewSet


class CrudViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    TeamScopedViewSet,
):
    pass


class TeamViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet):
    serializer_class = s.TeamSerializer
    queryset = Team.objects.none()
    ordering_fields = ["name", "created_at"]
    search_fields = ["name"]

    def get_queryset(self):
        return Team.objects.for_user(self.request.user)


SERVER_FILTERS = {
    "status": ["exact", "in"],
    "enabled": ["exact"],
    "connection_type": ["exact"],
    "team": ["exact"],
    "name": ["exact", "icontains"],
}


class ServerViewSet(CrudViewSet):
    """One of the two server lists; `role` says which."""

    role: str = ""
    model = Server
    serializer_class = s.ServerSerializer
    queryset = Server.objects.none()
    filterset_fields = SERVER_FILTERS
    ordering_fields = ["name", "status", "last_seen", "created_at"]
    search_fields = ["name", "host", "quickconnect_id", "model", "serial"]
    action_permissions = {
        "enable": "enable",
        "disable": "enable",
        "test_connection": "test_connection",
        "test_new_connection": "test_connection",
        "search": "test_connection",
        "lock": "lock",
        "unlock": "lock",
    }

    def get_queryset(self):
        return (
            Server.objects.for_user(self.request.user).filter(role=self.role).select_related("team")
        )

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "role": self.role}

    @extend_schema(request=None, responses=s.ServerSerializer)
    @action(detail=True, methods=["post"])
    def enable(self, request: Request, pk: str | None = None) -> Response:
        server = self.get_object()
        Server.objects.filter(pk=server.pk).set_enabled(True)
        server.refresh_from_db()
        return Response(self.get_serializer(server).data)

    @extend_schema(
        request=inline_serializer("Confirm", {"confirm": serializers.BooleanField(default=False)}),
        responses=s.ServerSerializer,
    )
    @action(detail=True, methods=["post"])
    def disable(self, request: Request, pk: str | None = None) -> Response:
        server = self.get_object()
        _confirm_stopping(server, request, "disabled")
        Server.objects.filter(pk=server.pk).set_enabled(False)
        server.refresh_from_db()
        return Response(self.get_serializer(server).data)

    @extend_schema(request=None, responses=s.ServerSerializer,
                   description="Security lock: the server refuses other CMS hosts and changes "
                   "made on it.")  # fmt: skip
    @action(detail=True, methods=["post"])
    def lock(self, request: Request, pk: str | None = None) -> Response:
        server = self.get_object()
        with web_node_call(address_of(server)):
            return Response(self.get_serializer(set_lock(server, True)).data)

    @extend_schema(request=None, responses=s.ServerSerializer)
    @action(detail=True, methods=["post"])
    def unlock(self, request: Request, pk: str | None = None) -> Response:
        server = self.get_object()
        with web_node_call(address_of(server)):
            return Response(self.get_serializer(set_lock(server, False)).data)

    @extend_schema(request=None, responses=s.ConnectionReportSerializer)
    @action(detail=True, methods=["post"], url_path="test-connection")
    def test_connection(self, request: Request, pk: str | None = None) -> Response:
        server = self.get_object()
        if not may_use_stored_password(request.user, server):
            raise exceptions.PermissionDenied("Testing with the stored password is an edit.")
        with web_node_call(address_of(server)):
            report = test_connection(server)
        return Response(s.ConnectionReportSerializer(report).data)

    @extend_schema(request=s.ConnectionSerializer, responses=s.ConnectionReportSerializer)
    @action(detail=False, methods=["post"], url_path="test-connection")
    def test_new_connection(self, request: Request) -> Response:
        params = s.ConnectionSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        server = Server(role=self.role, **params.validated_data)
        qc_id = enrollment.quickconnect_id_of(server.connection_type, server.quickconnect_id)
        if qc_id and not directory.may_reach(request.user, qc_id):
            hidden = directory.unknown_id(qc_id)  # as if it were not bound
            report = ConnectionReport(ok=False, error_code=hidden.code, message=hidden.message)
        else:
            with web_node_call(address_of(server)):
                report = test_connection(server)
        return Response(s.ConnectionReportSerializer(report).data)

    @extend_schema(
        request=inline_serializer(
            "Search",
            {
                "timeout": serializers.FloatField(default=2.0, min_value=0.2, max_value=10),
                "address": serializers.IPAddressField(required=False, protocol="ipv4"),
            },
        ),
        responses=s.SearchResultSerializer(many=True),
    )
    @action(detail=False, methods=["post"])
    def search(self, request: Request) -> Response:
        """Search the LAN for node agents (the magnifier button)."""
        params = s.SearchSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        address = params.validated_data.get("address") or settings.CMS_DISCOVERY_ADDRESS
        with web_node_call(f"search:{address}"):
            found = search(
                timeout=params.validated_data["timeout"],
                port=settings.CMS_DISCOVERY_PORT,
                address=address,
            )
        return Response(s.SearchResultSerializer(found, many=True).data)

    @extend_schema(request=s.BatchAddSerializer, responses={201: s.ServerSerializer(many=True)})
    @action(detail=False, methods=["post"], url_path="batch-add")
    def batch_add(self, request: Request) -> Response:
        if not request.user.has_perm(f"inventory.add_{self.perms_model._meta.model_name}"):
            raise PermissionDenied()
        params = s.BatchAddSerializer(data=request.data, context={"request": request})
        params.is_valid(raise_exception=True)
        data = params.validated_data
        result = batch_add(data["team"], self.role, data["naming_rule"], data["servers"],
                           prefix=data["prefix"])  # fmt: skip
        if not result.ok:
            rows = {str(k): v for k, v in result.errors.items()}
            raise Conflict("No server was added; see the rows that cannot be.",
                           code="batch_refused", rows=rows, naming=result.rule_errors)  # fmt: skip
        return Response(s.ServerSerializer(result.created, many=True).data, status=201)

    def perform_create(self, serializer: s.ServerSerializer) -> None:
        with transaction.atomic():  # no secret for a server that was not added
            server = serializer.save()
            secret = enrollment.issue_for_server(server)
        if secret:  # for this answer only (quickconnect_enrollment_secret)
            server.quickconnect_enrollment_secret = secret

    def perform_update(self, serializer: s.ServerSerializer) -> None:
        _confirm_stopping(serializer.instance, self.request, "edited")
        before = serializer.instance  # validation left it as stored
        previous = enrollment.quickconnect_id_of(before.connection_type, before.quickconnect_id)
        with transaction.atomic():
            server = serializer.save()
            secret = enrollment.issue_for_server(server, previous)
        if secret:
            server.quickconnect_enrollment_secret = secret

    @extend_schema(request=None, responses=s.EnrollmentSecretSerializer,
                   description="Issue a new QuickConnect enrollment secret for the server's "
                   "ID, when its node was replaced. The node bound now stays reached until "
                   "a node presents the new secret.")  # fmt: skip
    @action(detail=True, methods=["post"], url_path="quickconnect-enrollment")
    def quickconnect_enrollment(self, request: Request, pk: str | None = None) -> Response:
        if not request.user.has_perm(f"inventory.change_{self.perms_model._meta.model_name}"):
            raise PermissionDenied()
        server = self.get_object()
        qc_id = enrollment.quickconnect_id_of(server.connection_type, server.quickconnect_id)
        if qc_id is None:
            raise Conflict(f"{server.name} is reached by an IP address or FQDN: it has no "
                           "QuickConnect ID to enroll.", code="not_quickconnect")  # fmt: skip
        secret = enrollment.issue(qc_id)
        return Response({"quickconnect_id": qc_id, "quickconnect_enrollment_secret": secret})

    @extend_schema(parameters=[OpenApiParameter("confirm", bool, description=
        "Deleting a failover server that has taken over stops the failover and removes "
        "what it recorded meanwhile: set true to do it anyway.")])  # fmt: skip
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        server = self.get_object()
        _confirm_stopping(server, request, "deleted")
        if server.role == Role.RECORDING:
            engine.before_deleting_recording_server(server, actor=actor_name(request.user))
        server.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


def _confirm_stopping(server: Server, request: Request, what: str) -> None:
    """A failover server that acts: refuse unless confirmed; stop it if confirmed."""
    if server.role != Role.FAILOVER:
        return
    event = engine.acting_event(server)
    if event is None:
        return
    confirmed = str(request.data.get("confirm", request.query_params.get("confirm", ""))).lower()
    confirmed = confirmed in {"true", "1", "yes"} or request.data.get("confirm_stop_failover")
    consequence = (
        f"{server.name} has taken over for {event.recording_server_name}: if it is {what}, "
        "its failover stops and the recordings and snapshots it made during the failover "
        "are removed."
    )
    if not confirmed:
        raise ConfirmationRequired(consequence + " Repeat with confirm=true.", [consequence])
    engine.stop_failover(server, actor=actor_name(request.user), reason=f"{server.name} was {what}")


class RecordingServerViewSet(ServerViewSet):
    role = Role.RECORDING
    perms_model = RecordingServer
    action_permissions = {**ServerViewSet.action_permissions, "manual_failover": "trigger_failover"}

    @extend_schema(request=None, responses={202: inline_serializer("Accepted", {
        "event": serializers.IntegerField(), "state": serializers.CharField()})})  # fmt: skip
    @action(detail=True, methods=["post"], url_path="manual-failover")
    def manual_failover(self, request: Request, pk: str | None = None) -> Response:
        try:
            event = engine.manual_failover(self.get_object(), actor=actor_name(request.user))
        except engine.FailoverError as exc:
            raise Conflict(str(exc)) from None
        return Response({"event": event.pk, "state": event.state}, status=202)


class FailoverServerViewSet(ServerViewSet):
    role = Role.FAILOVER
    perms_model = FailoverServer


class LicenseViewSet(CrudViewSet):
    model = License
    serializer_class = s.LicenseSerializer
    queryset = License.objects.none()
    filterset_fields = {"team": ["exact"], "server": ["exact", "isnull"], "key": ["exact"]}
    ordering_fields = ["key", "cameras", "created_at"]
    search_fields = ["key", "note", "server__name"]
    action_permissions = {"install": "manage_licenses", "uninstall": "manage_licenses"}

    def get_queryset(self):
        return (
            License.objects.for_user(self.request.user)
            .select_related("server", "team")
            .prefetch_related("moves")
        )

    def perform_destroy(self, instance: License) -> None:
        if instance.server_id:
            raise Conflict("Remove the license from its server first (uninstall).",
                           code="license_installed")  # fmt: skip
        instance.delete()

    @extend_schema(request=s.LicenseInstallSerializer, responses=s.LicenseSerializer)
    @action(detail=True, methods=["post"])
    def install(self, request: Request, pk: str | None = None) -> Response:
        lic = self.get_object()
        params = s.LicenseInstallSerializer(data=request.data, context={"request": request})
        params.is_valid(raise_exception=True)
        target = params.validated_data["server"]
        nodes = [address_of(x) for x in (target, lic.server) if x is not None]
        try:
            with web_node_call(*nodes):
                license_service.install(lic, target, actor=actor_name(request.user))
        except license_service.LicenseMovedMeanwhile as exc:
            raise Conflict(str(exc), code="license_moved") from None
        except license_service.LicenseOfAnotherTeam as exc:
            raise serializers.ValidationError({"server": [str(exc)]}) from None
        lic.refresh_from_db()
        return Response(self.get_serializer(lic).data)

    @extend_schema(request=None, responses=s.LicenseSerializer)
    @action(detail=True, methods=["post"])
    def uninstall(self, request: Request, pk: str | None = None) -> Response:
        lic = self.get_object()
        try:
            with web_node_call(*([address_of(lic.server)] if lic.server else [])):
                license_service.uninstall(lic, actor=actor_name(request.user))
        except license_service.LicenseMovedMeanwhile as exc:
            raise Conflict(str(exc), code="license_moved") from None
        lic.refresh_from_db()
        return Response(self.get_serializer(lic).data)
