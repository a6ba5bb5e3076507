"""States and kinds of failover, as plain choices; the sets of states and the moves
between them are in lifecycle.py."""

from django.db import models


class Trigger(models.TextChoices):
    DISCONNECTED = "disconnected", "Server disconnected"
    VOLUME_ABNORMAL = "volume_abnormal", "Volume abnormal"
    SERVICE_ABNORMAL = "service_abnormal", "Surveillance service abnormal"
    MANUAL = "manual", "Manual failover"


class FailbackMode(models.TextChoices):
    AUTOMATIC = "automatic", "Automatically, after the hold-down"
    SCHEDULED = "scheduled", "In the scheduled daily window"
    MANUAL = "manual", "Manually (Fail back now)"
    # The failover server stays the one that records: nothing ends its duty but an
    # operator's failback, whatever the recovered recording server's probes say.
    STAY = "stay", "Stay on the failover server until an operator fails back"


class EventState(models.TextChoices):
    DETECTED = "detected", "Detected"
    NO_FAILOVER_SERVER = "no_failover_server", "No failover server available"
    TAKING_OVER = "taking_over", "Taking over"
    ACTIVE = "active", "Failover active"
    WAITING_FAILBACK = "waiting_failback", "Recovered, waiting for failback"
    FAILING_BACK = "failing_back", "Failing back"
    RESTORING = "restoring", "Restoring recordings"
    # endings
    COMPLETED = "completed", "Completed"
    RECOVERED = "recovered", "Recovered before takeover"
    STOPPED = "stopped", "Stopped (failover server edited, disabled or deleted)"
    REPLACED = "replaced", "Protected server replaced"
    RESTORATION_STOPPED = "restoration_stopped", "Restoration stopped"
    FAILED = "failed", "Failed"


class RestorationState(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    STOPPED = "stopped", "Stopped"
    FAILED = "failed", "Failed"


class TransferPath(models.TextChoices):
    DIRECT = "direct", "Directly between the servers"
    RELAYED = "relayed", "Relayed through the CMS"


class FileState(models.TextChoices):
    PENDING = "pending", "Pending"
    VERIFIED = "verified", "Copied and verified"
    DELETED = "deleted", "Verified and removed from the failover server"


class DrillState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"
    REFUSED = "refused", "Refused"
    STOPPED = "stopped", "Stopped by a real fault"
