"""`input`: pause until someone submits data matching a JSON Schema (`/resume` collect_inputs)."""

from .base import LONG_WAIT_SECONDS_MAX, StepType, check_json_schema, object_schema, string, timeout_seconds


def _check(config):
    if "schema" in config:
        yield from check_json_schema(config["schema"], "config.schema")


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
)
