"""Serializers of the inventory's API: the model's own validation (name rule, addresses) applies."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cms.api.serializers import VisibleField, model_clean, model_errors
from cms.nodes.webcalls import address_of, web_node_call

from .. import identity
from ..choices import ConnectionType, NameSource
from ..connection import DEFAULTS, errors_of, server_for
from ..found import FoundStatus
from ..models import _ENDPOINT_FIELDS as ENDPOINT_FIELDS
from ..models import License, LicenseMove, Server, Team
from ..naming import NamingRule
from ..validators import NAME_MAX_LENGTH


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": NAME_MAX_LENGTH})
class ServerNameField(serializers.CharField):
    """A server name: the model's rule checks it (and says which part was broken); the
    schema states the rule's length, not the column's."""


# What the node says about itself, saved with the server (identity.adopt).
IDENTITY_FIELDS = ("serial", "model", "software_version", "cms_mode", "locked",
                   "tls_fingerprint", "pairing_key", "status", "last_error",
                   "consecutive_failures", "consecutive_successes")  # fmt: skip


class TeamSerializer(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "name", "description", "created_at"]


class ServerSerializer(serializers.ModelSerializer):
    team = VisibleField(queryset=Team.objects.all())
    admin_password = serializers.CharField(
        write_only=True,
        required=False,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="The node's admin password; stored encrypted and never returned.",
    )
    name = ServerNameField(
        max_length=64,
        trim_whitespace=False,
        help_text=f"The product's name rule applies: 1 to {NAME_MAX_LENGTH} characters, "
        "case sensitive, none of the excluded symbols, not starting with a minus sign or a "
        "space, not ending with a space.",
    )
    address = serializers.CharField(read_only=True)
    # Not a model field: the plaintext the request's save issued (see
    # cms.nodes.enrollment), absent from every other answer.
    quickconnect_enrollment_secret = serializers.CharField(
        read_only=True,
        help_text="Write-once: present only in the answer to the create or update that added "
        "the server with a QuickConnect ID or changed its ID, and to "
        "`quickconnect-enrollment/`. The node presents it once (`cms-node serve "
        "--quickconnect-enrollment`, or the environment variable "
        "CMS_NODE_QUICKCONNECT_ENROLLMENT) to bind the ID; the CMS keeps only its hash and "
        "never shows it again.",
    )
    confirm = serializers.BooleanField(
        write_only=True,
        required=False,
        default=False,
        help_text="Editing a failover server that has taken over stops its failover and "
        "removes what it recorded meanwhile; set true to do it anyway.",
    )

    class Meta:
        model = Server
        fields = [
            "id", "team", "role", "name", "name_source", "connection_type", "host", "port",
            "use_https", "quickconnect_id", "quickconnect_enrollment_secret", "address",
            "admin_username", "admin_password",
            "enabled", "locked", "status", "model", "serial", "software_version", "lan_address",
            "cms_mode", "tls_fingerprint", "last_seen", "consecutive_failures",
            "consecutive_successes", "last_error", "latency_ms", "created_at", "updated_at",
            "confirm",
        ]  # fmt: skip
        read_only_fields = [
            "role", "name_source", "status", "model", "serial", "software_version",
            "lan_address", "cms_mode", "tls_fingerprint", "last_seen", "consecutive_failures",
            "consecutive_successes", "last_error", "latency_ms", "created_at", "updated_at",
        ]  # fmt: skip
        validators: list = []  # the model's clean() says which rule was broken

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs.pop("confirm", None)
        if self.instance is None and not attrs.get("admin_password"):
            raise serializers.ValidationError(
                {"admin_password": ["Enter the admin password of the server."]}
            )
        instance = self.instance or self.Meta.model(role=self.context["role"])
        if self.instance is not None and "name" in attrs and attrs["name"] != instance.name:
            attrs["name_source"] = NameSource.CUSTOM
        model_clean(instance, attrs, saved=self.instance, exclude=["admin_password"])
        self._check_node(attrs)
        return attrs

    def _check_node(self, attrs: dict[str, Any]) -> None:
        """Reach the node before saving: on create, and when an update changes how the
        server is reached (identity.py); what the node says is saved with the server."""
        stored = self.instance
        probe = Server(role=stored.role if stored else self.context["role"])
        team = attrs.get("team", stored.team if stored else None)
        probe.team_id = team.pk if team is not None else None
        for name in identity.CONNECTION_FIELDS:
            setattr(probe, name, attrs.get(name, getattr(stored, name) if stored else
                                           getattr(probe, name)))  # fmt: skip
        password = attrs.get("admin_password") or ""
        probe.admin_password = password or (stored.admin_password if stored else "")
        if stored is not None:
            probe.tls_fingerprint = stored.tls_fingerprint
            if not identity.connection_changed(stored, probe, password_changed=bool(password)):
                return
        try:
            with web_node_call(address_of(probe)):
                if stored is None:
                    report = identity.check_node(probe, probe.role)
                else:
                    confirmed = bool(self.context.get("confirmed"))
                    report = identity.check_edit(stored, probe, replace_confirmed=confirmed)
        except ValidationError as exc:
            raise model_errors(exc) from None
        holder = Server(**{f: getattr(stored, f) for f in IDENTITY_FIELDS}) if stored else Server()
        identity.adopt(holder, report)
        if report is not None:
            attrs.update({f: getattr(holder, f) for f in IDENTITY_FIELDS})
            attrs["pinned_at"] = tuple(getattr(probe, f) for f in ENDPOINT_FIELDS)

    def create(self, validated_data: dict[str, Any]) -> Server:
        validated_data.pop("pinned_at", None)  # a new server keeps what it was given
        return Server.objects.create(role=self.context["role"], **validated_data)


class EnrollmentSecretSerializer(serializers.Serializer):
    quickconnect_id = serializers.CharField()
    quickconnect_enrollment_secret = serializers.CharField(
        help_text="Shown only in this answer; any earlier unspent secret of the ID stops "
        "working. The node that presents it binds the ID, replacing the one bound now."
    )


class ConnectionSerializer(serializers.Serializer):
    """Where a server is and how to log in, for Test Connection before it is added."""

    connection_type = serializers.ChoiceField(
        ConnectionType.choices, default=DEFAULTS["connection_type"]
    )
    host = serializers.CharField(required=False, allow_blank=True, default=DEFAULTS["host"])
    port = serializers.IntegerField(min_value=1, max_value=65535, default=DEFAULTS["port"])
    use_https = serializers.BooleanField(default=DEFAULTS["use_https"])
    quickconnect_id = serializers.CharField(
        required=False, allow_blank=True, default=DEFAULTS["quickconnect_id"]
    )
    admin_username = serializers.CharField(default=DEFAULTS["admin_username"])
    admin_password = serializers.CharField(write_only=True, trim_whitespace=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if errors := errors_of(server_for("", attrs)):
            raise serializers.ValidationError(errors)
        return attrs


class ConnectionReportSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    name = serializers.CharField()
    model = serializers.CharField()
    version = serializers.CharField()
    serial = serializers.CharField()
    cms_mode = serializers.CharField()
    cms_enabled = serializers.BooleanField(allow_null=True)
    fingerprint = serializers.CharField()
    error_code = serializers.CharField()
    message = serializers.CharField()


class SearchSerializer(serializers.Serializer):
    timeout = serializers.FloatField(default=2.0, min_value=0.2, max_value=10)
    address = serializers.IPAddressField(
        required=False, protocol="ipv4", help_text="Broadcast address (default: the setting)."
    )


class SearchResultSerializer(serializers.Serializer):
    name = serializers.CharField()
    model = serializers.CharField()
    address = serializers.CharField()
    port = serializers.IntegerField()
    cms_mode = serializers.CharField()
    cms_enabled = serializers.BooleanField()
    serial = serializers.CharField(required=False)
    https = serializers.BooleanField(required=False)
    version = serializers.CharField(required=False)
    paired_elsewhere = serializers.BooleanField(
        allow_null=True, help_text="Paired with (managed by) another CMS host; null: not said."
    )
    locked = serializers.BooleanField(allow_null=True, help_text="Its security lock is on.")
    status = serializers.ChoiceField(
        FoundStatus.choices,
        help_text="What it is to this CMS: only an available server can be added.",
    )
    status_label = serializers.CharField(help_text='As the admin shows it, e.g. "Added (Lobby)".')
    status_detail = serializers.CharField(allow_blank=True)
    selectable = serializers.BooleanField(
        help_text="Available and its CMS service is on in this list's mode."
    )


class BatchItemSerializer(ConnectionSerializer):
    custom_name = serializers.CharField(required=False, allow_blank=True, default="",
                                        trim_whitespace=False)  # fmt: skip
    enable_cms = serializers.BooleanField(
        default=False, help_text="Enable the CMS service first (servers found without it)."
    )
    refuse_other_hosts = serializers.BooleanField(default=False)
    refuse_local_changes = serializers.BooleanField(default=False)


class BatchAddSerializer(serializers.Serializer):
    team = VisibleField(queryset=Team.objects.all())
    naming_rule = serializers.ChoiceField(NamingRule.choices)
    prefix = serializers.CharField(required=False, allow_blank=True, default="",
                                   trim_whitespace=False)  # fmt: skip
    servers = BatchItemSerializer(many=True, allow_empty=False)


class LicenseMoveSerializer(serializers.ModelSerializer):
    class Meta:
        model = LicenseMove
        fields = ["at", "from_server", "from_server_name", "to_server", "to_server_name",
                  "reason", "actor"]  # fmt: skip


class LicenseSerializer(serializers.ModelSerializer):
    team = VisibleField(queryset=Team.objects.all())
    moves = LicenseMoveSerializer(many=True, read_only=True)

    class Meta:
        model = License
        fields = ["id", "key", "team", "cameras", "server", "note", "created_at", "moves"]
        read_only_fields = ["server", "created_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance = self.instance or License()
        model_clean(instance, attrs, saved=self.instance)
        attrs["key"] = instance.key
        return attrs


class LicenseInstallSerializer(serializers.Serializer):
    server = VisibleField(queryset=Server.objects.all())
