"""`agent_task`: ask an LLM agent (a saved agent, or a model with a system prompt) to reach a goal.

The engine has already rendered `goal`/`prompt`, `input` and `system_prompt` (`output_schema` is literal).
The handler picks the agent and provider, builds the prompt (the goal, then `input` as JSON), calls the
provider through runs.engine.llm (the outbound client, under the organisation's policy), checks structured
output against `output_schema` (one corrective retry), and returns `{content, data?, model, tokens}` with
the token counts and the cost from the provider's prices. See docs/llm.md.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from decimal import Decimal

from jsonschema import Draft202012Validator

from accounts.crypto import DecryptionError
from accounts.models import Agent, LlmProvider
from accounts.selectors import default_llm_provider, provider_api_key
from runs import quotas
from runs.engine import llm, slots
from runs.engine.context import StepContext, StepError, StepOutcome
from runs.engine.steps.http_request import outbound_policy
from workflows.steps import StepType, check_json_schema, integer, object_schema, string, timeout_seconds
from workflows.templating import analyze_template, is_template

DEFAULT_MAX_TOKENS = 4096
MAX_PROMPT_CHARS = 1_000_000
RESOLVED_VARIABLES_MAX_CHARS = 64 * 1024  # per variable (inputs, steps.<id>, run, …) in input_data
ERROR_CONTENT_CHARS = 1000
MILLION = Decimal(1_000_000)

JSON_INSTRUCTION = (
    "Respond with only a JSON value that validates against the JSON Schema below: no prose, no Markdown "
    "code fences.\nJSON Schema:\n{schema}"
)
FIX_INSTRUCTION = (
    "Your previous answer was not valid: {problem}. Answer again with only the corrected JSON value that "
    "validates against the JSON Schema."
)


def _check(config):
    if "goal" in config and "prompt" in config:
        yield "config may set goal or prompt, not both"
    elif "goal" not in config and "prompt" not in config:
        yield "config needs a goal (or a prompt)"
    if "output_schema" in config:
        yield from check_json_schema(config["output_schema"], "config.output_schema")


# --- choosing the agent, provider and model ------------------------------------------------------


class _Target:
    def __init__(self, *, provider, agent, model, system_prompt, temperature, max_tokens):
        self.provider = provider
        self.agent = agent
        self.model = model
        self.system_prompt = system_prompt
        self.temperature = temperature
        self.max_tokens = max_tokens


def resolve_target(context: StepContext) -> _Target:
    """The agent, provider, model and sampling settings for this step.

    Model: the run's override > the step's `model` > the agent's > the provider's default. Provider: the
    step's `provider_id` > the agent's > the organisation's first provider. The step's `system_prompt`,
    `temperature` and `max_tokens` win over the agent's."""
    config = context.config
    org_id = context.organization_id
    agent = None
    if config.get("agent_id"):
        agent = (
            Agent.objects.filter(organization_id=org_id, pk=config["agent_id"])
            .select_related("provider")
            .first()
        )
        if agent is None:
            raise StepError(
                "agent_not_found",
                f"Step '{context.step_id}' names agent {config['agent_id']}, which does not exist.",
                retryable=False,
            )
    if config.get("provider_id"):
        provider = LlmProvider.objects.filter(organization_id=org_id, pk=config["provider_id"]).first()
        if provider is None:
            raise StepError(
                "llm_provider_not_found",
                f"Step '{context.step_id}' names LLM provider {config['provider_id']}, which does not exist.",
                retryable=False,
            )
    else:
        provider = (agent.provider if agent is not None else None) or default_llm_provider(org_id)
    if provider is None:
        raise StepError(
            "no_llm_provider",
            f"Step '{context.step_id}' needs an LLM provider and the organisation has none: add one under "
            "/llm-providers.",
            retryable=False,
        )
    model = (
        context.run_model or config.get("model") or (agent.model if agent else "") or provider.default_model
    )
    system_prompt = config.get("system_prompt", agent.system_prompt if agent else "")
    temperature = config.get("temperature", agent.temperature if agent else None)
    max_tokens = config.get("max_tokens") or (agent.max_tokens if agent else None) or DEFAULT_MAX_TOKENS
    return _Target(
        provider=provider,
        agent=agent,
        model=model,
        system_prompt=str(system_prompt or ""),
        temperature=temperature,
        max_tokens=int(max_tokens),
    )


