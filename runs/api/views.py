"""Runs over HTTP (API.md "Runs"): trigger, list, detail, events, cancel, delete, pin, bulk actions and
attachment downloads. Each handler parses input, calls one service or selector, and renders; lookups go
through org-scoped selectors, so another organisation's run is a 404 run_not_found."""

import dataclasses
import time

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status as http
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.choices import Scope
from accounts.permissions import ANY_MEMBER, RUNS_APPROVE, RUNS_READ, RUNS_WRITE
from config.api.idempotency import idempotent
from config.api.pagination import parse_bounded_int
from config.api.schema import error_response
from config.errors import Forbidden, InvalidRequest, not_found
from runs import quotas, selectors, services
from runs.api import serializers as s
from runs.api.representation import created_run_detail
from runs.choices import RUN_TERMINAL, RunStatus
from runs.models import Run
from workflows.selectors import workflow_get

# Content types a browser may be told for a download; anything else is sent as application/octet-stream
# (with nosniff and as an attachment either way, so nothing uploaded renders as a page of ours).
SAFE_CONTENT_TYPES = frozenset(
    {
        "application/json",
        "application/pdf",
        "application/zip",
        "application/gzip",
        "text/plain",
        "text/csv",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "audio/mpeg",
        "audio/wav",
        "video/mp4",
    }
)
WAIT_FIRST_SLEEP = 0.05
WAIT_MAX_SLEEP = 1.0

STATUS_PARAM = OpenApiParameter(
    "status", OpenApiTypes.STR, many=True, enum=RunStatus.values, description="Repeatable: any of these."
)
FILTER_PARAMS = [
    STATUS_PARAM,
    OpenApiParameter("trigger", OpenApiTypes.STR, description="api, webhook, schedule, manual, rerun, …"),
    OpenApiParameter("env", OpenApiTypes.STR),
    OpenApiParameter("version", OpenApiTypes.INT, description="Workflow version number."),
    OpenApiParameter("created_after", OpenApiTypes.STR, description="ISO 8601 or Unix seconds (inclusive)."),
    OpenApiParameter("created_before", OpenApiTypes.STR, description="ISO 8601 or Unix seconds (exclusive)."),
    OpenApiParameter(
        "metadata.<key>",
        OpenApiTypes.STR,
        description="Runs whose metadata has this key with this value (several: all must match). "
        "`42`/`true` also match the number/boolean.",
    ),
]
WORKFLOW_PARAM = OpenApiParameter("workflow", OpenApiTypes.STR, description="Workflow id or slug.")
AFTER_SEQ_PARAM = OpenApiParameter("after_seq", OpenApiTypes.INT, description="Only events after this seq.")
RUN_404 = {404: error_response("run_not_found")}
LIST_ERRORS = {400: error_response("invalid_request: an unknown filter, a repeated one or a bad value")}


