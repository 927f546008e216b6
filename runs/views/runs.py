"""Run pages: the list (the API's main filters, keyset pagination) and the live detail with its actions.

The detail's live region (`run_live`) is what the browser reloads on each event of the run's SSE stream
(/api/v1/runs/{id}/stream, with the session cookie), so the page is always the server's rendering."""

import json
from datetime import UTC, datetime, time

from django import forms
from django.contrib import messages
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_POST

from accounts.dashboard import application_error_page, dashboard_page
from config.errors import ApplicationError, not_found
from runs import selectors
from runs.choices import RunStatus, RunTrigger, StepStatus
from runs.filtersets import RunFilterSet
from runs.models import Run, RunEvent, RunFile, StepRun
from runs.services import (
    run_cancel,
    run_collect_inputs,
    run_decide,
    run_delete,
    run_pause,
    run_pin_set,
    run_rerun,
    run_resume,
    run_terminate,
    runs_bulk_cancel,
    runs_bulk_delete,
)
from runs.views.selectors import after_cursor, encode_cursor
from runs.views.timeline import timeline
from workflows.forms import SchemaForm
from workflows.graph import dag_layout
from workflows.models import WorkflowVersion

PAGE_SIZE = 50
BULK_MAX = PAGE_SIZE  # a page's worth: the form lists one page of runs
RESUMABLE_STATUSES = (RunStatus.PAUSED, RunStatus.FAILED, RunStatus.CANCELLED)
EVENTS_SHOWN = 200
# The list's columns: a run's JSON (inputs, results, errors, metadata) is not decoded for a list page.
LIST_FIELDS = ("id", "organization", "workflow", "status", "trigger", "env", "created_at")


DATE = forms.DateInput(attrs={"type": "date"})


class RunFilterForm(forms.Form):
    status = forms.MultipleChoiceField(choices=RunStatus.choices, required=False)
    workflow = forms.CharField(required=False, max_length=100, label="Workflow id or slug")
    trigger = forms.ChoiceField(choices=[("", "Any"), *RunTrigger.choices], required=False)
    env = forms.CharField(required=False, max_length=100, label="Environment")
    created_after = forms.DateField(required=False, label="From (UTC date)", widget=DATE)
    created_before = forms.DateField(required=False, label="Before (UTC date)", widget=DATE)
    metadata = forms.CharField(required=False, max_length=300, label="Metadata (key=value)")

    def clean_metadata(self) -> tuple[tuple[str, str], ...]:
        raw = self.cleaned_data["metadata"].strip()
        if not raw:
            return ()
        key, sep, value = raw.partition("=")
        if not sep or not key.strip():
            raise forms.ValidationError("Write it as key=value.")
        return ((key.strip(), value.strip()),)

    def filters(self) -> RunFilterSet:
        """The form's choices as the API's RunFilterSet (the same filters as GET /runs)."""
        data = self.cleaned_data

        def midnight(day):
            return datetime.combine(day, time.min, tzinfo=UTC).isoformat() if day else None

        values = {
            "workflow": data.get("workflow") or None,
            "status": list(data.get("status") or ()) or None,
            "trigger": data.get("trigger") or None,
            "env": data.get("env") or None,
            "created_after": midnight(data.get("created_after")),
            "created_before": midnight(data.get("created_before")),
        }
        values.update({f"metadata.{key}": value for key, value in data.get("metadata") or ()})
        filterset = RunFilterSet.from_object(
            {name: value for name, value in values.items() if value is not None}, queryset=Run.objects.none()
        )
        filterset.is_valid()
        return filterset


@dashboard_page()
def run_list(request):
    """The organisation's runs, newest first, filtered like GET /runs; 50 a page, `cursor` for the next."""
    form = RunFilterForm(request.GET or None)
    filters = form.filters() if form.is_bound and form.is_valid() else None
    queryset = selectors.run_list(organization=request.principal.organization, filters=filters).only(
        *LIST_FIELDS
    )
    rows = list(after_cursor(queryset, request.GET.get("cursor", ""))[: PAGE_SIZE + 1])
    page, more = rows[:PAGE_SIZE], len(rows) > PAGE_SIZE
    query = request.GET.copy()
    query.pop("cursor", None)
    if more:
        query["cursor"] = encode_cursor(page[-1])
    context = {
        "nav_active": "runs",
        "form": form,
        "runs": page,
        "next_query": query.urlencode() if more else "",
        "paged": bool(request.GET.get("cursor")),
        "filtered": form.is_bound and any(v for k, v in request.GET.items() if k != "cursor"),
    }
    return render(request, "runs/list.html", context)


