"""The OpenAPI description of the run endpoints, apart from the views: one `extend_schema_view` per
viewset, applied as its class decorator. The list filters are runs/filtersets.py's `RunFilterSet`,
described here by hand (`metadata.<key>` is a family of parameters no filterset field describes)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)

from config.api.schema import error_response
from config.api.serializers import INSTANT_SCHEMA
from runs.api import serializers as s
from runs.choices import RunStatus, RunTrigger
from runs.filtersets import METADATA_MAX_VALUE_LENGTH

STATUS_PARAM = OpenApiParameter(
    "status", OpenApiTypes.STR, many=True, enum=RunStatus.values, description="Repeatable: any of these."
)
FILTER_PARAMS = [
    STATUS_PARAM,
    OpenApiParameter(
        "trigger", OpenApiTypes.STR, enum=RunTrigger.values, description="How the runs started."
    ),
    OpenApiParameter("env", {"type": "string", "minLength": 1, "maxLength": 100}),
    OpenApiParameter(
        "version",
        {"type": "integer", "minimum": 1, "maximum": 2_147_483_647},
        description="Workflow version number.",
    ),
    OpenApiParameter("created_after", INSTANT_SCHEMA, description="ISO 8601 or Unix seconds (inclusive)."),
    OpenApiParameter("created_before", INSTANT_SCHEMA, description="ISO 8601 or Unix seconds (exclusive)."),
    # A family of parameters, `metadata.<key>=<value>`: a free-form object whose properties are the
    # query parameters themselves (style form, explode). OpenAPI 3.0 has no propertyNames: the names'
    # pattern is the extension `x-propertyNames` (bench/fuzz_hooks.py hands it to the fuzzer as is).
    OpenApiParameter(
        "metadata",
        {
            "type": "object",
            "x-propertyNames": {"pattern": r"^metadata\.[A-Za-z0-9_.:\-]{1,64}$"},
            "additionalProperties": {"type": "string", "maxLength": METADATA_MAX_VALUE_LENGTH},
        },
        style="form",
        explode=True,
        description="`metadata.<key>=<value>` parameters (key: 1-64 of `A-Za-z0-9_.:-`; value: at most "
        f"{METADATA_MAX_VALUE_LENGTH} characters): runs whose metadata has this key with this value "
        "(several: all must match). `42`/`true` also match the number/boolean.",
    ),
]
WORKFLOW_PARAM = OpenApiParameter(
    "workflow", {"type": "string", "minLength": 1, "maxLength": 100}, description="Workflow id or slug."
)
AFTER_SEQ_PARAM = OpenApiParameter("after_seq", OpenApiTypes.INT, description="Only events after this seq.")
RUN_404 = {404: error_response("run_not_found")}
LIST_ERRORS = {400: error_response("invalid_request: an unknown filter, a repeated one or a bad value")}


def _stop(summary: str, description: str) -> extend_schema:
    """Cancel and terminate: the run's detail, 200 once stopped or 202 while steps are stopping."""
    return extend_schema(
        summary=summary,
        description=description,
        request=s.CancelSerializer,
        responses={
            200: s.RunDetailSerializer,
            202: s.RunDetailSerializer,
            409: error_response("run_not_cancellable: the run already finished"),
            **RUN_404,
        },
    )


