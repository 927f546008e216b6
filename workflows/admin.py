"""Operator console: workflows, versions and templates, read-only definitions shown pretty-printed.
Changes go through the API or dashboard, whose services audit them."""

import json

from django.contrib import admin
from django.utils.html import format_html

from workflows.models import Project, Workflow, WorkflowTemplate, WorkflowVersion


def _pretty(value) -> str:
    return format_html(
        '<pre style="white-space: pre-wrap; max-width: 100ch">{}</pre>',
        json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False),
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class WorkflowVersionInline(admin.TabularInline):
    model = WorkflowVersion
    fields = ["number", "change_summary", "created_by", "created_at", "content_hash"]
    readonly_fields = fields
    extra = 0
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Workflow)
class WorkflowAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "slug",
        "organization",
        "status",
        "trigger_type",
        "current_version",
        "published_version",
        "updated_at",
    ]
    list_filter = ["status", "trigger_type"]
    search_fields = ["id", "name", "slug", "organization__name"]
    list_select_related = ["organization"]
    exclude = ["webhook_secret"]
    readonly_fields = [
        "id",
        "organization",
        "project",
        "name",
        "slug",
        "description",
        "status",
        "trigger_type",
        "tags",
        "concurrency",
        "retention_days",
        "webhook_enabled",
        "current_version",
        "published_version",
        "created_by",
        "created_at",
        "updated_at",
        "archived_at",
        "last_run_at",
    ]
    inlines = [WorkflowVersionInline]


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(ReadOnlyAdmin):
    list_display = ["workflow", "number", "change_summary", "created_by", "created_at"]
    search_fields = ["workflow__id", "workflow__name", "workflow__slug"]
    list_select_related = ["workflow"]
    fields = [
        "workflow",
        "number",
        "change_summary",
        "created_by",
        "created_at",
        "content_hash",
        "pretty_definition",
    ]
    readonly_fields = fields

    @admin.display(description="Definition")
    def pretty_definition(self, obj):
        return _pretty(obj.definition)


@admin.register(WorkflowTemplate)
class WorkflowTemplateAdmin(ReadOnlyAdmin):
    list_display = ["name", "category", "is_builtin", "organization", "updated_at"]
    list_filter = ["is_builtin", "category"]
    search_fields = ["id", "name", "organization__name"]
    fields = [
        "id",
        "name",
        "description",
        "category",
        "is_builtin",
        "organization",
        "source_workflow_id",
        "created_by",
        "created_at",
        "updated_at",
        "pretty_definition",
    ]
    readonly_fields = fields

    @admin.display(description="Definition")
    def pretty_definition(self, obj):
        return _pretty(obj.definition)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "created_at"]
    search_fields = ["name", "id", "organization__name"]
    readonly_fields = ["id", "created_at", "updated_at"]