def _detail_context(request, run_id: str) -> dict:
    principal = request.principal
    run = selectors.run_get(organization=principal.organization, run_id=run_id, for_detail=True)
    steps = selectors.run_steps(run=run).steps
    definition = (
        WorkflowVersion.objects.filter(pk=run.workflow_version_id)
        .values_list("definition", flat=True)
        .first()
        or {}
    )
    events = list(RunEvent.objects.filter(run=run).order_by("-seq")[:EVENTS_SHOWN])
    children = (
        list(selectors.runs_of(principal.organization).filter(parent_run_id=run.id).only("id", "status")[:50])
        if run.has_children
        else []
    )
    files = list(
        RunFile.objects.filter(run=run).only("id", "name", "size", "content_type").order_by("created_at")
    )
    can_write = principal.has_role("member")
    waiting = []
    for step in steps:
        if step.status == StepStatus.AWAITING_INPUT and can_write:
            schema = (step.input_data or {}).get("schema")
            waiting.append(
                {"step": step, "kind": "input", "form": SchemaForm(schema, prefix=f"in-{step.step_id}")}
            )
        elif step.status == StepStatus.AWAITING_APPROVAL and can_write:
            waiting.append({"step": step, "kind": "approval"})
    # The environment gate: the run waits for an approval before any step starts (no step named).
    signal = run.pause_signal or {}
    gate = run.status == RunStatus.AWAITING_APPROVAL and bool(signal) and signal.get("step_id") is None
    return {
        "nav_active": "runs",
        "run": run,
        "steps": steps,
        "layout": dag_layout(definition, {step.step_id: step.status for step in steps})
        if definition
        else None,
        "events": events,
        "timeline": timeline(steps),
        "children": children,
        "files": files,
        "events_truncated": run.event_seq > len(events),
        "waiting": waiting,
        "gate": gate and can_write,
        "can_write": can_write,
        "can_cancel": can_write and run.can_cancel(),
        "can_pause": can_write
        and not run.is_terminal
        and run.pause_requested_at is None
        and run.cancel_requested_at is None,
        "can_resume": can_write and (run.status in RESUMABLE_STATUSES or run.pause_requested_at is not None),
        "finished": run.is_terminal,
    }


@dashboard_page()
def run_detail(request, run_id: str):
    """A run with its steps (input, output, error), event log and DAG coloured by step status, kept live
    by dashboard.js over the run's SSE stream; the actions the person's role allows."""
    return render(request, "runs/detail.html", _detail_context(request, run_id))


STEP_PARTS = {"input": "input_data", "output": "output_data"}


@dashboard_page()
def run_step_data(request, run_id: str, step_id: str, part: str):
    """A step's whole input or output as a JSON download (the page shows the first 4,000 characters).
    Stored traces already have secret values replaced by ***."""
    run = selectors.run_get(organization=request.principal.organization, run_id=run_id)
    step = (
        StepRun.objects.filter(run=run, step_id=step_id[:64], parent__isnull=True)
        .only(STEP_PARTS.get(part, "id"))
        .first()
    )
    if step is None or part not in STEP_PARTS:
        return application_error_page(request, not_found("step", step_id[:64]))
    body = json.dumps(getattr(step, STEP_PARTS[part]), indent=2, ensure_ascii=False, default=str)
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{run.id}-{slugify(step_id)[:64]}-{part}.json"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


@dashboard_page()
def run_live(request, run_id: str):
    """The detail's live region alone (htmx swaps it in on each stream event)."""
    return render(request, "runs/_live.html", _detail_context(request, run_id))


def _back(request, run_id: str, message: str):
    messages.success(request, message)
    return redirect("dashboard:run-detail", run_id=run_id)


CONTROL_MESSAGES = {
    "cancel": "Cancellation requested.",
    "terminate": "Termination requested: running steps are being stopped.",
    "pause": "Pause requested.",
    "resume": "Resumed.",
    "pin": "Pinned: retention keeps it.",
    "unpin": "Unpinned.",
}


def _control(action: str, run, actor, reason: str) -> None:
    if action == "cancel":
        run_cancel(run=run, actor=actor, reason=reason)
    elif action == "terminate":
        run_terminate(run=run, actor=actor, reason=reason)
    elif action == "pause":
        run_pause(run=run, actor=actor)
    elif action == "resume":
        run_resume(run=run, actor=actor)
    else:
        run_pin_set(run=run, actor=actor, pinned=action == "pin")