_RUNS = extend_schema_view(
    list=extend_schema(
        summary="List runs, newest first",
        parameters=[WORKFLOW_PARAM, *FILTER_PARAMS],
        responses={200: s.RunSerializer(many=True), **LIST_ERRORS},
    ),
    retrieve=extend_schema(summary="A run with its steps", responses={200: s.RunDetailSerializer, **RUN_404}),
    events=extend_schema(
        summary="The run's event log, in sequence order",
        parameters=[AFTER_SEQ_PARAM],
        responses={200: s.RunEventSerializer(many=True), **RUN_404, **LIST_ERRORS},
    ),
    cancel=_stop(
        "Cancel gracefully",
        "No new steps start; running steps are asked to stop. 200 with the run when it is already "
        "`cancelled`, 202 while running steps are still stopping.",
    ),
    terminate=_stop(
        "Terminate immediately",
        "Like cancel, and running steps are killed (scripts lose their process group); each ends `cancelled` "
        "with error code `terminated`. 200 with the run when it is already `cancelled`, 202 while the killed "
        "steps are still being recorded.",
    ),
    approve=extend_schema(
        summary="Approve the step awaiting approval",
        description="Records the caller's approval of the run's approval step (`step_id`, else the step the "
        "run's `pause_signal` names). Once `required_approvals` people approved, the step completes with "
        "`{approved, decisions}` and the run continues. Audited as `run.approved` with the note. A person "
        "must match the step's `approvers` (an email, or a role at least as high as a listed one); an API "
        "key (scope `runs:approve`) may only decide steps without an `approvers` list. A run waiting at the "
        "environment gate (its `env` is in the security policy's `require_approval_for_envs`; "
        "`pause_signal.step_id` null) starts once approved (any member, self-approval allowed).",
        request=s.DecisionSerializer,
        responses={
            200: s.RunDetailSerializer,
            403: error_response(
                "not_an_approver / self_approval_forbidden / insufficient_scope (runs:approve) / forbidden"
            ),
            404: error_response("run_not_found / step_not_found"),
            409: error_response(
                "run_not_awaiting_approval: nothing awaits approval (or the step was decided meanwhile) / "
                "already_decided: the caller already decided this step"
            ),
        },
    ),
    reject=extend_schema(
        summary="Reject the step awaiting approval",
        description="One rejection fails the approval step with error code `approval_rejected` (the run "
        "fails unless the step has `on_failure: continue`). Same rules as approve, except that the person "
        "who triggered the run may always reject. Audited as `run.rejected` with the note. Rejecting a run "
        "at the environment gate fails it with `approval_rejected` before any step starts.",
        request=s.DecisionSerializer,
        responses={
            200: s.RunDetailSerializer,
            403: error_response("not_an_approver / insufficient_scope (runs:approve) / forbidden"),
            404: error_response("run_not_found / step_not_found"),
            409: error_response("run_not_awaiting_approval / already_decided"),
        },
    ),
    destroy=extend_schema(
        summary="Delete a finished run",
        description="Removes the run with its steps, events and attachments (audited as run.deleted).",
        responses={204: None, 409: error_response("run_active: cancel the run first"), **RUN_404},
    ),
    pin=extend_schema(
        summary="Pin (retention never removes a pinned run)",
        request=None,
        responses={200: s.RunDetailSerializer, **RUN_404},
    ),
    pause=extend_schema(
        summary="Pause",
        description="No new step starts; running steps finish, then the run is `paused` (at once when none "
        "is running, or when it has not started). Waits and retry timers hold until the resume. 200 with the "
        "run when it is `paused`, 202 while steps are still finishing.",
        request=None,
        responses={
            200: s.RunDetailSerializer,
            202: s.RunDetailSerializer,
            409: error_response("run_not_pausable: the run finished or is being cancelled"),
            **RUN_404,
        },
    ),
    resume=extend_schema(
        summary="Resume (answer an input step, decide an approval, or re-run in place)",
        description='`{"type": "collect_inputs", "data": {…}, "step_id"?}` answers the run\'s input '
        'step (422 `invalid_input` with the failing fields). `{"type": "request_user_action", '
        '"action_id": step id, "action_value": "approved"|"rejected", "note"?}` decides an '
        "approval like /approve and /reject (an API key needs `runs:approve`; without `action_id` at the "
        "environment gate too). Without `type`: a `paused` "
        "run "
        "continues; a `failed` or `cancelled` run runs again in place from its failed, cancelled and "
        "unfinished steps (and `from_step`, when given) and everything after them, keeping every other "
        "step's output. Audited as `run.resumed`.",
        request=s.ResumeSerializer,
        responses={
            200: s.RunDetailSerializer,
            202: s.RunDetailSerializer,
            409: error_response(
                "run_not_resumable, run_not_awaiting_input or run_not_awaiting_approval: the run is not in a "
                "state this answer applies to"
            ),
            422: error_response("invalid_input: the data fails the input step's schema"),
            **RUN_404,
        },
    ),
    rerun=extend_schema(
        summary="Rerun as a new run",
        description="A new run linked to this one (`parent_run_id`; this run lists it in `child_run_ids`) "
        "with the same input, metadata, environment and model. `from_step`: `start` (default: everything "
        "runs again), `failed` (its failed, cancelled and unfinished steps and what follows them; 409 "
        "`run_not_failed` when there are none) or a step id; the steps before it keep the outputs this run "
        "recorded and are not executed again. `version`: `pinned` (default), `latest` or `published`. "
        "Checked like a trigger (409 `workflow_disabled`, 402 `quota_exceeded`, 422 `invalid_input`).",
        request=s.RerunSerializer,
        responses={
            202: s.RunTriggeredSerializer,
            409: error_response("run_not_failed, workflow_disabled or workflow_already_running"),
            **RUN_404,
        },
    ),
    bulk_cancel=extend_schema(
        summary="Cancel many runs",
        description="`ids` (at most 500) or `filter` (the filters of GET /runs). `matched`: runs found; "
        "`affected`: runs asked to stop; `remaining`: active runs left (a call acts on at most 1,000 runs "
        "and about 10 seconds: repeat it while `remaining` is above 0).",
        request=PolymorphicProxySerializer(
            "BulkCancel", [s.BulkIdsSerializer, s.BulkFilterSerializer], resource_type_field_name=None
        ),
        responses={200: s.BulkResultSerializer},
    ),
    bulk_delete=extend_schema(
        summary="Delete many finished runs",
        description="`ids` (at most 500) or `filter` (the filters of GET /runs). Active runs are skipped: "
        "`matched` counts them, `affected` does not. A call deletes at most 1,000 runs and works about "
        "10 seconds; `remaining` says how many finished runs are left for the next call.",
        request=PolymorphicProxySerializer(
            "BulkDelete",
            [s.BulkDeleteIdsSerializer, s.BulkDeleteFilterSerializer],
            resource_type_field_name=None,
        ),
        responses={200: s.BulkResultSerializer},
    ),
    file=extend_schema(
        summary="Download an attachment",
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            404: error_response("run_not_found / file_not_found"),
        },
    ),
)