def _body(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _require_scope(request, scope: str) -> None:
    if not request.auth.has_scope(scope):
        raise Forbidden(
            "insufficient_scope",
            f"This API key lacks the '{scope}' scope.",
            details={"required_scope": scope},
        )


def _detail(run: Run, organization) -> dict:
    return s.run_detail_data(selectors.run_get(organization=organization, run_id=run.pk, for_detail=True))


def _list_response(view, queryset):
    page = view.paginate_queryset(queryset)
    return view.get_paginated_response(s.run_list_data(page))


def _stop_response(run: Run, organization) -> Response:
    """After cancel/terminate: 200 when the run is already cancelled, 202 while steps are stopping."""
    body = _detail(run, organization)
    done = body["status"] in RUN_TERMINAL
    return Response(body, status=http.HTTP_200_OK if done else http.HTTP_202_ACCEPTED)


class RunViewSet(viewsets.GenericViewSet):
    lookup_field = "pk"
    lookup_url_kwarg = "run_id"
    lookup_value_regex = "[^/]+"
    max_limit = 500
    serializer_class = s.RunSerializer
    filter_backends: list = []
    access = {
        "list": RUNS_READ,
        "retrieve": RUNS_READ,
        "events": RUNS_READ,
        "file": RUNS_READ,
        "cancel": RUNS_WRITE,
        "terminate": RUNS_WRITE,
        "approve": RUNS_APPROVE,
        "reject": RUNS_APPROVE,
        "destroy": RUNS_WRITE,
        "pin": RUNS_WRITE,
        "unpin": RUNS_WRITE,
        "pause": RUNS_WRITE,
        "resume": RUNS_WRITE,  # request_user_action also needs runs:approve (checked in the view)
        "rerun": RUNS_WRITE,
        "bulk_cancel": RUNS_WRITE,
        "bulk_delete": RUNS_WRITE,
    }

    @property
    def results_key(self) -> str:  # read by the paginator and the schema generator
        return "events" if getattr(self, "action", None) == "events" else "runs"

    def get_queryset(self):
        return selectors.runs_of(self.request.auth.organization)

    def get_object(self, *, for_detail: bool = False) -> Run:
        return selectors.run_get(
            organization=self.request.auth.organization, run_id=self.kwargs["run_id"], for_detail=for_detail
        )

    def perform_content_negotiation(self, request, force=False):
        # A download answers whatever the client accepts; its errors are still the JSON envelope.
        return super().perform_content_negotiation(request, force=force or self.action == "file")

    @extend_schema(
        summary="List runs, newest first",
        parameters=[WORKFLOW_PARAM, *FILTER_PARAMS],
        responses={200: s.RunSerializer(many=True), **LIST_ERRORS},
    )
    def list(self, request):
        filters = s.parse_run_filters(request.query_params, extra=("limit", "offset"))
        queryset = selectors.run_list(organization=request.auth.organization, filters=filters)
        return _list_response(self, queryset)

    @extend_schema(summary="A run with its steps", responses={200: s.RunDetailSerializer, **RUN_404})
    def retrieve(self, request, run_id=None):
        return Response(s.run_detail_data(self.get_object(for_detail=True)))

    @extend_schema(
        summary="The run's event log, in sequence order",
        parameters=[AFTER_SEQ_PARAM],
        responses={200: s.RunEventSerializer(many=True), **RUN_404, **LIST_ERRORS},
    )
    @action(detail=True, methods=["get"])
    def events(self, request, run_id=None):
        run = self.get_object()
        unknown = sorted(set(request.query_params) - {"limit", "offset", "after_seq"})
        if unknown:
            raise InvalidRequest(
                "invalid_request",
                f"'{unknown[0]}': Unknown parameter.",
                details={"fields": {name: ["Unknown parameter."] for name in unknown}},
            )
        after = request.query_params.get("after_seq")
        after_seq = None if after is None else parse_bounded_int(
            request.query_params, "after_seq", 0, minimum=0, maximum=None
        )  # fmt: skip
        page = self.paginate_queryset(selectors.run_events(run=run, after_seq=after_seq))
        return self.get_paginated_response(s.RunEventSerializer(page, many=True).data)

    @extend_schema(
        summary="Cancel gracefully",
        description="No new steps start; running steps are asked to stop. 200 with the run when it is "
        "already `cancelled`, 202 while running steps are still stopping.",
        request=s.CancelSerializer,
        responses={
            200: s.RunDetailSerializer,
            202: s.RunDetailSerializer,
            409: error_response("run_not_cancellable: the run already finished"),
            **RUN_404,
        },
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, run_id=None):
        run = self.get_object()
        data = _body(s.CancelSerializer, request)
        run = services.run_cancel(run=run, actor=request.auth, reason=data["reason"])
        return _stop_response(run, request.auth.organization)

    @extend_schema(
        summary="Terminate immediately",
        description="Like cancel, and running steps are killed (scripts lose their process group); each "
        "ends `cancelled` with error code `terminated`. 200 with the run when it is already `cancelled`, "
        "202 while the killed steps are still being recorded.",
        request=s.CancelSerializer,
        responses={
            200: s.RunDetailSerializer,
            202: s.RunDetailSerializer,
            409: error_response("run_not_cancellable: the run already finished"),
            **RUN_404,
        },
    )
    @action(detail=True, methods=["post"])
    def terminate(self, request, run_id=None):
        run = self.get_object()
        data = _body(s.CancelSerializer, request)
        run = services.run_terminate(run=run, actor=request.auth, reason=data["reason"])
        return _stop_response(run, request.auth.organization)

    # --- approvals (runs/services/approvals.py, docs/approvals.md)

    @extend_schema(
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
    )
    @action(detail=True, methods=["post"])
    def approve(self, request, run_id=None):
        return self._decide(request, approved=True)

    @extend_schema(
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
    )
    @action(detail=True, methods=["post"])
    def reject(self, request, run_id=None):
        return self._decide(request, approved=False)

    def _decide(self, request, *, approved: bool) -> Response:
        run = self.get_object()
        data = _body(s.DecisionSerializer, request)
        run = services.run_decide(
            run=run, actor=request.auth, approved=approved, note=data["note"], step_id=data.get("step_id")
        )
        return Response(_detail(run, request.auth.organization))

    @extend_schema(
        summary="Delete a finished run",
        description="Removes the run with its steps, events and attachments (audited as run.deleted).",
        responses={204: None, 409: error_response("run_active: cancel the run first"), **RUN_404},
    )
    def destroy(self, request, run_id=None):
        services.run_delete(run=self.get_object(), actor=request.auth)
        return Response(status=http.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Pin (retention never removes a pinned run)",
        request=None,
        responses={200: s.RunDetailSerializer, **RUN_404},
    )
    @action(detail=True, methods=["post"])
    def pin(self, request, run_id=None):
        run = services.run_pin_set(run=self.get_object(), actor=request.auth, pinned=True)
        return Response(_detail(run, request.auth.organization))

    @extend_schema(summary="Unpin", request=None, responses={200: s.RunDetailSerializer, **RUN_404})
    @pin.mapping.delete
    def unpin(self, request, run_id=None):
        run = services.run_pin_set(run=self.get_object(), actor=request.auth, pinned=False)
        return Response(_detail(run, request.auth.organization))

    # --- pause, resume, rerun (runs/services/control.py, resume.py)

    @extend_schema(
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
    )
    @action(detail=True, methods=["post"])
    def pause(self, request, run_id=None):
        run = services.run_pause(run=self.get_object(), actor=request.auth)
        code = http.HTTP_200_OK if run.status == RunStatus.PAUSED else http.HTTP_202_ACCEPTED
        return Response(_detail(run, request.auth.organization), status=code)

    @extend_schema(
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
    )
    @action(detail=True, methods=["post"])
    def resume(self, request, run_id=None):
        run = self.get_object()
        data = _body(s.ResumeSerializer, request)
        kind = data.get("type")
        if kind == "collect_inputs":
            run = services.run_collect_inputs(
                run=run, actor=request.auth, data=data["data"], step_id=data.get("step_id")
            )
        elif kind == "request_user_action":
            _require_scope(request, Scope.RUNS_APPROVE)
            run = services.run_decide(
                run=run,
                actor=request.auth,
                approved=data["action_value"] == "approved",
                note=data["note"],
                step_id=data.get("action_id"),
            )
        else:
            run = services.run_resume(run=run, actor=request.auth, from_step=data.get("from_step"))
            run.refresh_from_db()
        code = http.HTTP_200_OK if run.is_terminal else http.HTTP_202_ACCEPTED
        return Response(_detail(run, request.auth.organization), status=code)

    @extend_schema(
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
    )
    @action(detail=True, methods=["post"])
    def rerun(self, request, run_id=None):
        data = _body(s.RerunSerializer, request)
        run = services.run_rerun(
            run=self.get_object(), actor=request.auth, from_step=data["from_step"], version=data["version"]
        )
        body = _detail(run, request.auth.organization)
        return Response(
            {"run_id": run.pk, "status": body["status"], "run": body}, status=http.HTTP_202_ACCEPTED
        )

    @extend_schema(
        summary="Cancel many runs",
        description="`ids` (at most 500) or `filter` (the filters of GET /runs). `matched`: runs found; "
        "`affected`: runs asked to stop; `remaining`: active runs left (a call acts on at most 1,000 runs "
        "and about 10 seconds: repeat it while `remaining` is above 0).",
        request=s.BulkSerializer,
        responses={200: s.BulkResultSerializer},
    )
    @action(detail=False, methods=["post"], url_path="bulk/cancel")
    def bulk_cancel(self, request):
        data = _body(s.BulkSerializer, request)
        result = services.runs_bulk_cancel(
            organization=request.auth.organization,
            actor=request.auth,
            ids=data.get("ids"),
            filters=data.get("filter"),
            reason=data["reason"],
        )
        return Response(result.as_dict())

    @extend_schema(
        summary="Delete many finished runs",
        description="`ids` (at most 500) or `filter` (the filters of GET /runs). Active runs are skipped: "
        "`matched` counts them, `affected` does not. A call deletes at most 1,000 runs and works about "
        "10 seconds; `remaining` says how many finished runs are left for the next call.",
        request=s.BulkDeleteSerializer,
        responses={200: s.BulkResultSerializer},
    )
    @action(detail=False, methods=["post"], url_path="bulk/delete")
    def bulk_delete(self, request):
        data = _body(s.BulkDeleteSerializer, request)
        result = services.runs_bulk_delete(
            organization=request.auth.organization,
            actor=request.auth,
            ids=data.get("ids"),
            filters=data.get("filter"),
        )
        return Response(result.as_dict())

    @extend_schema(
        summary="Download an attachment",
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            404: error_response("run_not_found / file_not_found"),
        },
    )
    @action(detail=True, methods=["get"], url_path=r"files/(?P<file_id>[^/]+)")
    def file(self, request, run_id=None, file_id=None):
        run_file = selectors.run_file_get(run=self.get_object(), file_id=file_id)
        path = services.run_file_path(run_file)
        if path is None:
            raise not_found("file", file_id)
        content_type = run_file.content_type.split(";", 1)[0].strip().lower()
        response = FileResponse(
            path.open("rb"),
            as_attachment=True,
            filename=services.safe_file_name(run_file.name),
            content_type=content_type if content_type in SAFE_CONTENT_TYPES else "application/octet-stream",
        )
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        response["Cache-Control"] = "private, no-store"
        return response


