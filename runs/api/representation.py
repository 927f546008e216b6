"""The run object (API.md "Runs") written out by hand: the same output as `RunSerializer` and
`RunDetailSerializer` (runs/api/serializers.py), which remain the documented shape (OpenAPI) and the
reference that `tests/runs/api/test_representation.py` compares this with, run by run.

Why: DRF builds every serializer's fields anew for each object (a deep copy of each declared field), so
the detail of a 5-step run spent about half its server time in serializers. Plain functions over the same
rows give the same JSON several times faster. Any field added to the serializers must be added here too:
the comparison test fails until it is.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings
from django.utils import timezone
from rest_framework.settings import api_settings

from runs import selectors
from runs.choices import STEP_IN_FLIGHT
from runs.fastpaths import Row
from runs.models import Run, StepRun


def _datetime(value, zone) -> str | None:
    """DRF's DateTimeField output: DATETIME_FORMAT in `zone`, the current time zone (looked up once per
    object by the callers: the lookup costs more than the formatting)."""
    if not value:
        return None
    return value.astimezone(zone).strftime(api_settings.DATETIME_FORMAT)


def duration_ms(started, completed) -> int | None:  # also the serializers' (runs/api/serializers.py)
    if started is None or completed is None:
        return None
    return max(int((completed - started).total_seconds() * 1000), 0)


_PROMPT = ("prompt", "prompt_tokens", "input", "input_tokens")
_COMPLETION = ("completion", "completion_tokens", "output", "output_tokens")
_TOTAL = ("total", "total_tokens")
_NUMBERS = (int, float)


def _count(raw: Mapping, names: tuple[str, ...]) -> int:
    """The first of `names` that holds a number (not a boolean), as an int; else 0."""
    for name in names:
        value = raw.get(name)
        if isinstance(value, _NUMBERS) and not isinstance(value, bool):
            return int(value)
    return 0


def token_counts(raw) -> dict:
    """A step's `tokens` as API.md shows them: prompt, completion, total (providers name them variously)."""
    if not raw or not isinstance(raw, Mapping):
        return {"prompt": 0, "completion": 0, "total": 0}
    prompt = _count(raw, _PROMPT)
    completion = _count(raw, _COMPLETION)
    total = _count(raw, _TOTAL) or prompt + completion
    return {"prompt": prompt, "completion": completion, "total": total}


def _attempt(entry: Mapping) -> dict:
    started_at = entry.get("started_at")
    return {
        "attempt": int(entry["attempt"]),
        "status": str(entry["status"]),
        "error": entry.get("error"),
        "duration_ms": int(entry["duration_ms"]),
        "started_at": None if started_at is None else str(started_at),
    }


def _step_common(row: StepRun, zone) -> dict:
    return {
        "type": row.type,
        "status": row.status,
        "attempt": row.attempt,
        "attempts": [_attempt(entry) for entry in row.attempts or ()],
        "input_data": row.input_data,
        "output_data": row.output_data,
        "error": row.error,
        "skip_reason": row.skip_reason or None,
        "started_at": _datetime(row.started_at, zone),
        "completed_at": _datetime(row.completed_at, zone),
        "duration_ms": duration_ms(row.started_at, row.completed_at),
        "tokens": token_counts(row.tokens),
        "cost_usd": float(row.cost_usd),
    }


def iteration_data(row: StepRun, zone=None) -> dict:
    """StepIterationSerializer's output."""
    zone = zone or timezone.get_current_timezone()
    return {"id": row.id, "iteration": row.iteration, **_step_common(row, zone)}


def step_data(row: StepRun, found: selectors.RunSteps, zone=None) -> dict:
    """StepSerializer's output; loop steps carry their iteration count and first iterations."""
    zone = zone or timezone.get_current_timezone()
    data = {"id": row.id, **_step_common(row, zone), "step_id": row.step_id, "name": row.name}
    if row.type == "loop":
        data["iteration_count"] = found.iteration_counts.get(row.id, 0)
        data["iterations"] = [iteration_data(child, zone) for child in found.iterations.get(row.id, [])]
    return data


def run_data(run: Run, current_step_ids: list[str], zone=None) -> dict:
    """RunSerializer's output (a run in lists)."""
    zone = zone or timezone.get_current_timezone()
    return {
        "id": run.id,
        "workflow_id": run.workflow_id,
        "workflow_name": run.workflow_name,
        "workflow_version": run.version_number,
        "status": run.status,
        "trigger": run.trigger,
        "input_data": run.input_data,
        "metadata": {str(key): value for key, value in run.metadata.items()},
        "env": run.env,
        "dry_run": bool(run.dry_run),
        "model": run.model or None,
        "result": run.result,
        "error": run.error,
        "parent_run_id": run.parent_run_id,
        "pinned": bool(run.pinned),
        "pause_signal": run.pause_signal,
        "triggered_by": (
            {"type": run.triggered_by_type or "system", "id": run.triggered_by} if run.triggered_by else None
        ),
        "created_at": _datetime(run.created_at, zone),
        "started_at": _datetime(run.started_at, zone),
        "completed_at": _datetime(run.completed_at, zone),
        "duration_ms": duration_ms(run.started_at, run.completed_at),
        "total_tokens": run.total_tokens,
        "cost_usd": float(run.cost_usd),
        "step_count": run.step_count,
        "current_step_ids": current_step_ids,
    }


def run_detail(run: Run | Row, found: selectors.RunSteps | None = None) -> dict:
    """RunDetailSerializer's output for a run from selectors.run_get(for_detail=True), or for the row and
    steps of selectors.run_shown; `found`: its steps when in hand (else read)."""
    found = selectors.run_steps(run=run) if found is None else found
    run.step_count = len(found.steps)
    current = [row.step_id for row in found.steps if row.status in STEP_IN_FLIGHT]
    child_run_ids = []
    if getattr(run, "has_children", True):  # annotated by run_get(for_detail=True)
        children = Run.objects.filter(parent_run_id=run.id).order_by("created_at", "id")
        child_run_ids = list(children.values_list("id", flat=True)[:1000])  # at most 1,000 (API.md)
    zone = timezone.get_current_timezone()
    return {
        **run_data(run, current, zone),
        "steps": [step_data(row, found, zone) for row in found.steps],
        "child_run_ids": child_run_ids,
    }


def created_run_detail(run: Run) -> dict | None:
    """The detail of a run `run_create` just created and committed, from the objects in hand (no query):
    the run as that transaction left it. None when those may not be what the database holds, and the
    caller reads the run instead:
    - with inline dispatch, this process executed the ready steps after the commit;
    - a run that finished at once (a failing `when`, the policy's step limit) had its unstarted steps
      cancelled by an UPDATE, not through the rows in hand.
    Steps started by workers since the commit show in the next read, as they would a moment later."""
    rows = run.created_steps
    if rows is None or run.is_terminal or settings.BATON_ENGINE_DISPATCH == "inline":
        return None
    run.workflow_name = run.workflow.name
    run.version_number = run.workflow_version.number
    run.has_children = False
    loops = [row.id for row in rows if row.type == "loop"]  # a loop has no iteration before it starts
    found = selectors.RunSteps(
        steps=list(rows),
        iterations={row_id: [] for row_id in loops},
        iteration_counts=dict.fromkeys(loops, 0),
    )
    return run_detail(run, found)
