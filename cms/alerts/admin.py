"""Alert channels per team, and the history of what was sent, in the admin."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest

from . import service
from .forms import ChannelForm
from .models import Alert, Channel


class TeamScoped(admin.ModelAdmin):
    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).for_user(request.user)


@admin.register(Channel)
class ChannelAdmin(TeamScoped):
    form = ChannelForm
    list_display = ["name", "team", "type", "kinds_shown", "enabled"]
    list_filter = ["type", "enabled", "team"]
    search_fields = ["name"]
    actions = ["send_test"]
    fieldsets = [
        (None, {"fields": ["team", "name", "enabled", "kinds"]}),
        ("Where", {"fields": ["type", "emails", "url_input"]}),
    ]

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any):
        form = super().get_form(request, obj, **kwargs)

        class WithUser(form):  # type: ignore[valid-type,misc]
            def __init__(self, *args: Any, **kw: Any) -> None:
                super().__init__(*args, user=request.user, **kw)

        return WithUser

    @admin.display(description="Kinds")
    def kinds_shown(self, obj: Channel) -> str:
        return ", ".join(obj.kinds) if obj.kinds else "every kind"

    @admin.action(description="Send a test alert", permissions=["change"])
    def send_test(self, request: HttpRequest, queryset: Any) -> None:
        for channel in queryset:
            service.test(channel)
        messages.info(request, f"Test alert queued for {queryset.count()} channel(s); "
                      "see Alerts for the result.")  # fmt: skip


@admin.register(Alert)
class AlertAdmin(TeamScoped):
    list_display = ["created_at", "kind", "subject", "channel", "team", "state", "attempts",
                    "sent_at"]  # fmt: skip
    list_filter = ["state", "kind", "team"]
    search_fields = ["subject", "body"]
    list_select_related = ["channel", "team"]
    readonly_fields = ["team", "channel", "kind", "subject", "body", "link", "state",
                       "attempts", "error", "created_at", "sent_at"]  # fmt: skip
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
