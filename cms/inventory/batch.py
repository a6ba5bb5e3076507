"""Add Batch: several servers found by the search, named by a naming rule, all or none."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from cms.nodes import enrollment
from cms.nodes.client import client_for
from cms.nodes.errors import NodeError
from cms.nodes.services import test_connection

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


def batch_add(
    team: Team, role: str, naming_rule: str, items: list[dict[str, Any]], prefix: str = ""
) -> BatchResult:
    """Reach every server (enabling its CMS service when asked), name them, add them all.

    Nothing is added unless every row can be: each row that cannot says why.
    """
    result = BatchResult()
    servers: list[Server] = []
    candidates: list[Candidate] = []
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
        if item.get("enable_cms"):
            try:
                client_for(server, pin=False).enable_cms(
                    role,
                    refuse_other_hosts=item.get("refuse_other_hosts", False),
                    refuse_local_changes=item.get("refuse_local_changes", False),
                )
            except NodeError as exc:
                result.errors[index] = [f"Could not enable the CMS service: {exc}"]
                continue
        report = test_connection(server)
        if not report.ok:
            result.errors[index] = [report.message]
            continue
        if report.cms_mode != role:
            result.errors[index] = [
                f"The server's CMS mode is {report.cms_mode or 'not set'}, not {role}: enable "
                "its CMS service in that mode first."
            ]
            continue
        if (
            naming_rule == NamingRule.DEFAULT
            and not item.get("custom_name")
            and (problems := reported_name_errors(report.name))
        ):
            # The node's own name breaks the rule: that row says so, the user types one.
            result.errors[index] = problems
            continue
        server.tls_fingerprint = report.fingerprint
        server.model, server.serial = report.model, report.serial
        server.locked = bool(report.locked)
        servers.append(server)
        candidates.append(Candidate(report.name, report.model, item.get("custom_name", "")))
    if result.errors:
        return result

    try:
        names = preview_names(role, naming_rule, candidates, prefix=prefix)
    except ValidationError as exc:
        result.rule_errors = exc.messages
        return result
    # The nodes were reached above, with no transaction open; this one only writes.
    with transaction.atomic():
        for index, (server, name, cand) in enumerate(zip(servers, names, candidates, strict=True)):
            custom = naming_rule == NamingRule.CUSTOM or cand.custom_name
            server.name = name
            server.name_source = NameSource.CUSTOM if custom else NameSource.NAMING_RULE
            try:
                server.full_clean(exclude=["admin_password"])
            except ValidationError as exc:
                result.errors[index] = [f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()]
        if result.errors:
            transaction.set_rollback(True)
            return result
        try:
            with transaction.atomic():
                for server in servers:
                    server.save()
        except IntegrityError:
            # A server of the same name was added meanwhile (the check above raced it).
            transaction.set_rollback(True)
            result.rule_errors = [
                "A server with one of these names was added meanwhile; nothing was added. "
                "Try again."
            ]
            return result
        for server in servers:
            # The row's node answered at its QuickConnect address, so the ID is bound;
            # a secret is issued only if it is bound to another serial than this node's.
            secret = enrollment.issue_for_server(server)
            if secret:  # for the API's answer only (quickconnect_enrollment_secret)
                server.quickconnect_enrollment_secret = secret
        result.created.extend(servers)
    return result


def taken_names(role: str) -> list[str]:
    """The names a batch of ``role`` servers must avoid (as `batch_add` avoids them)."""
    return list(Server.objects.filter(role=role).values_list("name", flat=True))


def preview_names(
    role: str, naming_rule: str, candidates: list[Candidate], prefix: str = ""
) -> list[str]:
    """The names `batch_add` will give these servers now: the same function, the same
    taken names. Raises ValidationError as `batch_add` would refuse the rule."""
    return generate_names(naming_rule, candidates, taken_names(role), prefix=prefix)
