"""Run operations (every write to a run goes through here or the engine). Keyword-only, explicit actor."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from jsonschema import Draft202012Validator

from audit.services import audit_record
from config import sql
from config.errors import Conflict, Unprocessable
from runs import concurrency as admission
from runs import people, quotas
from runs.choices import EventType, RunStatus, RunTrigger
from runs.engine import core
from runs.models import Run, StepRun
from workflows.definition import input_schema
from workflows.models import Workflow, WorkflowVersion


def input_errors(definition: dict, input_data) -> list[str]:
    """Sentences for each way `input_data` fails the workflow's input schema (empty when valid)."""
    validator = Draft202012Validator(input_schema(definition))
    errors = []
    for error in sorted(validator.iter_errors(input_data), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(part) for part in error.absolute_path)
        errors.append(f"input.{where}: {error.message}" if where else f"input: {error.message}")
    return errors


_INSERT_RUN = sql.Insert(Run)
_INSERT_STEPS = sql.Insert(StepRun)
_SAVE_LAST_RUN = sql.Update(Workflow, ("last_run_at",))


@transaction.atomic
def run_create(
    *,
    workflow: Workflow,
    actor,
    version: WorkflowVersion | None = None,
    input_data: dict | None = None,
    metadata: dict | None = None,
    env: str | None = None,
    dry_run: bool = False,
    trigger: str = RunTrigger.API,
    parent_run: Run | None = None,
    parent_step_run_id: str | None = None,
    model: str = "",
    reuse: Mapping[str, StepRun] | None = None,
    audit_data: dict | None = None,
) -> Run:
    """Create a run of `version` (default: the latest) with one pending step run per step, record
    `run_queued` and `run.triggered`, and start it when it fits the concurrency limits (else it stays
    `queued` until admission starts it; ready steps are dispatched after commit). See runs/concurrency.py.
    A run in an environment the security policy gates waits `awaiting_approval` instead, with
    `run_awaiting_approval` (the environment gate, runs/people.py).

    Raises Unprocessable("invalid_input") when the input fails the workflow's input schema or the
    concurrency key cannot be rendered, Conflict("workflow_already_running") when the workflow's limit is
    reached and its policy is `reject`, QuotaExceeded("quota_exceeded") when the organisation's monthly run
    limit (or, for a workflow with agent steps, token quota) is used up — every run counts, dry runs and
    sub-workflow runs included (runs/quotas.py). Call it without holding a run lock (lock order:
    organisation first)."""
    if version is None:
        version = WorkflowVersion.objects.get(workflow=workflow, number=workflow.current_version)
    definition = version.definition
    input_data = {} if input_data is None else input_data
    metadata = metadata or {}
    errors = input_errors(definition, input_data)
    if errors:
        raise Unprocessable("invalid_input", "The run input does not match the workflow's input schema.",
                            details={"errors": errors})  # fmt: skip
    limit = admission.policy(workflow.concurrency)
    key = admission.concurrency_key(limit, input_data=input_data, env=env, metadata=metadata, trigger=trigger)
    # The environment gate (runs/people.py): such a run waits for an approval; admission never sees it.
    gate = people.environment_gate(
        workflow.organization_id, env, dry_run=dry_run, parent_step_run_id=parent_step_run_id
    )
    organization = admission.lock_organization(workflow.organization_id)  # the first lock (lock order)
    # Exact under that lock: every run creation takes it first (runs/quotas.py). 402 quota_exceeded.
    quotas.check_trigger_quota(organization, uses_agents=uses_agents(definition.get("steps")))
    victims: list[str] = []
    if limit:
        active = list(
            admission.group_runs(workflow.id, limit, key)
            .filter(status__in=admission.ACTIVE)
            .order_by("created_at", "id")
            .values_list("id", "cancel_requested_at")
        )
        if limit["on_limit"] == "reject" and len(active) >= limit["limit"]:
            raise Conflict(
                "workflow_already_running",
                f"Workflow {workflow.id} already has {len(active)} active run(s)"
                f"{' for this concurrency key' if limit.get('key') is not None else ''} "
                f"(limit {limit['limit']}).",
            )
        if limit["on_limit"] == "cancel_running":
            candidates = [run_id for run_id, cancel_requested_at in active if cancel_requested_at is None]
            victims = candidates[: max(0, len(candidates) + 1 - limit["limit"])]
    run = Run(
        organization_id=workflow.organization_id,
        workflow=workflow,
        workflow_version=version,
        definition_hash=version.content_hash,
        trigger=trigger,
        input_data=input_data,
        metadata=metadata,
        env=env,
        dry_run=dry_run,
        model=model or "",
        concurrency_key=key,
        parent_run=parent_run,
        parent_step_run_id=parent_step_run_id,
        triggered_by=actor.actor_id,
        triggered_by_type=actor.actor_type,
        status=RunStatus.AWAITING_APPROVAL if gate else RunStatus.QUEUED,
        pause_signal=gate,
    )
    # Every trigger writes these three: statements written once (config/sql.py).
    _INSERT_RUN.add([run])
    reuse = reuse or {}
    rows = [
        _reused(run, step, reuse[step["id"]])
        if step["id"] in reuse
        else StepRun(run=run, step_id=step["id"], type=step["type"], name=step.get("name", ""))
        for step in definition["steps"]
    ]
    _INSERT_STEPS.add(rows)
    workflow.last_run_at = run.created_at
    _SAVE_LAST_RUN.save(workflow)
    # Every run lock comes before the first audit append (lock order: organisation → runs → audit head).
    now = timezone.now()
    cancelled = []
    victims_locked = (  # no queryset built when there is none (most triggers): it costs more than it reads
        Run.objects.select_for_update().filter(pk__in=victims).order_by("created_at", "id") if victims else ()
    )
    for victim in victims_locked:
        if victim.is_terminal or victim.cancel_requested_at is not None:
            continue
        core.run_request_cancel(victim, now)  # finished here when no step runs: its slot frees at once
        core.save_run(victim)
        cancelled.append(victim)
    starting = (
        [] if gate else admission.select_admissions(organization, {run.id: run}) if organization else [run]
    )
    audit_record(
        organization=workflow.organization,
        event="run.triggered",
        actor=actor,
        target=("run", run.id),
        data={
            "workflow_id": workflow.id,
            "version": version.number,
            "trigger": trigger,
            "dry_run": dry_run,
            **(audit_data or {}),
        },
        run_id=run.id,
    )
    for victim in cancelled:
        audit_record(
            organization=workflow.organization,
            event="run.cancelled",
            actor=actor,
            target=("run", victim.id),
            data={"reason": "concurrency_limit", "replaced_by": run.id},
            note=f"Cancelled by {run.id}: the workflow's concurrency limit (on_limit: cancel_running).",
            run_id=victim.id,
        )
    if gate:
        people.gate_event(run, gate, workflow_version=version.number)
    else:
        core.emit(run, EventType.RUN_QUEUED, data={"workflow_version": version.number})
    if not any(started is run for started in starting):
        core.save_run(run)  # an admitted run is saved by start_admitted, its two events in one insert
    admission.start_admitted(starting, created_rows={run.id: {row.step_id: row for row in rows}})
    # The top-level rows as this transaction leaves them (the advance changed them in place): the trigger's
    # response is written from them (runs/api/representation.py `created_run_detail`).
    run.__dict__["_created_rows"] = rows
    return run


