"""Shapes of the runs endpoints (API.md "Runs"). Input serializers check shape (services check rules);
output serializers give the run object: lists without `steps`, the detail with them."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.api.serializers import (
    INSTANT_SCHEMA,
    JsonObjectField,
    StrictBooleanField,
    StrictSerializer,
    validated,
)
from config.errors import InvalidRequest
from runs import selectors
from runs.api.representation import duration_ms, run_data, run_detail, token_counts
from runs.choices import STEP_IN_FLIGHT, RunStatus, RunTrigger, StepStatus
from runs.filtersets import METADATA_KEY, METADATA_MAX_VALUE_LENGTH, RunFilterSet
from runs.models import Run, StepRun
from workflows.selectors import parse_version_spec

# Metadata is for labels to find runs by (GET /runs?metadata.<key>=<value>), not for payloads.
METADATA_MAX_KEYS = 50
METADATA_MAX_KEY_LENGTH = 64
MAX_WAIT_SECONDS = 300
MAX_REASON_LENGTH = 1000
BULK_MAX_IDS = 500
INPUT_ALIASES = ("input_data", "data", "input")


# ------------------------------------------------------------------------------------------- output


class TokensSerializer(serializers.Serializer):
    prompt = serializers.IntegerField()
    completion = serializers.IntegerField()
    total = serializers.IntegerField()


class AttemptSerializer(serializers.Serializer):
    attempt = serializers.IntegerField()
    status = serializers.CharField()
    error = serializers.JSONField(allow_null=True)
    duration_ms = serializers.IntegerField()
    started_at = serializers.CharField(allow_null=True, required=False)


class TriggeredBySerializer(serializers.Serializer):
    type = serializers.CharField(help_text="`user`, `api_key` or `system`.")
    id = serializers.CharField()


class StepIterationSerializer(serializers.Serializer):
    """One iteration of a loop step (its inline step run for one item)."""

    id = serializers.CharField(help_text="sr_… id of this iteration's step run.")
    iteration = serializers.IntegerField(help_text="The item's index, from 0.")
    type = serializers.CharField()
    status = serializers.ChoiceField(choices=StepStatus.choices)
    attempt = serializers.IntegerField()
    attempts = AttemptSerializer(many=True)
    input_data = serializers.JSONField(allow_null=True)
    output_data = serializers.JSONField(allow_null=True)
    error = serializers.JSONField(allow_null=True)
    skip_reason = serializers.CharField(allow_null=True, source="skip_reason_or_none")
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.SerializerMethodField()
    tokens = serializers.SerializerMethodField()
    cost_usd = serializers.FloatField()

    def get_duration_ms(self, row) -> int | None:
        return duration_ms(row.started_at, row.completed_at)

    @extend_schema_field(TokensSerializer)
    def get_tokens(self, row) -> dict:
        return token_counts(row.tokens)


class StepSerializer(StepIterationSerializer):
    """A step of the run. Loop steps also carry `iteration_count` and `iterations` (the first 1,000)."""

    iteration = None
    step_id = serializers.CharField()
    name = serializers.CharField()
    iteration_count = serializers.IntegerField(required=False, help_text="Loop steps only.")
    iterations = StepIterationSerializer(
        many=True, required=False, source="loop_iterations", help_text="Loop steps only, by index."
    )

    def to_representation(self, row):
        data = super().to_representation(row)
        if row.type != "loop":
            data.pop("iteration_count", None)
            data.pop("iterations", None)
        return data


class RunSerializer(serializers.Serializer):
    """A run in lists: the run object without `steps`."""

    id = serializers.CharField(help_text="run_… id.")
    workflow_id = serializers.CharField()
    workflow_name = serializers.CharField()
    workflow_version = serializers.IntegerField(source="version_number", help_text="The version number.")
    status = serializers.ChoiceField(choices=RunStatus.choices)
    trigger = serializers.ChoiceField(choices=RunTrigger.choices)
    input_data = serializers.JSONField()
    metadata = serializers.DictField()
    env = serializers.CharField(allow_null=True)
    dry_run = serializers.BooleanField()
    model = serializers.CharField(
        allow_null=True, source="model_or_none", help_text="The trigger's model override for agent steps."
    )
    result = serializers.JSONField(allow_null=True)
    error = serializers.JSONField(allow_null=True, help_text='`{"code", "message", "step_id"}` when failed.')
    parent_run_id = serializers.CharField(allow_null=True)
    pinned = serializers.BooleanField()
    pause_signal = serializers.JSONField(allow_null=True)
    triggered_by = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.SerializerMethodField(help_text="null until the run has finished.")
    total_tokens = serializers.IntegerField()
    cost_usd = serializers.FloatField()
    step_count = serializers.IntegerField()
    current_step_ids = serializers.SerializerMethodField(
        help_text="Steps queued, running, waiting or waiting for a person."
    )

    @extend_schema_field(TriggeredBySerializer(allow_null=True))
    def get_triggered_by(self, run) -> dict | None:
        if not run.triggered_by:
            return None
        return {"type": run.triggered_by_type or "system", "id": run.triggered_by}

    def get_duration_ms(self, run) -> int | None:
        return duration_ms(run.started_at, run.completed_at)

    def get_current_step_ids(self, run) -> list[str]:
        return self.context.get("current_step_ids", {}).get(run.id, [])


class RunDetailSerializer(RunSerializer):
    """The run with its steps (context["steps"]: a selectors.RunSteps)."""

    steps = serializers.SerializerMethodField()
    child_run_ids = serializers.SerializerMethodField(
        help_text="Runs started by this run's sub_workflow steps and reruns of it (`parent_run_id` = this "
        "run), oldest first; at most 1,000."
    )

    def get_child_run_ids(self, run) -> list[str]:
        return list(
            Run.objects.filter(parent_run_id=run.id)
            .order_by("created_at", "id")
            .values_list("id", flat=True)[:1000]
        )

    @extend_schema_field(StepSerializer(many=True))
    def get_steps(self, run) -> list[dict]:
        found: selectors.RunSteps = self.context["steps"]
        rows = []
        for row in found.steps:
            if row.type == "loop":
                row.iteration_count = found.iteration_counts.get(row.id, 0)
                row.loop_iterations = found.iterations.get(row.id, [])
            rows.append(row)
        return StepSerializer(rows, many=True).data


def _prepare(run: Run) -> Run:
    run.model_or_none = run.model or None
    return run


def _prepare_step(row: StepRun) -> StepRun:
    row.skip_reason_or_none = row.skip_reason or None
    return row


def run_list_data(runs: list[Run]) -> list[dict]:
    """List entries for a page of runs from selectors.run_list (one more query for current steps), written
    by runs/api/representation.py: RunSerializer's output, faster."""
    current = selectors.current_step_ids([run.id for run in runs])
    zone = timezone.get_current_timezone()
    return [run_data(run, current.get(run.id, []), zone) for run in runs]


