"""`agent_task`: ask an LLM agent (a saved agent, or a model with a system prompt) to reach a goal."""

from .base import StepType, check_json_schema, integer, object_schema, string


def _check(config):
    if "goal" in config and "prompt" in config:
        yield "config may set goal or prompt, not both"
    elif "goal" not in config and "prompt" not in config:
        yield "config needs a goal (or a prompt)"
    if "output_schema" in config:
        yield from check_json_schema(config["output_schema"], "config.output_schema")


STEP_TYPE = StepType(
    name="agent_task",
    description="Run an LLM agent on a goal; output is {content, data?, model, tokens}.",
    config_schema=object_schema(
        {
            "agent_id": string(200, min_length=1),
            "model": string(200, min_length=1),
            "provider_id": string(200, min_length=1),
            "system_prompt": string(),
            "goal": string(min_length=1),
            "prompt": string(min_length=1),
            "input": {},
            "output_schema": {"type": "object"},
            "max_tokens": integer(1, 200_000),
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        }
    ),
    check=_check,
    literal_fields=frozenset({"output_schema"}),
    has_side_effects=True,
)