def _reused(run: Run, step: dict, source: StepRun) -> StepRun:
    """A rerun's step that keeps the outcome recorded by the run it reruns (not executed again)."""
    return StepRun(
        run=run,
        step_id=step["id"],
        type=step["type"],
        name=step.get("name", ""),
        status=source.status,
        skip_reason=source.skip_reason,
        input_data=source.input_data,
        output_data=source.output_data,
        started_at=source.started_at,
        completed_at=source.completed_at,
        state={"reused_from": source.id},
    )


def run_cancel(*, run: Run, actor, reason: str = "") -> Run:
    """Cooperative cancel: nothing new starts, unstarted steps are cancelled, and the run becomes
    `cancelled` when no step is running any more. A terminal run → Conflict run_not_cancellable."""
    return _stop(run, actor, reason, terminate=False)


def run_terminate(*, run: Run, actor, reason: str = "") -> Run:
    """Immediate cancel: like run_cancel, and the steps running now are killed (the workers' step monitor
    sees `terminate_requested_at` within about a second; scripts lose their whole process group). Each
    such step ends `cancelled` with error code `terminated`; the run becomes `cancelled` as soon as no
    step is running. A terminal run → Conflict run_not_cancellable. Audited `run.terminated`; terminating
    an already terminated run changes nothing."""
    return _stop(run, actor, reason, terminate=True)