def run_detail_data(run: Run) -> dict:
    """The API.md run object of a run from selectors.run_get(for_detail=True), steps included: the
    output of RunDetailSerializer, written by runs/api/representation.py."""
    return run_detail(run)


def serialized_run_list(runs: list[Run]) -> list[dict]:
    """RunSerializer's own output for a page of runs: the reference run_list_data is tested against."""
    current = selectors.current_step_ids([run.id for run in runs])
    return RunSerializer(
        [_prepare(run) for run in runs], many=True, context={"current_step_ids": current}
    ).data


def serialized_run_detail(run: Run) -> dict:
    """RunDetailSerializer's own output: the reference run_detail_data is tested against."""
    found = selectors.run_steps(run=run)
    for row in found.steps:
        _prepare_step(row)
    for children in found.iterations.values():
        for child in children:
            _prepare_step(child)
    run.step_count = len(found.steps)
    current = {run.id: [row.step_id for row in found.steps if row.status in STEP_IN_FLIGHT]}
    context = {"steps": found, "current_step_ids": current}
    return RunDetailSerializer(_prepare(run), context=context).data


class RunEventSerializer(serializers.Serializer):
    seq = serializers.IntegerField(help_text="Gapless per run, from 1 (the SSE `id:`).")
    type = serializers.CharField(help_text="`run_queued`, `step_started`, … (API.md).")
    step_id = serializers.SerializerMethodField()
    data = serializers.DictField()
    created_at = serializers.DateTimeField()

    def get_step_id(self, event) -> str | None:
        return event.step_id or None


