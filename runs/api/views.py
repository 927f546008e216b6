"""Runs over HTTP (API.md "Runs"): trigger, list, detail, events, cancel, delete, pin, bulk actions,
attachment downloads and the month's usage. Each handler parses input, calls one service or selector,
and renders; lookups go through org-scoped selectors, so another organisation's run is a 404
run_not_found."""

import time

from django.http import FileResponse
from rest_framework import status as http
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import ANY_MEMBER, RUNS_APPROVE, RUNS_READ, RUNS_WRITE
from config.api.filtersets import StrictFilterBackend
from config.api.idempotency import idempotent
from config.api.parsing import parse_bounded_int, refuse_unknown
from config.api.permissions import require_access
from config.api.serializers import validated
from config.api.viewsets import DestroyMixin, ListMixin, OrganizationViewSet, Resource
from config.errors import InvalidRequest, not_found
from runs import quotas, selectors, services
from runs.api import schema
from runs.api import serializers as s
from runs.api.representation import created_run_detail, run_detail
from runs.choices import RUN_TERMINAL, RunStatus
from runs.filtersets import RunFilterSet, WorkflowRunFilterSet
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


class RunListMixin(ListMixin):
    # A page of runs, filtered by a RunFilterSet and written by runs/api/representation.py. (A comment:
    # a class docstring would become the operations' OpenAPI description.)

    resource = Resource("run", list=selectors.run_list, get=selectors.run_get, destroy=services.run_delete)
    max_limit = 500
    serializer_class = s.RunSerializer
    filter_backends = [StrictFilterBackend]

    def render(self, instance, *, many: bool = False):
        return s.run_list_data(instance) if many else self.run_detail(instance)

    def run_detail(self, run: Run) -> dict:
        """The run object with its steps, read again (one run's state after a service changed it)."""
        return run_detail(*selectors.run_shown(organization=self.organization, run_id=run.pk))


@schema.RUNS
class RunViewSet(RunListMixin, DestroyMixin, OrganizationViewSet):
    lookup_url_kwarg = "run_id"
    filterset_class = RunFilterSet
    input_serializers = {
        "cancel": s.CancelSerializer,
        "terminate": s.CancelSerializer,
        "approve": s.DecisionSerializer,
        "reject": s.DecisionSerializer,
        "resume": s.ResumeSerializer,
        "rerun": s.RerunSerializer,
        "bulk_cancel": s.BulkSerializer,
        "bulk_delete": s.BulkDeleteSerializer,
    }
    access = {
        **dict.fromkeys(("list", "retrieve", "events", "file"), RUNS_READ),
        **dict.fromkeys(("cancel", "terminate", "destroy", "pin", "unpin", "pause", "rerun"), RUNS_WRITE),
        **dict.fromkeys(("bulk_cancel", "bulk_delete"), RUNS_WRITE),
        **dict.fromkeys(("approve", "reject"), RUNS_APPROVE),
        "resume": RUNS_WRITE,  # request_user_action also needs runs:approve (checked in the view)
    }

    @property
    def results_key(self) -> str:  # read by the paginator and the schema generator
        return "events" if getattr(self, "action", None) == "events" else "runs"

    def get_object(self) -> Run:
        return selectors.run_get(organization=self.organization, run_id=self.kwargs["run_id"])

    def perform_content_negotiation(self, request, force=False):
        # A download answers whatever the client accepts; its errors are still the JSON envelope.
        return super().perform_content_negotiation(request, force=force or self.action == "file")

    def _answer(self, run: Run, *, done: bool) -> Response:
        """The run's detail: 200 when `done`, else 202 (the change is still under way)."""
        return Response(self.run_detail(run), status=http.HTTP_200_OK if done else http.HTTP_202_ACCEPTED)

    def _stopped(self, run: Run) -> Response:
        """After cancel/terminate: 200 when the run is already cancelled, 202 while steps are stopping."""
        body = self.run_detail(run)
        done = body["status"] in RUN_TERMINAL
        return Response(body, status=http.HTTP_200_OK if done else http.HTTP_202_ACCEPTED)

    def retrieve(self, request, run_id=None):
        return Response(run_detail(*selectors.run_shown(organization=self.organization, run_id=run_id)))

    @action(detail=True, methods=["get"])
    def events(self, request, run_id=None):
        run = self.get_object()
        params = request.query_params
        refuse_unknown(params, ("limit", "offset", "after_seq"))
        after_seq = None
        if params.get("after_seq") is not None:
            after_seq = parse_bounded_int(params, "after_seq", 0, minimum=0, maximum=None)
        page = self.paginate_queryset(selectors.run_events(run=run, after_seq=after_seq))
        return self.get_paginated_response(s.RunEventSerializer(page, many=True).data)

    @action(detail=True, methods=["post"])
    def cancel(self, request, run_id=None):
        run = self.get_object()
        data = self.validated_input()
        return self._stopped(services.run_cancel(run=run, actor=self.actor, reason=data["reason"]))

    @action(detail=True, methods=["post"])
    def terminate(self, request, run_id=None):
        run = self.get_object()
        data = self.validated_input()
        return self._stopped(services.run_terminate(run=run, actor=self.actor, reason=data["reason"]))

    # --- approvals (docs/approvals.md)

    @action(detail=True, methods=["post"])
    def approve(self, request, run_id=None):
        return self._decide(approved=True)

    @action(detail=True, methods=["post"])
    def reject(self, request, run_id=None):
        return self._decide(approved=False)

    def _decide(self, *, approved: bool) -> Response:
        run = self.get_object()
        data = self.validated_input()
        run = services.run_decide(
            run=run, actor=self.actor, approved=approved, note=data["note"], step_id=data.get("step_id")
        )
        return Response(self.run_detail(run))

    @action(detail=True, methods=["post"])
    def pin(self, request, run_id=None):
        return Response(
            self.run_detail(services.run_pin_set(run=self.get_object(), actor=self.actor, pinned=True))
        )

    @pin.mapping.delete
    def unpin(self, request, run_id=None):
        return Response(
            self.run_detail(services.run_pin_set(run=self.get_object(), actor=self.actor, pinned=False))
        )

    # --- pause, resume, rerun

    @action(detail=True, methods=["post"])
    def pause(self, request, run_id=None):
        run = services.run_pause(run=self.get_object(), actor=self.actor)
        return self._answer(run, done=run.status == RunStatus.PAUSED)

    @action(detail=True, methods=["post"])
    def resume(self, request, run_id=None):
        run = self.get_object()
        data = self.validated_input()
        kind = data.get("type")
        if kind == "collect_inputs":
            run = services.run_collect_inputs(
                run=run, actor=self.actor, data=data["data"], step_id=data.get("step_id")
            )
        elif kind == "request_user_action":
            require_access(self.actor, RUNS_APPROVE)
            run = services.run_decide(
                run=run,
                actor=self.actor,
                approved=data["action_value"] == "approved",
                note=data["note"],
                step_id=data.get("action_id"),
            )
        else:
            run = services.run_resume(run=run, actor=self.actor, from_step=data.get("from_step"))
            run.refresh_from_db()
        return self._answer(run, done=run.is_terminal)

    @action(detail=True, methods=["post"])
    @idempotent  # creates a run
    def rerun(self, request, run_id=None):
        data = self.validated_input()
        run = services.run_rerun(
            run=self.get_object(), actor=self.actor, from_step=data["from_step"], version=data["version"]
        )
        body = self.run_detail(run)
        return Response(
            {"run_id": run.pk, "status": body["status"], "run": body}, status=http.HTTP_202_ACCEPTED
        )

    # --- many runs at once: `ids`, or `filter` (a RunFilterSet, as GET /runs reads it)

    @action(detail=False, methods=["post"], url_path="bulk/cancel")
    def bulk_cancel(self, request):
        data = self.validated_input()
        result = services.runs_bulk_cancel(
            organization=self.organization,
            actor=self.actor,
            ids=data.get("ids"),
            filters=data.get("filter"),
            reason=data["reason"],
        )
        return Response(result.as_dict())

    @action(detail=False, methods=["post"], url_path="bulk/delete")
    def bulk_delete(self, request):
        data = self.validated_input()
        result = services.runs_bulk_delete(
            organization=self.organization, actor=self.actor, ids=data.get("ids"), filters=data.get("filter")
        )
        return Response(result.as_dict())

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


