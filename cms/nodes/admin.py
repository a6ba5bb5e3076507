from django.contrib import admin

from cms.nodes.models import QuickConnectEntry


@admin.register(QuickConnectEntry)
class QuickConnectEntryAdmin(admin.ModelAdmin):
    """Deleting an entry frees its ID for another node (the only way to re-bind it)."""

    list_display = ("qc_id", "host", "port", "serial", "updated_at")
    search_fields = ("qc_id", "serial", "host")
    readonly_fields = ("qc_id", "serial", "host", "port", "registered_at", "updated_at")

    def has_add_permission(self, request) -> bool:  # registrations come from nodes only
        return False