@require_POST
@dashboard_page(role="member")
def run_control_view(request, run_id: str):
    """Cancel, terminate, pause, resume, pin or unpin (field `action`), through the API's services."""
    run = selectors.run_get(organization=request.principal.organization, run_id=run_id)
    action = request.POST.get("action", "")
    if action not in CONTROL_MESSAGES:
        return application_error_page(request, ApplicationError("invalid_request", "Unknown action."))
    _control(action, run, request.principal, request.POST.get("reason", "")[:500])
    return _back(request, run_id, CONTROL_MESSAGES[action])


@require_POST
@dashboard_page(role="member")
def run_rerun_view(request, run_id: str):
    """Start a new run from this one (`from_step`: start, failed or a step id) and open it."""
    run = selectors.run_get(organization=request.principal.organization, run_id=run_id)
    from_step = (request.POST.get("from_step") or "start")[:64]
    new = run_rerun(run=run, actor=request.principal, from_step=from_step)
    messages.success(request, f"Rerun of {run.id} started.")
    return redirect("dashboard:run-detail", run_id=new.id)


@require_POST
@dashboard_page(role="member")
def run_delete_view(request, run_id: str):
    run = selectors.run_get(organization=request.principal.organization, run_id=run_id)
    run_delete(run=run, actor=request.principal)
    messages.success(request, f"Run {run_id} deleted.")
    return redirect("dashboard:run-list")


@require_POST
@dashboard_page(role="member")
def run_decide_view(request, run_id: str):
    """Approve or reject (button `decision`), with an optional note, through run_decide (the approvers
    list, self-approval and double-decision rules are the service's)."""
    run = selectors.run_get(organization=request.principal.organization, run_id=run_id)
    approved = request.POST.get("decision") == "approve"
    step_id = request.POST.get("step_id") or None
    inline = bool(request.headers.get("HX-Request"))
    note = request.POST.get("note", "")
    try:
        run_decide(run=run, actor=request.principal, approved=approved, note=note, step_id=step_id)
    except ApplicationError as exc:
        if not inline:
            raise
        # htmx swaps successful responses only: the refusal takes the item's place instead.
        return render(
            request, "approvals/_decided.html", {"run": run, "error": exc.message, "step_id": step_id}
        )
    done = "Approved" if approved else "Rejected"
    if inline:
        return render(request, "approvals/_decided.html", {"run": run, "done": done, "step_id": step_id})
    return _back(request, run_id, f"{done}.")


@require_POST
@dashboard_page(role="member")
def run_answer_view(request, run_id: str):
    """Answer an input request with the form generated from its schema (run_collect_inputs validates)."""
    organization = request.principal.organization
    run = selectors.run_get(organization=organization, run_id=run_id)
    step_id = request.POST.get("step_id", "")
    step = next((s for s in selectors.run_steps(run=run).steps if s.step_id == step_id), None)
    if step is None:
        return application_error_page(request, ApplicationError("step_not_found", f"No step '{step_id}'."))
    form = SchemaForm((step.input_data or {}).get("schema"), request.POST, prefix=f"in-{step_id}")
    if form.is_valid():
        try:
            run_collect_inputs(run=run, actor=request.principal, data=form.value(), step_id=step_id)
        except ApplicationError as exc:
            if exc.status != 422:
                raise
            form.add_service_errors((exc.details or {}).get("fields") or {})
        else:
            return _back(request, run_id, "Answer sent.")
    context = _detail_context(request, run_id)
    for item in context["waiting"]:
        if item["step"].step_id == step_id:
            item["form"] = form
    return render(request, "runs/detail.html", context, status=400)


@require_POST
@dashboard_page(role="member")
def run_bulk_view(request):
    """Cancel the active or delete the finished runs ticked on a list page (runs_bulk_cancel /
    runs_bulk_delete, as the API's bulk actions; runs of another organisation are simply not matched)."""
    ids = request.POST.getlist("run")[:BULK_MAX]
    action = request.POST.get("action")
    back = "?" + QueryDict(request.POST.get("query", "")).urlencode()
    if not ids or action not in ("cancel", "delete"):
        messages.error(request, "Tick at least one run, then choose what to do with them.")
        return redirect(reverse("dashboard:run-list") + back)
    organization, actor = request.principal.organization, request.principal
    if action == "cancel":
        result = runs_bulk_cancel(organization=organization, actor=actor, ids=ids)
        done = f"{result.affected} of {result.matched} selected runs asked to stop (finished ones stay)."
    else:
        result = runs_bulk_delete(organization=organization, actor=actor, ids=ids)
        done = f"{result.affected} of {result.matched} selected runs deleted (active ones are kept)."
    messages.success(request, done)
    return redirect(reverse("dashboard:run-list") + back)