@transaction.atomic
def _stop(run: Run, actor, reason: str, *, terminate: bool) -> Run:
    locked = Run.objects.select_for_update().get(pk=run.pk)
    verb = "terminated" if terminate else "cancelled"
    if locked.is_terminal:
        raise Conflict("run_not_cancellable", f"Run {run.id} is {locked.status} and cannot be {verb}.")
    asked = locked.terminate_requested_at if terminate else locked.cancel_requested_at
    if asked is None:
        audit_record(
            organization=locked.organization,
            event=f"run.{verb}",
            actor=actor,
            target=("run", locked.id),
            data={"reason": reason} if reason else {},
            note=reason or None,
            run_id=locked.id,
        )
        request = core.run_request_terminate if terminate else core.run_request_cancel
        request(locked, timezone.now())
        core.save_run(locked)
    return locked


# --- runs API services ----------------------------------------------------------------------------
# Owned by the runs API work (everything below this marker); the functions above belong to the engine
# work. Its imports stay here, below the marker, so the two owners of this module never edit the same
# lines.

import hashlib  # noqa: E402  (imports below the marker, see above)
import json  # noqa: E402  (imports below the marker, see above)
import logging  # noqa: E402  (imports below the marker, see above)
import os  # noqa: E402  (imports below the marker, see above)
import time  # noqa: E402  (imports below the marker, see above)
from collections.abc import Iterable, Mapping  # noqa: E402  (imports below the marker, see above)
from contextlib import nullcontext  # noqa: E402  (imports below the marker, see above)
from dataclasses import dataclass  # noqa: E402  (imports below the marker, see above)
from pathlib import Path  # noqa: E402  (imports below the marker, see above)

from django.conf import settings  # noqa: E402  (imports below the marker, see above)

from config.errors import InvalidRequest, PayloadTooLarge, not_found  # noqa: E402  (imports below the marker, see above)
from config.ids import new_id  # noqa: E402  (imports below the marker, see above)
from runs.choices import RUN_ACTIVE, RUN_TERMINAL  # noqa: E402  (imports below the marker, see above)
from runs.models import RunFile  # noqa: E402  (imports below the marker, see above)
from workflows.choices import WorkflowStatus  # noqa: E402  (imports below the marker, see above)

logger = logging.getLogger("baton.runs")

# One bulk call acts on at most this many runs, and stops starting new work after this many seconds, so
# a request stays well inside proxy timeouts; the answer's `remaining` says how many eligible runs are
# left, and the client repeats the call until it is 0.
BULK_FILTER_MAX = 1_000
BULK_TIME_BUDGET_SECONDS = 10.0
_BULK_CHUNK = 100


@dataclass(frozen=True)
class Upload:
    """A file sent with a trigger: anything with `name`, `size`, `content_type` and `chunks()`
    (Django's UploadedFile)."""

    file: object

    @property
    def name(self) -> str:
        return safe_file_name(getattr(self.file, "name", "") or "")

    @property
    def content_type(self) -> str:
        return (getattr(self.file, "content_type", "") or "application/octet-stream")[:255]


