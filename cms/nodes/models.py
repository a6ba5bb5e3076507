"""The QuickConnect directory: where each QuickConnect ID's node can be reached now."""

from __future__ import annotations

from django.db import models


class QuickConnectEntry(models.Model):
    """One ID, bound on first registration to a node's serial and secret token.

    Only the SHA-256 of the token is stored: a database leak does not let anyone
    re-register (hijack) the ID.
    """

    qc_id = models.CharField("QuickConnect ID", max_length=63, unique=True)
    serial = models.CharField(max_length=64)
    token_hash = models.CharField(max_length=64, editable=False)
    host = models.CharField(max_length=253)
    port = models.PositiveIntegerField()
    registered_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["qc_id"]
        verbose_name = "QuickConnect registration"

    def __str__(self) -> str:
        return f"{self.qc_id} -> {self.host}:{self.port}"
