from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from cms.nodes.models import QuickConnectEntry


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("bound", "Bound"),
            ("waiting", "Waiting for enrollment"),
            ("renewing", "Bound, new secret issued"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "bound":
            return queryset.exclude(token_hash="")
        if self.value() == "waiting":
            return queryset.filter(token_hash="")
        if self.value() == "renewing":
            return queryset.exclude(token_hash="").exclude(enrollment_hash="")
        return queryset


@admin.register(QuickConnectEntry)
class QuickConnectEntryAdmin(admin.ModelAdmin):
    """What an operator needs: is the ID bound to a node, or waiting for it to enroll.

    Entries are created by the CMS when it issues an enrollment secret (a server was
    added, its ID changed, or the server tab's action "Issue a new QuickConnect
    enrollment secret"). Deleting an entry unbinds its ID and cancels its secret: no
    node can register it again until a new secret is issued.
    """

    list_display = ("qc_id", "state", "since", "address", "serial", "updated_at")
    list_filter = (StateFilter,)
    search_fields = ("qc_id", "serial", "host")
    readonly_fields = (
        "qc_id",
        "state",
        "since",
        "serial",
        "host",
        "port",
        "bound_at",
        "enrollment_issued_at",
        "registered_at",
        "updated_at",
    )
    fields = readonly_fields

    @admin.display(description="State")
    def state(self, entry: QuickConnectEntry) -> str:
        if not entry.is_bound:
            return "Waiting for enrollment" if entry.awaits_enrollment else "Unbound, no secret"
        if entry.awaits_enrollment:
            return "Bound; a new secret waits for a replacement node"
        return "Bound"

    @admin.display(description="Since", ordering="bound_at")
    def since(self, entry: QuickConnectEntry) -> Any:
        """Bound since it enrolled; waiting since the secret was issued."""
        if entry.is_bound:
            return entry.bound_at or entry.registered_at
        return entry.enrollment_issued_at

    @admin.display(description="Address")
    def address(self, entry: QuickConnectEntry) -> str:
        return f"{entry.host}:{entry.port}" if entry.is_bound else "-"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # entries come from issued secrets and nodes' registrations only

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # what is stored is what a node proved: nothing to edit by hand
