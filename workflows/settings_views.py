"""Dashboard pages of a workflow beyond its detail: a readable diff between two versions, its settings
(concurrency, retention, inbound webhook) and its schedules. Every write goes through the service the API
uses (workflow_update_metadata, webhook_secret_rotate, schedule_create/update/delete), so the same rules,
limits and audit events apply; a service's field error is shown next to its field."""

import json

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.choices import Role
from accounts.dashboard import dashboard_page
from config.errors import ApplicationError, Forbidden
from workflows.api.schedules import hook_urls
from workflows.choices import ConcurrencyPolicy, ScheduleCatchup, ScheduleOverlap, WorkflowStatus
from workflows.diff import definition_line_diff, definition_summary
from workflows.schedules import MAX_CATCHUP_WINDOW_SECONDS, schedule_create, schedule_delete, schedule_update
from workflows.selectors import (
    parse_version_spec,
    schedule_get,
    schedule_list,
    workflow_get,
    workflow_version_get,
    workflow_versions,
)
from workflows.services import workflow_update_metadata
from workflows.webhooks import webhook_secret_rotate

MAX_INPUT_JSON = 65_536
VERSIONS_LISTED = 200


def _require(request, role: str, what: str) -> None:
    if not request.principal.has_role(role):
        raise Forbidden("forbidden", f"{what} needs the {role} role or higher in this organisation.")


def _service_errors(form: forms.Form, exc: ApplicationError, fields: dict[str, str]) -> None:
    """Put a service's refusal next to the form fields it names (`fields` maps its names to the form's)."""
    named = (exc.details or {}).get("fields") or {}
    placed = False
    for name, messages_ in named.items():
        target = fields.get(name)
        if target in form.fields:
            for message in messages_ if isinstance(messages_, list) else [messages_]:
                form.add_error(target, str(message))
            placed = True
    if not placed:
        form.add_error(None, exc.message)


# --- versions ----------------------------------------------------------------------------------------


@dashboard_page()
def workflow_diff(request, ref: str):
    """Two versions side by side as a line diff of their canonical JSON (`v1`, `v2`: numbers, `latest` or
    `published`; by default the version before the latest against the latest), with the API's summary."""
    workflow = workflow_get(organization=request.principal.organization, ref=ref)
    latest = workflow.current_version or 1
    defaults = {"v1": str(max(1, latest - 1)), "v2": str(latest)}
    specs = {}
    for name in ("v1", "v2"):
        raw = (request.GET.get(name) or defaults[name])[:20]
        specs[name] = parse_version_spec(raw, name=name)
    old = workflow_version_get(workflow=workflow, spec=specs["v1"])
    new = workflow_version_get(workflow=workflow, spec=specs["v2"])
    rows, cut = definition_line_diff(old.definition, new.definition)
    context = {
        "nav_active": "workflows",
        "workflow": workflow,
        "old": old,
        "new": new,
        "rows": rows,
        "cut": cut,
        "summary": definition_summary(old.definition, new.definition),
        "added": sum(1 for row in rows if row["kind"] == "added"),
        "removed": sum(1 for row in rows if row["kind"] == "removed"),
        "numbers": list(
            workflow_versions(workflow=workflow).values_list("number", flat=True)[:VERSIONS_LISTED]
        ),
    }
    return render(request, "workflows/diff.html", context)


# --- settings ----------------------------------------------------------------------------------------


class WorkflowSettingsForm(forms.Form):
    concurrency_limit = forms.IntegerField(
        required=False,
        min_value=1,
        label="Runs at once",
        help_text="Empty: no limit of this workflow's own (the organisation's cap still applies).",
    )
    concurrency_key = forms.CharField(
        required=False,
        max_length=200,
        label="Concurrency key",
        help_text="Optional template, e.g. {{ inputs.customer_id }}: the limit then holds per key.",
    )
    on_limit = forms.ChoiceField(
        choices=ConcurrencyPolicy.choices,
        initial=ConcurrencyPolicy.QUEUE,
        label="Over the limit",
        help_text="Reject the new run (409), queue it until a slot frees, or cancel the oldest running one.",
    )
    retention_days = forms.IntegerField(
        required=False,
        min_value=1,
        label="Keep finished runs (days)",
        help_text="Empty: the organisation's retention.",
    )
    webhook_enabled = forms.BooleanField(required=False, label="Inbound webhook enabled")

    def changes(self) -> dict:
        data = self.cleaned_data
        concurrency = None
        if data.get("concurrency_limit"):
            concurrency = {
                "limit": data["concurrency_limit"],
                "key": (data.get("concurrency_key") or "").strip() or None,
                "on_limit": data.get("on_limit") or ConcurrencyPolicy.QUEUE,
            }
        return {
            "concurrency": concurrency,
            "retention_days": data.get("retention_days"),
            "webhook_enabled": bool(data.get("webhook_enabled")),
        }


SETTINGS_FIELDS = {
    "concurrency": "concurrency_limit",
    "retention_days": "retention_days",
    "webhook_enabled": "webhook_enabled",
}


def _settings_initial(workflow) -> dict:
    concurrency = workflow.concurrency or {}
    return {
        "concurrency_limit": concurrency.get("limit"),
        "concurrency_key": concurrency.get("key") or "",
        "on_limit": concurrency.get("on_limit") or ConcurrencyPolicy.QUEUE,
        "retention_days": workflow.retention_days,
        "webhook_enabled": workflow.webhook_enabled,
    }


