"""`condition`: evaluate an expression and skip the branch not taken."""

from runs.engine.context import StepContext, StepOutcome
from workflows.steps import StepType, object_schema, string

_BRANCH = {
    "type": "array",
    "items": {"type": "string"},
    "uniqueItems": True,
    "maxItems": 200,
}


def _check(config):
    overlap = sorted(set(config.get("then", [])) & set(config.get("else", [])))
    for step_id in overlap:
        yield f"config lists '{step_id}' in both then and else"


def execute(context: StepContext) -> StepOutcome:
    # The engine skips the branch not taken when it advances the run (it reads `result`).
    return StepOutcome.completed({"result": bool(context.config["expression"])})


STEP_TYPE = StepType(
    name="condition",
    description="Evaluate an expression; output is {result}; the steps of the branch not taken are skipped.",
    config_schema=object_schema(
        {"expression": string(4096, min_length=1), "then": _BRANCH, "else": _BRANCH},
        required=["expression"],
    ),
    check=_check,
    expression_fields=frozenset({"expression"}),
    allowed_in_loop=False,
    instant=True,
    execute=execute,
)
