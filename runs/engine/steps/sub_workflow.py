"""`sub_workflow`: start a run of another workflow of the same organisation."""

from .base import StepType, integer, object_schema, string

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
)
