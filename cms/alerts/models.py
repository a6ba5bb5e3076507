"""A team's alert channels, and the history of every alert sent to them."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q

from cms.inventory.fields import EncryptedSecretField

from .kinds import Kind


class TeamQuerySet(models.QuerySet):
    """What a user may see: their teams' rows, as the inventory's TeamScopedQuerySet
    decides (repeated here by path: this app imports neither app)."""

    def for_user(self, user: Any) -> TeamQuerySet:
        if user is None or not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self
        return self.filter(team__memberships__user=user)

    def restrict(self, user: Any, action: str = "view") -> TeamQuerySet:
        return self.for_user(user)


class Channel(models.Model):
    """Where a team's alerts go: e-mail addresses, or one apprise URL (chat, webhook).

    The URL may hold a password or a token: it is encrypted at rest, never shown again
    once saved, and never written to a log.
    """

    EMAIL = "email"
    APPRISE = "apprise"
    TYPES = [(EMAIL, "E-mail"), (APPRISE, "Apprise URL (chat, webhook, ...)")]

    team = models.ForeignKey("inventory.Team", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    type = models.CharField(max_length=16, choices=TYPES, default=EMAIL)
    emails = models.TextField(
        blank=True, help_text="E-mail addresses, one a line (for an e-mail channel)."
    )
    url = EncryptedSecretField(
        blank=True,
        help_text="An apprise URL, e.g. json://host/path or slack://...; stored encrypted.",
    )
    kinds = models.JSONField(
        default=list, blank=True, help_text="The kinds of alert sent here; empty: every kind."
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TeamQuerySet.as_manager()

    class Meta:
        ordering = ["team__name", "name"]
        verbose_name = "alert channel"
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="alert_channel_name_per_team")
        ]

    def __str__(self) -> str:
        return self.name

    def wants(self, kind: str) -> bool:
        return self.enabled and (not self.kinds or kind in self.kinds)

    def addresses(self) -> list[str]:
        return [line.strip() for line in self.emails.splitlines() if line.strip()]


class Alert(models.Model):
    """One alert to one channel: queued, then sent or failed after its retries."""

    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    STATES = [(QUEUED, "Queued"), (SENT, "Sent"), (FAILED, "Failed")]

    team = models.ForeignKey("inventory.Team", on_delete=models.CASCADE, related_name="+")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    subject = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    link = models.CharField(max_length=500, blank=True)
    state = models.CharField(max_length=8, choices=STATES, default=QUEUED, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # When a failed attempt is tried again (the sweep's cue that it never was).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    objects = TeamQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(
                fields=["created_at"], condition=Q(state="queued"), name="alert_queued_idx"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.subject}"
