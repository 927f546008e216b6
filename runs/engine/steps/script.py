"""`script`: run Python or shell code in a sandboxed child process. Input arrives as JSON on stdin."""

from .base import StepType, object_schema, string, timeout_seconds

CODE_MAX_BYTES = 64 * 1024
ENV_MAX = 50


def _check(config):
    size = len(config["code"].encode("utf-8"))
    if size > CODE_MAX_BYTES:
        yield f"config.code is {size} bytes, over the limit of {CODE_MAX_BYTES} bytes"


STEP_TYPE = StepType(
    name="script",
    description="Run python or shell code in a sandbox; stdin is JSON {inputs, steps, run}.",
    config_schema=object_schema(
        {
            "language": {"enum": ["python", "shell"]},
            "code": string(CODE_MAX_BYTES, min_length=1),
            "timeout_seconds": timeout_seconds(),
            "env": {
                "type": "object",
                "maxProperties": ENV_MAX,
                "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"},
                "additionalProperties": string(8192),
            },
        },
        required=["language", "code"],
    ),
    check=_check,
    # The code is passed as written (never rendered): data reaches it through stdin, not string splicing.
    literal_fields=frozenset({"code"}),
    has_side_effects=True,
)
