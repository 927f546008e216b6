"""`end`: finish the run at once with a status and an output."""

from runs.engine.context import StepContext, StepOutcome
from workflows.steps import StepType, object_schema, string


def execute(context: StepContext) -> StepOutcome:
    status = context.config.get("status", "completed")
    message = context.config.get("message") or (f"The run was ended as failed by step '{context.step_id}'.")
    return StepOutcome.end_run(status=status, output=context.config.get("output"), message=message)


STEP_TYPE = StepType(
    name="end",
    description="End the run as completed or failed, with an optional output (and message when failed).",
    config_schema=object_schema(
        {"status": {"enum": ["completed", "failed"]}, "output": {}, "message": string(4000)}
    ),
    allowed_in_loop=False,
    instant=True,
    execute=execute,
)
