"""The QuickConnect directory (where each QuickConnect ID's node can be reached now) and
pairing keys waiting for their server."""

from __future__ import annotations

from django.db import models

from cms.inventory.fields import EncryptedSecretField


class QuickConnectEntry(models.Model):
    """One ID: waiting for its node to enroll, or bound to that node's serial and token.

    The CMS creates the entry when it issues an enrollment secret for the ID (a server
    was added with it, or an admin asked for a new one); a node binds it by presenting
    that secret once, and proves itself with its serial and token afterwards. Only
    SHA-256 digests of the secret and the token are stored: a database leak does not
    let anyone enroll or re-register (hijack) the ID.
    """

    qc_id = models.CharField("QuickConnect ID", max_length=63, unique=True)
    serial = models.CharField(max_length=64, blank=True)
    token_hash = models.CharField(max_length=64, blank=True, editable=False)
    host = models.CharField(max_length=253, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    bound_at = models.DateTimeField(
        "bound since", null=True, blank=True, help_text="When the current node enrolled."
    )
    enrollment_hash = models.CharField(max_length=64, blank=True, editable=False)
    enrollment_issued_at = models.DateTimeField(
        "enrollment secret issued",
        null=True,
        blank=True,
        help_text="Set while a secret waits for a node to present it; cleared once spent.",
    )
    registered_at = models.DateTimeField("created", auto_now_add=True)
    updated_at = models.DateTimeField("updated", auto_now=True)

    class Meta:
        ordering = ["qc_id"]
        verbose_name = "QuickConnect registration"

    def __str__(self) -> str:
        if not self.is_bound:
            return f"{self.qc_id} (waiting for enrollment)"
        return f"{self.qc_id} -> {self.host}:{self.port}"

    @property
    def is_bound(self) -> bool:
        return bool(self.token_hash)

    @property
    def awaits_enrollment(self) -> bool:
        return bool(self.enrollment_hash)


class RegistrationRefusal(models.Model):
    """One refused ``/qc/register`` request, kept for the rate limit's window.

    In the database so that every web process and every CMS host counts together.
    """

    address = models.CharField(max_length=64)
    at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["address", "at"])]

    def __str__(self) -> str:
        return f"{self.address} at {self.at:%Y-%m-%d %H:%M:%S}"


class PendingPairing(models.Model):
    """A pairing key handed to a node before its server was saved (the CMS service
    enabled from the LAN search, then the server added): kept here, by the node's
    serial, until the server with that serial takes it over (``client_for``)."""

    serial = models.CharField(max_length=64, unique=True)
    key = EncryptedSecretField()
    created_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"pairing pending for {self.serial}"
