"""Filtering for every API list: django-filter, with date-times any database accepts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django_filters import filters, filterset
from django_filters.fields import IsoDateTimeField
from django_filters.rest_framework import DjangoFilterBackend, FilterSet

MAX_OFFSET = dt.timedelta(hours=14)  # the widest real zone; PostgreSQL refuses more


class BoundedIsoDateTimeField(IsoDateTimeField):
    def to_python(self, value: Any) -> dt.datetime | None:
        parsed = super().to_python(value)
        offset = parsed.utcoffset() if parsed is not None else None
        if offset is not None and abs(offset) > MAX_OFFSET:
            raise ValidationError("The time zone offset must be between -14:00 and +14:00.")
        if parsed is not None and parsed.year < 1970:
            raise ValidationError("Dates before 1970 are not recorded here.")
        return parsed


class BoundedIsoDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = BoundedIsoDateTimeField


class CmsFilterSet(FilterSet):
    FILTER_DEFAULTS = {
        **filterset.FILTER_FOR_DBFIELD_DEFAULTS,
        models.DateTimeField: {"filter_class": BoundedIsoDateTimeFilter},
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # `?team=7` must not tell whether team 7 exists: the choices of every filter on a
        # related object are the objects this user may see, so another team's id gets the
        # same "not one of the available choices" as an id that exists nowhere.
        user = getattr(self.request, "user", None)
        for name, one in self.filters.items():
            choices = getattr(one, "queryset", None)
            if isinstance(choices, models.QuerySet) and hasattr(choices, "for_user"):
                self.filters[name].queryset = choices.for_user(user)


class FilterBackend(DjangoFilterBackend):
    filterset_base = CmsFilterSet
