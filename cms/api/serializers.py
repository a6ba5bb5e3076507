"""Serializer helpers for every app's API: the model's own validation, as API errors."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


def model_errors(exc: DjangoValidationError) -> serializers.ValidationError:
    if hasattr(exc, "error_dict"):
        return serializers.ValidationError(exc.message_dict)
    return serializers.ValidationError({"non_field_errors": exc.messages})


def model_clean(
    instance: Any, attrs: dict[str, Any], *, saved: Any = None, exclude: list[str] | None = None
) -> None:
    """Validate `attrs` with the model's own rules (clean, constraints): one source of
    truth for the admin and the API. `saved` is the stored object being edited, reloaded
    afterwards so a refused request leaves it untouched."""
    for key, value in attrs.items():
        setattr(instance, key, value)
    try:
        instance.full_clean(exclude=exclude)
    except DjangoValidationError as exc:
        raise model_errors(exc) from None
    finally:
        if saved is not None:
            saved.refresh_from_db()


class ConfirmSerializer(serializers.Serializer):
    """The body of an action that may need its consequences confirmed."""

    confirm = serializers.BooleanField(default=False)


@extend_schema_field(OpenApiTypes.INT)
class VisibleField(serializers.PrimaryKeyRelatedField):
    """An object by its id, among those the user may see (`for_user()`): another team's
    looks like one that does not exist."""

    def get_queryset(self):
        return super().get_queryset().for_user(self.context["request"].user)
