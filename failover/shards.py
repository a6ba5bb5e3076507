"""The servers split into probe shards, so that any number of workers probe the fleet.

A server's shard is its pk modulo the shard count: stable, and computed by the
database (one query per shard reads that shard's servers, not the fleet). Each shard's
cycle per slot is claimed by compare-and-set (probing.claim_shard), so a shard is
probed once per slot by whichever worker takes its task first.

The count is CMS_PROBE_SHARDS, or (0, the default) one shard per SERVERS_PER_SHARD
enabled servers: a shard of that size is probed by one worker process in about half a
second, so a 2-second interval leaves room, and the shards spread over the workers
(a worker added takes shards from the others); a small fleet stays one shard, whose
fixed costs (the claim, the engine's queries) are paid once per cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.conf import settings
from django.db.models import F, Q, QuerySet

from cms.inventory.models import Server

SERVERS_PER_SHARD = 2500


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} is not one of {self.count}")

    def servers(self, queryset: QuerySet[Server] | None = None) -> QuerySet[Server]:
        """The shard's servers (of `queryset`, by default every server)."""
        return self.of(queryset if queryset is not None else Server.objects.all(), "pk")

    def of(self, queryset: QuerySet, column: str) -> QuerySet:
        """`queryset` filtered to rows whose `column` (a server's id) is in the shard."""
        queryset, in_shard = self.marked(queryset, column)
        return queryset.filter(in_shard)

    def marked(self, queryset: QuerySet, column: str) -> tuple[QuerySet, Q]:
        """`queryset` prepared for the returned filter ("`column` is in the shard"), to be
        combined with others (Q objects) in one query."""
        if self.count == 1:
            return queryset, Q(**{f"{column}__isnull": False})
        annotated = queryset.annotate(probe_shard=F(column) % self.count)
        return annotated, Q(probe_shard=self.index)

    def holds(self, server_id: int) -> bool:
        return server_id % self.count == self.index


def count() -> int:
    """How many shards the enabled servers are split into now."""
    configured = int(getattr(settings, "CMS_PROBE_SHARDS", 0) or 0)
    if configured > 0:
        return configured
    enabled = Server.objects.filter(enabled=True).count()
    return max(1, math.ceil(enabled / SERVERS_PER_SHARD))


def all_shards(total: int | None = None) -> list[Shard]:
    total = total if total is not None else count()
    return [Shard(index, total) for index in range(total)]
