"""Base viewset: the team restriction and the audit actor, once for every endpoint."""

from __future__ import annotations

from typing import Any

from auditlog.context import set_actor
from rest_framework import viewsets


class TeamScopedViewSet(viewsets.GenericViewSet):
    """Every query goes through `for_user()`: another team's object answers 404."""

    model: Any = None
    action_permissions: dict[str, str] = {}

    def get_queryset(self):
        return self.model.objects.for_user(self.request.user)

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
