"""The inventory's endpoints: teams, the two server lists with their actions, licenses.

Each viewset declares its queryset and serializer; the base viewset scopes the queryset
to the user and the action once per request, and the actions are `..actions`' services.
"""

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

from cms.api.errors import Conflict
from cms.api.serializers import ConfirmSerializer
from cms.api.viewsets import TeamScopedViewSet, confirmed
from cms.audit import actor_name
from cms.nodes import directory, enrollment
from cms.nodes.discovery import search
from cms.nodes.services import ConnectionReport, test_connection
from cms.nodes.webcalls import address_of, web_node_call
from cms.permissions import may_use_stored_password

from .. import actions
from .. import licenses as license_service
from ..batch import batch_add
from ..choices import Role
from ..connection import server_for
from ..found import with_status
from ..models import FailoverServer, License, RecordingServer, Server, Team
from . import serializers as s


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
    queryset = Team.objects.all()
    ordering_fields = ["name", "created_at"]
    search_fields = ["name"]


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
    serializer_class = s.ServerSerializer
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

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "role": self.role,
                "confirmed": self.request is not None and _confirmed(self.request)}  # fmt: skip

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def enable(self, request: Request, pk: str | None = None) -> Response:
        server = self.get_object()
        actions.set_enabled(request.user, [server], True)
        server.refresh_from_db()
        return Response(self.get_serializer(server).data)

    @extend_schema(request=ConfirmSerializer)
    @action(detail=True, methods=["post"])
    def disable(self, request: Request, pk: str | None = None) -> Response:
        server = self.get_object()
        actions.set_enabled(request.user, [server], False, confirmed=_confirmed(request))
        server.refresh_from_db()
        return Response(self.get_serializer(server).data)

    @extend_schema(request=None,
                   description="Security lock: the server refuses other CMS hosts and changes "
                   "made on it.")  # fmt: skip
    @action(detail=True, methods=["post"])
    def lock(self, request: Request, pk: str | None = None) -> Response:
        server = actions.set_lock(request.user, self.get_object(), True)
        return Response(self.get_serializer(server).data)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def unlock(self, request: Request, pk: str | None = None) -> Response:
        server = actions.set_lock(request.user, self.get_object(), False)
        return Response(self.get_serializer(server).data)

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
    @action(detail=False, methods=["post"], url_path="test-connection", pagination_class=None,
            filter_backends=[])  # fmt: skip
    def test_new_connection(self, request: Request) -> Response:
        params = s.ConnectionSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        server = server_for(self.role, params.validated_data)
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
    @action(detail=False, methods=["post"], pagination_class=None, filter_backends=[])
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
        found = with_status(found, request.user, self.role)
        return Response(s.SearchResultSerializer(found, many=True).data)

    @extend_schema(request=s.BatchAddSerializer, responses={201: s.ServerSerializer(many=True)})
    @action(detail=False, methods=["post"], url_path="batch-add", pagination_class=None,
            filter_backends=[])  # fmt: skip
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
        before = serializer.instance  # validation left it as stored
        previous = enrollment.quickconnect_id_of(before.connection_type, before.quickconnect_id)

        def save() -> tuple[Server, str | None]:
            with transaction.atomic():
                server = serializer.save()
                return server, enrollment.issue_for_server(server, previous)

        changed = _changes(before, serializer.validated_data)
        server, secret = actions.edit(self.request.user, before, save, changed=changed,
                                      confirmed=_confirmed(self.request))  # fmt: skip
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
        "Deleting a server whose removal has consequences (a failover server that has "
        "taken over stops its failover) answers 409 confirmation_required with them: set "
        "true to do it anyway.")])  # fmt: skip
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        actions.delete(request.user, [self.get_object()], confirmed=_confirmed(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _confirmed(request: Request) -> bool:
    return confirmed(request)


def _changes(server: Server, values: dict[str, Any]) -> bool:
    """Whether saving `values` changes the stored `server`: a PATCH that repeats what is
    stored has no consequences to confirm."""
    for name, value in values.items():
        stored = getattr(server, name, None)
        if name == "admin_password":
            try:
                stored = stored.reveal() if stored is not None else ""
            except Exception:  # a password no configured key decrypts: a new one is a change
                return True
        if stored != value:
            return True
    return False


class RecordingServerViewSet(ServerViewSet):
    role = Role.RECORDING
    queryset = Server.objects.filter(role=Role.RECORDING).select_related("team")
    perms_model = RecordingServer


class FailoverServerViewSet(ServerViewSet):
    role = Role.FAILOVER
    queryset = Server.objects.filter(role=Role.FAILOVER).select_related("team")
    perms_model = FailoverServer


class LicenseViewSet(CrudViewSet):
    serializer_class = s.LicenseSerializer
    queryset = License.objects.select_related("server", "team").prefetch_related("moves")
    filterset_fields = {"team": ["exact"], "server": ["exact", "isnull"], "key": ["exact"]}
    ordering_fields = ["key", "cameras", "created_at"]
    search_fields = ["key", "note", "server__name"]
    action_permissions = {"install": "manage_licenses", "uninstall": "manage_licenses"}

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
