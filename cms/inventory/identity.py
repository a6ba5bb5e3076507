"""One node, one server, in the list its CMS mode says.

Every door that adds a server (the admin's Add Server, the API's create, Add Batch) or
changes where one is (the admin's change page, the API's update) asks this module
before it saves: the node is reached as Test Connection reaches it, and refused when it
cannot be reached, refuses the password, is in another CMS mode than the list's role,
or is already a server here (by its serial, the node's identity). A server moved to
another address re-reads its identity in the same save; another node there is taken
only when the user confirms the replacement.

Nothing here writes to the database; the callers save what `adopt` put on the server.
No database transaction may be open across these calls (they talk to a node).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

from cms.actions import ConfirmationRequired
from cms.nodes.services import ConnectionReport, test_connection

from .choices import CmsMode, ConnectionType, HealthStatus, Role
from .models import Server

# What the reach failed on decides which field the refusal belongs to.
_PASSWORD_CODES = {"auth_failed", "too_many_attempts", "node_unproven"}

# A QuickConnect ID no node has enrolled yet: adding the server is what issues its
# enrollment secret, so there is no node to reach before the save. The node's identity
# is read when it has enrolled (the first probe).
NOT_ENROLLED = "quickconnect_unknown"

MODE_LABELS = {
    Role.RECORDING: "Recording Server",
    Role.FAILOVER: "Failover Server",
}


def address_field(server: Server) -> str:
    return "quickconnect_id" if server.connection_type == ConnectionType.QUICKCONNECT else "host"


def reach(server: Server, *, login_field: str = "admin_password",
          refused: str = "The server cannot be added") -> ConnectionReport | None:  # fmt: skip
    """Test the connection to `server`'s node; refuse with Test Connection's reason.

    None for a QuickConnect ID that no node has enrolled yet (nothing to reach)."""
    report = test_connection(server)
    if report.ok:
        return report
    if report.error_code == NOT_ENROLLED and server.connection_type == ConnectionType.QUICKCONNECT:
        return None
    field = login_field if report.error_code in _PASSWORD_CODES else address_field(server)
    raise ValidationError({field: [f"{refused}: {report.message}"]})


def mode_problem(report: ConnectionReport, role: str) -> str:
    """Why a node in `report`'s CMS mode cannot join the `role` list ("" if it can)."""
    if report.cms_enabled and report.cms_mode == role:
        return ""
    wanted = MODE_LABELS.get(role, role)
    if not report.cms_enabled or report.cms_mode in ("", CmsMode.STANDALONE):
        return (
            f"{report.name or 'This node'}'s CMS service is not enabled. The "
            f"{Role(role).label.lower()} list takes only nodes in {wanted} mode: use the "
            "Enable link of the search (or `enable_cms` in the API's batch add) to enable "
            "it in that mode, then add it."
        )
    other = MODE_LABELS.get(report.cms_mode, report.cms_mode)
    other_list = Role(report.cms_mode).label.lower() if report.cms_mode in Role.values else ""
    instead = f"Add it to the {other_list} list instead, or" if other_list else "Please"
    return (
        f"{report.name or 'This node'} is in {other} mode; the {Role(role).label.lower()} "
        f"list takes only nodes in {wanted} mode. {instead} change its CMS mode first."
    )


def managed_as(serial: str, *, exclude_pk: int | None = None) -> Server | None:
    """The server that already has the node of `serial`, if any."""
    if not serial:
        return None
    return Server.objects.filter(serial=serial).exclude(pk=exclude_pk).first()


def already_added(server: Server, team_id: int | None) -> str:
    """The refusal of a node `server` has; named only to its own team (another team's
    servers are as if they did not exist)."""
    if server.team_id != team_id:
        return "This node is already a server of another team here; a node is one server."
    role = Role(server.role).label.lower() if server.role else "server"
    return f"This node is already added as {server.name!r} ({role}); a node is one server."


def check_node(server: Server, role: str, *, exclude_pk: int | None = None,
               login_field: str = "admin_password") -> ConnectionReport | None:  # fmt: skip
    """Reach `server`'s node and refuse it unless it may be a server of `role` here:
    reached, the password right, in `role`'s CMS mode, not managed already (`exclude_pk`:
    the server being edited)."""
    refused = "The change cannot be saved" if exclude_pk else "The server cannot be added"
    report = reach(server, login_field=login_field, refused=refused)
    if report is None:
        return None
    field = address_field(server)
    if problem := mode_problem(report, role):
        raise ValidationError({field: [problem]})
    if (other := managed_as(report.serial, exclude_pk=exclude_pk)) is not None:
        raise ValidationError({field: [already_added(other, server.team_id)]})
    return report


def adopt(server: Server, report: ConnectionReport | None) -> None:
    """Put what the node says about itself on `server` (saved by the caller)."""
    if report is None:
        return
    if server.serial and report.serial != server.serial:
        # Another node: not paired with this CMS under the stored key, and what the
        # probes said was about the old one.
        server.pairing_key = ""
        server.status, server.last_error = HealthStatus.UNKNOWN, ""
        server.consecutive_failures = server.consecutive_successes = 0
    server.serial, server.model = report.serial[:64], report.model[:64]
    server.software_version, server.cms_mode = report.version[:32], report.cms_mode
    server.locked = bool(report.locked)
    server.tls_fingerprint = report.fingerprint
    server.pinned_at = server._endpoint()  # seen there just now: the save keeps it


def connection_changed(stored: Server, server: Server, *, password_changed: bool) -> bool:
    """Must the edit of `stored` into `server` reach the node before it is saved?"""
    return (
        stored._endpoint() != server._endpoint()
        or stored.admin_username != server.admin_username
        or password_changed
    )


def check_edit(stored: Server, server: Server, *, replace_confirmed: bool,
               login_field: str = "admin_password") -> ConnectionReport | None:  # fmt: skip
    """Before saving an edit that changes how `stored` is reached (`server`, unsaved,
    holds the new values and the password to use): the node there must be reached and
    in the list's mode; a node with another serial than the stored one is refused unless
    `replace_confirmed` (ConfirmationRequired says what it would change)."""
    probe = _probe_for(server, same_node=stored._endpoint() == server._endpoint())
    report = check_node(probe, stored.role, exclude_pk=stored.pk, login_field=login_field)
    if report is None or not stored.serial or report.serial == stored.serial:
        return report
    if not replace_confirmed:
        ask = "Another node answers at the new address; confirm the replacement of the node."
        raise ConfirmationRequired([
            f"{server.address} is another node than the one added as {stored.name!r}: "
            f"serial {report.serial!r} ({report.model}, version {report.version}) instead of "
            f"{stored.serial!r} ({stored.model}). Saving replaces the node: the server's "
            "serial, model and version follow the new node, and its certificate and pairing "
            "are taken again.",
        ], ask)  # fmt: skip
    return report


def _probe_for(server: Server, *, same_node: bool) -> Server:
    """An unsaved copy to reach the node with: no identity to insist on (the node's is
    what is read), the pinned certificate only at the address it was pinned at."""
    probe = Server(role=server.role, team_id=server.team_id,
                   **{f: getattr(server, f) for f in CONNECTION_FIELDS})  # fmt: skip
    probe.admin_password = server.admin_password
    probe.tls_fingerprint = server.tls_fingerprint if same_node else ""
    return probe


CONNECTION_FIELDS = ("connection_type", "host", "port", "use_https", "quickconnect_id",
                      "admin_username")  # fmt: skip