# --- prompt and recorded variables ---------------------------------------------------------------


def _as_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2)


def build_prompt(config) -> str:
    prompt = _as_text(config["goal"] if "goal" in config else config.get("prompt", ""))
    if "input" in config:
        prompt += "\n\nInput (JSON):\n" + json.dumps(config["input"], ensure_ascii=False, indent=2)
    return prompt


def _templates(value):
    if isinstance(value, str):
        if is_template(value):
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _templates(item)
    elif isinstance(value, list):
        for item in value:
            yield from _templates(item)


def _capped(value):
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) <= RESOLVED_VARIABLES_MAX_CHARS:
        return value
    return {"truncated": True, "size": len(text), "preview": text[:ERROR_CONTENT_CHARS]}


def resolved_variables(context: StepContext) -> dict:
    """The template variables the step's config refers to (inputs, the referenced steps, run, env,
    item/index), each capped in size. Secrets are never recorded."""
    raw = {key: value for key, value in (context.step.get("config") or {}).items() if key != "output_schema"}
    names: set[str] = set()
    step_ids: set[str] = set()
    every_step = False
    for source in _templates(raw):
        info = analyze_template(source)
        names |= info.names
        step_ids |= info.step_refs
        every_step = every_step or info.dynamic_step_refs
    variables = context.variables
    recorded: dict = {}
    for name in ("inputs", "run", "env", "item", "index"):
        if name in names and name in variables:
            recorded[name] = _capped(variables[name])
    if "steps" in names:
        steps = variables.get("steps") or {}
        wanted = sorted(steps) if every_step else sorted(step_ids & set(steps))
        recorded["steps"] = {step_id: {"output": _capped(steps[step_id].get("output"))} for step_id in wanted}
    return recorded


# --- structured output ---------------------------------------------------------------------------

_FENCE = re.compile(r"^```(?:json|JSON)?\s*\n?(.*?)\n?```$", re.DOTALL)


def parse_structured(content: str, validator: Draft202012Validator):
    """(data, None) when the content is JSON valid against the schema, else (None, the problem)."""
    text = content.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        data = json.loads(text)
    except ValueError as exc:
        return None, f"it is not JSON ({exc})"
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        problems = []
        for error in errors[:5]:
            where = "/".join(str(part) for part in error.absolute_path) or "(root)"
            problems.append(f"at {where}: {error.message}")
        return None, "it does not match the JSON Schema (" + "; ".join(problems) + ")"
    return data, None


# --- the handler ---------------------------------------------------------------------------------


def _cost(provider, model: str, prompt_tokens: int, completion_tokens: int) -> Decimal:
    input_price, output_price = provider.prices_for(model)
    cost = (Decimal(prompt_tokens) * input_price + Decimal(completion_tokens) * output_price) / MILLION
    return cost.quantize(Decimal("0.000001"))


def _deadline(context: StepContext) -> float:
    return time.monotonic() + (context.deadline - datetime.now(UTC)).total_seconds()