class RunTriggeredSerializer(serializers.Serializer):
    run_id = serializers.CharField()
    status = serializers.ChoiceField(choices=RunStatus.choices)
    run = RunDetailSerializer()


class BulkResultSerializer(serializers.Serializer):
    matched = serializers.IntegerField(help_text="Runs of the organisation the ids or the filter selected.")
    affected = serializers.IntegerField(help_text="Runs this call cancelled (asked to stop) or deleted.")
    remaining = serializers.IntegerField(
        help_text="Eligible runs this call left for a later one (a call acts on at most 1,000 runs, ~10 s): "
        "repeat the call while it is above 0."
    )


# -------------------------------------------------------------------------------------------- input


@extend_schema_field(
    {
        "type": "object",
        "maxProperties": METADATA_MAX_KEYS,
        "additionalProperties": {"oneOf": [{"type": "string", "maxLength": 512}, {"type": "number"},
                                           {"type": "boolean"}]},
    }
)  # fmt: skip
class MetadataField(JsonObjectField):
    """An object of at most 50 labels: keys of 1-64 characters `A-Z a-z 0-9 _ . : -`, values strings
    (≤ 512 characters), numbers or booleans."""

    def to_internal_value(self, data):
        data = super().to_internal_value(data)
        if len(data) > METADATA_MAX_KEYS:
            raise serializers.ValidationError(f"At most {METADATA_MAX_KEYS} keys.")
        for key, value in data.items():
            if not METADATA_KEY.match(key):
                raise serializers.ValidationError(
                    f"Key {key[:80]!r}: 1 to {METADATA_MAX_KEY_LENGTH} characters of A-Z a-z 0-9 _ . : -"
                )
            if isinstance(value, str):
                if len(value) > METADATA_MAX_VALUE_LENGTH:
                    raise serializers.ValidationError(
                        f"Value of {key!r}: at most {METADATA_MAX_VALUE_LENGTH} characters."
                    )
            elif not isinstance(value, bool | int | float):
                raise serializers.ValidationError(f"Value of {key!r}: must be a string, number or boolean.")
        return data


@extend_schema_field({"oneOf": [{"type": "string", "enum": ["latest", "published"]},
                                {"type": "integer", "minimum": 1}]})  # fmt: skip
class VersionField(serializers.Field):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, str | int):
            raise serializers.ValidationError("Must be latest, published or a version number.")
        try:
            return parse_version_spec(data)
        except InvalidRequest:
            raise serializers.ValidationError("Must be latest, published or a positive integer.") from None

    def to_representation(self, value):
        return value


class WaitField(serializers.FloatField):
    def to_internal_value(self, data):
        if isinstance(data, bool):
            raise serializers.ValidationError("Must be a number of seconds.")
        value = super().to_internal_value(data)
        if not 0 < value <= MAX_WAIT_SECONDS:
            raise serializers.ValidationError(f"Must be more than 0 and at most {MAX_WAIT_SECONDS} seconds.")
        return value


class RunTriggerSerializer(StrictSerializer):
    input_data = JsonObjectField(required=False, help_text="The run's input (or `data` / `input`).")
    data = JsonObjectField(required=False, help_text="Alias of `input_data`.")
    input = JsonObjectField(required=False, help_text="Alias of `input_data`.")
    metadata = MetadataField(required=False, help_text="Labels to find runs by (at most 50 keys).")
    dry_run = StrictBooleanField(required=False, default=False)
    env = serializers.CharField(required=False, allow_null=True, max_length=100, default=None)
    version = VersionField(required=False, default="latest")
    model = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        default="",
        help_text="Model override for agent steps.",
    )
    wait = WaitField(
        required=False,
        help_text="Wait up to this many seconds (0 < wait ≤ 300) for the run to finish: 200 with the "
        "finished run, else 202.",
    )

    def validate(self, attrs):
        given = [name for name in INPUT_ALIASES if name in attrs]
        if len(given) > 1:
            raise serializers.ValidationError(
                {name: ["Give the input once, as input_data, data or input."] for name in given}
            )
        attrs["input_data"] = attrs.pop(given[0]) if given else {}
        for name in INPUT_ALIASES[1:]:
            attrs.pop(name, None)
        return attrs


