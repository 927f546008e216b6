"""The step-type registry: every type of API.md, closed Draft 2020-12 config schemas, engine-safe imports."""

import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from workflows.steps import STEP_TYPES, StepType, get_step_type

API_TYPES = [
    "http_request", "webhook", "script", "agent_task", "condition", "loop",
    "wait", "approval", "input", "transform", "sub_workflow", "end",
]  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]


def test_registry_has_every_type_of_the_api():
    assert list(STEP_TYPES) == API_TYPES
    assert all(isinstance(step_type, StepType) for step_type in STEP_TYPES.values())
    assert get_step_type("http_request") is STEP_TYPES["http_request"]
    assert get_step_type("nope") is None


@pytest.mark.parametrize("name", API_TYPES)
def test_config_schema_is_valid_and_closed(name):
    step_type = STEP_TYPES[name]
    Draft202012Validator.check_schema(step_type.config_schema)
    assert step_type.config_schema["type"] == "object"
    assert step_type.config_schema["additionalProperties"] is False
    assert step_type.description
    assert step_type.execute is None or callable(step_type.execute)
    assert not list(step_type.validator.iter_errors({})) or "required" in step_type.config_schema


@pytest.mark.parametrize(
    ("name", "config", "valid"),
    [
        ("http_request", {"url": "https://x", "method": "get"}, False),
        ("http_request", {"url": "https://x", "timeout_seconds": 3600}, True),
        ("http_request", {"url": "https://x", "expect_status": [200, 600]}, False),
        ("script", {"language": "python", "code": "x", "timeout_seconds": 1}, True),
        ("script", {"language": "python", "code": "x", "env": {"1BAD": "x"}}, False),
        (
            "loop",
            {"items": "x", "step": {"type": "transform"}, "max_items": 10_000, "max_concurrency": 50},
            True,
        ),
        ("loop", {"items": "x", "step": {"type": "transform"}, "max_concurrency": 0}, False),
        ("webhook", {"url": "https://x", "method": "GET"}, False),
        ("approval", {"approvers": ["admin", "a@example.com"]}, True),
        ("approval", {"approvers": ["janitor"]}, False),
        ("wait", {"seconds": 2_592_001}, False),
        ("sub_workflow", {"workflow": "other", "version": 0}, False),
        ("end", {"status": "cancelled"}, False),
        ("agent_task", {"goal": "x", "temperature": 2.5}, False),
    ],
)
def test_config_schema_limits(name, config, valid):
    assert (not list(STEP_TYPES[name].validator.iter_errors(config))) == valid


def test_loop_and_flow_control_types_are_not_allowed_inside_loops():
    assert {name for name, t in STEP_TYPES.items() if not t.allowed_in_loop} == {
        "loop", "condition", "approval", "input", "end",
    }  # fmt: skip


def test_validation_imports_no_http_layer():
    """The registry, the template analysis and validation are pure Python (the engine's own imports are
    walked by tests/runs/test_engine_imports.py)."""
    code = (
        "import sys; import workflows.steps, workflows.templating, workflows.definition; "
        "bad = [m for m in sys.modules if m.split('.')[0] == 'rest_framework' "
        "or m == 'django.http' or m.startswith('django.http.') "
        "or m.endswith(('serializers', 'views'))]; print(','.join(sorted(bad)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
