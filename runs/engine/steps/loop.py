"""`loop`: run one inline step per item of a list, with bounded concurrency.

The inline step (`type`, `config`, `name`) is checked against its own type by the definition validator.
"""

from runs.engine.context import StepContext, StepError, StepOutcome
from workflows.steps import StepType, integer, object_schema, string

MAX_ITEMS = 10_000
MAX_CONCURRENCY = 50
DEFAULT_MAX_ITEMS = 1000
DEFAULT_MAX_CONCURRENCY = 1


def execute(context: StepContext) -> StepOutcome:
    items = context.config["items"]
    if isinstance(items, tuple | range):
        items = list(items)
    if not isinstance(items, list):
        raise StepError(
            "loop_items_invalid",
            f"Step '{context.step_id}' config.items must give a list, not {type(items).__name__}.",
            retryable=False,
        )
    limit = context.config.get("max_items", DEFAULT_MAX_ITEMS)
    if len(items) > limit:
        raise StepError(
            "loop_too_many_items",
            f"Step '{context.step_id}' has {len(items)} items, more than its max_items ({limit}).",
            retryable=False,
        )
    return StepOutcome.spawn_iterations(items)


STEP_TYPE = StepType(
    name="loop",
    description="Run an inline step for each item (as `item`, `index`); output is {items: [...]}.",
    config_schema=object_schema(
        {
            "items": {"oneOf": [string(4096, min_length=1), {"type": "array", "maxItems": MAX_ITEMS}]},
            "step": object_schema(
                {"type": {"type": "string"}, "config": {"type": "object"}, "name": string(200)},
                required=["type"],
            ),
            "max_concurrency": integer(1, MAX_CONCURRENCY),
            "max_items": integer(1, MAX_ITEMS),
        },
        required=["items", "step"],
    ),
    expression_fields=frozenset({"items"}),
    allowed_in_loop=False,
    execute=execute,
)
