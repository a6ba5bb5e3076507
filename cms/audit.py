"""The audit trail (django-auditlog): who acted, what is recorded, who reads which entries.

Each app registers its own models from its `ready()`; this module knows none of them.
A model registered with `scoped=True` has a `for_user()` queryset: a user who is not a
superuser reads the entries about the objects of their teams, and their own.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model, Q, QuerySet

SYSTEM = "system"

_scoped: list[type[Model]] = []


def actor_name(user: Any) -> str:
    """The name a history (transitions, license moves) records for `user`."""
    if user is None:
        return SYSTEM
    return getattr(user, "get_username", lambda: str(user))()


def register(
    *models: type[Model], scoped: bool = False, exclude_fields: list[str] | None = None
) -> None:
    """Record every change of `models` in the trail (each registered once)."""
    from auditlog.registry import auditlog

    for model in models:
        if not auditlog.contains(model):
            auditlog.register(model, exclude_fields=exclude_fields or [])
        if scoped and model not in _scoped and not model._meta.proxy:
            _scoped.append(model)


def visible_entries(user: Any) -> QuerySet:
    """Superusers read everything; others the entries about their teams' objects."""
    from auditlog.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    entries = LogEntry.objects.select_related("actor", "content_type")
    if user.is_superuser:
        return entries
    scope = Q(actor=user)
    for model in _scoped:
        ids = model.objects.for_user(user).values("pk")
        cts = ContentType.objects.get_for_models(model, for_concrete_models=False).values()
        scope |= Q(content_type__in=list(cts), object_id__in=ids)
    return entries.filter(scope)


def record(
    user: Any,
    model: type[Model],
    what: str,
    changes: dict[str, Any],
    *,
    remote_addr: str | None = None,
) -> None:
    """An entry for an action on something that is no row of `model` (yet): a node's CMS
    service enabled before the server is added. It names the actor, so they read it."""
    from auditlog.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    LogEntry.objects.create(
        content_type=ContentType.objects.get_for_model(model),
        object_pk="",
        object_repr=what[:200],
        action=LogEntry.Action.UPDATE,
        changes=changes,
        actor=user if getattr(user, "is_authenticated", False) else None,
        remote_addr=remote_addr,
    )  # fmt: skip
