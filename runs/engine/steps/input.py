"""`input`: pause until someone submits data matching a JSON Schema (`/resume` collect_inputs), holding no
worker (docs/approvals.md).

First execution: the step suspends as `awaiting_input` (the run shows a `pause_signal` with the schema).
`runs.services.run_collect_inputs` validates the answer, stores it in the step run's `state` and requeues
the step; this handler then outputs it. A timeout (`timeout_seconds`, fired by the reconciler) fails the
step with `input_timeout`.
"""

from datetime import timedelta

from runs.engine.context import StepContext, StepError, StepOutcome
from workflows.steps import (
    LONG_WAIT_SECONDS_MAX,
    StepType,
    check_json_schema,
    object_schema,
    string,
    timeout_seconds,
)


def _check(config):
    if "schema" in config:
        yield from check_json_schema(config["schema"], "config.schema")


def execute(context: StepContext) -> StepOutcome:
    """Suspend for a person the first time; once answered, output the data given."""
    state = context.state
    answered = state.get("outcome")
    if answered is None:
        timeout = context.config.get("timeout_seconds")
        signal = {"type": "collect_inputs", "step_id": context.step_id, "message": context.config["message"]}
        if "schema" in context.config:
            signal["schema"] = context.config["schema"]
        return StepOutcome.suspended(
            wake_at=context.now + timedelta(seconds=timeout) if timeout else None,
            state={"awaiting": "input", "signal": signal, "since": context.now.isoformat()},
        )
    if answered == "provided":
        return StepOutcome.completed(state.get("data"))
    raise StepError(
        "input_timeout",
        f"Step '{context.step_id}' received no input within {context.config.get('timeout_seconds')} s.",
        retryable=False,
    )


STEP_TYPE = StepType(
    name="input",
    description="Pause until someone provides data matching `schema`; output is that data.",
    config_schema=object_schema(
        {
            "message": string(4000, min_length=1),
            "schema": {"type": "object"},
            "timeout_seconds": timeout_seconds(LONG_WAIT_SECONDS_MAX),
        },
        required=["message"],
    ),
    check=_check,
    literal_fields=frozenset({"schema"}),
    allowed_in_loop=False,
    # Not a side effect, but a dry run must not ask people for data: it is skipped like one.
    has_side_effects=True,
    execute=execute,
)
