"""Add Batch: several servers found by the search, named by a naming rule, all or none.

All or none on the nodes too: every row is checked (reached, in the list's mode or to
be enabled, not managed already, not twice in the batch, named) before any node is
changed; only then are the CMS services asked for turned on, and if one of them, or the
save, fails, the nodes enabled so far are turned off again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from cms.nodes import enrollment
from cms.nodes.errors import NodeError
from cms.nodes.services import ConnectionReport, test_connection
from cms.nodes.webcalls import address_of

from . import enabling, identity
from .choices import ConnectionType, NameSource
from .connection import server_for
from .models import Server, Team
from .naming import Candidate, NamingRule, generate_names, reported_name_errors
from .validators import validate_server_name


@dataclass
class BatchResult:
    created: list[Server] = field(default_factory=list)
    errors: dict[int, list[str]] = field(default_factory=dict)  # row index -> why
    rule_errors: list[str] = field(default_factory=list)  # about the naming rule itself

    @property
    def ok(self) -> bool:
        return not self.errors and not self.rule_errors


@dataclass
class _Row:
    index: int
    item: dict[str, Any]
    server: Server
    report: ConnectionReport
    enable: bool  # its CMS service is off and the row asks to turn it on


def batch_add(
    team: Team, role: str, naming_rule: str, items: list[dict[str, Any]], prefix: str = ""
) -> BatchResult:
    """Reach every server, name them, enable the CMS services asked for, add them all.

    Nothing is added, and no node is changed, unless every row can be: each row that
    cannot says why.
    """
    result = BatchResult()
    rows = _check_rows(role, team, naming_rule, items, result)
    if result.errors:
        return result
    candidates = [Candidate(r.report.name, r.report.model, r.item.get("custom_name", ""))
                  for r in rows]  # fmt: skip
    try:
        names = preview_names(role, naming_rule, candidates, prefix=prefix)
    except ValidationError as exc:
        result.rule_errors = exc.messages
        return result
    for row, name, cand in zip(rows, names, candidates, strict=True):
        custom = naming_rule == NamingRule.CUSTOM or cand.custom_name
        row.server.name = name
        row.server.name_source = NameSource.CUSTOM if custom else NameSource.NAMING_RULE
        try:
            row.server.full_clean(exclude=["admin_password"])
        except ValidationError as exc:
            result.errors[row.index] = [f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()]
    if result.errors:
        return result

    # Every row can be added: only now is any node changed.
    done: list[enabling.Enabled] = []
    for row in rows:
        if not row.enable:
            continue
        try:
            enabled = enabling.enable(
                row.server, role,
                refuse_other_hosts=row.item.get("refuse_other_hosts", False),
                refuse_local_changes=row.item.get("refuse_local_changes", False),
            )  # fmt: skip
        except NodeError as exc:
            enabling.undo_all(done)
            result.errors[row.index] = [f"Could not enable the CMS service: {exc}"]
            return result
        done.append(enabled)
        row.server.cms_mode = enabled.info.get("cms_mode", role)
        row.server.locked = bool(enabled.info.get("locked"))
    try:
        _save(rows, result)
    except BaseException:
        enabling.undo_all(done)
        raise
    if not result.ok:
        enabling.undo_all(done)
    return result


def _check_rows(role: str, team: Team, naming_rule: str, items: list[dict[str, Any]],
                result: BatchResult) -> list[_Row]:  # fmt: skip
    """Every row checked without changing its node; refusals go to `result.errors`."""
    rows: list[_Row] = []
    addresses: dict[str, int] = {}
    serials: dict[str, int] = {}
    for index, item in enumerate(items):
        server = server_for(role, item, team=team)
        if item.get("custom_name") or naming_rule == NamingRule.CUSTOM:
            try:  # before reaching the server: a typo is this row's own problem
                validate_server_name(item.get("custom_name", ""))
            except ValidationError as exc:
                result.errors[index] = exc.messages
                continue
        if server.connection_type == ConnectionType.QUICKCONNECT and server.quickconnect_id_taken():
            # Before reaching the node: another team's node must not be asked anything.
            result.errors[index] = [
                f"A server with QuickConnect ID {server.quickconnect_id!r} already exists."
            ]
            continue
        where = address_of(server)
        if where in addresses:
            result.errors[index] = [f"The same server as row {addresses[where] + 1}."]
            continue
        addresses[where] = index
        report = test_connection(server)
        if not report.ok:
            result.errors[index] = [report.message]
            continue
        if report.serial in serials:
            result.errors[index] = [f"The same node as row {serials[report.serial] + 1} "
                                    f"(serial {report.serial})."]  # fmt: skip
            continue
        serials[report.serial] = index
        if (other := identity.managed_as(report.serial)) is not None:
            result.errors[index] = [identity.already_added(other, team.pk)]
            continue
        enable = bool(item.get("enable_cms")) and not report.cms_enabled
        if not enable and (problem := identity.mode_problem(report, role)):
            result.errors[index] = [problem]
            continue
        if (
            naming_rule == NamingRule.DEFAULT
            and not item.get("custom_name")
            and (problems := reported_name_errors(report.name))
        ):
            # The node's own name breaks the rule: that row says so, the user types one.
            result.errors[index] = problems
            continue
        identity.adopt(server, report)
        if enable:
            server.cms_mode = role
        rows.append(_Row(index, item, server, report, enable))
    return rows


def _save(rows: list[_Row], result: BatchResult) -> None:
    # The nodes were reached above, with no transaction open; this one only writes.
    try:
        with transaction.atomic():
            for row in rows:
                row.server.save()
            for row in rows:
                # The row's node answered at its QuickConnect address, so the ID is bound;
                # a secret is issued only if it is bound to another serial than this node's.
                secret = enrollment.issue_for_server(row.server)
                if secret:  # for the API's answer only (quickconnect_enrollment_secret)
                    row.server.quickconnect_enrollment_secret = secret
    except IntegrityError:
        # A server of the same name, or the same node, was added meanwhile (the checks
        # above raced it).
        for row in rows:
            row.server.pk = None
        result.rule_errors = [
            "A server with one of these names, or one of these nodes, was added meanwhile; "
            "nothing was added. Try again."
        ]
        return
    result.created.extend(row.server for row in rows)


def taken_names(role: str) -> list[str]:
    """The names a batch of ``role`` servers must avoid (as `batch_add` avoids them)."""
    return list(Server.objects.filter(role=role).values_list("name", flat=True))


def preview_names(
    role: str, naming_rule: str, candidates: list[Candidate], prefix: str = ""
) -> list[str]:
    """The names `batch_add` will give these servers now: the same function, the same
    taken names. Raises ValidationError as `batch_add` would refuse the rule."""
    return generate_names(naming_rule, candidates, taken_names(role), prefix=prefix)
