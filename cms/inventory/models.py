"""Teams, servers and licenses: the inventory the CMS manages.

One Server model with a role, so that "the failover server becomes the recording
server" is a role change and not a copy; RecordingServer and FailoverServer are
proxies that give the admin its two tabs.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .choices import CmsMode, ConnectionType, HealthStatus, NameSource, Role
from .fields import EncryptedSecretField
from .validators import license_key_errors, name_key, unsafe_name_errors, validate_server_name


class TeamQuerySet(models.QuerySet):
    def for_user(self, user: Any) -> TeamQuerySet:
        """The teams a user belongs to (superusers: all); another team is as if it did
        not exist."""
        if user is None or not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self
        return self.filter(memberships__user=user)

    def restrict(self, user: Any, action: str = "view") -> TeamQuerySet:
        return _restrict(self, user, action)


def _restrict(queryset: Any, user: Any, action: str) -> Any:
    """What `user` may act on with `action` (NetBox's restrict): the objects they may see,
    and none for a product action their role does not allow. Applied once per request by
    the API's base viewset, with the action the request is for."""
    from cms.permissions import ACTIONS, can

    if action in ACTIONS and not can(user, action):
        return queryset.none()
    return queryset.for_user(user)


class Team(models.Model):
    """A site or group that owns servers; users see and act on their teams' objects."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="TeamMembership", related_name="cms_teams", blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TeamQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TeamMembership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_memberships"
    )
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="unique_team_member")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team}"


class TeamScopedQuerySet(models.QuerySet):
    """The one place that decides what a user may see: their teams' objects."""

    team_path = "team"

    def for_user(self, user: Any) -> TeamScopedQuerySet:
        if user is None or not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self
        return self.filter(**{f"{self.team_path}__memberships__user": user})

    def restrict(self, user: Any, action: str = "view") -> TeamScopedQuerySet:
        return _restrict(self, user, action)


class ServerQuerySet(TeamScopedQuerySet):
    # Every way a name is written keeps its uniqueness key in step (Server.save too).
    def update(self, **kwargs: Any) -> int:
        if isinstance(kwargs.get("name"), str):
            kwargs["name_key"] = name_key(kwargs["name"])
        return super().update(**kwargs)

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list:
        objs = list(objs)
        for obj in objs:
            obj.name_key = name_key(obj.name)
        return super().bulk_create(objs, *args, **kwargs)

    def failover(self) -> ServerQuerySet:
        return self.filter(role=Role.FAILOVER)

    def set_enabled(self, enabled: bool) -> int:
        """Enable or disable each server with a save, so the audit trail records who did."""
        changed = 0
        for server in self.exclude(enabled=enabled):
            server.enabled = enabled
            server.save(update_fields=["enabled", "updated_at"])
            changed += 1
        return changed


class Server(models.Model):
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="servers")
    role = models.CharField(max_length=16, choices=Role.choices, db_index=True)
    name = models.CharField(
        max_length=64,
        help_text="1 to 32 characters; none of ~ ` ! @ # $ % ^ & * ( ) - _ = + [ { ] } \\ | ; : "
        "' \" < > / ?; not starting with a minus sign or a space, not ending with a space.",
    )
    name_source = models.CharField(
        max_length=16, choices=NameSource.choices, default=NameSource.CUSTOM, editable=False
    )
    # Unique per role: names equal after NFKC are one name (validators.name_key).
    name_key = models.CharField(max_length=64, editable=False)

    connection_type = models.CharField(
        max_length=16, choices=ConnectionType.choices, default=ConnectionType.ADDRESS
    )
    host = models.CharField(
        "IP address or FQDN", max_length=253, blank=True, help_text="For the IP address/FQDN type."
    )
    port = models.PositiveIntegerField(
        default=5000, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    use_https = models.BooleanField(
        "HTTPS", default=False, help_text="Only for the IP address/FQDN connection type."
    )
    quickconnect_id = models.CharField("QuickConnect ID", max_length=63, blank=True)
    tls_fingerprint = models.CharField(
        "pinned TLS fingerprint",
        max_length=95,
        blank=True,
        editable=False,
        help_text="SHA-256 of the node's certificate, pinned at first contact.",
    )
    admin_username = models.CharField(max_length=64, default="admin")
    admin_password = EncryptedSecretField(blank=True)
    # The audit trail records this instead of the secret itself.
    password_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The key the node was paired with (/cms/enable): it signs this CMS's changes to a
    # locked node and proves the epochs it issues. Write-only, like the password.
    pairing_key = EncryptedSecretField(blank=True, editable=False)
    # SCRAM's SaltedPassword for this node's salt and iteration count (RFC 5802 lets a
    # client cache it), so a restarted CMS logs in without PBKDF2. Encrypted like the
    # password it stands for; never logged, never in the API (cms/nodes/scram_cache.py).
    scram_cache = EncryptedSecretField(blank=True, editable=False)
    # The node's session token and its end, kept the same way, so that a restarted CMS
    # probes at once instead of logging in to every node first.
    node_session = EncryptedSecretField(blank=True, editable=False)

    enabled = models.BooleanField(default=True, db_index=True)
    locked = models.BooleanField(
        default=False,
        editable=False,
        help_text="Security lock: the server refuses other CMS hosts and changes made on it.",
    )
    status = models.CharField(
        max_length=24, choices=HealthStatus.choices, default=HealthStatus.UNKNOWN, db_index=True
    )

    # What the node reports about itself.
    model = models.CharField(max_length=64, blank=True, editable=False)
    serial = models.CharField(max_length=64, blank=True, editable=False)
    software_version = models.CharField(max_length=32, blank=True, editable=False)
    # host:port where the node listens on its site's network (its /info `lan`): what
    # a failover server probes for a second opinion; blank when it reports none.
    lan_address = models.CharField("LAN address", max_length=262, blank=True, editable=False)
    cms_mode = models.CharField(
        "CMS mode", max_length=16, choices=CmsMode.choices, blank=True, editable=False
    )

    # Health counters, written when something changes (not on every probe).
    last_seen = models.DateTimeField(null=True, blank=True, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    consecutive_successes = models.PositiveIntegerField(default=0, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    latency_ms = models.FloatField(null=True, blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ServerQuerySet.as_manager()

    # The endpoint `tls_fingerprint` was read at in this request (identity.adopt), so a
    # save that moves the server keeps the certificate it just checked.
    pinned_at: tuple | None = None

    class Meta:
        ordering = ["role", "name"]
        constraints = [
            # One node, one server: its serial is its identity. Blank until the node was
            # reached (a QuickConnect ID no node has enrolled yet).
            models.UniqueConstraint(
                fields=["serial"],
                condition=~Q(serial=""),
                name="unique_server_serial",
                violation_error_message="This node is already a server here (same serial).",
            ),
            models.UniqueConstraint(fields=["role", "name"], name="unique_server_name_per_role"),
            models.UniqueConstraint(
                fields=["role", "name_key"], name="unique_server_name_key_per_role"
            ),
            models.CheckConstraint(
                condition=Q(port__gte=1) & Q(port__lte=65535), name="server_port_range"
            ),
            models.CheckConstraint(
                condition=~Q(connection_type=ConnectionType.QUICKCONNECT) | Q(use_https=False),
                name="no_https_over_quickconnect",
            ),
        ]
        indexes = [models.Index(fields=["role", "status"])]
        permissions = [
            ("enable_server", "Can enable and disable servers"),
            ("test_connection", "Can test the connection to a server"),
            ("lock_server", "Can lock and unlock servers"),
        ]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Server {self.pk}: {self.name!r} ({self.role})>"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # A pinned certificate belongs to the address it was seen at: a new address is
        # a new first contact.
        loaded = getattr(self, "_loaded_endpoint", None)
        extra = set()
        moved = loaded is not None and loaded != self._endpoint()
        if moved and self.tls_fingerprint and self.pinned_at != self._endpoint():
            self.tls_fingerprint = ""
            extra.add("tls_fingerprint")
        if self.admin_password.is_new:
            self.password_changed_at = timezone.now()
            extra.add("password_changed_at")
        self.name_key = name_key(self.name)
        if kwargs.get("update_fields") is not None and "name" in kwargs["update_fields"]:
            extra.add("name_key")
        if extra and kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], *extra}
        super().save(*args, **kwargs)
        self._loaded_name = self.name
        self._loaded_endpoint = self._endpoint()

    @property
    def address(self) -> str:
        if self.connection_type == ConnectionType.QUICKCONNECT:
            return f"QuickConnect {self.quickconnect_id}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.use_https else "http"
        return f"{scheme}://{host}:{self.port}"

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if self._name_changed() and isinstance(self.name, str):
            if self.name_source == NameSource.CUSTOM:
                try:
                    validate_server_name(self.name)
                except ValidationError as exc:
                    errors["name"] = exc.messages
            else:
                # A naming rule builds the name from what a server reports (its model):
                # it keeps the rule's form, but nothing a screen cannot show.
                problems = unsafe_name_errors(self.name)
                if problems:
                    errors["name"] = problems
        # Checked here and not only by the constraint: forms leave `role` out, and Django
        # skips validating a constraint over a field the form excludes.
        if self.name and self._name_changed():
            self.name_key = name_key(self.name)
            clash = (
                Server.objects.filter(role=self.role, name_key=self.name_key)
                .exclude(pk=self.pk)
                .values_list("name", flat=True)
                .first()
            )
            if clash is not None:
                label = Role(self.role).label.lower() if self.role else "server"
                message = f"A {label} named {clash!r} already exists"
                if clash != self.name:
                    message += f"; {self.name!r} is the same name once normalised (Unicode NFKC)"
                errors.setdefault("name", []).append(
                    f"{message}. Names are unique among servers of the same role."
                )
        from .addresses import connection_errors

        errors.update(connection_errors(self.connection_type, self.host, self.quickconnect_id,
                                        self.use_https))  # fmt: skip
        if (
            self.connection_type == ConnectionType.QUICKCONNECT
            and "quickconnect_id" not in errors
            and self.quickconnect_id_taken()
        ):
            # One ID is one node: a second server with it would let its team issue
            # an enrollment secret that moves the first server's node elsewhere.
            errors["quickconnect_id"] = [
                f"A server with QuickConnect ID {self.quickconnect_id!r} already exists."
            ]
        if errors:
            raise ValidationError(errors)

    def validate_constraints(self, exclude: Any = None) -> None:
        # clean() checks the name key itself, with a message that names the clash.
        super().validate_constraints(exclude={*(exclude or ()), "name_key"})

    # The rule applies to what a person types: a generated or stored name that is not
    # being changed is not validated again, so editing another field never fails on it.
    @classmethod
    def from_db(cls, db: Any, field_names: Any, values: Any) -> Server:
        instance = super().from_db(db, field_names, values)
        instance._loaded_name = instance.__dict__.get("name")
        instance._loaded_endpoint = instance._endpoint()
        return instance

    def _endpoint(self) -> tuple:
        return tuple(self.__dict__.get(f) for f in _ENDPOINT_FIELDS)

    def _name_changed(self) -> bool:
        return getattr(self, "_loaded_name", None) != self.name

    def quickconnect_id_taken(self) -> bool:
        """Does another server use this QuickConnect ID? Asked only when the connection
        changes, so that an old duplicate does not make every other edit fail."""
        if getattr(self, "_loaded_endpoint", None) == self._endpoint():
            return False
        return (
            Server.objects.filter(
                connection_type=ConnectionType.QUICKCONNECT, quickconnect_id=self.quickconnect_id
            )
            .exclude(pk=self.pk)
            .exists()
        )


_ENDPOINT_FIELDS = ("connection_type", "host", "port", "use_https", "quickconnect_id")


class RecordingServerManager(models.Manager.from_queryset(ServerQuerySet)):
    def get_queryset(self) -> ServerQuerySet:
        return super().get_queryset().filter(role=Role.RECORDING)


class FailoverServerManager(models.Manager.from_queryset(ServerQuerySet)):
    def get_queryset(self) -> ServerQuerySet:
        return super().get_queryset().filter(role=Role.FAILOVER)


class RecordingServer(Server):
    objects = RecordingServerManager()

    class Meta:
        proxy = True
        verbose_name = "recording server"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.role:  # set before validation, so the per-role unique name is checked
            self.role = Role.RECORDING


class FailoverServer(Server):
    objects = FailoverServerManager()

    class Meta:
        proxy = True
        verbose_name = "failover server"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.role:  # set before validation, so the per-role unique name is checked
            self.role = Role.FAILOVER


class LicenseQuerySet(TeamScopedQuerySet):
    team_path = "team"


class License(models.Model):
    """A camera license key, installed on at most one server at a time."""

    key = models.CharField(max_length=64, unique=True)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="licenses")
    cameras = models.PositiveIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(10_000)]
    )
    server = models.ForeignKey(
        Server,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="licenses",
        help_text="Where it is installed; empty when it is not installed anywhere.",
    )
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = LicenseQuerySet.as_manager()

    class Meta:
        ordering = ["key"]
        permissions = [("manage_licenses", "Can install, move and remove licenses")]

    def __str__(self) -> str:
        return self.key

    def clean(self) -> None:
        self.key = (self.key or "").strip().upper()
        problems = license_key_errors(self.key)
        if problems:
            raise ValidationError({"key": problems})
        if self.server_id and self.team_id and self.server.team_id != self.team_id:
            raise ValidationError({"server": "The server belongs to another team."})


class LicenseMove(models.Model):
    """An append-only history of where a license was installed, and why it moved."""

    license = models.ForeignKey(License, on_delete=models.CASCADE, related_name="moves")
    from_server = models.ForeignKey(
        Server, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    from_server_name = models.CharField(max_length=64, blank=True)
    to_server = models.ForeignKey(
        Server, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    to_server_name = models.CharField(max_length=64, blank=True)
    reason = models.CharField(max_length=200)
    actor = models.CharField(max_length=150, help_text="A user name, or 'system'.")
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"{self.license} {self.from_server_name or '-'} -> {self.to_server_name or '-'}"


class WorkerHeartbeat(models.Model):
    """The last task each Celery worker ran, so the operator can see workers are alive."""

    worker = models.CharField(max_length=200, unique=True)
    last_beat = models.DateTimeField()
    last_note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-last_beat"]

    def __str__(self) -> str:
        return f"{self.worker} at {self.last_beat:%Y-%m-%d %H:%M:%S}"
