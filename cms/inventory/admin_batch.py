"""The Add Batch page of each server tab, rendered by the server.

The page holds what was found and chosen in its form; every change (a search, a tick,
an Edit window's OK) posts the form and the server answers the rows again (htmx swaps
them in): each server's status, whether it can be ticked, and the name it will get,
computed by the functions `batch_add` uses (`cms.inventory.batch.preview_names`). OK
adds the batch through the same all-or-none service as the API's ``batch-add``.
The page's script keeps only what the server cannot: the passwords typed in the Edit
and Enable windows stay in password fields of the page, never rendered back.

Enable here changes no node: the row only asks for the CMS service to be turned on
(with its security lock) and OK hands it to `batch_add` as an ``enable_cms`` row, which
turns it on only once every row of the batch can be added, and off again if a later
step fails. A batch refused afterwards must leave that node as it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect, retarget

from cms.nodes.discovery import FIELDS, search
from cms.nodes.errors import NodeBusy
from cms.nodes.webcalls import web_node_call
from cms.permissions import can

from .batch import batch_add, preview_names, taken_names
from .found import with_status
from .models import Team
from .naming import Candidate, NamingRule, custom_name_errors

MAX_ROWS = 200
KEPT = (*FIELDS, "address")  # what a row keeps of the search's answer
RULES = [(v, label) for v, label in NamingRule.choices if v != NamingRule.CUSTOM]


@dataclass
class Row:
    found: dict[str, Any]
    picked: bool = False
    password: str = ""
    custom_name: str = ""
    planned: str = ""
    result: str = ""
    result_ok: bool = False
    status: dict[str, Any] = field(default_factory=dict)
    enable: bool = False  # its CMS service is to be turned on when the batch is added
    refuse_other_hosts: bool = False  # the security lock asked for with it
    refuse_local_changes: bool = False

    @property
    def serial(self) -> str:
        return str(self.found.get("serial", ""))

    @property
    def found_json(self) -> str:
        return json.dumps(self.found, sort_keys=True)


@dataclass
class Batch:
    """The page's state as its form posted it."""

    role: str
    rows: list[Row]
    naming_rule: str = NamingRule.DEFAULT
    prefix: str = ""
    message: str = ""
    message_ok: bool = True
    naming_error: str = ""

    def row(self, serial: str) -> Row | None:
        return next((r for r in self.rows if r.serial == serial), None)

    @property
    def picked(self) -> list[Row]:
        return [r for r in self.rows if r.picked]


def _found(raw: str) -> dict[str, Any] | None:
    try:
        data = json.loads(raw) if len(raw) < 4096 else None
    except ValueError:
        return None
    if not isinstance(data, dict) or not data.get("serial"):
        return None
    return {k: data.get(k) for k in KEPT}


def read_batch(request: HttpRequest, role: str, found: list[dict[str, Any]] | None = None) -> Batch:
    """The page's state from its form; ``found``: a new search's answers, which replace
    the rows (keeping what was typed and ticked for the servers found again)."""
    post = request.POST
    rule = post.get("naming_rule", NamingRule.DEFAULT)
    batch = Batch(
        role=role,
        rows=[],
        naming_rule=rule if rule in dict(RULES) else NamingRule.DEFAULT,
        prefix=post.get("prefix", ""),
    )
    picks = set(post.getlist("pick"))
    shown = [f for f in (_found(raw) for raw in post.getlist("found")) if f]
    for answer in (found if found is not None else shown)[:MAX_ROWS]:
        item = {k: answer.get(k) for k in KEPT}
        serial = str(item["serial"])
        row = Row(
            found=item,
            picked=serial in picks,
            password=post.get(f"password-{serial}", ""),
            custom_name=post.get(f"custom-{serial}", ""),
        )
        if post.get(f"enable-{serial}") == "on" and not item.get("cms_enabled"):
            row.enable = True
            row.refuse_other_hosts = post.get(f"lock-hosts-{serial}") == "on"
            row.refuse_local_changes = post.get(f"lock-local-{serial}") == "on"
        batch.rows.append(row)
    statuses = with_status([r.found for r in batch.rows], request.user, role)
    for row, status in zip(batch.rows, statuses, strict=True):
        if row.enable and status["status"] == "available":
            status = status | {"selectable": True}  # in this tab's mode once turned on
        row.status = status
        row.picked = row.picked and status["selectable"]
    if "all_was" in post and "all" not in post:
        for row in batch.rows:
            row.picked = False
    elif "all" in post and "all_was" not in post:
        for row in batch.rows:
            row.picked = row.status["selectable"]
    return batch


def plan(batch: Batch) -> None:
    """The names the ticked servers will get, exactly as `batch_add` gives them now."""
    rows = batch.picked
    candidates = [
        Candidate(str(r.found.get("name") or ""), str(r.found.get("model") or ""), r.custom_name)
        for r in rows
    ]
    try:
        names = preview_names(batch.role, batch.naming_rule, candidates, prefix=batch.prefix)
    except ValidationError as exc:
        batch.naming_error = " ".join(exc.messages)
        return
    for row, name in zip(rows, names, strict=True):
        row.planned = name