@dashboard_page()
def workflow_settings(request, ref: str):
    """Concurrency, retention and the inbound webhook (members change them through
    workflow_update_metadata, as PATCH /workflows/{ref}); admins see the hook URLs and rotate the secret."""
    workflow = workflow_get(organization=request.principal.organization, ref=ref)
    form = WorkflowSettingsForm(
        request.POST if request.method == "POST" else None, initial=_settings_initial(workflow)
    )
    status = 200
    if request.method == "POST":
        _require(request, Role.MEMBER, "Changing a workflow's settings")
        if form.is_valid():
            try:
                workflow_update_metadata(workflow=workflow, actor=request.principal, changes=form.changes())
            except ApplicationError as exc:
                if exc.status == 404:
                    raise
                _service_errors(form, exc, SETTINGS_FIELDS)
                status = exc.status
            else:
                messages.success(request, "Settings saved.")
                return redirect("dashboard:workflow-settings", ref=workflow.id)
        else:
            status = 400
    is_admin = request.principal.has_role(Role.ADMIN)
    context = {
        "nav_active": "workflows",
        "workflow": workflow,
        "form": form,
        "can_write": request.principal.has_role(Role.MEMBER) and workflow.status != WorkflowStatus.ARCHIVED,
        "is_admin": is_admin,
        "hooks": hook_urls(workflow, request) if is_admin else None,
    }
    return render(request, "workflows/settings.html", context, status=status)


@require_POST
@dashboard_page(role=Role.ADMIN)
def workflow_webhook_rotate(request, ref: str):
    """A new inbound webhook secret (webhook_secret_rotate): the old hook URL and signatures stop at once."""
    workflow = workflow_get(organization=request.principal.organization, ref=ref)
    webhook_secret_rotate(workflow=workflow, actor=request.principal)
    messages.success(request, "Webhook secret rotated: the previous hook URL and signatures no longer work.")
    return redirect("dashboard:workflow-settings", ref=workflow.id)


# --- schedules ---------------------------------------------------------------------------------------


class InputJsonField(forms.CharField):
    def to_python(self, value):
        text = (super().to_python(value) or "").strip() or "{}"
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}).") from None
        if not isinstance(data, dict):
            raise forms.ValidationError("The input must be a JSON object.")
        return data


class ScheduleForm(forms.Form):
    cron_expression = forms.CharField(
        max_length=120,
        label="Cron expression",
        help_text="Five fields (minute hour day month weekday), e.g. 0 9 * * 1-5, or @hourly, @daily.",
    )
    timezone = forms.CharField(
        max_length=64, initial="UTC", label="Time zone", help_text="An IANA name, e.g. Europe/Paris."
    )
    input_data = InputJsonField(
        required=False,
        max_length=MAX_INPUT_JSON,
        initial="{}",
        label="Input (JSON object)",
        widget=forms.Textarea(attrs={"rows": 4, "class": "code"}),
    )
    catchup = forms.ChoiceField(
        choices=ScheduleCatchup.choices,
        initial=ScheduleCatchup.NONE,
        label="Missed fire times",
        help_text="What to run for fire times missed while Baton was down.",
    )
    catchup_window_seconds = forms.IntegerField(
        min_value=0,
        max_value=MAX_CATCHUP_WINDOW_SECONDS,
        initial=3600,
        label="Catch-up window (seconds)",
    )
    overlap = forms.ChoiceField(
        choices=ScheduleOverlap.choices,
        initial=ScheduleOverlap.SKIP,
        label="While the previous run is active",
    )
    enabled = forms.BooleanField(required=False, initial=True, label="Enabled")


@dashboard_page()
def workflow_schedules(request, ref: str):
    """The workflow's schedules (next and last fire) and, for members, a form for a new one
    (schedule_create: the cron, time zone, interval and limit rules are the service's)."""
    organization = request.principal.organization
    workflow = workflow_get(organization=organization, ref=ref)
    form = ScheduleForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        _require(request, Role.MEMBER, "Creating a schedule")
        if form.is_valid():
            try:
                schedule = schedule_create(
                    workflow=workflow, actor=request.principal, values=form.cleaned_data
                )
            except ApplicationError as exc:
                if exc.status == 404:
                    raise
                _service_errors(form, exc, {name: name for name in form.fields})
                status = exc.status
            else:
                messages.success(
                    request, f"Schedule {schedule.cron_expression} ({schedule.timezone}) created."
                )
                return redirect("dashboard:workflow-schedules", ref=workflow.id)
        else:
            status = 400
    context = {
        "nav_active": "workflows",
        "workflow": workflow,
        "schedules": list(schedule_list(organization=organization, workflow=workflow)),
        "form": form,
        "can_write": request.principal.has_role(Role.MEMBER) and workflow.status != WorkflowStatus.ARCHIVED,
        "now": timezone.now(),
    }
    return render(request, "workflows/schedules.html", context, status=status)


@require_POST
@dashboard_page(role=Role.MEMBER)
def schedule_toggle(request, schedule_id: str):
    """Pause (disable) or resume (enable) a schedule through schedule_update."""
    schedule = schedule_get(organization=request.principal.organization, schedule_id=schedule_id)
    enabled = request.POST.get("enabled") == "true"
    schedule = schedule_update(schedule=schedule, actor=request.principal, changes={"enabled": enabled})
    messages.success(request, "Schedule resumed." if enabled else "Schedule paused: it fires no runs.")
    return redirect("dashboard:workflow-schedules", ref=schedule.workflow_id)


@require_POST
@dashboard_page(role=Role.MEMBER)
def schedule_remove(request, schedule_id: str):
    """Delete a schedule (its runs stay) through schedule_delete."""
    schedule = schedule_get(organization=request.principal.organization, schedule_id=schedule_id)
    schedule_delete(schedule=schedule, actor=request.principal)
    messages.success(request, "Schedule deleted; the runs it started are kept.")
    return redirect("dashboard:workflow-schedules", ref=schedule.workflow_id)