class WorkflowRunViewSet(viewsets.GenericViewSet):
    """POST /workflows/{ref}/run and GET /workflows/{ref}/runs."""

    results_key = "runs"
    max_limit = 500
    serializer_class = s.RunSerializer
    filter_backends: list = []
    access = {"trigger": RUNS_WRITE, "list": RUNS_READ}

    def get_queryset(self):
        return selectors.runs_of(self.request.auth.organization)

    def _workflow(self):
        # The project is not needed here: no join, and a query written once (every trigger's first).
        organization = self.request.auth.organization
        return workflow_get(organization=organization, ref=self.kwargs["ref"], project=False)

    @extend_schema(
        summary="The workflow's runs, newest first",
        parameters=FILTER_PARAMS,
        responses={200: s.RunSerializer(many=True), 404: error_response("workflow_not_found"), **LIST_ERRORS},
    )
    def list(self, request, ref=None):
        workflow = self._workflow()
        filters = s.parse_run_filters(request.query_params, extra=("limit", "offset"), allow_workflow=False)
        filters = dataclasses.replace(filters, workflow_id=workflow.id)
        queryset = selectors.run_list(organization=request.auth.organization, filters=filters)
        return _list_response(self, queryset)

    @extend_schema(
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
            409: error_response(
                "workflow_disabled / workflow_already_running / idempotency_request_in_progress"
            ),
            413: error_response("payload_too_large"),
            422: error_response("invalid_input (details.fields, details.errors) / idempotency_key_reused"),
        },
    )
    @idempotent
    def trigger(self, request, ref=None):
        workflow = self._workflow()
        options, form_fields, upload = self._parse_trigger(request)
        run = services.run_trigger(
            workflow=workflow,
            actor=request.auth,
            version_spec=options["version"],
            input_data=options["input_data"],
            form_fields=form_fields,
            upload=upload,
            metadata=options.get("metadata"),
            env=options["env"],
            dry_run=options["dry_run"],
            model=options["model"],
        )
        code = http.HTTP_202_ACCEPTED
        if options.get("wait") and _wait_until_terminal(run.pk, options["wait"]):
            code = http.HTTP_200_OK
        # Without `wait`, the run as its creation left it, not read back (2 of a trigger's ~12 queries).
        body = None if options.get("wait") else created_run_detail(run)
        if body is None:
            body = _detail(run, request.auth.organization)
        return Response({"run_id": run.pk, "status": body["status"], "run": body}, status=code)

    @staticmethod
    def _parse_trigger(request):
        """(options, form fields or None, upload or None) from a JSON or a multipart body."""
        if not request.content_type.startswith("multipart/"):
            return _body(s.RunTriggerSerializer, request), None, None
        files = request.FILES
        unknown_files = sorted(set(files) - {"attachment"})
        if unknown_files or len(files.getlist("attachment")) > 1:
            names = unknown_files or ["attachment"]
            raise InvalidRequest(
                "invalid_request",
                "Send one file, as the 'attachment' field.",
                details={"fields": {name: ["Only one file, named 'attachment'."] for name in names}},
            )
        options, fields = {}, {}
        for name, values in request.data.lists():
            if name == "attachment" and name in files:
                continue
            if name == "attachment":
                raise InvalidRequest(
                    "invalid_request",
                    "'attachment' must be a file.",
                    details={"fields": {"attachment": ["Must be a file."]}},
                )
            if len(values) > 1:
                raise InvalidRequest(
                    "invalid_request",
                    f"'{name}' is given more than once.",
                    details={"fields": {name: ["Give this field once."]}},
                )
            target = options if name in s.RunTriggerSerializer().fields else fields
            target[name] = values[0]
        serializer = s.RunTriggerSerializer(data=options, context={"multipart": True})
        serializer.is_valid(raise_exception=True)
        upload = services.Upload(files["attachment"]) if "attachment" in files else None
        return serializer.validated_data, fields, upload


def _wait_until_terminal(run_id: str, seconds: float) -> bool:
    """Poll the run's status with growing sleeps (50 ms up to 1 s) until it is terminal or `seconds`
    passed; True when it finished in time."""
    deadline = time.monotonic() + seconds
    pause = WAIT_FIRST_SLEEP
    while True:
        status = Run.objects.filter(pk=run_id).values_list("status", flat=True).first()
        if status is None or status in RUN_TERMINAL:
            return status is not None
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 1.5, WAIT_MAX_SLEEP)


class UsageView(APIView):
    access = {"get": ANY_MEMBER}

    @extend_schema(operation_id="usage_retrieve", responses={200: s.UsageSerializer})
    def get(self, request):
        return Response(quotas.usage_for(request.auth.organization))
