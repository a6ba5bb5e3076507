"""What every operator action shares: who may do it, and what it needs confirmed.

An action is one function of its app (`cms.inventory.actions`, `failover.actions`)
called by the admin and the API alike. It checks the permission with `require()`,
raises `ConfirmationRequired` with the consequences the product names before doing
anything that needs them confirmed, and `ActionRefused` when the object's state does
not allow it. The admin shows the consequences as its confirmation page and the API
as its 409 answer: one list, written once, in the action.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied

from cms.permissions import can


class ActionRefused(Exception):
    """The object's state does not allow the action now; the message says why."""


class ConfirmationRequired(Exception):
    """The action has consequences the user must confirm; nothing was changed."""

    def __init__(self, consequences: list[str], message: str = "") -> None:
        self.consequences = list(consequences)
        self.message = message or " ".join(self.consequences)
        super().__init__(self.message)


def require(user: Any, action: str) -> None:
    """Refuse `user` the product action `action` (see `cms.permissions.ACTIONS`) unless
    they hold its permission."""
    if not can(user, action):
        raise PermissionDenied(f"Your role does not allow this action ({action}).")


def require_perm(user: Any, perm: str) -> None:
    """The same for a model permission (add, change, delete of a server tab)."""
    if not (user and user.is_active and user.has_perm(perm)):
        raise PermissionDenied("Your role does not allow this action.")


def confirm(consequences: list[str], confirmed: bool, message: str = "") -> None:
    """Go on only if there is nothing to confirm or it was confirmed."""
    if consequences and not confirmed:
        raise ConfirmationRequired(consequences, message)