def _context(request: HttpRequest, model_admin: Any, role: str, batch: Batch) -> dict:
    opts = model_admin.model._meta
    plan(batch)
    for row in batch.rows:
        if not row.result and not row.status["selectable"]:
            row.result = _why_not(row, role)
        elif not row.result and row.enable:
            row.result, row.result_ok = _will_enable(row), True
    selectable = [r for r in batch.rows if r.status["selectable"]]
    return {
        "batch": batch,
        "rules": RULES,
        "rule_label": dict(RULES).get(batch.naming_rule, ""),
        "all_picked": bool(selectable) and all(r.picked for r in selectable),
        "rows_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_batch_rows"),
        "role": role,
    }


def _why_not(row: Row, role: str) -> str:
    status = row.status
    if status["status"] != "available":
        return status["status_detail"] if status["status"] != "added" else ""
    if not row.found.get("cms_enabled"):
        return "Its CMS service is not enabled: use Enable."
    if row.found.get("cms_mode") != role:
        return f"Its CMS mode is {row.found.get('cms_mode')}, not {role}."
    return ""


def _will_enable(row: Row) -> str:
    locks = [
        *(["refuses other CMS hosts"] if row.refuse_other_hosts else []),
        *(["refuses changes made on the server"] if row.refuse_local_changes else []),
    ]
    lock = f" (security lock: {', '.join(locks)})" if locks else ""
    return f"CMS service will be turned on when added{lock}."


def _check(request: HttpRequest, model_admin: Any) -> None:
    if not model_admin.has_add_permission(request):
        raise PermissionDenied


def batch_add_view(request: HttpRequest, model_admin: Any, role: str) -> HttpResponse:
    _check(request, model_admin)
    opts = model_admin.model._meta
    batch = Batch(role=role, rows=[])
    return TemplateResponse(
        request,
        "admin/inventory/batch_add.html",
        {
            **model_admin.admin_site.each_context(request),
            **_context(request, model_admin, role, batch),
            "title": f"Add a batch of {opts.verbose_name_plural}",
            "opts": opts,
            "teams": Team.objects.for_user(request.user),
        },
    )


def _rows(request: HttpRequest, model_admin: Any, role: str, batch: Batch) -> HttpResponse:
    context = _context(request, model_admin, role, batch)
    return TemplateResponse(request, "admin/inventory/batch_rows.html", context)


@require_POST
def batch_rows_view(request: HttpRequest, model_admin: Any, role: str) -> HttpResponse:
    """Every change on the page: the rows again, or the Edit window with its errors."""
    _check(request, model_admin)
    op = request.POST.get("op", "")
    if op == "search":
        return _search(request, model_admin, role)
    batch = read_batch(request, role)
    if op == "edit":
        return _edit_window(request, batch, request.POST.get("serial", ""))
    if op == "edit_ok":
        return _edit_ok(request, model_admin, role, batch)
    if op == "enable_ok":
        return _enable_ok(request, model_admin, role, batch)
    if op == "add":
        return _add(request, model_admin, role, batch)
    return _rows(request, model_admin, role, batch)


def _search(request: HttpRequest, model_admin: Any, role: str) -> HttpResponse:
    if not can(request.user, "test_connection"):
        raise PermissionDenied
    address = settings.CMS_DISCOVERY_ADDRESS
    try:
        with web_node_call(f"search:{address}"):
            found = search(timeout=2.0, port=settings.CMS_DISCOVERY_PORT, address=address)
    except NodeBusy as exc:
        batch = read_batch(request, role)
        batch.message, batch.message_ok = exc.message, False
        return _rows(request, model_admin, role, batch)
    batch = read_batch(request, role, found=found)
    batch.message = f"{len(batch.rows)} server(s) found."
    return _rows(request, model_admin, role, batch)


def _edit_window(request: HttpRequest, batch: Batch, serial: str) -> HttpResponse:
    row = batch.row(serial)
    if row is None:
        raise PermissionDenied
    context = {
        "row": row,
        "rules": RULES,
        "naming_rule": batch.naming_rule,
        "prefix": batch.prefix,
        "custom": bool(row.custom_name),
        "custom_name": row.custom_name,
        "rows_url": request.path,
        "check_url": request.path.replace("/rows/", "/check-name/"),
    }
    response = TemplateResponse(request, "admin/inventory/batch_edit.html", context)
    return retarget(response, "#cms-batch-edit-body")


def edit_name_errors(batch: Batch, serial: str, name: str) -> list[str]:
    """The custom name typed in one row's Edit window: the name rule, then the names taken
    by servers already added and by the other rows' custom names."""
    others = [r.custom_name for r in batch.rows if r.serial != serial and r.custom_name]
    return custom_name_errors(name, [*taken_names(batch.role), *others])


