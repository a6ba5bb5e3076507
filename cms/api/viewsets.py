"""Base viewset: the team restriction and the audit actor, once for every endpoint."""

from __future__ import annotations

from typing import Any

from auditlog.context import set_actor
from rest_framework import viewsets
from rest_framework.request import Request

YES = {"true", "1", "yes"}


def confirmed(request: Request) -> bool:
    """Did the request confirm the consequences (`confirm` in the body or the query)?"""
    data = request.data if hasattr(request.data, "get") else {}
    value = data.get("confirm", request.query_params.get("confirm", ""))
    return str(value).lower() in YES


class TeamScopedViewSet(viewsets.GenericViewSet):
    """A viewset declares `queryset` and `serializer_class`; every query goes through
    the queryset's `restrict(user, action)` here, once per request: another team's
    object answers 404, and a product action the role lacks finds nothing."""

    action_permissions: dict[str, str] = {}

    def get_queryset(self):
        queryset = super().get_queryset()
        action = self.action_permissions.get(getattr(self, "action", None) or "", "view")
        return queryset.restrict(self.request.user, action)

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        # Token-authenticated users are known only now, after the audit middleware ran:
        # name them as the actor of every change this request makes.
        self._actor_context = set_actor(
            request.user if request.user.is_authenticated else None,
            remote_addr=request.META.get("REMOTE_ADDR"),
        )
        self._actor_context.__enter__()

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any):
        context = getattr(self, "_actor_context", None)
        if context is not None:
            context.__exit__(None, None, None)
            self._actor_context = None
        return super().finalize_response(request, response, *args, **kwargs)
