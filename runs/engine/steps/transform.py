"""`transform`: compute a value from templates (no side effects)."""

from runs.engine.context import StepContext, StepOutcome
from workflows.steps import StepType, object_schema


def execute(context: StepContext) -> StepOutcome:
    return StepOutcome.completed(context.config["value"])


STEP_TYPE = StepType(
    name="transform",
    description="Render `value` (any JSON with templates inside); output is the rendered value.",
    config_schema=object_schema({"value": {}}, required=["value"]),
    instant=True,
    execute=execute,
)
