"""The connection helpers of the Add/Edit server page: Test Connection, Search, Enable.

Small JSON views under each server tab's admin URLs, used by the page's script
without leaving it. They check the same permission as the API (`test_connection`).
Their node calls run inside `web_node_call`: at most 10 s, and one request per node
at a time per process (a second gets a "busy" answer at once).
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from cms.nodes.client import client_for
from cms.nodes.discovery import search
from cms.nodes.errors import NodeBusy, NodeError
from cms.nodes.services import test_connection
from cms.nodes.webcalls import address_of, web_node_call
from cms.permissions import can

from .addresses import host_errors, quickconnect_id_errors
from .models import Server


def _server_from(request: HttpRequest, role: str) -> tuple[Server | None, dict[str, list[str]]]:
    data = request.POST
    connection_type = data.get("connection_type", "address")
    server = Server(
        role=role,
        connection_type=connection_type,
        host=data.get("host", "").strip(),
        port=int(data.get("port") or 5000) if (data.get("port") or "5000").isdigit() else 0,
        use_https=data.get("use_https") in ("on", "true", "1") and connection_type == "address",
        quickconnect_id=data.get("quickconnect_id", "").strip(),
        admin_username=data.get("admin_username") or "admin",
        admin_password=data.get("admin_password_input", ""),
    )
    errors: dict[str, list[str]] = {}
    if connection_type == "address":
        if problems := host_errors(server.host):
            errors["host"] = problems
        if not 1 <= server.port <= 65535:
            errors["port"] = ["The port is a number from 1 to 65535."]
    elif problems := quickconnect_id_errors(server.quickconnect_id):
        errors["quickconnect_id"] = problems
    pk = data.get("pk")
    if not server.admin_password and pk and pk.isdigit():
        # Editing: the stored password is used when none is typed.
        stored = Server.objects.for_user(request.user).filter(pk=int(pk)).first()
        if stored is not None:
            server.admin_password = stored.admin_password
            server.tls_fingerprint = stored.tls_fingerprint
    if not server.admin_password:
        errors["admin_password_input"] = ["Enter the admin password of the server."]
    return (None if errors else server), errors


def _check(request: HttpRequest) -> None:
    if not can(request.user, "test_connection"):
        raise PermissionDenied


@require_POST
def test_connection_view(request: HttpRequest, role: str) -> JsonResponse:
    _check(request)
    server, errors = _server_from(request, role)
    if server is None:
        return JsonResponse({"ok": False, "errors": errors}, status=400)
    try:
        with web_node_call(address_of(server)):
            return JsonResponse(asdict(test_connection(server)))
    except NodeBusy as exc:
        return _busy(exc)


@require_POST
def search_view(request: HttpRequest, role: str) -> JsonResponse:
    _check(request)
    address = request.POST.get("address") or settings.CMS_DISCOVERY_ADDRESS
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        message = "Not an IPv4 broadcast address."
        return JsonResponse({"results": [], "message": message}, status=400)
    try:
        with web_node_call(f"search:{address}"):
            found = search(timeout=2.0, port=settings.CMS_DISCOVERY_PORT, address=address)
    except NodeBusy as exc:
        return JsonResponse({"results": [], "message": exc.message}, status=503)
    return JsonResponse({"results": found})


@require_POST
def enable_view(request: HttpRequest, role: str) -> JsonResponse:
    """Enable the CMS service of a server found by the search, in this tab's mode."""
    _check(request)
    server, errors = _server_from(request, role)
    if server is None:
        return JsonResponse({"ok": False, "errors": errors}, status=400)
    try:
        with web_node_call(address_of(server)):
            info: Any = client_for(server, pin=False).enable_cms(
                role,
                refuse_other_hosts=request.POST.get("refuse_other_hosts") == "on",
                refuse_local_changes=request.POST.get("refuse_local_changes") == "on",
            )
    except NodeBusy as exc:
        return _busy(exc)
    except NodeError as exc:
        return JsonResponse({"ok": False, "error_code": exc.code, "message": str(exc)})
    message = f"The CMS service of {info.get('name')} is enabled."
    return JsonResponse({"ok": True, "cms_mode": info.get("cms_mode"), "message": message})


def _busy(exc: NodeBusy) -> JsonResponse:
    return JsonResponse({"ok": False, "error_code": exc.code, "message": exc.message}, status=503)