@schema.WORKFLOW_RUNS
class WorkflowRunViewSet(RunListMixin, OrganizationViewSet):
    """POST /workflows/{ref}/run and GET /workflows/{ref}/runs."""

    results_key = "runs"
    filterset_class = WorkflowRunFilterSet
    parser_classes = [JSONParser, MultiPartParser]  # the trigger's `attachment` upload
    access = {"trigger": RUNS_WRITE, "list": RUNS_READ}

    def _workflow(self):
        # The project is not needed here: no join, and a query written once (every trigger's first).
        return workflow_get(organization=self.organization, ref=self.kwargs["ref"], project=False)

    def filter_queryset(self, queryset):
        # The path's workflow first: an unknown one is a 404 before any filter's 400.
        return super().filter_queryset(queryset.filter(workflow_id=self._workflow().id))

    @idempotent
    def trigger(self, request, ref=None):
        # With what the run's start needs of the security policy: one statement less (workflows/fastpaths.py).
        workflow = workflow_get(organization=self.organization, ref=ref, project=False, run_policy=True)
        options, form_fields, upload = self._parse_trigger(request)
        run = services.run_trigger(
            workflow=workflow,
            actor=self.actor,
            version_spec=options["version"],
            input_data=options["input_data"],
            form_fields=form_fields,
            upload=upload,
            metadata=options.get("metadata"),
            env=options["env"],
            dry_run=options["dry_run"],
            model=options["model"],
        )
        # The run as its creation left it, not read back (2 of a trigger's ~12 queries).
        body = created_run_detail(run) or self.run_detail(run)
        accepted = Response(
            {"run_id": run.pk, "status": body["status"], "run": body}, status=http.HTTP_202_ACCEPTED
        )
        if options.get("wait"):  # after the commit (@idempotent): the run cannot start before it
            accepted.idempotency_continue = lambda: self._waited(run, options["wait"])
        return accepted

    def _waited(self, run, seconds: float) -> Response:
        code = http.HTTP_200_OK if _wait_until_terminal(run.pk, seconds) else http.HTTP_202_ACCEPTED
        body = self.run_detail(run)
        return Response({"run_id": run.pk, "status": body["status"], "run": body}, status=code)

    def _parse_trigger(self, request):
        """(options, form fields or None, upload or None) from a JSON or a multipart body."""
        if not request.content_type.startswith("multipart/"):
            return s.trigger_options(request.data), None, None
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
        options = validated(s.RunTriggerSerializer, options, context={"multipart": True})
        upload = services.Upload(files["attachment"]) if "attachment" in files else None
        return options, fields, upload


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


@schema.USAGE
class UsageView(APIView):
    access = {"get": ANY_MEMBER}

    def get(self, request):
        return Response(quotas.usage_for(request.auth.organization))
