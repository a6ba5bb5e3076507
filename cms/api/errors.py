"""One error shape for the whole API: {"error": {"code", "message", "fields"?, ...}}."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from cms.actions import ActionRefused, ConfirmationRequired
from cms.nodes.errors import NodeBusy, NodeError

CODES = {
    400: "validation_error",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    415: "unsupported_media_type",
    429: "throttled",
}


class Conflict(exceptions.APIException):
    """The request is valid but the object's state does not allow it now."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"

    def __init__(self, message: str, code: str = "conflict", **extra: Any) -> None:
        super().__init__(message, code)
        self.code = code
        self.extra = extra


def error_response(status_code: int, code: str, message: str, **extra: Any) -> Response:
    return Response({"error": {"code": code, "message": message, **extra}}, status=status_code)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    if isinstance(exc, ConfirmationRequired):  # the admin shows the same list as a page
        exc = Conflict(f"{exc.message} Repeat with confirm=true.", code="confirmation_required",
                       consequences=exc.consequences)  # fmt: skip
    if isinstance(exc, ActionRefused):
        exc = Conflict(str(exc))
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, NodeBusy):  # this CMS is waiting for that node already: retry soon
        response = error_response(503, "node_busy", str(exc))
        response["Retry-After"] = "5"
        return response
    if isinstance(exc, NodeError):
        return error_response(502, f"node_{exc.code}", str(exc))
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = CODES.get(response.status_code, "error")
    extra: dict[str, Any] = {}
    if isinstance(exc, Conflict):
        code, message, extra = exc.code, str(exc.detail), exc.extra
    elif isinstance(exc, exceptions.ValidationError):
        message = "The request has invalid values; see fields."
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        extra = {"fields": detail}
    else:
        message = str(exc.detail) if hasattr(exc, "detail") else str(exc)
    response.data = {"error": {"code": code, "message": message, **extra}}
    return response
