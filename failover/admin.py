"""Admin of failover: settings, protection, events with their timeline, and the actions.

The inventory's two server tabs are extended here (the inventory never imports
failover): protection inline, manual failover and fail back on recording servers;
status, replace and stop restoration on failover servers. Disabling, editing or
deleting an acting failover server stops its failover: the inventory's actions ask
`failover.actions.ServerDuties` and show its consequences for confirmation.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Prefetch, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from cms.actions import ActionRefused, ConfirmationRequired
from cms.inventory import actions as inventory_actions
from cms.inventory.admin import FailoverServerAdmin, HistoryInline, RecordingServerAdmin
from cms.inventory.admin_actions import confirmation_page, confirmed
from cms.inventory.forms import ServerForm
from cms.inventory.models import FailoverServer, RecordingServer, Server, Team
from cms.permissions import can, may_change_failover_settings, may_see_failover_settings

from . import actions, admin_coverage, engine, replace, timeline
from .admin_capacity import capacity_view
from .admin_drills import may_run_drill, run_drill
from .admin_status import (
    FailoverStatusFilter,
    annotate_duty,
    annotate_failed_over,
    duty_label,
    job_progress,
    live_status,
    live_updates,
    recording_label,
    status_cell,
)
from .choices import EventState
from .models import (
    FailoverEvent,
    FailoverSettings,
    Protection,
    RestorationJob,
)


@admin.register(FailoverSettings)
class FailoverSettingsAdmin(admin.ModelAdmin):
    """The CMS's defaults (superusers) and each team's own settings (its Administrators):
    `cms.permissions` decides who sees and changes which. A member of one team goes
    straight to that team's settings; a team without its own starts from the defaults."""

    fieldsets = [
        (None, {"fields": ["team"]}),
        ("Automatic failover", {"fields": ["auto_failover", "on_disconnection",
                                           "on_volume_abnormal", "on_service_abnormal"]}),
        ("Health probing", {"fields": ["probe_interval", "probe_timeout",
                                       "failures_before_failover", "successes_before_recovery"]}),
        ("Failback", {"fields": ["failback_mode", "failback_hold_down",
                                 "failback_window_start", "failback_window_end",
                                 "restore_recordings"]}),
        ("Mass-failure guard", {"fields": ["mass_failure_share", "mass_failure_min_servers",
                                           "mass_failure_window"]}),
        ("Flapping", {"fields": ["flap_failovers", "flap_window"]}),
    ]  # fmt: skip
    list_display = ["__str__", "auto_failover", "probe_interval", "failures_before_failover",
                    "failback_mode", "restore_recordings"]  # fmt: skip

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).for_user(request.user).select_related("team")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["team"] if obj is not None else []

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        if db_field.name == "team":  # the teams of the user that follow the defaults
            kwargs["queryset"] = self._teams_on_defaults(request)
            kwargs["required"] = True
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        # A team's own settings start as the defaults it followed until now.
        return {**FailoverSettings.load().values(), **super().get_changeform_initial_data(request)}

    @staticmethod
    def _teams_on_defaults(request: HttpRequest) -> QuerySet:
        return Team.objects.for_user(request.user).filter(failover_settings__isnull=True)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return super().has_view_permission(request)
        return may_see_failover_settings(request.user, obj.team)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return super().has_change_permission(request)
        return may_change_failover_settings(request.user, obj.team)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A team's first save of its own settings: the change permission, as for the row.
        return super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not may_change_failover_settings(request.user, obj.team):
            raise PermissionDenied
        super().save_model(request, obj, form, change)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: Any = None) -> HttpResponse:  # fmt: skip
        # Another team's settings are as if they did not exist: 404, not a redirect.
        if self.get_object(request, unquote(object_id)) is None:
            raise Http404("No such failover settings.")
        # One page of settings: its name once, not "Change failover settings" and again.
        extra_context = {"title": "Failover settings", "subtitle": None, **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        FailoverSettings.load()  # the defaults exist from the first look
        if not request.user.is_superuser:
            teams = list(Team.objects.for_user(request.user)[:2])
            if len(teams) == 1:  # the one settings page this user has
                return HttpResponseRedirect(self._team_url(teams[0]))
        return super().changelist_view(request, extra_context)

    @staticmethod
    def _team_url(team: Team) -> str:
        own = FailoverSettings.objects.filter(team=team).first()
        if own is not None:
            return reverse("admin:failover_failoversettings_change", args=[own.pk])
        return f"{reverse('admin:failover_failoversettings_add')}?team={team.pk}"


CONFIRM_CAPACITY = "confirm_capacity"


class ProtectionFormSet(forms.BaseInlineFormSet):
    """A table's cells have no <label>: each control is named for screen readers.

    Protections that leave the recording server with no failover server able to carry
    it whole are saved only once the form's CONFIRM_CAPACITY box is ticked."""

    def clean(self) -> None:
        super().clean()
        if any(form.errors for form in self.forms) or not any(
            "failover_server" in form.changed_data or form.cleaned_data.get("DELETE")
            for form in self.forms
        ):
            return  # who protects it is unchanged (a new order alone asks nothing)
        servers = [
            form.cleaned_data["failover_server"]
            for form in self.forms
            if form.cleaned_data.get("failover_server") and not form.cleaned_data.get("DELETE")
        ]
        try:
            actions.confirm_protection(self.instance, servers,
                                       confirmed=bool(self.data.get(CONFIRM_CAPACITY)))  # fmt: skip
        except ConfirmationRequired as exc:
            raise ValidationError(
                [*exc.consequences, "Tick 'Save protection that cannot carry it' to save anyway."]
            ) from None

    def add_fields(self, form: forms.Form, index: int | None) -> None:
        super().add_fields(form, index)
        names = {"priority": "Priority", "failover_server": "Failover server", "DELETE": "Delete"}
        for field, name in names.items():
            widget = form.fields[field].widget if field in form.fields else None
            while widget is not None:  # the select, and the admin's wrapper around it
                widget.attrs["aria-label"] = name
                widget = getattr(widget, "widget", None)


class ProtectionInline(admin.TabularInline):
    model = Protection
    formset = ProtectionFormSet
    fk_name = "recording_server"
    extra = 0
    fields = ["priority", "failover_server"]
    ordering = ["priority", "pk"]
    verbose_name = "failover server protecting it"
    verbose_name_plural = "Failover servers protecting it (lowest priority number is tried first)"

    class Media:
        js = ["failover/protection.js"]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        if db_field.name == "failover_server":
            kwargs["queryset"] = Server.objects.failover().for_user(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


admin.site.unregister(RecordingServer)


class RecordingServerFailoverForm(ServerForm):
    confirm_capacity = forms.BooleanField(
        label="Save protection that cannot carry it",
        required=False,
        help_text="No failover server protecting this server can record all its cameras: "
        "if it fails, none takes it over. Tick to save the protection anyway.",
    )


@admin.register(RecordingServer)
class RecordingServerFailoverAdmin(RecordingServerAdmin):
    form = RecordingServerFailoverForm
    inlines = [ProtectionInline]
    actions = ["enable_servers", "disable_servers", "lock_servers", "unlock_servers",
               "manual_failover", "fail_back_now", "release_guard", run_drill,
               "issue_enrollment_secret"]  # fmt: skip
    list_display = ["name", "address", "model", "live_status", "enabled", "locked", "cms_mode",
                    "team", "last_seen"]  # fmt: skip
    change_list_template = "admin/failover/live_change_list.html"

    def get_queryset(self, request: HttpRequest):
        return annotate_failed_over(super().get_queryset(request))

    def get_urls(self):
        coverage_url = path(
            "<int:server_id>/coverage/",
            self.admin_site.admin_view(self.coverage_view),
            name="inventory_recordingserver_coverage",
        )
        release_url = path(
            "guard-release/",
            self.admin_site.admin_view(self.guard_release_view),
            name="inventory_recordingserver_guard_release",
        )
        return [coverage_url, release_url, *super().get_urls()]

    def guard_release_view(self, request: HttpRequest) -> HttpResponse:
        """The dashboard banner's buttons: release one held server, or all of a team's."""
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:index"))
        teams = Team.objects.for_user(request.user).filter(pk=request.POST.get("team") or 0)
        if not teams.exists():
            raise Http404("No such team.")
        servers = None
        if request.POST.get("server"):
            servers = list(self.get_queryset(request).filter(
                pk=request.POST["server"], team__in=teams))  # fmt: skip
            if not servers:
                raise Http404("No such recording server.")
        self._release(request, servers, list(teams))
        return HttpResponseRedirect(reverse("admin:index"))

    def _release(self, request: HttpRequest, servers: list[Server] | None,
                 teams: list[Team]) -> None:  # fmt: skip
        done = actions.release_guard(request.user, servers, teams)
        for released in done:
            if released.event is not None:
                self.message_user(request, f"{released.server.name}: released from the "
                                  f"mass-failure guard; failover event #{released.event.pk} "
                                  "started.")  # fmt: skip
            else:
                self.message_user(request, f"{released.server.name}: released from the "
                                  "mass-failure guard; it is up again: nothing to fail "
                                  "over.")  # fmt: skip
        if not done:
            self.message_user(request, "The mass-failure guard holds none of these servers.",
                              messages.WARNING)  # fmt: skip

    def coverage_view(self, request: HttpRequest, server_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return admin_coverage.coverage_view(self, request, server_id)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or request.method != "POST":  # shown when a save was refused for it
            return fieldsets
        return [*fieldsets, ("Protection", {"fields": [CONFIRM_CAPACITY]})]

    @admin.display(description="Status", ordering="status")
    def live_status(self, server: Server) -> str:
        return status_cell(server.pk, recording_label(server))

    @admin.action(description="Manual failover (maintenance)", permissions=["trigger_failover"])
    def manual_failover(self, request: HttpRequest, queryset: QuerySet) -> None:
        for server in queryset:
            try:
                event = actions.manual_failover(request.user, server)
            except ActionRefused as exc:
                self.message_user(request, f"{server.name}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{server.name}: failover event #{event.pk} started.")

    @admin.action(description="Fail back now", permissions=["fail_back"])
    def fail_back_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        events = {e.recording_server_id: e for e in FailoverEvent.objects.open().filter(
            recording_server__in=queryset)}  # fmt: skip
        for server in queryset:
            try:
                event = actions.fail_back(request.user, events.get(server.pk))
            except ActionRefused as exc:
                self.message_user(request, f"{server.name}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{server.name}: failing back (event #{event.pk}).")

    @admin.action(description="Release from the mass-failure guard",
                  permissions=["trigger_failover"])  # fmt: skip
    def release_guard(self, request: HttpRequest, queryset: QuerySet) -> None:
        servers = list(queryset)
        teams = list(Team.objects.for_user(request.user).filter(
            pk__in={s.team_id for s in servers}))  # fmt: skip
        self._release(request, servers, teams)

    def has_fail_back_permission(self, request: HttpRequest) -> bool:
        return can(request.user, "fail_back")

    def has_trigger_failover_permission(self, request: HttpRequest) -> bool:
        return can(request.user, "trigger_failover")

    def has_run_drill_permission(self, request: HttpRequest) -> bool:
        return may_run_drill(request)


class FailoverServerForm(ServerForm):
    """Editing a failover server that has taken over stops its failover: say so first."""

    confirm_stop_failover = forms.BooleanField(
        label="Stop the failover",
        required=False,
        help_text="This server has taken over for a recording server. Saving a change stops "
        "the failover and removes the recordings and snapshots it made during it.",
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        changed = [f for f in self.changed_data if f != "confirm_stop_failover"]
        if self.instance.pk and changed:
            try:
                inventory_actions.confirm_edit(self.instance, confirmed=self.consequences_confirmed)
            except ConfirmationRequired as exc:
                raise ValidationError(
                    [*exc.consequences, "Tick 'Stop the failover' to save anyway."]
                ) from None
        return cleaned

    @property
    def consequences_confirmed(self) -> bool:
        return bool(self.cleaned_data.get("confirm_stop_failover"))


admin.site.unregister(FailoverServer)


@admin.register(FailoverServer)
class FailoverServerFailoverAdmin(FailoverServerAdmin):
    form = FailoverServerForm
    actions = ["enable_servers", "disable_servers", "lock_servers", "unlock_servers",
               "replace_protected_server", "stop_restoration",
               "issue_enrollment_secret"]  # fmt: skip
    list_display = ["name", "address", "model", "duty", "protects_list", "acting_for",
                    "locked", "last_seen", "team"]  # fmt: skip
    list_filter = [FailoverStatusFilter, "connection_type", "team"]
    change_list_template = "admin/failover/failoverserver_change_list.html"

    def get_urls(self):
        capacity_url = path(
            "capacity/",
            self.admin_site.admin_view(capacity_view),
            name="failover_capacity",
        )
        return [capacity_url, *super().get_urls()]

    def get_queryset(self, request: HttpRequest):
        return annotate_duty(super().get_queryset(request)).prefetch_related(
            Prefetch(
                "protects",
                queryset=Protection.objects.select_related("recording_server").order_by(
                    "recording_server__name"
                ),
            )
        )

    @admin.display(description="Status")
    def duty(self, server: Server) -> str:
        return status_cell(server.pk, duty_label(server))

    @admin.display(description="Protects")
    def protects_list(self, server: Server) -> str:
        return ", ".join(p.recording_server.name for p in server.protects.all()) or "-"

    @admin.display(description="Acting for")
    def acting_for(self, server: Server) -> str:
        return server.acting_for or "-"

    @admin.action(description="Advanced: Replace protected server",
                  permissions=["replace_server"])  # fmt: skip
    def replace_protected_server(
        self, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        acting = [(s, e) for s in queryset if (e := engine.acting_event(s))]
        if len(acting) != 1 or queryset.count() != 1:
            self.message_user(request, "Select the one failover server that has taken over "
                              "for the recording server to replace.", messages.ERROR)  # fmt: skip
            return None
        return HttpResponseRedirect(
            reverse("admin:failover_failoverevent_replace", args=[acting[0][1].pk])
        )

    @admin.action(description="Advanced: Stop Restoration", permissions=["stop_restoration"])
    def stop_restoration(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        events = list(
            FailoverEvent.objects.filter(failover_server__in=queryset, state=EventState.RESTORING)
        )
        return _stop_restorations(self, request, events, queryset, "stop_restoration")

    def has_replace_server_permission(self, request: HttpRequest) -> bool:
        return can(request.user, "replace_server")

    def has_stop_restoration_permission(self, request: HttpRequest) -> bool:
        return can(request.user, "stop_restoration")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and inventory_actions.consequences([obj], "edited"):
            return [("Failover in progress", {"fields": ["confirm_stop_failover"]}), *fieldsets]
        return fieldsets


def _stop_restorations(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    events: list[FailoverEvent],
    queryset: QuerySet,
    action: str,
) -> HttpResponse | None:
    """Stop Restoration, from the events list or the failover servers tab: confirm first."""
    if not events:
        model_admin.message_user(request, "Nothing selected is restoring.", messages.ERROR)
        return None
    consequences = actions.stop_restoration_consequences(events)
    if not confirmed(request):
        return confirmation_page(request, ConfirmationRequired(consequences),
                                 title="Stop restoration", queryset=queryset,
                                 action=action)  # fmt: skip
    for event in events:
        try:
            removed = actions.stop_restoration(request.user, event, confirmed=True)
            model_admin.message_user(
                request, f"Event #{event.pk}: stopped; {removed} file(s) removed."
            )
        except ActionRefused as exc:
            model_admin.message_user(request, f"Event #{event.pk}: {exc}", messages.ERROR)
    return None


class RestorationInline(HistoryInline, admin.StackedInline):
    model = RestorationJob
    fields = ["state", "progress", "files_done", "files_total", "bytes_done", "bytes_total",
              "rate", "errors", "last_error", "started_at", "finished_at"]  # fmt: skip

    @admin.display(description="Progress")
    def progress(self, job: RestorationJob) -> str:
        return job_progress(job)

    @admin.display(description="Rate")
    def rate(self, job: RestorationJob) -> str:
        return f"{job.rate_bps / 1e6:.1f} MB/s"


def _time(field: str, label: str) -> Any:
    """A read-only time of the event page: to the second, the exact time as a tooltip."""

    @admin.display(description=label, ordering=field)
    def show(self: Any, event: FailoverEvent) -> str:
        return timeline.moment(getattr(event, field))

    return show


@admin.register(FailoverEvent)
class FailoverEventAdmin(admin.ModelAdmin):
    list_display = ["id", "recording", "failover", "trigger", "state", "damped_reason",
                    "detected_at", "time_to_take_over", "ended_at"]  # fmt: skip
    list_filter = ["state", "trigger", "team"]
    search_fields = ["recording_server_name", "failover_server_name"]
    date_hierarchy = "detected_at"
    inlines = [RestorationInline]
    actions = ["fail_back_now", "stop_restoration"]
    fieldsets = [
        (None, {"fields": ["timeline_picture", "recording_server", "failover_server",
                           "trigger", "state", "damped", "team"]}),
        ("Times", {"fields": ["detected", "taken_over", "recovered", "failed_back", "ended",
                              "recording_gap"]}),
        ("Details", {"classes": ["collapse"],
                     "fields": ["recording_server_name", "failover_server_name", "epoch",
                                "node_tag", "attempts", "last_error", "replacement",
                                "failover_servers_before"]}),
    ]  # fmt: skip
    readonly_fields = [field for _, options in fieldsets for field in options["fields"]]

    @admin.display(description="Fails back", ordering="damped")
    def damped_reason(self, event: FailoverEvent) -> str:
        """A flapping server's event waits for an operator whatever the failback mode."""
        return f"when confirmed ({event.damped})" if event.damped else "as set"

    detected = _time("detected_at", "Detected")
    taken_over = _time("taken_over_at", "Taken over")
    recovered = _time("recovered_at", "Recovered")
    failed_back = _time("failed_back_at", "Failed back")
    ended = _time("ended_at", "Ended")

    @admin.display(description="failover servers that acted before")
    def failover_servers_before(self, event: FailoverEvent) -> str:
        """Each one keeps what it recorded until restoration pulls it from there."""
        return (
            "; ".join(
                f"{e.get('name', e['id'])} (epoch {e['epoch']}): {e.get('why', '')}"
                for e in event.earlier_failover_servers
            )
            or "-"
        )

    def get_queryset(self, request: HttpRequest):
        return FailoverEvent.objects.for_user(request.user)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        return super().changelist_view(request, {"title": "Failover events",
                                                 **(extra_context or {})})  # fmt: skip

    def get_inlines(self, request: HttpRequest, obj: Any = None):
        # No empty "Restoration jobs" header on an event that restored nothing.
        if obj is None or not RestorationJob.objects.filter(event=obj).exists():
            return []
        return super().get_inlines(request, obj)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: Any = None) -> HttpResponse:  # fmt: skip
        event = self.get_object(request, object_id)
        if event is not None:
            # One title (the event, not "View failover event" then the event again), and
            # the state changes in words below the fields.
            extra_context = {
                **(extra_context or {}),
                "title": f"Failover event #{event.pk}: {event.recording_server_name}",
                "subtitle": None,
                "history": timeline.history(event),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the event history is never lost

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # events change through their actions, never by editing fields

    def has_fail_back_permission(self, request: HttpRequest) -> bool:
        return can(request.user, "fail_back")

    def has_stop_restoration_permission(self, request: HttpRequest) -> bool:
        return can(request.user, "stop_restoration")

    @admin.display(description="Timeline")
    def timeline_picture(self, event: FailoverEvent) -> str:
        return timeline.picture(event)

    @admin.display(description="Recording gap")
    def recording_gap(self, event: FailoverEvent) -> str:
        """The worst camera's time recorded nowhere, measured at failback."""
        return timeline.recording_gap(event)

    @admin.display(description="Recording server", ordering="recording_server_name")
    def recording(self, event: FailoverEvent) -> str:
        return event.recording_server_name

    @admin.display(description="Failover server", ordering="failover_server_name")
    def failover(self, event: FailoverEvent) -> str:
        return event.failover_server_name or "-"

    @admin.display(description="Time to take over")
    def time_to_take_over(self, event: FailoverEvent) -> str:
        delta = event.time_to_take_over
        return f"{delta.total_seconds():.1f} s" if delta else "-"

    @admin.action(description="Fail back now", permissions=["fail_back"])
    def fail_back_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        for event in queryset:
            try:
                actions.fail_back(request.user, event)
                self.message_user(request, f"Event #{event.pk}: failing back.")
            except ActionRefused as exc:
                self.message_user(request, f"Event #{event.pk}: {exc}", messages.ERROR)

    @admin.action(description="Stop restoration", permissions=["stop_restoration"])
    def stop_restoration(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        events = [e for e in queryset if e.state == EventState.RESTORING]
        return _stop_restorations(self, request, events, queryset, "stop_restoration")

    # -- Replace protected server: a page of its own -------------------------------

    def get_urls(self):
        replace_url = path(
            "<int:event_id>/replace/",
            self.admin_site.admin_view(self.replace_view),
            name="failover_failoverevent_replace",
        )
        live_url = path(
            "live-status/",
            self.admin_site.admin_view(live_status),
            name="failover_live_status",
        )
        updates_url = path(
            "live-updates/",
            self.admin_site.admin_view(live_updates),
            name="failover_live_updates",
        )
        return [replace_url, live_url, updates_url, *super().get_urls()]

    def replace_view(self, request: HttpRequest, event_id: int) -> HttpResponse:
        if not can(request.user, "replace_server"):
            raise PermissionDenied
        event = get_object_or_404(self.get_queryset(request), pk=event_id)
        choices = replace.replacement_choices(event)
        chosen = None
        the_plan = None
        error = ""
        if request.method == "POST":
            chosen = next(
                (s for s in choices if str(s.pk) == request.POST.get("replacement")), None
            )
            if chosen is None:
                error = "Choose the server that replaces the protected server."
            else:
                try:
                    the_plan = actions.replace_plan(request.user, event, chosen)
                    # OK replaces only with the server whose consequences were shown; a
                    # choice changed after the preview gets its own preview first.
                    previewed = request.POST.get("previewed") == str(chosen.pk)
                    if confirmed(request) and previewed:
                        actions.replace_protected_server(request.user, event, chosen,
                                                         confirmed=True)  # fmt: skip
                        self.message_user(
                            request, f"{the_plan.replacement} replaces {the_plan.original}."
                        )
                        return HttpResponseRedirect(
                            reverse("admin:failover_failoverevent_change", args=[event.pk])
                        )
                except ActionRefused as exc:
                    error = str(exc)
        return TemplateResponse(
            request,
            "admin/failover/replace.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Replace protected server {event.recording_server_name}",
                "event": event,
                "choices": choices,
                "chosen": chosen,
                "plan": the_plan,
                "error": error,
                "opts": self.model._meta,
            },
        )