def safe_file_name(raw: str) -> str:
    """The last path component, without control characters, at most 255 characters ("upload" if empty)."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip().lstrip(".")
    return name[:255] or "upload"


def uses_agents(steps: Iterable) -> bool:
    """Whether any step (inline loop steps included, at any depth) is an `agent_task`."""
    for step in steps or ():
        if not isinstance(step, Mapping):
            continue
        if step.get("type") == "agent_task":
            return True
        inline = (step.get("config") or {}).get("step") if step.get("type") == "loop" else None
        if isinstance(inline, Mapping) and uses_agents([inline]):
            return True
    return False


def _organization_has_llm_provider(organization) -> bool | None:
    """True/False once the LLM providers work provides the selector; None (no check) before that."""
    try:
        from accounts.selectors import organization_has_llm_provider
    except ImportError:
        return None
    return bool(organization_has_llm_provider(organization))


def _check_quota(organization, *, agents: bool = False) -> None:
    """An early 402 quota_exceeded (before an attachment is stored; the token quota only when `agents`:
    the workflow has agent steps); run_create repeats the whole check, exactly, under the organisation's
    lock (runs/quotas.py)."""
    quotas.check_trigger_quota(organization, uses_agents=agents)


def _schema_types(definition: dict, name: str) -> set[str]:
    prop = (input_schema(definition).get("properties") or {}).get(name)
    if not isinstance(prop, Mapping):
        return set()
    declared = prop.get("type")
    if isinstance(declared, str):
        return {declared}
    return {t for t in declared if isinstance(t, str)} if isinstance(declared, list) else set()


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {dict: "object", list: "array", str: "string"}.get(type(value), "unknown")


def form_input(definition: dict, fields: Mapping[str, str]) -> dict:
    """Form fields as input values. A value stays a string unless the input schema declares that
    property without `string` and the value parses as JSON of a declared type (`"3"` for an integer
    becomes 3, `"[1,2]"` for an array a list)."""
    values: dict = {}
    for name, raw in fields.items():
        types = _schema_types(definition, name)
        value = raw
        if types and "string" not in types:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            else:
                kind = _json_type(parsed)
                if kind in types or (kind == "integer" and "number" in types):
                    value = parsed
        values[name] = value
    return values


def _media_root() -> Path:
    return Path(settings.MEDIA_ROOT)


def _store_upload(organization_id: str, file_id: str, upload: Upload) -> tuple[str, str, int]:
    """Write the upload under MEDIA_ROOT/<org>/<file id> (via a temporary name, so a reader never sees
    half a file); return (storage path relative to MEDIA_ROOT, sha256, size)."""
    limit = settings.BATON_MAX_UPLOAD_BYTES
    if (getattr(upload.file, "size", 0) or 0) > limit:
        raise _too_large(limit)
    directory = _media_root() / organization_id
    directory.mkdir(parents=True, exist_ok=True)
    final, partial = directory / file_id, directory / f".{file_id}.part"
    digest, size = hashlib.sha256(), 0
    try:
        with open(partial, "xb") as out:
            for chunk in upload.file.chunks():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return f"{organization_id}/{file_id}", digest.hexdigest(), size


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        "payload_too_large",
        f"The attachment is larger than {limit} bytes.",
        details={"max_bytes": limit},
    )


def run_file_path(run_file: RunFile) -> Path | None:
    """The stored bytes of an attachment, or None when the path would leave MEDIA_ROOT or is missing."""
    root = _media_root().resolve()
    path = (root / run_file.storage_path).resolve()
    if root not in path.parents or not path.is_file():
        return None
    return path


def _remove_files(storage_paths: Iterable[str]) -> None:
    root = _media_root().resolve()
    for storage_path in storage_paths:
        path = (root / storage_path).resolve()
        if root in path.parents:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                logger.warning("Could not remove the attachment file %s", storage_path, exc_info=True)


def run_trigger(
    *,
    workflow: Workflow,
    actor,
    version_spec: str | int = "latest",
    input_data: dict | None = None,
    form_fields: Mapping[str, str] | None = None,
    upload: Upload | None = None,
    metadata: dict | None = None,
    env: str | None = None,
    dry_run: bool = False,
    model: str = "",
) -> Run:
    """Trigger a run from the API: check the workflow can run (404 archived, 409 paused), pick the
    version, check the LLM provider and the monthly quota, store the attachment, and create the run
    (runs.services.run_create). Either everything is written or nothing is: a failed creation
    removes the stored file."""
    from workflows.selectors import workflow_version_get

    if workflow.status == WorkflowStatus.ARCHIVED:
        raise not_found("workflow", workflow.id)
    if workflow.status == WorkflowStatus.PAUSED:
        raise Conflict("workflow_disabled", f"Workflow {workflow.id} is paused: activate it to trigger runs.")
    version = workflow_version_get(workflow=workflow, spec=version_spec)
    organization = workflow.organization
    if uses_agents(version.definition.get("steps")) and _organization_has_llm_provider(organization) is False:
        raise InvalidRequest(
            "no_llm_provider",
            "This workflow has agent steps and the organisation has no LLM provider: add one first.",
        )
    _check_quota(organization, agents=uses_agents(version.definition.get("steps")))

    values = dict(input_data or {})
    if form_fields:
        for name, value in form_input(version.definition, form_fields).items():
            if name in values:
                raise InvalidRequest(
                    "invalid_request",
                    f"Input '{name}' is given twice (as a form field and in the input object).",
                    details={"fields": {name: ["Given twice."]}},
                )
            values[name] = value
    if upload is not None and "attachment" in values:
        raise InvalidRequest(
            "invalid_request",
            "The input already has an 'attachment' value; it is reserved for the uploaded file.",
            details={"fields": {"attachment": ["Reserved for the uploaded file."]}},
        )

    stored = None
    file_id = new_id("file")
    if upload is not None:
        stored = _store_upload(organization.id, file_id, upload)
    try:
        # The file's row joins the run's transaction; without one, run_create's own is the transaction (an
        # outer one would only add a savepoint: two more round trips per trigger).
        with transaction.atomic() if stored is not None else nullcontext():
            if stored is not None:
                storage_path, sha256, size = stored
                values["attachment"] = {
                    "file_id": file_id,
                    "name": upload.name,
                    "size": size,
                    "content_type": upload.content_type,
                    "sha256": sha256,
                }
            try:
                run = run_create(
                    workflow=workflow,
                    actor=actor,
                    version=version,
                    input_data=values,
                    metadata=metadata,
                    env=env,
                    dry_run=dry_run,
                    model=model,
                )
            except Unprocessable as exc:
                raise _with_field_errors(exc, version.definition, values) from None
            if stored is not None:
                RunFile.objects.create(
                    id=file_id,
                    run=run,
                    organization=organization,
                    name=upload.name,
                    size=size,
                    content_type=upload.content_type,
                    sha256=sha256,
                    storage_path=storage_path,
                )
    except BaseException:
        if stored is not None:
            _remove_files([stored[0]])
        raise
    return run


def _with_field_errors(exc: Unprocessable, definition: dict, values: dict) -> Unprocessable:
    """invalid_input with `details.fields` ({input path: [messages]}) next to run_create's sentences."""
    if exc.code != "invalid_input":
        return exc
    fields = people.field_errors(
        Draft202012Validator(input_schema(definition)).iter_errors(values), root="input"
    )
    details = {**(exc.details or {}), "fields": fields}
    return Unprocessable(exc.code, exc.message, details=details)


