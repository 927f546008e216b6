"""Filters of the run list (GET /runs, GET /workflows/{ref}/runs) and of the bulk actions' `filter` body:
workflow (id or slug), status (repeatable), trigger, env, version, created_after / created_before (ISO 8601
or Unix seconds) and `metadata.<key>=<value>` (several: all must match).

Metadata filters use JSON containment on PostgreSQL (served by the GIN index `run_metadata_gin`,
jsonb_path_ops) and key transforms elsewhere (SQLite scans the organisation's rows; the embedded setup is
not for millions)."""

import json
import math
import re

from django.db import connection
from django.db.models import Q
from django.db.models.fields.json import KeyTransform

from config.api.filtersets import (
    ChoiceFilter,
    ChoicesFilter,
    InstantFilter,
    PositiveIntegerFilter,
    StrictFilterSet,
    TextFilter,
)
from config.api.parsing import invalid_parameter
from runs.choices import RunStatus, RunTrigger
from runs.models import Run

METADATA_PREFIX = "metadata."
METADATA_KEY = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
METADATA_MAX_VALUE_LENGTH = 512


class RunFilterSet(StrictFilterSet):
    workflow = TextFilter(method="filter_workflow", max_length=100)
    status = ChoicesFilter(method="filter_status", values=RunStatus.values)
    trigger = ChoiceFilter(field_name="trigger", values=RunTrigger.values)
    env = TextFilter(field_name="env", max_length=100)
    version = PositiveIntegerFilter(field_name="workflow_version__number")
    created_after = InstantFilter(field_name="created_at", lookup_expr="gte")
    created_before = InstantFilter(field_name="created_at", lookup_expr="lt")

    repeatable = ("status",)

    class Meta:
        model = Run
        fields: list = []

    @classmethod
    def from_object(cls, data: dict, **kwargs):
        """A bulk action's filter: `metadata` may be an object as well as `metadata.<key>` entries."""
        flat = {}
        for key, value in data.items():
            if key == "metadata" and isinstance(value, dict):
                flat.update({f"{METADATA_PREFIX}{name}": item for name, item in value.items()})
            else:
                flat[key] = value
        return super().from_object(flat, **kwargs)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.metadata: list[tuple[str, str]] = []

    def read_parameter(self, name, values):
        if not name.startswith(METADATA_PREFIX):
            return False
        key = name[len(METADATA_PREFIX) :]
        if not METADATA_KEY.match(key):
            raise invalid_parameter(name, "Metadata keys are 1 to 64 characters of A-Z a-z 0-9 _ . : -")
        for value in values:
            if isinstance(value, bool):
                value = "true" if value else "false"
            if not isinstance(value, str | int | float) or len(str(value)) > METADATA_MAX_VALUE_LENGTH:
                raise invalid_parameter(
                    name, f"Must be a value of at most {METADATA_MAX_VALUE_LENGTH} characters."
                )
            self.metadata.append((key, str(value)))
        return True

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        for index, (key, raw) in enumerate(self.metadata):
            condition, aliases = _metadata_condition(key, raw, f"_meta_{index}")
            if aliases:
                queryset = queryset.alias(**aliases)
            queryset = queryset.filter(condition)
        return queryset

    def filter_workflow(self, queryset, name, ref):
        return (
            queryset.filter(workflow_id=ref) if ref.startswith("wf_") else queryset.filter(workflow__slug=ref)
        )

    def filter_status(self, queryset, name, statuses):
        statuses = sorted(set(statuses))
        return (
            queryset.filter(status=statuses[0])
            if len(statuses) == 1
            else queryset.filter(status__in=statuses)
        )


class WorkflowRunFilterSet(RunFilterSet):
    """GET /workflows/{ref}/runs: the workflow is the path's."""

    workflow = None


def _metadata_candidates(raw: str) -> list:
    """A query value matches the stored string, or the JSON scalar it spells (`42`, `true`)."""
    candidates: list = [raw]
    try:
        parsed = json.loads(raw)
    except ValueError:
        return candidates
    if isinstance(parsed, bool | int) or (isinstance(parsed, float) and math.isfinite(parsed)):
        candidates.append(parsed)
    return candidates


def _metadata_condition(key: str, raw: str, alias: str) -> tuple[Q, dict]:
    candidates = _metadata_candidates(raw)
    if connection.vendor == "postgresql":
        condition = Q()
        for value in candidates:
            condition |= Q(metadata__contains={key: value})
        return condition, {}
    # KeyTransform addresses the key literally (a `__` in a key is not a path separator here).
    condition = Q()
    for value in candidates:
        condition |= Q(**{alias: value})
    return condition, {alias: KeyTransform(key, "metadata")}
