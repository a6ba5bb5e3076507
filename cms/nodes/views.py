"""HTTP endpoints of the QuickConnect directory (mounted at ``/qc/``)."""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from cms.nodes import directory
from cms.nodes.errors import NodeUnreachable

MAX_BODY = 4096


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


@csrf_exempt  # a machine-to-machine JSON API authenticated by the node's token, no cookies
@require_POST
def register(request: HttpRequest) -> JsonResponse:
    if len(request.body) > MAX_BODY:
        return _error(413, "too_large", f"body over {MAX_BODY} bytes")
    try:
        body = json.loads(request.body)
    except ValueError:
        return _error(400, "malformed_json", "body is not valid JSON")
    if not isinstance(body, dict):
        return _error(400, "malformed_json", "body must be a JSON object")
    try:
        entry = directory.register(body, request.META.get("REMOTE_ADDR", ""))
    except directory.RegistrationError as exc:
        return _error(exc.status, exc.code, exc.message)
    return JsonResponse({"id": entry.qc_id, "host": entry.host, "port": entry.port})


@require_GET
def resolve(request: HttpRequest, qc_id: str) -> JsonResponse:
    try:
        host, port = directory.resolve(qc_id)
    except NodeUnreachable as exc:
        return _error(404, exc.code, exc.message)
    return JsonResponse({"id": qc_id, "host": host, "port": port})