# The keys of the common trigger body: the input under one of its names and `dry_run`.
PLAIN_TRIGGER_KEYS = frozenset((*INPUT_ALIASES, "dry_run"))
_TRIGGER_DEFAULTS = {"env": None, "version": "latest", "model": ""}


def trigger_options(data) -> dict:
    """RunTriggerSerializer's validated data for a JSON body. The common body — the input (an object) under
    one of its names, `dry_run` a boolean, nothing else — is read without building the serializer (a tenth
    of a trigger's CPU) into what the serializer returns for it; any other body goes through the serializer,
    errors included. tests/runs/api/test_trigger_options.py compares the two."""
    if type(data) is dict and data.keys() <= PLAIN_TRIGGER_KEYS:
        given = [name for name in INPUT_ALIASES if name in data]
        input_data = data[given[0]] if given else {}
        dry_run = data.get("dry_run", False)
        if len(given) <= 1 and type(input_data) is dict and type(dry_run) is bool:
            return {"input_data": input_data, "dry_run": dry_run, **_TRIGGER_DEFAULTS}
    return validated(RunTriggerSerializer, data)


class RunTriggerMultipartSerializer(serializers.Serializer):
    """multipart/form-data: `attachment` (a file) and the trigger's options as fields; every other field
    is an input value."""

    attachment = serializers.FileField(required=False)
    input_data = serializers.CharField(required=False, help_text="JSON object: input values.")
    metadata = serializers.CharField(required=False, help_text="JSON object of labels.")
    dry_run = serializers.ChoiceField(choices=["true", "false"], required=False)
    env = serializers.CharField(required=False)
    version = serializers.CharField(required=False)
    model = serializers.CharField(required=False)
    wait = serializers.FloatField(required=False)


class CancelSerializer(StrictSerializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=MAX_REASON_LENGTH, default="")


# --- pause, resume, rerun (runs/services/control.py, resume.py)

RESUME_TYPES = ("collect_inputs", "request_user_action")


class ResumeSerializer(StrictSerializer):
    """One body for three answers: an input step's data, an approval decision, or a re-run in place."""

    type = serializers.ChoiceField(choices=RESUME_TYPES, required=False, help_text="Absent: resume the run.")
    data = serializers.JSONField(required=False, help_text="`collect_inputs`: the input step's answer.")
    step_id = serializers.CharField(required=False, max_length=64, help_text="`collect_inputs`: which step.")
    action_id = serializers.CharField(
        required=False, max_length=64, help_text="`request_user_action`: the approval step's id."
    )
    action_value = serializers.ChoiceField(choices=("approved", "rejected"), required=False)
    note = serializers.CharField(required=False, allow_blank=True, max_length=MAX_REASON_LENGTH, default="")
    from_step = serializers.CharField(
        required=False, max_length=64, help_text="Without `type`: also run this step and all after it again."
    )

    def validate(self, attrs):
        kind = attrs.get("type")
        allowed = {
            None: {"from_step", "note"},
            "collect_inputs": {"type", "data", "step_id", "note"},
            "request_user_action": {"type", "action_id", "action_value", "note"},
        }[kind]
        extra = sorted(set(self.initial_data) - allowed)
        if extra:
            raise serializers.ValidationError(
                {name: [f"Not allowed with type {kind or '(none)'}."] for name in extra}
            )
        if kind == "collect_inputs" and not isinstance(attrs.get("data"), dict):
            raise serializers.ValidationError(
                {"data": ["An object with the input step's answer is required."]}
            )
        if kind == "request_user_action" and "action_value" not in attrs:
            raise serializers.ValidationError({"action_value": ["Required: approved or rejected."]})
        return attrs


class RerunSerializer(StrictSerializer):
    from_step = serializers.CharField(
        required=False, max_length=64, default="start", help_text="`start` (default), `failed` or a step id."
    )
    version = serializers.ChoiceField(
        choices=["pinned", "latest", "published"],
        required=False,
        default="pinned",
        error_messages={"invalid_choice": "Must be pinned, latest or published."},
        help_text="`pinned` (default), `latest` or `published`.",
    )


_STATUS = {"type": "string", "enum": RunStatus.values}


