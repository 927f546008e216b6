from django.contrib import admin

from audit.models import AuditChainHead, AuditEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    """The audit log is append-only: the admin shows it and changes nothing."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = (
        "seq",
        "organization",
        "event",
        "actor_type",
        "actor",
        "target_type",
        "target_id",
        "timestamp",
    )
    list_filter = ("actor_type", "event")
    search_fields = ("id", "event", "actor", "target_id", "run_id", "request_id")
    list_select_related = ("organization",)
    ordering = ("organization", "-seq")
    date_hierarchy = "timestamp"
    show_full_result_count = False


@admin.register(AuditChainHead)
class AuditChainHeadAdmin(ReadOnlyAdmin):
    list_display = ("organization", "seq", "hash")
    list_select_related = ("organization",)
