"""API permissions: Django model permissions (reads need view) and the product's actions.

The decision is `cms.permissions.can()` for actions and Django's model permissions for
CRUD: the same rules the admin applies.
"""

from __future__ import annotations

from typing import Any

from rest_framework import permissions

from cms.permissions import can


class ModelPermissions(permissions.DjangoModelPermissions):
    """CRUD by model permission; an action by its product permission (`action_permissions`)."""

    perms_map = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": [],
    }

    def has_permission(self, request: Any, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        action = getattr(view, "action_permissions", {}).get(getattr(view, "action", None))
        if action is not None:
            return can(request.user, action)
        return super().has_permission(request, view)

    def _queryset(self, view: Any) -> Any:
        # The two server lists are the proxy models RecordingServer and FailoverServer:
        # their permissions, as in the admin, not the concrete Server's.
        perms_model = getattr(view, "perms_model", None)
        if perms_model is not None:
            return perms_model.objects.none()
        return super()._queryset(view)