@transaction.atomic
def run_delete(*, run: Run, actor) -> None:
    """Delete a terminal run with its steps, events and attachments (the files' bytes go after the
    commit); audited as run.deleted. An active run → Conflict run_active."""
    locked = Run.objects.select_for_update().filter(pk=run.pk).first()
    if locked is None:
        raise not_found("run", run.id)
    if not locked.is_terminal:
        raise Conflict("run_active", f"Run {run.id} is {locked.status}: cancel it before deleting it.")
    _delete_locked(run.organization, [locked], actor, bulk=False)


def _delete_locked(organization, runs: list[Run], actor, *, bulk: bool) -> None:
    """Audit and delete these locked, terminal runs; their files are removed once the transaction commits."""
    ids = [run.pk for run in runs]
    paths = list(RunFile.objects.filter(run_id__in=ids).values_list("storage_path", flat=True))
    for run in runs:
        data = {"workflow_id": run.workflow_id, "status": run.status}
        if bulk:
            data["bulk"] = True
        audit_record(
            organization=organization, event="run.deleted", actor=actor, target=("run", run.pk),
            data=data, run_id=run.pk,
        )  # fmt: skip
    # Iterations first: the parent link cascades, and deleting children up front keeps the collector flat.
    StepRun.objects.filter(run_id__in=ids, parent__isnull=False).delete()
    Run.objects.filter(pk__in=ids).delete()
    if paths:
        transaction.on_commit(lambda: _remove_files(paths))


