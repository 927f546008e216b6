"""Workflow definitions: the format of API.md ("Workflow definition") and its validation.

Pure Python (no models, no HTTP). Public interface:

    validate_definition(definition) -> list[str]   every problem as a plain sentence; [] when valid
    input_schema(definition) -> dict               the `inputs` JSON Schema (or an open object schema)
    step_ids(definition) -> list[str]              step ids in definition order
    dependency_graph(definition) -> dict           step id -> its depends_on ids (known ids only)
    dependents(definition) -> dict                 step id -> ids of the steps that depend on it
    find_cycles(graph) -> list[list[str]]          one path per distinct cycle found, e.g. [a, b, a]
    topological_order(definition) -> list[str]     dependencies first; ValueError on a cycle
    upstream_steps(definition, step_id) -> set     every step the step transitively depends on

The graph helpers are meant for definitions that passed validation; they tolerate bad input
(unknown ids, non-dict steps are ignored) but do not report it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from workflows.steps import STEP_TYPES, StepType, json_schema_problem
from workflows.templating import (
    LOOP_NAMES,
    OUTPUT_NAMES,
    STEP_NAMES,
    analyze_expression,
    analyze_template,
    is_template,
)

MAX_STEPS = 200
MAX_DEFINITION_BYTES = 256 * 1024
MAX_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 10_000
MAX_WHEN_CHARS = 4096
MAX_STEP_TIMEOUT_SECONDS = 86_400
STEP_ID_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")

TOP_LEVEL_KEYS = ("name", "description", "inputs", "steps", "output")
STEP_KEYS = ("id", "type", "name", "description", "config", "depends_on", "when", "retry",
             "timeout_seconds", "on_failure")  # fmt: skip
ON_FAILURE = ("fail_run", "continue")
RETRY_LIMITS = {"max_attempts": (1, 10), "backoff_seconds": (0, 3600), "backoff_multiplier": (1, 10)}

_MESSAGE_MAX_CHARS = 300


# ---------------------------------------------------------------------------------------------
# Public helpers


def input_schema(definition: Mapping) -> dict:
    """The definition's `inputs` JSON Schema, or an open object schema when it declares none."""
    schema = definition.get("inputs") if isinstance(definition, Mapping) else None
    return schema if isinstance(schema, dict) and schema else {"type": "object", "properties": {}}


def step_ids(definition: Mapping) -> list[str]:
    """The ids of the definition's steps, in definition order (steps without a string id are left out)."""
    return [step["id"] for step in _steps(definition) if isinstance(step.get("id"), str)]


def dependency_graph(definition: Mapping) -> dict[str, list[str]]:
    """Step id -> the ids it depends on (unknown ids dropped), in definition order."""
    graph: dict[str, list[str]] = {}
    for step in _steps(definition):
        step_id = step.get("id")
        if isinstance(step_id, str) and step_id not in graph:
            graph[step_id] = _dependency_list(step)
    for step_id, deps in graph.items():
        graph[step_id] = [dep for dep in dict.fromkeys(deps) if dep in graph]
    return graph


def dependents(definition: Mapping) -> dict[str, list[str]]:
    """Step id -> the ids of the steps that depend on it directly."""
    graph = dependency_graph(definition)
    result: dict[str, list[str]] = {step_id: [] for step_id in graph}
    for step_id, deps in graph.items():
        for dep in deps:
            result[dep].append(step_id)
    return result


def find_cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """Distinct cycles of a dependency graph, each as a path in execution order that ends where it starts.

    `graph` maps a step to its dependencies; in a returned path `[a, b, a]`, b depends on a and a on b.
    Each back edge met by one depth-first search yields one cycle, so this is O(steps + edges);
    a path starts at the cycle's member that comes first in `graph`'s order.
    """
    order = {node: position for position, node in enumerate(graph)}
    # Walk dependents (execution direction) so that paths read in the order steps would run.
    forward: dict[str, list[str]] = {node: [] for node in graph}
    for node, deps in graph.items():
        for dep in deps:
            if dep in forward:
                forward[dep].append(node)
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    cycles: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    for root in graph:
        if root in state:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(forward[root]))]
        path = [root]
        position = {root: 0}
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                del position[node]
                state[node] = 2
            elif state.get(child) == 1:
                loop = path[position[child] :]
                start = min(range(len(loop)), key=lambda i: order[loop[i]])
                loop = loop[start:] + loop[:start]
                if tuple(loop) not in seen:
                    seen.add(tuple(loop))
                    cycles.append([*loop, loop[0]])
            elif child not in state:
                state[child] = 1
                position[child] = len(path)
                path.append(child)
                stack.append((child, iter(forward[child])))
    return cycles


