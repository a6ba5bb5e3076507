"""The audit log in the admin, scoped exactly as the API's `audit/` list.

django-auditlog registers an admin of its own that lists every team's entries
(other teams' server addresses, license keys, memberships) to anyone with the view
permission. It is replaced here by the same admin reading `visible_entries()`,
the one rule the API uses.
"""

from __future__ import annotations

from auditlog.admin import LogEntryAdmin
from auditlog.models import LogEntry
from django.contrib import admin
from django.http import HttpRequest

from cms.audit import visible_entries


class ScopedLogEntryAdmin(LogEntryAdmin):
    def get_queryset(self, request: HttpRequest):
        return visible_entries(request.user)


if admin.site.is_registered(LogEntry):
    admin.site.unregister(LogEntry)
admin.site.register(LogEntry, ScopedLogEntryAdmin)