@transaction.atomic
def run_pin_set(*, run: Run, actor, pinned: bool) -> Run:
    """Pin (retention never removes it) or unpin a run; audited as run.pinned / run.unpinned when it
    changes (setting the current value again is a no-op)."""
    changed = Run.objects.filter(pk=run.pk).exclude(pinned=pinned).update(pinned=pinned)
    if changed:
        audit_record(
            organization=run.organization,
            event="run.pinned" if pinned else "run.unpinned",
            actor=actor,
            target=("run", run.pk),
            run_id=run.pk,
        )
    run.pinned = pinned
    return run


@dataclass(frozen=True)
class BulkResult:
    matched: int
    affected: int
    remaining: int

    def as_dict(self) -> dict:
        return {"matched": self.matched, "affected": self.affected, "remaining": self.remaining}


def _bulk_queryset(organization, ids, filters):
    from runs.selectors import run_filter, runs_of

    queryset = runs_of(organization)
    if ids is not None:
        return queryset.filter(pk__in=list(dict.fromkeys(ids)))
    return run_filter(queryset, filters)


def runs_bulk_cancel(
    *, organization, actor, ids: list[str] | None = None, filters=None, reason: str = ""
) -> BulkResult:
    """Cancel the active runs among `ids` (or matching `filters`; at most BULK_FILTER_MAX per call, and
    no new ones after BULK_TIME_BUDGET_SECONDS).
    `matched` counts every run found, `affected` those this call asked to stop, `remaining` the active
    runs still to do (repeat the call while it is above 0). Each cancel is audited as run.cancelled."""
    queryset = _bulk_queryset(organization, ids, filters)
    matched = queryset.count()
    eligible = queryset.filter(status__in=sorted(RUN_ACTIVE), cancel_requested_at__isnull=True)
    affected = 0
    deadline = time.monotonic() + BULK_TIME_BUDGET_SECONDS
    for run in eligible.order_by("-created_at", "-id")[:BULK_FILTER_MAX]:
        if time.monotonic() > deadline:
            break
        try:
            run_cancel(run=run, actor=actor, reason=reason)
        except Conflict:
            continue  # finished in the meantime
        affected += 1
    return BulkResult(matched=matched, affected=affected, remaining=eligible.count())


def runs_bulk_delete(*, organization, actor, ids: list[str] | None = None, filters=None) -> BulkResult:
    """Delete the terminal runs among `ids` (or matching `filters`; at most BULK_FILTER_MAX per call, and
    no new chunk after BULK_TIME_BUDGET_SECONDS);
    active runs are skipped (`matched` counts them, `affected` does not). `remaining` is the number of
    terminal matching runs left for another call. Each deletion is audited as run.deleted."""
    queryset = _bulk_queryset(organization, ids, filters)
    matched = queryset.count()
    eligible = queryset.filter(status__in=sorted(RUN_TERMINAL))
    candidates = list(eligible.order_by("-created_at", "-id").values_list("pk", flat=True)[:BULK_FILTER_MAX])
    affected = 0
    deadline = time.monotonic() + BULK_TIME_BUDGET_SECONDS
    for start in range(0, len(candidates), _BULK_CHUNK):
        if time.monotonic() > deadline:
            break
        chunk = candidates[start : start + _BULK_CHUNK]
        with transaction.atomic():
            locked = list(
                Run.objects.select_for_update()
                .filter(pk__in=chunk, status__in=sorted(RUN_TERMINAL))
                .order_by("pk")
            )
            if locked:
                _delete_locked(organization, locked, actor, bulk=True)
            affected += len(locked)
    return BulkResult(matched=matched, affected=affected, remaining=eligible.count())


# Approvals, input steps, pause, resume and rerun, under the name every caller imports them by.
from runs.people import run_collect_inputs, run_decide  # noqa: E402, F401
from runs.resume import run_pause, run_rerun, run_resume  # noqa: E402, F401
