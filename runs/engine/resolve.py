"""What a step's handler is given: the run's template variables and the step's resolved config."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from runs.choices import STEP_FINISHED
from runs.engine import secrets as engine_secrets
from runs.engine.context import StepError
from runs.engine.plan import Plan
from runs.engine.templating import evaluate_expression, render_value
from runs.models import Run, StepRun
from workflows.steps import get_step_type


def iso(moment) -> str | None:
    """A timestamp as stored in events and step state (`…Z`), or None."""
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def variables_for(run: Run, plan: Plan, rows: list[StepRun] | None = None) -> dict:
    """The template variables of a run: inputs, steps.<id>.{output,status,error}, run, env, secrets.
    `rows`: the run's top-level rows in hand (else they are read)."""
    if rows is None:
        rows = list(
            StepRun.objects.filter(run_id=run.id, parent__isnull=True, status__in=STEP_FINISHED).only(
                "step_id", "status", "output_data", "error"
            )
        )
    steps = {
        row.step_id: {"output": row.output_data, "status": row.status, "error": row.error}
        for row in rows
        if row.status in STEP_FINISHED
    }
    return {
        "inputs": run.input_data,
        "steps": steps,
        "run": {
            "id": run.id,
            "workflow_id": run.workflow_id,
            "workflow_version": plan.version,
            "trigger": run.trigger,
            "env": run.env,
            "dry_run": run.dry_run,
            "metadata": run.metadata,
            "created_at": iso(run.created_at),
            "started_at": iso(run.started_at),
        },
        "env": run.env,
        # Loaded on first use, once per step execution (runs/engine/secrets.py); unknown names are errors.
        "secrets": engine_secrets.lazy_secrets(run.organization_id),
    }


def _json_default(value):
    if isinstance(value, range | tuple | set | frozenset):
        return list(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def as_json(value: Any, step_id: str, what: str) -> Any:
    """`value` as plain JSON (ranges and tuples become lists); StepError when it cannot be stored."""
    try:
        return json.loads(json.dumps(value, default=_json_default, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise StepError("invalid_output", f"Step '{step_id}' {what} cannot be stored as JSON: {exc}",
                        retryable=False) from None  # fmt: skip


def template_error(step_id: str, where: str, exc: Exception) -> StepError:
    detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return StepError("template_error", f"Step '{step_id}' {where}: {detail}", retryable=False)


def resolve_config(step: dict, variables: dict) -> dict:
    """The step's config with templates rendered and expression fields evaluated (raises StepError)."""
    step_type = get_step_type(step["type"])
    config = step.get("config") or {}
    resolved = {}
    for key, value in config.items():
        if step_type is None or key in step_type.literal_fields or (step["type"] == "loop" and key == "step"):
            resolved[key] = value
            continue
        try:
            if key in step_type.expression_fields and isinstance(value, str):
                resolved[key] = evaluate_expression(value, variables)
            else:
                resolved[key] = render_value(value, variables)
        except Exception as exc:
            raise template_error(step["id"], f"config.{key}", exc) from None
    return resolved


def has_side_effects(step_type_name: str, config: dict) -> bool:
    """Would executing this step change the world outside Baton? (dry runs skip such steps)"""
    step_type = get_step_type(step_type_name)
    if step_type is None or not step_type.has_side_effects:
        return False
    if step_type_name == "http_request":
        return str(config.get("method", "GET")).upper() not in ("GET", "HEAD")
    return True
