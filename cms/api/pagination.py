"""Pages of every API list: bounded, so no `limit` or `offset` reaches the database unchecked."""

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

MAX_OFFSET = 10**9  # far beyond any list here; past 2**63 the database refuses the number


class Pagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000  # a larger `limit` gives this many

    def get_offset(self, request: Request) -> int:
        offset = super().get_offset(request)
        if offset > MAX_OFFSET:
            raise ValidationError({"offset": [f"Ensure this value is at most {MAX_OFFSET}."]})
        return offset
