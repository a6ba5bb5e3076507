"""HTTP endpoints of the QuickConnect directory (mounted at ``/qc/``).

``register`` is for nodes: anonymous, proven by the enrollment secret or the node's
serial and token, and rate limited per client address. ``resolve`` is for people and
scripts: it needs a login (session or API token) and answers only for the IDs of
servers the user may see.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cms.logins import client_address
from cms.nodes import directory, throttle
from cms.nodes.errors import NodeUnreachable

MAX_BODY = 4096


def _error(status: int, code: str, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message, **extra}}, status=status)


def _body(request: HttpRequest) -> dict[str, Any]:
    if len(request.body) > MAX_BODY:
        raise directory.RegistrationError(413, "too_large", f"body over {MAX_BODY} bytes")
    try:
        body = json.loads(request.body)
    except ValueError:
        raise directory.RegistrationError(400, "malformed_json", "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise directory.RegistrationError(400, "malformed_json", "body must be a JSON object")
    return body


def _throttled(seconds: int) -> JsonResponse:
    response = _error(
        429,
        "throttled",
        f"Too many refused registrations from this address; try again in {seconds} s.",
        retry_after=seconds,
    )
    response["Retry-After"] = str(seconds)
    return response


@csrf_exempt  # a machine-to-machine JSON API authenticated by the node's secrets, no cookies
@require_POST
def register(request: HttpRequest) -> JsonResponse:
    address = (client_address(request) or "")[:64]
    wait = throttle.retry_after(address)
    try:
        entry = directory.register(_body(request), address, may_enroll=wait is None)
    except directory.RegistrationError as exc:
        if wait is not None:
            return _throttled(wait)
        throttle.record_refusal(address)
        return _error(exc.status, exc.code, exc.message)
    return JsonResponse({"id": entry.qc_id, "host": entry.host, "port": entry.port})


class ResolveView(APIView):
    """Where a QuickConnect ID's node is: for a logged-in user who may see its server."""

    permission_classes = [IsAuthenticated]

    @extend_schema(exclude=True)  # the directory, not the inventory API
    def get(self, request: Request, qc_id: str) -> Response:
        try:
            host, port = directory.resolve_for(request.user, qc_id)
        except NodeUnreachable as exc:
            return Response({"error": {"code": exc.code, "message": exc.message}}, status=404)
        return Response({"id": qc_id, "host": host, "port": port})


resolve = ResolveView.as_view()
