"""The Jinja2 sandbox for workflow templates and their static analysis (validation reads it; the engine
renders with the same environment, runs/engine/templating.py).

Templates see `inputs`, `steps.<id>.output`, `run`, `secrets.<NAME>`, `env`, and inside a loop's
inline step `item` and `index`. A string that is exactly one `{{ … }}` renders to the expression's
native value (list, dict, number, …); any other string renders to a string. Undefined names and
attributes raise jinja2.UndefinedError (StrictUndefined); the sandbox raises jinja2.sandbox.SecurityError
for unsafe access and, being immutable, for mutating lists and dicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

# Names a template may use, by where it is used.
STEP_NAMES = frozenset({"inputs", "steps", "run", "secrets", "env"})
LOOP_NAMES = frozenset({"item", "index"})
OUTPUT_NAMES = frozenset({"inputs", "steps", "run", "env"})

MAX_REPEAT_SIZE = 1_000_000  # characters or items produced by `*`
MAX_INTEGER_EXPONENT = 1000


class WorkflowEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, with JSON-friendly attribute lookup.

    Workflow data is JSON, so on a dict `x.items` means the key "items" (a loop's output) rather than
    the dict method; Jinja's default looks up the attribute first. Without such a key, the usual
    lookup (and its safety checks) applies.
    """

    # Repetition and powers are the cheap ways to exhaust a worker's memory or CPU from a template.
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                repeats = isinstance(sequence, str | list | tuple) and isinstance(count, int)
                if repeats and len(sequence) * count > MAX_REPEAT_SIZE:
                    raise SecurityError(f"the result of repeating would exceed {MAX_REPEAT_SIZE:,} items")
        huge_power = operator == "**" and isinstance(left, int) and isinstance(right, int)
        if huge_power and abs(left) > 1 and right > MAX_INTEGER_EXPONENT:
            raise SecurityError(f"exponents above {MAX_INTEGER_EXPONENT} are not allowed")
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


ENVIRONMENT = WorkflowEnvironment(
    undefined=StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
)
BUILTIN_NAMES = frozenset(ENVIRONMENT.globals)

_MARKERS = ("{{", "{%", "{#")


@dataclass(frozen=True)
class TemplateInfo:
    """What a parsed template or expression uses; `error` is set (the rest empty) when it does not parse."""

    error: str | None = None
    names: frozenset[str] = frozenset()  # top-level context names (builtins like `range` excluded)
    step_refs: frozenset[str] = frozenset()  # ids in `steps.<id>` / `steps['<id>']`
    dynamic_step_refs: bool = False  # `steps[some_expression]` or `steps` used as a whole


def is_template(value: str) -> bool:
    """True when the string contains Jinja syntax; anything else is a literal."""
    return any(marker in value for marker in _MARKERS)


def parse_template(source: str) -> nodes.Template:
    """The template's AST. Raises jinja2.TemplateSyntaxError."""
    return ENVIRONMENT.parse(source)


def parse_expression(source: str) -> nodes.Expr:
    """The AST of a bare expression (`inputs.count > 3`). Raises jinja2.TemplateSyntaxError."""
    parser = Parser(ENVIRONMENT, source, state="variable")
    expr = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError(
            f"unexpected {parser.stream.current.value!r} after the expression",
            parser.stream.current.lineno,
        )
    return expr


@lru_cache(maxsize=4096)
def lone_expression(source: str) -> str | None:
    """The inner expression when `source` is exactly one `{{ … }}` (rendered as a native value), else None."""
    text = source.strip()
    if not (text.startswith("{{") and text.endswith("}}")):
        return None
    try:
        body = parse_template(text).body
    except TemplateSyntaxError:
        return None
    if len(body) != 1 or not isinstance(body[0], nodes.Output) or len(body[0].nodes) != 1:
        return None
    if isinstance(body[0].nodes[0], nodes.TemplateData):
        return None
    inner = text[2:-2]
    # `{{-` / `-}}` (and `+`) are whitespace control, not part of the expression.
    if inner[:1] in "-+":
        inner = inner[1:]
    if inner[-1:] in "-+":
        inner = inner[:-1]
    return inner.strip()


def describe_syntax_error(exc: TemplateSyntaxError) -> str:
    return f"{exc.message} (line {exc.lineno})" if exc.lineno and exc.lineno > 1 else str(exc.message)


@lru_cache(maxsize=4096)
def analyze_template(source: str) -> TemplateInfo:
    """Parse a template string and report the names and step ids it uses."""
    try:
        tree = parse_template(source)
    except TemplateSyntaxError as exc:
        return TemplateInfo(error=describe_syntax_error(exc))
    return _info(tree, meta.find_undeclared_variables(tree))


@lru_cache(maxsize=4096)
def analyze_expression(source: str) -> TemplateInfo:
    """Like analyze_template for an expression field: a `{{ … }}` template or a bare expression."""
    if is_template(source):
        return analyze_template(source)
    try:
        expr = parse_expression(source)
    except TemplateSyntaxError as exc:
        return TemplateInfo(error=describe_syntax_error(exc))
    # A bare expression declares nothing, so every loaded name comes from the context.
    names = {node.name for node in expr.find_all(nodes.Name) if node.ctx == "load"}
    return _info(expr, names)


def step_references(source: str, *, expression: bool = False) -> set[str]:
    """Step ids a template (or expression) refers to through `steps.<id>` or `steps['<id>']`."""
    info = analyze_expression(source) if expression else analyze_template(source)
    return set(info.step_refs)


def used_names(source: str, *, expression: bool = False) -> set[str]:
    """Top-level context names a template uses (inputs, steps, run, secrets, env, item, index, …)."""
    info = analyze_expression(source) if expression else analyze_template(source)
    return set(info.names)


def _info(tree: nodes.Node, undeclared: set[str]) -> TemplateInfo:
    # Jinja also reports names assigned only in a branch (`{% if %}{% set x %}`) as looked up from the
    # context; a name the template assigns anywhere is its own, not a context variable.
    assigned = {node.name for node in tree.find_all(nodes.Name) if node.ctx in ("store", "param")}
    names = frozenset(name for name in undeclared if name not in BUILTIN_NAMES and name not in assigned)
    refs: set[str] = set()
    dynamic = False
    if "steps" in names:
        claimed: set[int] = set()
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            target = node.node
            if not (isinstance(target, nodes.Name) and target.name == "steps"):
                continue
            claimed.add(id(target))
            if isinstance(node, nodes.Getattr):
                refs.add(node.attr)
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                refs.add(node.arg.value)
            else:
                dynamic = True
        # `steps` used other than as `steps.x` / `steps[...]` (e.g. `steps | tojson`).
        for node in tree.find_all(nodes.Name):
            if node.name == "steps" and node.ctx == "load" and id(node) not in claimed:
                dynamic = True
    return TemplateInfo(names=names, step_refs=frozenset(refs), dynamic_step_refs=dynamic)
