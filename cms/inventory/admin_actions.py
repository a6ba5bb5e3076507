"""The server tabs' actions in the admin: enable, disable, lock, unlock, edit and delete,
through `cms.inventory.actions`. A `ConfirmationRequired` becomes the confirmation page
(the same consequences the API answers with in its 409)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from cms.actions import ConfirmationRequired
from cms.nodes.errors import NodeError
from cms.nodes.transport import deadline
from cms.nodes.webcalls import web_deadline
from cms.permissions import can

from . import actions
from .models import Server


def confirmation_page(request: HttpRequest, exc: ConfirmationRequired, *, title: str,
                      queryset: QuerySet, action: str) -> TemplateResponse:  # fmt: skip
    """Ask to confirm `exc`'s consequences; "Yes" posts `action` again with confirm=yes."""
    return TemplateResponse(
        request,
        "admin/confirm_action.html",
        {
            **admin.site.each_context(request),
            "title": title,
            "consequences": exc.consequences,
            "queryset": queryset,
            "action": action,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "opts": queryset.model._meta,
        },
    )


def confirmed(request: HttpRequest) -> bool:
    return request.POST.get("confirm") == "yes"


class ServerActionsAdmin:
    """Mixed into the server tabs' admin."""

    disabled_message = "Disabled {count} server(s)."
    delete_confirmation_template = "admin/inventory/server/delete_confirmation.html"
    delete_selected_confirmation_template = (
        "admin/inventory/server/delete_selected_confirmation.html"
    )

    @admin.action(description="Enable selected servers", permissions=["enable"])
    def enable_servers(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = actions.set_enabled(request.user, queryset, True)
        self.message_user(request, f"Enabled {count} server(s).")

    @admin.action(description="Disable selected servers", permissions=["enable"])
    def disable_servers(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        try:
            count = actions.set_enabled(request.user, queryset, False,
                                        confirmed=confirmed(request))  # fmt: skip
        except ConfirmationRequired as exc:
            return confirmation_page(request, exc, title="Disable servers that are acting",
                                     queryset=queryset, action="disable_servers")  # fmt: skip
        self.message_user(request, self.disabled_message.format(count=count))
        return None

    def has_enable_permission(self, request: HttpRequest) -> bool:
        return can(request.user, "enable")

    @admin.action(description="Lock selected servers", permissions=["lock"])
    def lock_servers(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_lock(request, queryset, True)

    @admin.action(description="Unlock selected servers", permissions=["lock"])
    def unlock_servers(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_lock(request, queryset, False)

    def _set_lock(self, request: HttpRequest, queryset: QuerySet, locked: bool) -> None:
        done = []
        # One deadline for the whole request; each node is claimed while it is called.
        with deadline(web_deadline()):
            for server in queryset:
                try:
                    actions.set_lock(request.user, server, locked)
                    done.append(server.name)
                except NodeError as exc:  # NodeBusy included: that server is skipped
                    self.message_user(request, f"{server.name}: {exc}", messages.ERROR)
        if done:
            verb = "Locked" if locked else "Unlocked"
            self.message_user(request, f"{verb}: {', '.join(done)}.")

    def has_lock_permission(self, request: HttpRequest) -> bool:
        return can(request.user, "lock")

    # -- edit and delete: the change and delete pages ---------------------------------

    def changeform_view(self, request: HttpRequest, object_id: str | None = None,
                        form_url: str = "", extra_context: Any = None) -> HttpResponse:  # fmt: skip
        # Not inside Django's request-long transaction: the form reaches the node before
        # saving (identity.py), and no transaction stays open across a node call.
        return self._changeform_view(request, object_id, form_url, extra_context)  # type: ignore[attr-defined]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)  # type: ignore[misc]
        if obj is None or request.method != "POST":  # shown when a save was refused for it
            return fieldsets
        return [
            (name, {**opts, "fields": [*opts["fields"], "confirm_node_replacement"]})
            if name == "Connection" else (name, opts)
            for name, opts in fieldsets
        ]  # fmt: skip

    def save_model(self, request: HttpRequest, obj: Server, form: Any, change: bool) -> None:
        save = super().save_model  # type: ignore[misc]
        if not change:
            save(request, obj, form, change)
            return
        # The form asked for the confirmation (see `confirmed_edit`).
        actions.edit(request.user, obj, lambda: save(request, obj, form, change),
                     confirmed=getattr(form, "consequences_confirmed", False),
                     changed=form.has_changed())  # fmt: skip

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None):
        server = self.get_object(request, object_id)  # type: ignore[attr-defined]
        if server is not None:
            extra_context = {**(extra_context or {}),
                             "consequences": actions.consequences([server], "deleted")}  # fmt: skip
        return super().delete_view(request, object_id, extra_context)  # type: ignore[misc]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        found = super().get_actions(request)  # type: ignore[misc]
        if "delete_selected" in found:
            _, name, description = found["delete_selected"]
            found["delete_selected"] = (_delete_selected, name, description)
        return found

    # The delete pages showed the consequences: deleting is the confirmation.
    def delete_model(self, request: HttpRequest, obj: Server) -> None:
        actions.delete(request.user, [obj], confirmed=True)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        actions.delete(request.user, queryset, confirmed=True)


def _delete_selected(
    model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    """Django's delete_selected, whose confirmation page also lists the consequences."""
    response = delete_selected(model_admin, request, queryset)
    if not request.POST.get("post") and isinstance(response, TemplateResponse):
        response.context_data["consequences"] = actions.consequences(queryset, "deleted")
    return response