def _edit_ok(request: HttpRequest, model_admin: Any, role: str, batch: Batch) -> HttpResponse:
    post = request.POST
    serial = post.get("serial", "")
    row = batch.row(serial)
    if row is None:
        raise PermissionDenied
    custom = post.get("edit_naming") == "custom"
    rule = post.get("edit_rule", NamingRule.DEFAULT)
    errors = []
    if not post.get("edit_password"):
        errors.append("Enter the admin password of the server.")
    if custom:
        errors += edit_name_errors(batch, serial, post.get("edit_name", ""))
    elif rule == NamingRule.PREFIX_NO and not post.get("edit_prefix"):
        errors.append("Enter the custom prefix.")
    if errors:  # only the window's error box: what was typed stays in its fields
        response = TemplateResponse(
            request, "admin/inventory/batch_edit_errors.html", {"errors": errors}
        )
        return retarget(response, "#cms-edit-errors")
    row.password = post["edit_password"]
    row.custom_name = post.get("edit_name", "") if custom else ""
    if not custom:
        batch.naming_rule = rule if rule in dict(RULES) else NamingRule.DEFAULT
        batch.prefix = post.get("edit_prefix", "")
    row.picked = row.status["selectable"]
    response = _rows(request, model_admin, role, batch)
    # The page's script keeps the password in its own field and closes the window.
    response["HX-Trigger"] = json.dumps({"cms-edit-done": {"serial": serial}})
    return response


def _enable_ok(request: HttpRequest, model_admin: Any, role: str, batch: Batch) -> HttpResponse:
    """The Enable window's OK: the row asks for its CMS service to be turned on when the
    batch is added. No node is asked anything here."""
    post = request.POST
    serial = post.get("serial", "")
    row = batch.row(serial)
    if row is None or row.status.get("status") != "available" or row.found.get("cms_enabled"):
        raise PermissionDenied  # only a server offering Enable has an Enable window
    if not post.get("enable_password"):
        response = TemplateResponse(
            request,
            "admin/inventory/batch_enable_errors.html",
            {"errors": ["Enter the admin password of the server."]},
        )
        return retarget(response, "#cms-enable-errors")
    row.enable = True
    row.refuse_other_hosts = post.get("enable_other_hosts") == "on"
    row.refuse_local_changes = post.get("enable_local") == "on"
    row.password = post["enable_password"]
    row.status = row.status | {"selectable": True}
    row.picked = True
    response = _rows(request, model_admin, role, batch)
    # The page's script keeps the password in its own field and closes the window, after
    # the swap: the focus goes back to the row's new Edit button.
    response["HX-Trigger-After-Swap"] = json.dumps({"cms-enable-done": {"serial": serial}})
    return response


@require_POST
def check_name_view(request: HttpRequest, model_admin: Any, role: str) -> HttpResponse:
    """The Edit window's custom name, checked as it is typed: the same rule and messages
    as its OK."""
    _check(request, model_admin)
    batch = read_batch(request, role)
    name = request.POST.get("edit_name", "")
    errors = edit_name_errors(batch, request.POST.get("serial", ""), name) if name else []
    return TemplateResponse(request, "admin/inventory/batch_name_error.html", {"errors": errors})


def _add(request: HttpRequest, model_admin: Any, role: str, batch: Batch) -> HttpResponse:
    team = Team.objects.for_user(request.user).filter(pk=request.POST.get("team") or 0).first()
    chosen = batch.picked
    if team is None or not chosen:
        batch.message = "Choose a team." if team is None else "Tick the servers to add."
        batch.message_ok = False
        return _rows(request, model_admin, role, batch)
    missing = [r for r in chosen if not r.password]
    for row in missing:
        row.result = "Enter its admin password: double-click it or click Edit."
    if missing:
        batch.message, batch.message_ok = "Some servers have no admin password yet.", False
        return _rows(request, model_admin, role, batch)
    items = [
        {
            "connection_type": "address",
            "host": r.found.get("address"),
            "port": r.found.get("port"),
            "use_https": bool(r.found.get("https")),
            "admin_password": r.password,
            "custom_name": r.custom_name,
            "enable_cms": r.enable,
            "refuse_other_hosts": r.refuse_other_hosts,
            "refuse_local_changes": r.refuse_local_changes,
        }
        for r in chosen
    ]
    result = batch_add(team, role, batch.naming_rule, items, prefix=batch.prefix)
    if result.ok:
        opts = model_admin.model._meta
        names = ", ".join(s.name for s in result.created)
        model_admin.message_user(request, f"Added {len(result.created)} server(s): {names}.")
        return HttpResponseClientRedirect(
            reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        )
    for index, row in enumerate(chosen):
        problems = result.errors.get(index, [])
        row.result = " ".join(problems) or (
            "Can be added, but the others cannot: nothing was added." if result.errors else ""
        )
    batch.message = " ".join(["The CMS refused the batch: nothing was added.",
                              *result.rule_errors])  # fmt: skip
    batch.message_ok = False
    return _rows(request, model_admin, role, batch)