@extend_schema_field(
    {
        "type": "object",
        "description": "The filters of GET /runs: workflow, status (string or list), trigger, env, version, "
        "created_after, created_before, and `metadata` as an object (`metadata.<key>` entries also work).",
        "properties": {
            # null: the filter is not applied.
            "workflow": {"type": "string", "minLength": 1, "maxLength": 100, "nullable": True},
            "status": {
                "anyOf": [_STATUS, {"type": "array", "items": _STATUS, "minItems": 1}],
                "nullable": True,
            },
            # OpenAPI 3.0: a nullable enum lists null among its values.
            "trigger": {"type": "string", "enum": [*RunTrigger.values, None], "nullable": True},
            "env": {"type": "string", "minLength": 1, "maxLength": 100, "nullable": True},
            "version": {"type": "integer", "minimum": 1, "maximum": 2_147_483_647, "nullable": True},
            # In a JSON body Unix seconds may also be a number.
            "created_after": {"anyOf": [*INSTANT_SCHEMA["anyOf"], {"type": "number"}], "nullable": True},
            "created_before": {"anyOf": [*INSTANT_SCHEMA["anyOf"], {"type": "number"}], "nullable": True},
            "metadata": {
                "type": "object",
                "x-propertyNames": {"pattern": METADATA_KEY.pattern},
                "additionalProperties": {
                    "anyOf": [
                        {"type": "string", "maxLength": METADATA_MAX_VALUE_LENGTH},
                        {"type": "number"},
                        {"type": "boolean"},
                    ]
                },
            },
        },
        "additionalProperties": False,
    }
)
class FilterField(serializers.Field):
    """The filters of GET /runs as an object: a validated RunFilterSet (a bad one is GET /runs' 400)."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("Must be an object.")
        filters = RunFilterSet.from_object(data, queryset=Run.objects.none())
        filters.is_valid()
        return filters

    def to_representation(self, value):
        return value


class BulkSerializer(StrictSerializer):
    ids = serializers.ListField(
        child=serializers.CharField(max_length=40), required=False, max_length=BULK_MAX_IDS, allow_empty=False
    )
    filter = FilterField(required=False)
    reason = serializers.CharField(
        required=False, allow_blank=True, max_length=MAX_REASON_LENGTH, default="", help_text="Cancel only."
    )

    def validate(self, attrs):
        if ("ids" in attrs) == ("filter" in attrs):
            raise serializers.ValidationError({"ids": ["Give either ids or filter (not both)."]})
        return attrs


class BulkDeleteSerializer(BulkSerializer):
    reason = None


# The OpenAPI shapes of the bulk bodies: `ids` or `filter`, one of the two (BulkSerializer.validate).
class BulkIdsSerializer(BulkSerializer):
    filter = None
    ids = BulkSerializer._declared_fields["ids"].__class__(
        child=serializers.CharField(max_length=40), max_length=BULK_MAX_IDS, allow_empty=False
    )


class BulkFilterSerializer(BulkSerializer):
    ids = None
    filter = FilterField()


class BulkDeleteIdsSerializer(BulkIdsSerializer):
    reason = None


class BulkDeleteFilterSerializer(BulkFilterSerializer):
    reason = None


# --- approvals and input (runs/services/approvals.py, docs/approvals.md)


class DecisionSerializer(StrictSerializer):
    """POST /runs/{id}/approve and /reject."""

    note = serializers.CharField(
        required=False, allow_blank=True, max_length=MAX_REASON_LENGTH, default="",
        help_text="Why; stored with the decision and in the audit log.",
    )  # fmt: skip
    step_id = serializers.CharField(
        required=False,
        max_length=64,
        help_text="The approval step to decide; default: the one the run's `pause_signal` names.",
    )


class UsageCounterSerializer(serializers.Serializer):
    used = serializers.IntegerField()
    limit = serializers.IntegerField(allow_null=True)


class UsageSerializer(serializers.Serializer):
    period = serializers.CharField(help_text="The calendar month in UTC, YYYY-MM.")
    runs = UsageCounterSerializer()
    tokens = UsageCounterSerializer()
    cost_usd = serializers.FloatField()


class HookAcceptedSerializer(serializers.Serializer):
    run_id = serializers.CharField()


class HookPingSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    event = serializers.CharField(help_text="`ping`")
