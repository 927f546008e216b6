"""Rendering workflow templates in the sandbox of workflows/templating.py (docs/workflows.md).

A string that is exactly one `{{ … }}` renders to the expression's native value; any other string to a
string. Undefined names raise jinja2.UndefinedError; unsafe access raises jinja2.sandbox.SecurityError."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import Template, Undefined

from workflows.templating import ENVIRONMENT, is_template, lone_expression


def render_template(source: str, context: Mapping[str, Any]) -> Any:
    """Render a template string: a lone `{{ … }}` gives its native value, anything else a string."""
    inner = lone_expression(source)
    if inner is not None:
        return _native(_compiled_expression(inner)(**context))
    if not is_template(source):
        return source
    return _compiled_template(source).render(**context)


def evaluate_expression(source: str, context: Mapping[str, Any]) -> Any:
    """Evaluate an expression field (`when`, condition `expression`, loop `items`): bare or `{{ … }}`."""
    if is_template(source):
        return render_template(source, context)
    return _native(_compiled_expression(source.strip())(**context))


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside a JSON value (object keys are left as they are)."""
    if isinstance(value, str):
        return render_template(value, context)
    if isinstance(value, dict):
        return {key: render_value(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render_value(item, context) for item in value]
    return value


@lru_cache(maxsize=2048)
def _compiled_template(source: str) -> Template:
    return ENVIRONMENT.from_string(source)


@lru_cache(maxsize=2048)
def _compiled_expression(source: str) -> Callable[..., Any]:
    return ENVIRONMENT.compile_expression(source, undefined_to_none=False)


def _native(value: Any) -> Any:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return value