# DELETE /runs/{id}/pin is `unpin`, mapped onto the `pin` action (@pin.mapping.delete): extend_schema_view
# does not reach a mapped method, so its declaration is applied to it directly.
_UNPIN = extend_schema(summary="Unpin", request=None, responses={200: s.RunDetailSerializer, **RUN_404})


def RUNS(view):
    _UNPIN(view.unpin)
    return _RUNS(view)


_WORKFLOW_RUNS = extend_schema_view(
    list=extend_schema(
        summary="The workflow's runs, newest first",
        parameters=FILTER_PARAMS,
        responses={200: s.RunSerializer(many=True), 404: error_response("workflow_not_found"), **LIST_ERRORS},
    ),
)

# POST /workflows/{ref}/run is routed straight to `trigger` (as_view({"post": "trigger"})), a method
# extend_schema_view does not look for.
_TRIGGER = extend_schema(
    summary="Trigger a run",
    description="JSON: `input_data` (or `data` / `input`), `metadata`, `dry_run`, `env`, `version`, "
    "`model`, `wait`. multipart/form-data: an `attachment` file (at most BATON_MAX_UPLOAD_BYTES, "
    "default 3.75 MB, else 413) with the same options as fields (`input_data` and `metadata` as JSON "
    "text) and every other field as an input value. 202 with the run; with `wait`, 200 and the "
    "finished run if it finishes in time.",
    request={
        "application/json": s.RunTriggerSerializer,
        "multipart/form-data": s.RunTriggerMultipartSerializer,
    },
    responses={
        200: s.RunTriggeredSerializer,
        202: s.RunTriggeredSerializer,
        400: error_response("invalid_request / no_llm_provider"),
        402: error_response("quota_exceeded"),
        404: error_response("workflow_not_found (archived too) / version_not_found"),
        409: error_response("workflow_disabled / workflow_already_running / idempotency_request_in_progress"),
        413: error_response("payload_too_large"),
        422: error_response("invalid_input (details.fields, details.errors) / idempotency_key_reused"),
    },
)


def WORKFLOW_RUNS(view):
    _TRIGGER(view.trigger)
    return _WORKFLOW_RUNS(view)


USAGE = extend_schema_view(
    get=extend_schema(operation_id="usage_retrieve", responses={200: s.UsageSerializer})
)


HOOK_FORM = "application/x-www-form-urlencoded"


def hook_schema(*, summary: str, operation_id: str):
    """The OpenAPI declaration of both inbound webhook forms (token in the path, or signed)."""
    return extend_schema(
        summary=summary,
        operation_id=operation_id,
        description="No API key. With a token in the path (the workflow's webhook secret), or signed: "
        '`X-Baton-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">` or GitHub\'s '
        "`X-Hub-Signature-256`. The body (JSON or form-encoded) is the run's input. A repeated "
        "`Idempotency-Key` or `X-GitHub-Delivery` answers 202 with the first run's id; GitHub's `ping` "
        "answers 200 without a run.",
        request={"application/json": OpenApiTypes.OBJECT, HOOK_FORM: OpenApiTypes.OBJECT},
        parameters=[
            OpenApiParameter("X-Baton-Signature", OpenApiTypes.STR, OpenApiParameter.HEADER),
            OpenApiParameter("X-Hub-Signature-256", OpenApiTypes.STR, OpenApiParameter.HEADER),
            OpenApiParameter("Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER),
        ],
        responses={
            202: s.HookAcceptedSerializer,
            200: s.HookPingSerializer,
            400: error_response("invalid_request: malformed JSON, not an object"),
            401: error_response("invalid_signature"),
            402: error_response("quota_exceeded"),
            404: error_response("workflow_not_found: unknown workflow, disabled hook or wrong token"),
            409: error_response("workflow_disabled / webhook_replayed / workflow_already_running"),
            413: error_response("payload_too_large"),
            415: error_response("unsupported_media_type"),
            422: error_response("invalid_input"),
            429: error_response("rate_limited"),
        },
    )
