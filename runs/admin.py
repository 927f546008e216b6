"""The operator console for runs: read-only views of the ledger (changes go through the services)."""

from django.contrib import admin

from runs.models import Run, RunEvent, RunFile, StepRun


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class StepRunInline(admin.TabularInline):
    model = StepRun
    fk_name = "run"
    extra = 0
    fields = ["step_id", "type", "status", "iteration", "attempt", "started_at", "completed_at", "error"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ["id", "workflow", "status", "trigger", "dry_run", "created_at", "completed_at"]
    list_filter = ["status", "trigger", "dry_run"]
    search_fields = ["id", "workflow__name", "workflow__slug"]
    list_select_related = ["workflow"]
    date_hierarchy = "created_at"
    inlines = [StepRunInline]


@admin.register(StepRun)
class StepRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "run", "step_id", "type", "status", "attempt", "lease_expires_at", "wake_at"]
    list_filter = ["status", "type"]
    search_fields = ["id", "run__id", "step_id"]


@admin.register(RunEvent)
class RunEventAdmin(ReadOnlyAdmin):
    list_display = ["run", "seq", "type", "step_id", "created_at"]
    list_filter = ["type"]
    search_fields = ["run__id"]


@admin.register(RunFile)
class RunFileAdmin(ReadOnlyAdmin):
    list_display = ["id", "name", "run", "size", "content_type", "created_at"]
    search_fields = ["id", "name", "run__id"]
