"""Query filters of the workflow and template lists (GET /workflows, GET /templates)."""

import django_filters
from django.db.models import Q

from config.api.parsing import strict_bool
from workflows.choices import TriggerType, WorkflowStatus
from workflows.models import Workflow, WorkflowTemplate


class WorkflowFilterSet(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=WorkflowStatus.choices)
    trigger_type = django_filters.MultipleChoiceFilter(choices=TriggerType.choices)
    tag = django_filters.CharFilter(method="filter_tag", max_length=50)
    project = django_filters.CharFilter(field_name="project_id", max_length=40)
    search = django_filters.CharFilter(method="filter_search", max_length=200)
    include_archived = django_filters.CharFilter(method="filter_include_archived")

    class Meta:
        model = Workflow
        fields = ["status", "trigger_type", "tag", "project", "search", "include_archived"]

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        # Archived workflows are hidden unless asked for by include_archived or an explicit status filter.
        wants_archived = strict_bool(self.data, "include_archived") or self.data.get("status")
        if not wants_archived:
            queryset = queryset.exclude(status=WorkflowStatus.ARCHIVED)
        return queryset

    def filter_tag(self, queryset, name, value):
        # Repeated `tag` parameters must all match; each is its own join on the (workflow, name) unique rows.
        tags = self.data.getlist("tag") if hasattr(self.data, "getlist") else [value]
        for tag in (tag.strip() for tag in tags):
            if tag:
                queryset = queryset.filter(tag_rows__name=tag)
        return queryset

    def filter_search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(description__icontains=value))

    def filter_include_archived(self, queryset, name, value):
        strict_bool({"include_archived": value}, "include_archived")
        return queryset


class WorkflowTemplateFilterSet(django_filters.FilterSet):
    category = django_filters.CharFilter(field_name="category", max_length=50)
    is_builtin = django_filters.CharFilter(method="filter_is_builtin")
    search = django_filters.CharFilter(method="filter_search", max_length=200)

    class Meta:
        model = WorkflowTemplate
        fields = ["category", "is_builtin", "search"]

    def filter_is_builtin(self, queryset, name, value):
        return queryset.filter(is_builtin=strict_bool({"is_builtin": value}, "is_builtin"))

    def filter_search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(description__icontains=value))