def topological_order(definition: Mapping) -> list[str]:
    """Step ids with every step after its dependencies (deterministic: a breadth-first Kahn order).

    Raises ValueError naming a cycle when there is one.
    """
    graph = dependency_graph(definition)
    order = _kahn(graph)
    if len(order) != len(graph):
        cycle = find_cycles(graph)[0]
        raise ValueError("Cycle detected: " + " → ".join(cycle))
    return order


def upstream_steps(definition: Mapping, step_id: str) -> set[str]:
    """Every step `step_id` depends on, directly or transitively (itself excluded unless in a cycle)."""
    graph = dependency_graph(definition)
    return _ancestors_of(graph, step_id)


def definition_size(definition: Any) -> int:
    """Size in bytes of the definition as compact UTF-8 JSON (the unit of MAX_DEFINITION_BYTES)."""
    return len(json.dumps(definition, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# Validation


def validate_definition(definition: Any) -> list[str]:
    """Every problem of a workflow definition as a plain sentence, in a stable order; [] when valid."""
    if not isinstance(definition, dict):
        return ["The definition must be a JSON object"]
    try:
        size = definition_size(definition)
    except (TypeError, ValueError):
        return [
            "The definition must contain only JSON values (objects, arrays, strings, numbers, booleans, null)"
        ]
    if size > MAX_DEFINITION_BYTES:
        return [f"The definition is {size:,} bytes of JSON, over the limit of {MAX_DEFINITION_BYTES:,} bytes"]
    return _Validator(definition).run()


class _Validator:
    def __init__(self, definition: dict):
        self.definition = definition
        self.errors: list[str] = []
        self.steps: dict[str, dict] = {}  # first step with each id
        self.labels: list[str] = []  # how each step (by position) is named in sentences
        self.graph: dict[str, list[str]] = {}
        self._ancestors: dict[str, int] | None = None  # step -> bitset of its transitive dependencies
        self._bits: dict[str, int] = {}

    def run(self) -> list[str]:
        self.check_top_level()
        steps = self.definition.get("steps")
        if isinstance(steps, list):
            self.collect_steps(steps)
            self.check_graph()
            for position, step in enumerate(steps):
                if isinstance(step, dict):
                    self.check_step(step, self.labels[position])
        self.check_output()
        return self.errors

    # -- top level ------------------------------------------------------------------------

    def check_top_level(self) -> None:
        d = self.definition
        for key in d:
            if key not in TOP_LEVEL_KEYS:
                self.errors.append(
                    f"Unknown top-level field '{_short(str(key), 80)}' (allowed: {', '.join(TOP_LEVEL_KEYS)})"
                )
        name = d.get("name")
        if name is None:
            self.errors.append("The definition needs a name")
        elif not isinstance(name, str) or not name.strip():
            self.errors.append("The definition's name must be a non-empty string")
        elif len(name) > MAX_NAME_CHARS:
            self.errors.append(f"The definition's name is longer than {MAX_NAME_CHARS} characters")
        description = d.get("description")
        if description is not None and not isinstance(description, str):
            self.errors.append("The definition's description must be a string")
        elif isinstance(description, str) and len(description) > MAX_DESCRIPTION_CHARS:
            self.errors.append(
                f"The definition's description is longer than {MAX_DESCRIPTION_CHARS:,} characters"
            )
        if "inputs" in d:
            self.check_inputs(d["inputs"])
        steps = d.get("steps")
        if steps is None:
            self.errors.append("The definition needs a steps list with at least one step")
        elif not isinstance(steps, list):
            self.errors.append("The definition's steps must be a list")
        elif not steps:
            self.errors.append("The definition needs at least one step")
        elif len(steps) > MAX_STEPS:
            self.errors.append(f"The definition has {len(steps)} steps, over the limit of {MAX_STEPS}")

    def check_inputs(self, inputs: Any) -> None:
        if not isinstance(inputs, dict):
            self.errors.append("The definition's inputs must be a JSON Schema object")
            return
        problem = json_schema_problem(inputs)
        if problem:
            self.errors.append(f"The definition's inputs is not a valid JSON Schema{problem}")
            return
        if inputs.get("type") != "object":
            self.errors.append('The definition\'s inputs schema must have "type": "object"')

    def check_output(self) -> None:
        if "output" not in self.definition:
            return
        for field, value in _strings(self.definition["output"], "output"):
            if not is_template(value):
                continue
            info = analyze_template(value)
            if info.error:
                self.errors.append(f"The output template at {field} does not parse: {info.error}")
                continue
            self.check_names(f"The output template at {field}", info.names, OUTPUT_NAMES)
            for ref in sorted(info.step_refs):
                if ref not in self.steps:
                    self.errors.append(
                        f"The output template at {field} refers to step '{ref}' which doesn't exist"
                    )

    # -- steps and the graph ------------------------------------------------------------------

    def collect_steps(self, steps: list) -> None:
        positions: dict[str, list[int]] = {}
        for position, step in enumerate(steps, start=1):
            label = f"#{position}"
            if not isinstance(step, dict):
                self.errors.append(f"Step #{position} must be an object")
            elif "id" not in step:
                self.errors.append(f"Step #{position} has no id")
            elif not isinstance(step["id"], str):
                self.errors.append(f"Step #{position} has an id that is not a string")
            else:
                step_id = step["id"]
                label = f"'{step_id}'"
                if not STEP_ID_PATTERN.fullmatch(step_id):
                    self.errors.append(
                        f"Step id '{_short(step_id, 80)}' is invalid: use 1 to 64 lowercase letters, digits "
                        f"or underscores, starting with a letter"
                    )
                positions.setdefault(step_id, []).append(position)
                self.steps.setdefault(step_id, step)
            self.labels.append(label)
        for step_id, where in positions.items():
            if len(where) > 1:
                numbers = ", ".join(f"#{n}" for n in where)
                self.errors.append(f"Duplicate step id '{step_id}' (steps {numbers})")
        self.graph = {step_id: [] for step_id in self.steps}
        self._bits = {step_id: 1 << position for position, step_id in enumerate(self.graph)}

    def check_graph(self) -> None:
        for step_id, step in self.steps.items():
            deps = step.get("depends_on")
            if deps is None:
                continue
            if not isinstance(deps, list) or not all(isinstance(dep, str) for dep in deps):
                self.errors.append(f"Step '{step_id}' has a depends_on that is not a list of step ids")
                continue
            counts = Counter(deps)
            for dep, count in counts.items():
                if count > 1:
                    self.errors.append(f"Step '{step_id}' lists '{dep}' more than once in depends_on")
                if dep in self.steps:
                    self.graph[step_id].append(dep)
                else:
                    self.errors.append(f"Step '{step_id}' depends on '{dep}' which doesn't exist")
        for cycle in find_cycles(self.graph):
            self.errors.append("Cycle detected: " + " → ".join(cycle))

    def is_upstream(self, ref: str, step_id: str) -> bool:
        if self._ancestors is None:
            self._ancestors = _ancestor_masks(self.graph)
        bit = self._bits.get(ref)
        return bit is not None and bool(self._ancestors.get(step_id, 0) & bit)

    def check_step(self, step: dict, label: str) -> None:
        step_id = step.get("id") if isinstance(step.get("id"), str) else None
        who = f"Step {label}"
        for key in step:
            if key not in STEP_KEYS:
                self.errors.append(
                    f"{who} has an unknown field '{_short(str(key), 80)}' (allowed: {', '.join(STEP_KEYS)})"
                )
        name = step.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME_CHARS):
            self.errors.append(f"{who} name must be a string of at most {MAX_NAME_CHARS} characters")
        description = step.get("description")
        if description is not None and (
            not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS
        ):
            self.errors.append(
                f"{who} description must be a string of at most {MAX_DESCRIPTION_CHARS:,} characters"
            )
        self.check_policy_fields(step, who)
        if "when" in step:
            when = step["when"]
            if not isinstance(when, str) or not when.strip() or len(when) > MAX_WHEN_CHARS:
                self.errors.append(
                    f"{who} when must be a non-empty expression of at most {MAX_WHEN_CHARS} characters"
                )
            else:
                self.check_text(who, step_id, "when", when, expression=True, names=STEP_NAMES)
        step_type = self.check_type(step, who)
        if step_type is None:
            return
        config = step.get("config", {})
        if not isinstance(config, dict):
            self.errors.append(f"{who} config must be an object")
            return
        valid = self.check_config(who, step_type, config, "config")
        self.check_templates(who, step_id, step_type, config, "config", STEP_NAMES)
        if valid:
            if step_type.name == "condition" and step_id:
                self.check_branches(step_id, config)
            if step_type.name == "loop":
                self.check_loop_step(who, step_id, config["step"])

    def check_policy_fields(self, step: dict, who: str) -> None:
        if "retry" in step:
            retry = step["retry"]
            if not isinstance(retry, dict):
                self.errors.append(
                    f"{who} retry must be an object with max_attempts, backoff_seconds and backoff_multiplier"
                )
            else:
                for key, value in retry.items():
                    if key not in RETRY_LIMITS:
                        self.errors.append(
                            f"{who} retry has an unknown field '{key}' (allowed: {', '.join(RETRY_LIMITS)})"
                        )
                        continue
                    low, high = RETRY_LIMITS[key]
                    integral = key == "max_attempts"
                    if not _is_number(value, integral) or not low <= value <= high:
                        kind = "an integer" if integral else "a number"
                        self.errors.append(f"{who} retry.{key} must be {kind} from {low} to {high}")
        if "timeout_seconds" in step:
            value = step["timeout_seconds"]
            if not _is_number(value, True) or not 1 <= value <= MAX_STEP_TIMEOUT_SECONDS:
                self.errors.append(
                    f"{who} timeout_seconds must be an integer from 1 to {MAX_STEP_TIMEOUT_SECONDS}"
                )
        if "on_failure" in step and step["on_failure"] not in ON_FAILURE:
            self.errors.append(f"{who} on_failure must be one of: {', '.join(ON_FAILURE)}")

    def check_type(self, step: dict, who: str, *, inline: bool = False) -> StepType | None:
        type_name = step.get("type")
        if type_name is None:
            self.errors.append(f"{who} has no type (known types: {', '.join(STEP_TYPES)})")
            return None
        step_type = STEP_TYPES.get(type_name) if isinstance(type_name, str) else None
        if step_type is None:
            self.errors.append(
                f"{who} has unknown type '{_short(str(type_name), 80)}' "
                f"(known types: {', '.join(STEP_TYPES)})"
            )
        return step_type

    def check_config(self, who: str, step_type: StepType, config: dict, prefix: str) -> bool:
        """Schema and semantic checks; True when the config passed the schema."""
        schema_errors = sorted(step_type.validator.iter_errors(config), key=lambda e: list(map(str, e.path)))
        for error in schema_errors:
            field = prefix + "".join(_path_part(part) for part in error.path)
            self.errors.append(f"{who} {field} is invalid: {_short(error.message)}")
        if schema_errors:
            return False
        for problem in step_type.semantic_errors(config):
            if prefix != "config":
                problem = problem.replace("config", prefix, 1)
            self.errors.append(f"{who} {problem}")
        return True

    def check_templates(
        self, who: str, step_id: str | None, step_type: StepType, config: dict, prefix: str, names: frozenset
    ) -> None:
        for key, value in config.items():
            if key in step_type.literal_fields:
                continue
            if step_type.name == "loop" and key == "step":
                continue  # checked with the inline step's own type
            top = f"{prefix}.{key}"
            # Strings nested in an expression field (a literal items list) are templates.
            expression = key in step_type.expression_fields
            for field, text in _strings(value, top):
                self.check_text(
                    who, step_id, field, text, expression=expression and field == top, names=names
                )

    def check_text(
        self, who: str, step_id: str | None, field: str, text: str, *, expression: bool, names: frozenset
    ) -> None:
        if not expression and not is_template(text):
            return
        info = analyze_expression(text) if expression else analyze_template(text)
        if info.error:
            kind = "an expression" if expression else "a template"
            self.errors.append(f"{who} {field} has {kind} that does not parse: {info.error}")
            return
        self.check_names(f"{who} {field}", info.names, names)
        for ref in sorted(info.step_refs):
            if ref not in self.steps:
                self.errors.append(f"{who} {field} refers to step '{ref}' which doesn't exist")
            elif step_id is not None and not self.is_upstream(ref, step_id):
                self.errors.append(
                    f"{who} {field} refers to step '{ref}' which is not upstream of it "
                    f"(add '{ref}' to depends_on, directly or through another step)"
                )

    def check_names(self, where: str, used: frozenset, allowed: frozenset) -> None:
        for name in sorted(used - allowed):
            if name in LOOP_NAMES:
                self.errors.append(f"{where} uses '{name}', which exists only inside a loop's step")
            else:
                self.errors.append(
                    f"{where} uses unknown variable '{name}' (available: {', '.join(sorted(allowed))})"
                )

    def check_branches(self, step_id: str, config: dict) -> None:
        for branch in ("then", "else"):
            for target in config.get(branch, []):
                if target == step_id:
                    self.errors.append(f"Step '{step_id}' lists itself in {branch}")
                elif target not in self.steps:
                    self.errors.append(f"Step '{step_id}' lists '{target}' in {branch}, which doesn't exist")
                elif step_id not in self.graph.get(target, ()):
                    self.errors.append(
                        f"Step '{step_id}' lists '{target}' in {branch}, but '{target}' does not depend on "
                        f"'{step_id}' (add '{step_id}' to its depends_on)"
                    )

    def check_loop_step(self, who: str, step_id: str | None, inline: dict) -> None:
        step_type = STEP_TYPES.get(inline["type"])
        if step_type is None:
            self.errors.append(
                f"{who} config.step has unknown type '{_short(inline['type'], 80)}' "
                f"(known types: {', '.join(STEP_TYPES)})"
            )
            return
        if not step_type.allowed_in_loop:
            allowed = ", ".join(name for name, t in STEP_TYPES.items() if t.allowed_in_loop)
            self.errors.append(
                f"{who} config.step cannot be of type '{step_type.name}' inside a loop (allowed: {allowed})"
            )
            return
        config = inline.get("config", {})
        if not isinstance(config, dict):
            self.errors.append(f"{who} config.step.config must be an object")
            return
        self.check_config(who, step_type, config, "config.step.config")
        self.check_templates(who, step_id, step_type, config, "config.step.config", STEP_NAMES | LOOP_NAMES)


# ---------------------------------------------------------------------------------------------
# Internals


def _steps(definition: Any) -> list[dict]:
    steps = definition.get("steps") if isinstance(definition, Mapping) else None
    return [step for step in steps if isinstance(step, dict)] if isinstance(steps, list) else []


def _dependency_list(step: dict) -> list[str]:
    deps = step.get("depends_on")
    return [dep for dep in deps if isinstance(dep, str)] if isinstance(deps, list) else []


def _kahn(graph: Mapping[str, list[str]]) -> list[str]:
    """Topological order of the acyclic part of `graph` (steps in or after a cycle are left out)."""
    remaining = {node: len(deps) for node, deps in graph.items()}
    children: dict[str, list[str]] = {node: [] for node in graph}
    for node, deps in graph.items():
        for dep in deps:
            children[dep].append(node)
    ready = [node for node, count in remaining.items() if count == 0]
    order: list[str] = []
    index = 0
    while index < len(ready):
        node = ready[index]
        index += 1
        order.append(node)
        for child in children[node]:
            remaining[child] -= 1
            if remaining[child] == 0:
                ready.append(child)
    return order


def _ancestor_masks(graph: Mapping[str, list[str]]) -> dict[str, int]:
    """Step -> bitset (bit i = i-th step of `graph`) of all its transitive dependencies.

    Unions along a topological order, so O(steps + edges) big-integer ORs; steps in or after a
    cycle (left out of that order) fall back to a walk of their own.
    """
    bit = {node: 1 << position for position, node in enumerate(graph)}
    masks: dict[str, int] = {}
    for node in _kahn(graph):
        mask = 0
        for dep in graph[node]:
            mask |= masks[dep] | bit[dep]
        masks[node] = mask
    for node in graph:
        if node not in masks:
            masks[node] = sum(bit[dep] for dep in _ancestors_of(graph, node))
    return masks


def _ancestors_of(graph: Mapping[str, list[str]], node: str) -> set[str]:
    seen: set[str] = set()
    pending = list(graph.get(node, ()))
    while pending:
        current = pending.pop()
        if current not in seen:
            seen.add(current)
            pending.extend(graph.get(current, ()))
    return seen


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(field path, string) for every string inside a JSON value; object keys are not templates."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def _path_part(part: Any) -> str:
    return f"[{part}]" if isinstance(part, int) else f".{part}"


def _path(parts) -> str:
    return "".join(_path_part(part) for part in parts).lstrip(".")


def _is_number(value: Any, integral: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if integral else isinstance(value, int | float)


def _short(text: str, limit: int = _MESSAGE_MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
