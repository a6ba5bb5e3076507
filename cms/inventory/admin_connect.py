"""The connection helpers of the Add/Edit server page: Test Connection, Search, Enable.

Small JSON views under each server tab's admin URLs, used by the page's script
without leaving it. They check the same permission as the API (`test_connection`).
Their node calls run inside `web_node_call`: at most 10 s, and one request per node
at a time per process (a second gets a "busy" answer at once).
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from cms.nodes import directory
from cms.nodes.discovery import search
from cms.nodes.errors import NodeBusy, NodeError
from cms.nodes.services import ConnectionReport, test_connection
from cms.nodes.webcalls import address_of, web_node_call
from cms.permissions import can, may_use_stored_password

from . import actions
from .connection import DEFAULTS, errors_of, server_for
from .found import with_status
from .models import Server


def _server_from(request: HttpRequest, role: str) -> tuple[Server | None, dict[str, list[str]]]:
    data = request.POST
    connection_type = data.get("connection_type", "address")
    port = data.get("port") or str(DEFAULTS["port"])
    server = server_for(role, {
        "connection_type": connection_type,
        "host": data.get("host", "").strip(),
        "port": int(port) if port.isdigit() else 0,
        # A QuickConnect connection has no HTTPS choice: the page's hidden box is ignored.
        "use_https": data.get("use_https") in ("on", "true", "1") and connection_type == "address",
        "quickconnect_id": data.get("quickconnect_id", "").strip(),
        "admin_username": data.get("admin_username") or DEFAULTS["admin_username"],
        "admin_password": data.get("admin_password_input", ""),
    })  # fmt: skip
    errors = errors_of(server)
    if connection_type == "address" and not 1 <= server.port <= 65535:
        errors["port"] = ["The port is a number from 1 to 65535."]
    pk = data.get("pk")
    if not server.admin_password and pk and pk.isdigit():
        # Editing with no password typed: the stored one, but only for that server at its
        # stored address (else a page pointed at a listener would hand it over), and only
        # for who may edit it.
        stored = Server.objects.for_user(request.user).filter(pk=int(pk)).first()
        if stored is not None and may_use_stored_password(request.user, stored):
            if _same_node(stored, server):
                server.admin_password = stored.admin_password
                server.tls_fingerprint = stored.tls_fingerprint
            else:
                errors["admin_password_input"] = [
                    "The stored password is used only at the server's saved address; "
                    "type the admin password to test another one."
                ]
    if not server.admin_password and "admin_password_input" not in errors:
        errors["admin_password_input"] = ["Enter the admin password of the server."]
    return (None if errors else server), errors


def _same_node(stored: Server, asked: Server) -> bool:
    if stored.connection_type != asked.connection_type:
        return False
    if stored.connection_type == "quickconnect":
        return stored.quickconnect_id == asked.quickconnect_id
    return (stored.host, stored.port, stored.use_https) == (
        asked.host,
        asked.port,
        asked.use_https,
    )


def _hidden(request: HttpRequest, server: Server) -> JsonResponse | None:
    """Another team's QuickConnect node answers as an ID that is not registered."""
    if server.connection_type == "quickconnect" and not directory.may_reach(
        request.user, server.quickconnect_id
    ):
        hidden = directory.unknown_id(server.quickconnect_id)
        report = ConnectionReport(ok=False, error_code=hidden.code, message=hidden.message)
        return JsonResponse(asdict(report))
    return None


def _check(request: HttpRequest) -> None:
    if not can(request.user, "test_connection"):
        raise PermissionDenied


@require_POST
def test_connection_view(request: HttpRequest, role: str) -> JsonResponse:
    _check(request)
    server, errors = _server_from(request, role)
    if server is None:
        return JsonResponse({"ok": False, "errors": errors}, status=400)
    if (refused := _hidden(request, server)) is not None:
        return refused
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
    return JsonResponse({"results": with_status(found, request.user, role)})


@require_POST
def enable_view(request: HttpRequest, role: str) -> JsonResponse:
    """Enable the CMS service of a server found by the search, in this tab's mode.

    It sets the node's CMS mode and its security lock: the lock permission
    (Administrators), as the API's lock and batch add ask."""
    _check(request)
    if not can(request.user, "lock"):
        raise PermissionDenied
    server, errors = _server_from(request, role)
    if server is None:
        return JsonResponse({"ok": False, "errors": errors}, status=400)
    if (refused := _hidden(request, server)) is not None:
        return refused
    lock = {key: request.POST.get(key) == "on"
            for key in ("refuse_other_hosts", "refuse_local_changes")}  # fmt: skip
    try:
        info = actions.enable_cms_service(request.user, server, lock,
                                          remote_addr=request.META.get("REMOTE_ADDR"))  # fmt: skip
    except NodeBusy as exc:
        return _busy(exc)
    except NodeError as exc:
        return JsonResponse({"ok": False, "error_code": exc.code, "message": str(exc)})
    message = f"The CMS service of {info.get('name')} is enabled."
    return JsonResponse({"ok": True, "cms_mode": info.get("cms_mode"), "message": message})


def _busy(exc: NodeBusy) -> JsonResponse:
    return JsonResponse({"ok": False, "error_code": exc.code, "message": exc.message}, status=503)
