"""The kinds of alert. A part of the product that raises a new kind adds it here."""

from django.db import models


class Kind(models.TextChoices):
    FAILOVER_OPENED = "failover_opened", "Failover opened"
    NO_FAILOVER_SERVER = "no_failover_server", "No failover server free"
    FAILBACK_DONE = "failback_done", "Failback done"
    RESTORATION_FAILED = "restoration_failed", "Restoration failed"
    RESTORATION_STOPPED = "restoration_stopped", "Restoration stopped"
    IDENTITY_CHANGED = "identity_changed", "Identity changed"
    DRILL_FAILED = "drill_failed", "Drill failed"
    MASS_FAILURE_GUARD = "mass_failure_guard", "Mass-failure guard"
    UNREACHABLE_FROM_CMS = "unreachable_from_cms", "Unreachable from the CMS"
    FLAPPING = "flapping", "Flapping server damped"
    TEST = "test", "Test alert"
