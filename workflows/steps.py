"""The step-type registry that validation reads: each type's config schema, its checks and flags.

Each type is one module of runs/engine/steps/, which registers its `StepType` (schema and handler) here when
the runs app is ready. Pure Python: no models, no HTTP layer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

# A semantic check receives the step's config (already valid against the JSON Schema) and
# yields problems as sentence fragments; the caller prefixes them with the step's name.
SemanticCheck = Callable[[Mapping[str, Any]], Iterable[str]]

# Limits shared by several step types (documented in docs/workflows.md).
TIMEOUT_SECONDS_MAX = 3600
LONG_WAIT_SECONDS_MAX = 30 * 24 * 3600  # approvals, input requests and waits: up to 30 days
TEMPLATE_MAX_CHARS = 65_536
URL_MAX_CHARS = 8192
HEADERS_MAX = 100


@dataclass(frozen=True)
class StepType:
    """A step type: its name, the JSON Schema (Draft 2020-12) of its `config`, and how to check it.

    `expression_fields` are top-level config keys holding a bare Jinja expression (or a `{{ … }}`
    template); `literal_fields` are config keys never treated as templates (code, JSON Schemas).
    Every other string anywhere in the config is a template.
    """

    name: str
    description: str
    config_schema: dict
    check: SemanticCheck | None = None
    expression_fields: frozenset[str] = field(default_factory=frozenset)
    literal_fields: frozenset[str] = field(default_factory=frozenset)
    allowed_in_loop: bool = True
    # Steps that change the world outside Baton are skipped (with their resolved input) by dry runs.
    has_side_effects: bool = False
    # Pure and quick (no I/O, no waiting, no side effects): the engine executes such a step under the run
    # lock in the transaction that found it ready, instead of claiming it and recording it in transactions
    # of their own (docs/engine.md "Instant steps").
    instant: bool = False
    # Waits on the network (an HTTP call, an LLM): a worker process executes many such steps at once in its
    # I/O slots, BATON_WORKER_CONCURRENCY of them (docs/engine.md "I/O slots").
    io_bound: bool = False
    # The engine's handler: execute(context) -> result.
    execute: Callable[..., Any] | None = None

    @cached_property
    def validator(self) -> Draft202012Validator:
        return Draft202012Validator(self.config_schema)

    def semantic_errors(self, config: Mapping[str, Any]) -> list[str]:
        """Problems the JSON Schema cannot express (only called when the config passes the schema)."""
        return list(self.check(config)) if self.check else []


def object_schema(properties: dict, required: Iterable[str] = (), **extra) -> dict:
    """A closed JSON object schema (additionalProperties false)."""
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    schema.update(extra)
    return schema


def string(max_length: int = TEMPLATE_MAX_CHARS, min_length: int = 0) -> dict:
    schema = {"type": "string", "maxLength": max_length}
    if min_length:
        schema["minLength"] = min_length
    return schema


def integer(minimum: int, maximum: int) -> dict:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


def timeout_seconds(maximum: int = TIMEOUT_SECONDS_MAX) -> dict:
    return integer(1, maximum)


HEADERS_SCHEMA = {
    "type": "object",
    "maxProperties": HEADERS_MAX,
    "propertyNames": {"pattern": r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$"},
    "additionalProperties": string(URL_MAX_CHARS),
}

URL_SCHEMA = string(URL_MAX_CHARS, min_length=1)


def check_json_schema(value: Any, field_name: str) -> list[str]:
    """Sentences for a value that is not a valid Draft 2020-12 JSON Schema."""
    problem = json_schema_problem(value)
    return [f"{field_name} is not a valid JSON Schema{problem}"] if problem else []


def json_schema_problem(value: Any) -> str | None:
    """None for a valid Draft 2020-12 JSON Schema, else " at <path>: <reason>" (or ": <reason>")."""
    try:
        key = json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return ": it is not JSON"
    return _schema_problem(key)


@lru_cache(maxsize=1024)
def _schema_problem(key: str) -> str | None:
    # Checking against the meta-schema costs milliseconds; definitions are validated again on every
    # save, so the verdict is cached by the schema's canonical text.
    try:
        Draft202012Validator.check_schema(json.loads(key))
    except SchemaError as exc:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.path).lstrip(".")
        message = exc.message if len(exc.message) <= 300 else exc.message[:299] + "…"
        return f" at {where}: {message}" if where else f": {message}"
    return None


STEP_TYPES: dict[str, StepType] = {}


def register(step_type: StepType) -> None:
    """Add a step type to the registry (the runs app registers its handlers when it is ready)."""
    STEP_TYPES[step_type.name] = step_type


def get_step_type(name: str) -> StepType | None:
    """The registered step type called `name`, or None."""
    return STEP_TYPES.get(name)
