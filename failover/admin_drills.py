"""Admin of failover drills: the action on recording servers, the drills' history with a
report per server, and each team's drill targets."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html

from cms.actions import ActionRefused
from cms.inventory.models import Team
from cms.permissions import can

from . import drills, timeline
from .models import Drill, DrillTargets


@admin.action(description="Run a failover drill", permissions=["run_drill"])
def run_drill(model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    try:
        drill = drills.request_drill(request.user, queryset.order_by("name"))
    except ActionRefused as exc:
        model_admin.message_user(request, str(exc), messages.ERROR)
        return
    link = reverse("admin:failover_drill_change", args=[drill.pk])
    if drill.state == "refused":
        model_admin.message_user(
            request,
            format_html('Drill <a href="{}">#{}</a> refused: {}', link, drill.pk, drill.reason),
            messages.ERROR,
        )
    else:
        model_admin.message_user(
            request, format_html('Drill <a href="{}">#{}</a> started.', link, drill.pk)
        )


def may_run_drill(request: HttpRequest) -> bool:
    return can(request.user, "trigger_failover") and can(request.user, "fail_back")


@admin.register(Drill)
class DrillAdmin(admin.ModelAdmin):
    """The history: read-only; the change page is the drill's report."""

    list_display = ["id", "state", "servers_list", "requested_by", "started", "finished"]
    list_filter = ["state", "team"]
    fields = ["state", "team", "requested_by", "scheduled", "started", "finished", "reason",
              "targets", "report"]  # fmt: skip
    readonly_fields = fields

    started = admin.display(description="Started", ordering="started_at")(
        lambda self, drill: timeline.moment(drill.started_at)
    )
    finished = admin.display(description="Finished", ordering="finished_at")(
        lambda self, drill: timeline.moment(drill.finished_at)
    )

    @admin.display(description="Recording servers")
    def servers_list(self, drill: Drill) -> str:
        return ", ".join(r.server_name for r in drill.servers.all())

    @admin.display(description="Targets")
    def targets(self, drill: Drill) -> str:
        return (
            f"take over within {drill.max_takeover_seconds:g} s; recording gap at most "
            f"{drill.max_gap_seconds:g} s; restoration within "
            f"{drill.max_restoration_seconds:g} s; failover server records "
            f"{drill.recording_seconds} s"
        )

    @admin.display(description="Report")
    def report(self, drill: Drill) -> str:
        return render_to_string("admin/failover/drill_report.html", {"drill": drill,
                                "rows": drills.report_rows(drill)})  # fmt: skip

    def get_queryset(self, request: HttpRequest):
        return Drill.objects.for_user(request.user).prefetch_related("servers")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(DrillTargets)
class DrillTargetsAdmin(admin.ModelAdmin):
    list_display = ["team", "max_takeover_seconds", "max_gap_seconds",
                    "max_restoration_seconds", "recording_seconds"]  # fmt: skip

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).for_user(request.user).select_related("team")

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        if db_field.name == "team":
            kwargs["queryset"] = Team.objects.for_user(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