def execute(context: StepContext) -> StepOutcome:
    config = context.config
    target = resolve_target(context)
    provider = target.provider
    prompt = build_prompt(config)
    schema = config.get("output_schema")
    system = target.system_prompt
    if schema is not None:
        instruction = JSON_INSTRUCTION.format(schema=json.dumps(schema, ensure_ascii=False))
        system = f"{system}\n\n{instruction}" if system else instruction
    record = {
        "prompt": prompt,
        "system_prompt": system,
        "resolved_variables": resolved_variables(context),
        "model": target.model,
        "provider_id": provider.id,
        "agent_id": target.agent.id if target.agent else None,
    }
    usage = {"prompt": 0, "completion": 0}

    def fail(error: StepError) -> StepError:
        error.input_extra = record
        if usage["prompt"] or usage["completion"]:
            # The engine adds a failed attempt's tokens and cost to the step's and the run's totals.
            priced = target.model if target.model in (provider.model_prices or {}) else reported_model
            cost = _cost(provider, priced, usage["prompt"], usage["completion"])
            error.details = {**error.details, "tokens": _tokens(usage), "cost_usd": float(cost)}
        return error

    if len(prompt) > MAX_PROMPT_CHARS:
        raise fail(
            StepError(
                "prompt_too_large",
                f"Step '{context.step_id}' prompt is {len(prompt)} characters, over {MAX_PROMPT_CHARS}.",
                retryable=False,
            )
        )
    try:
        policy = outbound_policy(context)
    except StepError as exc:
        raise fail(exc) from None
    deadline = _deadline(context)
    try:
        api_key = provider_api_key(provider)
    except DecryptionError:
        message = (
            f"The API key of LLM provider {provider.id} cannot be decrypted with the configured encryption "
            "keys (BATON_ENCRYPTION_KEYS / SECRET_KEY changed?); set the key again."
        )
        raise fail(StepError("llm_key_unreadable", message, retryable=False)) from None
    messages = [{"role": "user", "content": prompt}]
    reported_model = target.model

    def ask(messages):
        nonlocal reported_model
        # The monthly token quota and the policy's max_tokens_per_run (runs/quotas.py): fails, or clips.
        max_tokens = quotas.call_max_tokens(
            context, target.max_tokens, spent=usage["prompt"] + usage["completion"]
        )
        call = llm.LlmCall(
            kind=provider.kind,
            base_url=provider.base_url,
            api_key=api_key,
            model=target.model,
            system=system,
            messages=messages,
            max_tokens=max_tokens,
            temperature=target.temperature,
            json_mode=schema is not None,
        )
        result = llm.complete(
            call,
            deadline=deadline,
            policy=policy,
            timeout_seconds=float(config.get("timeout_seconds") or llm.DEFAULT_TIMEOUT_SECONDS),
            sleep=lambda seconds: _wait(context, seconds),
            should_stop=context.should_stop,
        )
        usage["prompt"] += result.prompt_tokens
        usage["completion"] += result.completion_tokens
        reported_model = result.model or reported_model
        return result

    try:
        result = ask(messages)
        output: dict = {"content": result.content}
        if schema is not None:
            validator = Draft202012Validator(schema)
            data, problem = parse_structured(result.content, validator)
            if problem is not None:
                retry = [
                    *messages,
                    {"role": "assistant", "content": result.content},
                    {"role": "user", "content": FIX_INSTRUCTION.format(problem=problem)},
                ]
                result = ask(retry)
                data, problem = parse_structured(result.content, validator)
                if problem is not None:
                    raise StepError(
                        "invalid_llm_output",
                        f"Step '{context.step_id}': the model's answer was not valid twice; the second time "
                        f"{problem}.",
                        retryable=False,
                        details={"content": result.content[:ERROR_CONTENT_CHARS]},
                    )
            output = {"content": result.content, "data": data}
    except StepError as exc:
        raise fail(exc) from None
    tokens = _tokens(usage)
    output["model"] = reported_model
    output["tokens"] = tokens
    # A per-model price is looked up by the model asked for, else by the one the provider says answered.
    priced = target.model if target.model in (provider.model_prices or {}) else reported_model
    cost = _cost(provider, priced, usage["prompt"], usage["completion"])
    return StepOutcome.completed(output, tokens=tokens, cost_usd=cost, input_extra=record)


def _wait(context: StepContext, seconds: float) -> None:
    """Sleep before an in-call retry, stopping at once when the run is terminated."""
    until = time.monotonic() + seconds
    with slots.network_wait():  # an I/O slot gives its database connection back meanwhile
        _sleep_until(context, until)


def _sleep_until(context: StepContext, until: float) -> None:
    while (left := until - time.monotonic()) > 0:
        if context.should_stop():
            raise StepError(
                "terminated", f"Step '{context.step_id}' stopped: the run was terminated.", retryable=False
            )
        time.sleep(min(left, 0.1))


def _tokens(usage: dict) -> dict:
    return {
        "prompt": usage["prompt"],
        "completion": usage["completion"],
        "total": usage["prompt"] + usage["completion"],
    }


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
            "timeout_seconds": timeout_seconds(),
        }
    ),
    check=_check,
    literal_fields=frozenset({"output_schema"}),
    has_side_effects=True,
    io_bound=True,
    execute=execute,
)
