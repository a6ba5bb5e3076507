"""Admin registration of the inventory: teams, the two server tabs, licenses."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.utils.text import capfirst

from . import admin_audit  # noqa: F401 (replaces the audit log's unscoped admin)
from .admin_actions import ServerActionsAdmin
from .admin_enrollment import EnrollmentAdminMixin
from .forms import ServerForm
from .models import FailoverServer, License, LicenseMove, RecordingServer, Team, TeamMembership


class TeamScopedAdmin(admin.ModelAdmin):
    """Every list, change page and action sees only the user's teams' objects."""

    def get_queryset(self, request: HttpRequest):
        return self.model._default_manager.get_queryset().for_user(request.user)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        # "Recording servers", not Django's "Select recording server to change".
        title = capfirst(self.model._meta.verbose_name_plural)
        return super().changelist_view(request, {"title": title, **(extra_context or {})})


class TeamMembershipInline(admin.TabularInline):
    model = TeamMembership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Team)
class TeamAdmin(TeamScopedAdmin):
    list_display = ["name", "description", "created_at"]
    search_fields = ["name", "description"]
    inlines = [TeamMembershipInline]


class ServerAdmin(ServerActionsAdmin, EnrollmentAdminMixin, TeamScopedAdmin):
    form = ServerForm
    actions = ["enable_servers", "disable_servers", "lock_servers", "unlock_servers",
               "issue_enrollment_secret"]  # fmt: skip
    change_form_template = "admin/inventory/server_change_form.html"
    list_display = [
        "name",
        "address",
        "model",
        "status",
        "enabled",
        "cms_mode",
        "team",
        "last_seen",
    ]
    list_filter = ["status", "enabled", "connection_type", "team"]
    search_fields = ["name", "host", "quickconnect_id", "model", "serial"]
    list_select_related = ["team"]
    readonly_fields = [
        "status",
        "model",
        "serial",
        "software_version",
        "lan_address",
        "cms_mode",
        "tls_fingerprint",
        "last_seen",
        "consecutive_failures",
        "consecutive_successes",
        "last_error",
        "latency_ms",
    ]
    fieldsets = [
        (None, {"fields": ["team", "name", "enabled"]}),
        (
            "Connection",
            {
                "fields": [
                    "connection_type",
                    "host",
                    "port",
                    "use_https",
                    "quickconnect_id",
                    "admin_username",
                    "admin_password_input",
                ]
            },
        ),
        (
            "Reported by the server",
            {
                "classes": ["collapse"],
                "fields": [
                    "model",
                    "serial",
                    "software_version",
                    "lan_address",
                    "cms_mode",
                    "tls_fingerprint",
                ],
            },
        ),
        (
            "Health",
            {
                "fields": [
                    "status",
                    "last_seen",
                    "consecutive_failures",
                    "consecutive_successes",
                    "latency_ms",
                    "last_error",
                ]
            },
        ),
    ]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:  # nothing is reported or probed before the server is added
            return [f for f in fieldsets if f[0] not in ("Reported by the server", "Health")]
        return fieldsets

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        """A new server belongs to the user's team when they are in one team only."""
        initial = super().get_changeform_initial_data(request)
        if "team" not in initial:
            mine = TeamMembership.objects.filter(user=request.user)
            teams = list(mine.values_list("team_id", flat=True)[:2])
            if len(teams) == 1:
                initial["team"] = teams[0]
        return initial

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        form_class = super().get_form(request, obj, change=change, **kwargs)
        user = request.user

        class UserBoundForm(form_class):  # the team choices depend on the user
            def __init__(self, *args: Any, **kw: Any) -> None:
                super().__init__(*args, user=user, **kw)

        return UserBoundForm

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: Any = None) -> HttpResponse:  # fmt: skip
        from . import admin_licenses

        server = self.get_object(request, object_id)
        if server is not None:
            extra_context = {**(extra_context or {}),
                             "licenses": admin_licenses.panel(request, server)}  # fmt: skip
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="Address", ordering="host")
    def address(self, obj: Any) -> str:
        return obj.address

    def get_urls(self):
        from django.urls import path

        from . import admin_batch, admin_connect, admin_licenses

        role = self.model(role="").role  # the proxy's own role
        name = self.model._meta.model_name
        wrap = self.admin_site.admin_view
        return [
            path("connect/test/", wrap(admin_connect.test_connection_view),
                 {"role": role}, name=f"inventory_{name}_connect_test"),
            path("connect/search/", wrap(admin_connect.search_view),
                 {"role": role}, name=f"inventory_{name}_connect_search"),
            path("connect/enable/", wrap(admin_connect.enable_view),
                 {"role": role}, name=f"inventory_{name}_connect_enable"),
            path("batch/", wrap(admin_batch.batch_add_view),
                 {"role": role, "model_admin": self}, name=f"inventory_{name}_batch"),
            path("batch/rows/", wrap(admin_batch.batch_rows_view),
                 {"role": role, "model_admin": self}, name=f"inventory_{name}_batch_rows"),
            path("batch/check-name/", wrap(admin_batch.check_name_view),
                 {"role": role, "model_admin": self}, name=f"inventory_{name}_batch_check_name"),
            path("<int:object_id>/licenses/add/", wrap(admin_licenses.add_view),
                 {"model_admin": self}, name=f"inventory_{name}_license_add"),
            path("<int:object_id>/licenses/remove/", wrap(admin_licenses.remove_view),
                 {"model_admin": self}, name=f"inventory_{name}_license_remove"),
            *super().get_urls(),
        ]  # fmt: skip


@admin.register(RecordingServer)
class RecordingServerAdmin(ServerAdmin):
    disabled_message = "Disabled {count} server(s): they are no longer probed."


@admin.register(FailoverServer)
class FailoverServerAdmin(ServerAdmin):
    pass


class HistoryInline:
    """An append-only record shown under its object: every field read-only, no add, no
    delete (the history is never lost)."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return list(self.fields)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LicenseMoveInline(HistoryInline, admin.TabularInline):
    model = LicenseMove
    fields = ["at", "from_server_name", "to_server_name", "reason", "actor"]


@admin.register(License)
class LicenseAdmin(TeamScopedAdmin):
    list_display = ["key", "cameras", "server", "team", "created_at"]
    list_filter = ["team", ("server", admin.EmptyFieldListFilter)]
    search_fields = ["key", "server__name", "note"]
    list_select_related = ["server", "team"]
    inlines = [LicenseMoveInline]
