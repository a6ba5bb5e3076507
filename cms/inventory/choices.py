"""Statuses and kinds of the inventory, as plain choices."""

from django.db import models


class Role(models.TextChoices):
    RECORDING = "recording", "Recording server"
    FAILOVER = "failover", "Failover server"


class ConnectionType(models.TextChoices):
    ADDRESS = "address", "IP address or FQDN"
    QUICKCONNECT = "quickconnect", "QuickConnect ID"


class HealthStatus(models.TextChoices):
    """What the last probes said about a server (not what it is doing for the CMS)."""

    UNKNOWN = "unknown", "Not probed yet"
    NORMAL = "normal", "Normal"
    DISCONNECTED = "disconnected", "Disconnected"
    VOLUME_ABNORMAL = "volume_abnormal", "Volume abnormal"
    SERVICE_ABNORMAL = "service_abnormal", "Surveillance service abnormal"
    AUTH_FAILED = "auth_failed", "Authentication failed"
    CERTIFICATE_CHANGED = "certificate_changed", "Certificate changed"
    # Another serial answers at the server's address: nothing is sent to it.
    IDENTITY_CHANGED = "identity_changed", "Identity changed"
    # Answers, but not as the protocol says (wrong types, too large, too deep, too
    # slow): a fault to fix on the node, not a reason to fail over.
    BAD_ANSWER = "bad_answer", "Bad answer"
    # The CMS cannot reach it, its failover servers can: the fault is on the CMS's side
    # of the network, so it is not failed over (failover/second_opinion.py).
    UNREACHABLE_FROM_CMS = "unreachable_from_cms", "Unreachable from the CMS"


class CmsMode(models.TextChoices):
    RECORDING = "recording", "Recording server"
    FAILOVER = "failover", "Failover server"
    STANDALONE = "standalone", "CMS service not enabled"
    UNKNOWN = "", "Unknown"


class NameSource(models.TextChoices):
    """Typed names follow the name rule; names made by a naming rule keep its form."""

    CUSTOM = "custom", "Custom name"
    NAMING_RULE = "naming_rule", "Naming rule"
