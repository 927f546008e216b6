"""`sub_workflow`: start a run of another workflow of the same organisation."""

from runs.engine.context import StepContext, StepOutcome
from workflows.steps import StepType, integer, object_schema, string


def execute(context: StepContext) -> StepOutcome:
    """Start the child run (once per step run), wait for it without a worker, return its result."""
    from runs.engine.subworkflows import execute as run_sub_workflow  # models: imported on first use

    return run_sub_workflow(context)


STEP_TYPE = StepType(
    name="sub_workflow",
    description="Run another workflow (id or slug); output is the child run's result.",
    config_schema=object_schema(
        {
            "workflow": string(200, min_length=1),
            "input": {"type": ["object", "string"]},
            "version": {"oneOf": [{"enum": ["latest", "published"]}, integer(1, 1_000_000)]},
            "wait": {"type": "boolean"},
        },
        required=["workflow"],
    ),
    has_side_effects=True,
    execute=execute,
)
