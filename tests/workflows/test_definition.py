"""Validation of workflow definitions: each kind of problem and its exact sentence."""

import copy
import json

import pytest

from workflows.definition import (
    MAX_DEFINITION_BYTES,
    MAX_STEPS,
    definition_size,
    input_schema,
    validate_definition,
)

# The full example of API.md ("Workflow definition").
API_EXAMPLE = {
    "name": "Fetch and notify",
    "description": "…",
    "inputs": {
        "type": "object",
        "properties": {"dataset_id": {"type": "string"}},
        "required": ["dataset_id"],
    },
    "steps": [
        {
            "id": "fetch",
            "type": "http_request",
            "name": "Fetch",
            "config": {"method": "GET", "url": "https://api.example.com/data/{{ inputs.dataset_id }}"},
            "retry": {"max_attempts": 3, "backoff_seconds": 2, "backoff_multiplier": 2},
            "timeout_seconds": 30,
        },
        {
            "id": "notify",
            "type": "agent_task",
            "depends_on": ["fetch"],
            "config": {"agent_id": "agent_123", "goal": "Summarize {{ steps.fetch.output.body }}"},
        },
    ],
    "output": "{{ steps.notify.output.content }}",
}


def transform(step_id, value="x", **extra):
    return {"id": step_id, "type": "transform", "config": {"value": value}, **extra}


def definition(*steps, **top):
    return {"name": "Test", "steps": list(steps), **top}


def test_api_example_is_valid():
    assert validate_definition(API_EXAMPLE) == []


def test_every_step_type_has_a_valid_example():
    d = definition(
        {
            "id": "fetch",
            "type": "http_request",
            "config": {"url": "https://example.com", "expect_status": [200]},
        },
        {"id": "hook", "type": "webhook", "config": {"url": "https://example.com/h", "payload": {"a": 1}}},
        {
            "id": "calc",
            "type": "script",
            "config": {"language": "python", "code": "print(1)", "env": {"A": "b"}},
        },
        {
            "id": "ask",
            "type": "agent_task",
            "config": {"model": "gpt-4o-mini", "prompt": "Hi", "max_tokens": 100},
        },
        {
            "id": "check",
            "type": "condition",
            "depends_on": ["fetch"],
            "config": {
                "expression": "steps.fetch.output.status_code == 200",
                "then": ["yes"],
                "else": ["no"],
            },
        },
        transform("yes", "{{ steps.fetch.output.body }}", depends_on=["check"]),
        transform("no", depends_on=["check"]),
        {
            "id": "each",
            "type": "loop",
            "config": {
                "items": "{{ inputs.urls }}",
                "max_concurrency": 5,
                "max_items": 100,
                "step": {"type": "http_request", "config": {"url": "{{ item }}?n={{ index }}"}},
            },
        },
        {"id": "pause", "type": "wait", "config": {"seconds": 5}},
        {"id": "later", "type": "wait", "config": {"until": "2030-01-01T00:00:00Z"}},
        {
            "id": "gate",
            "type": "approval",
            "config": {"message": "Ship?", "approvers": ["admin", "ops@example.com"], "on_timeout": "reject"},
        },
        {"id": "form", "type": "input", "config": {"message": "Why?", "schema": {"type": "object"}}},
        {"id": "child", "type": "sub_workflow", "config": {"workflow": "other-flow", "version": "published"}},
        {"id": "stop", "type": "end", "depends_on": ["no"], "config": {"status": "failed", "message": "no"}},
    )
    assert validate_definition(d) == []


# (definition, the exact sentence expected among the errors)
TABLE = [
    pytest.param("not a dict", "The definition must be a JSON object", id="not-object"),
    pytest.param({"steps": [transform("a")]}, "The definition needs a name", id="name-missing"),
    pytest.param(
        definition(transform("a"), name=""),
        "The definition's name must be a non-empty string",
        id="name-empty",
    ),
    pytest.param(
        definition(transform("a"), name="n" * 201),
        "The definition's name is longer than 200 characters",
        id="name-long",
    ),
    pytest.param(
        definition(transform("a"), description=5),
        "The definition's description must be a string",
        id="description-type",
    ),
    pytest.param(
        {"name": "x"}, "The definition needs a steps list with at least one step", id="steps-missing"
    ),
    pytest.param(definition(), "The definition needs at least one step", id="steps-empty"),
    pytest.param({"name": "x", "steps": {}}, "The definition's steps must be a list", id="steps-type"),
    pytest.param(
        definition(transform("a"), extra=1),
        "Unknown top-level field 'extra' (allowed: name, description, inputs, steps, output)",
        id="unknown-top-level",
    ),
    pytest.param(
        definition(transform("a"), inputs={"type": "array"}),
        'The definition\'s inputs schema must have "type": "object"',
        id="inputs-not-object-type",
    ),
    pytest.param(
        definition(transform("a"), inputs={"type": "object", "properties": {"a": {"type": "strin"}}}),
        "The definition's inputs is not a valid JSON Schema at properties.a.type: "
        "'strin' is not valid under any of the given schemas",
        id="inputs-invalid-schema",
    ),
    pytest.param(
        definition(transform("a"), inputs=[]),
        "The definition's inputs must be a JSON Schema object",
        id="inputs-not-dict",
    ),
    pytest.param(
        definition(transform("a"), output="{{ steps.a.output "),
        "The output template at output does not parse: unexpected end of template, "
        "expected 'end of print statement'.",
        id="output-parse",
    ),
    pytest.param(
        definition(transform("a"), output={"x": "{{ steps.b.output }}"}),
        "The output template at output.x refers to step 'b' which doesn't exist",
        id="output-ref",
    ),
    pytest.param(
        definition(transform("a"), output="{{ secrets.KEY }}"),
        "The output template at output uses unknown variable 'secrets' (available: env, inputs, run, steps)",
        id="output-no-secrets",
    ),
    pytest.param(definition("x"), "Step #1 must be an object", id="step-not-object"),
    pytest.param(
        definition({"type": "transform", "config": {"value": 1}}), "Step #1 has no id", id="id-missing"
    ),
    pytest.param(
        definition({"id": 7, "type": "end"}), "Step #1 has an id that is not a string", id="id-type"
    ),
    pytest.param(
        definition(transform("Fetch-Data")),
        "Step id 'Fetch-Data' is invalid: use 1 to 64 lowercase letters, digits or underscores, "
        "starting with a letter",
        id="id-malformed",
    ),
    pytest.param(
        definition(transform("a" * 65)),
        f"Step id '{'a' * 65}' is invalid: use 1 to 64 lowercase letters, digits or underscores, "
        "starting with a letter",
        id="id-too-long",
    ),
    pytest.param(
        definition(transform("a"), transform("b"), transform("a")),
        "Duplicate step id 'a' (steps #1, #3)",
        id="id-duplicate",
    ),
    pytest.param(
        definition({"id": "a", "type": "email"}),
        "Step 'a' has unknown type 'email' (known types: http_request, webhook, script, agent_task, "
        "condition, loop, wait, approval, input, transform, sub_workflow, end)",
        id="type-unknown",
    ),
    pytest.param(
        definition({"id": "a", "config": {}}),
        "Step 'a' has no type (known types: http_request, webhook, script, agent_task, "
        "condition, loop, wait, approval, input, transform, sub_workflow, end)",
        id="type-missing",
    ),
    pytest.param(
        definition({"id": "a", "type": "transform", "config": []}),
        "Step 'a' config must be an object",
        id="config-type",
    ),
    pytest.param(
        definition({"id": "a", "type": "http_request", "config": {"url": "https://x", "method": "FETCH"}}),
        "Step 'a' config.method is invalid: 'FETCH' is not one of "
        "['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']",
        id="config-enum",
    ),
    pytest.param(
        definition({"id": "a", "type": "http_request", "config": {}}),
        "Step 'a' config is invalid: 'url' is a required property",
        id="config-required",
    ),
    pytest.param(
        definition({"id": "a", "type": "http_request", "config": {"url": "https://x", "verb": "GET"}}),
        "Step 'a' config is invalid: Additional properties are not allowed ('verb' was unexpected)",
        id="config-additional",
    ),
    pytest.param(
        definition({"id": "a", "type": "http_request", "config": {"url": "https://x", "timeout_seconds": 0}}),
        "Step 'a' config.timeout_seconds is invalid: 0 is less than the minimum of 1",
        id="config-timeout",
    ),
    pytest.param(
        definition(
            {
                "id": "a",
                "type": "script",
                "config": {"language": "python", "code": "x", "timeout_seconds": 3601},
            }
        ),
        "Step 'a' config.timeout_seconds is invalid: 3601 is greater than the maximum of 3600",
        id="script-timeout",
    ),
    pytest.param(
        definition({"id": "a", "type": "script", "config": {"language": "python", "code": "é" * 40_000}}),
        "Step 'a' config.code is 80000 bytes, over the limit of 65536 bytes",
        id="script-code-bytes",
    ),
    pytest.param(
        definition({"id": "a", "type": "http_request", "config": {"url": "https://x", "headers": {"A": 1}}}),
        "Step 'a' config.headers.A is invalid: 1 is not of type 'string'",
        id="config-nested-path",
    ),
    pytest.param(
        definition(
            {
                "id": "a",
                "type": "http_request",
                "config": {"url": "https://x", "method": "POST", "json": {}, "body": "x"},
            }
        ),
        "Step 'a' config may set json or body, not both",
        id="http-json-and-body",
    ),
    pytest.param(
        definition({"id": "a", "type": "http_request", "config": {"url": "https://x", "json": {"a": 1}}}),
        "Step 'a' config sends a body with GET, which does not take one",
        id="http-body-with-get",
    ),
    pytest.param(
        definition({"id": "a", "type": "agent_task", "config": {"agent_id": "agent_1"}}),
        "Step 'a' config needs a goal (or a prompt)",
        id="agent-goal",
    ),
    pytest.param(
        definition(
            {"id": "a", "type": "agent_task", "config": {"goal": "x", "output_schema": {"type": "nope"}}}
        ),
        "Step 'a' config.output_schema is not a valid JSON Schema at type: "
        "'nope' is not valid under any of the given schemas",
        id="agent-output-schema",
    ),
    pytest.param(
        definition({"id": "a", "type": "wait", "config": {}}),
        "Step 'a' config needs exactly one of seconds or until",
        id="wait-neither",
    ),
    pytest.param(
        definition({"id": "a", "type": "wait", "config": {"until": "tomorrow"}}),
        "Step 'a' config.until 'tomorrow' is not an ISO 8601 timestamp",
        id="wait-until",
    ),
    pytest.param(
        definition(
            {
                "id": "a",
                "type": "approval",
                "config": {"approvers": ["a@example.com"], "required_approvals": 2},
            }
        ),
        "Step 'a' config.required_approvals is 2 but only 1 approver is listed",
        id="approval-count",
    ),
    pytest.param(
        definition({"id": "a", "type": "input", "config": {"message": "m", "schema": {"type": 3}}}),
        "Step 'a' config.schema is not a valid JSON Schema at type: "
        "3 is not valid under any of the given schemas",
        id="input-schema",
    ),
    pytest.param(
        definition(
            {
                "id": "a",
                "type": "loop",
                "config": {
                    "items": "x",
                    "max_items": 10_001,
                    "step": {"type": "transform", "config": {"value": 1}},
                },
            }
        ),
        "Step 'a' config.max_items is invalid: 10001 is greater than the maximum of 10000",
        id="loop-max-items",
    ),
    pytest.param(
        definition(
            {
                "id": "a",
                "type": "loop",
                "config": {
                    "items": "x",
                    "max_concurrency": 51,
                    "step": {"type": "transform", "config": {"value": 1}},
                },
            }
        ),
        "Step 'a' config.max_concurrency is invalid: 51 is greater than the maximum of 50",
        id="loop-max-concurrency",
    ),
    pytest.param(
        definition(
            {"id": "a", "type": "loop", "config": {"items": "x", "step": {"type": "loop", "config": {}}}}
        ),
        "Step 'a' config.step cannot be of type 'loop' inside a loop (allowed: http_request, webhook, "
        "script, agent_task, wait, transform, sub_workflow)",
        id="loop-nested",
    ),
    pytest.param(
        definition(
            {"id": "a", "type": "loop", "config": {"items": "x", "step": {"type": "magic", "config": {}}}}
        ),
        "Step 'a' config.step has unknown type 'magic' (known types: http_request, webhook, script, "
        "agent_task, condition, loop, wait, approval, input, transform, sub_workflow, end)",
        id="loop-inline-unknown",
    ),
    pytest.param(
        definition(
            {
                "id": "a",
                "type": "loop",
                "config": {
                    "items": "x",
                    "step": {"type": "http_request", "config": {"url": "{{ item }}", "method": "GRAB"}},
                },
            }
        ),
        "Step 'a' config.step.config.method is invalid: 'GRAB' is not one of "
        "['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']",
        id="loop-inline-schema",
    ),
    pytest.param(
        definition(
            {
                "id": "a",
                "type": "loop",
                "config": {
                    "items": "x",
                    "step": {"type": "script", "config": {"language": "python", "code": "é" * 40_000}},
                },
            }
        ),
        "Step 'a' config.step.config.code is 80000 bytes, over the limit of 65536 bytes",
        id="loop-inline-semantic",
    ),
    pytest.param(
        definition(transform("a"), transform("notify", depends_on=["fetch"])),
        "Step 'notify' depends on 'fetch' which doesn't exist",
        id="depends-missing",
    ),
    pytest.param(
        definition(transform("a", depends_on="b")),
        "Step 'a' has a depends_on that is not a list of step ids",
        id="depends-type",
    ),
    pytest.param(
        definition(transform("a"), transform("b", depends_on=["a", "a"])),
        "Step 'b' lists 'a' more than once in depends_on",
        id="depends-repeated",
    ),
    pytest.param(
        definition(transform("step_a", depends_on=["step_b"]), transform("step_b", depends_on=["step_a"])),
        "Cycle detected: step_a → step_b → step_a",
        id="cycle",
    ),
    pytest.param(definition(transform("a", depends_on=["a"])), "Cycle detected: a → a", id="self-cycle"),
    pytest.param(
        definition(transform("a", when="inputs.x >")),
        "Step 'a' when has an expression that does not parse: unexpected 'end of template'",
        id="when-parse",
    ),
    pytest.param(
        definition(transform("a", when="")),
        "Step 'a' when must be a non-empty expression of at most 4096 characters",
        id="when-empty",
    ),
    pytest.param(
        definition(transform("a", "{{ inputs.x | }}")),
        "Step 'a' config.value has a template that does not parse: "
        "expected token 'name', got 'end of print statement'",
        id="template-parse",
    ),
    pytest.param(
        definition(
            {
                "id": "a",
                "type": "http_request",
                "config": {"url": "https://x", "headers": {"X-Token": "{% if %}"}},
            }
        ),
        "Step 'a' config.headers.X-Token has a template that does not parse: "
        "Expected an expression, got 'end of statement block'",
        id="template-parse-nested",
    ),
    pytest.param(
        definition(transform("a", ["ok", "{{ steps.gone.output }}"])),
        "Step 'a' config.value[1] refers to step 'gone' which doesn't exist",
        id="ref-missing",
    ),
    pytest.param(
        definition(transform("a"), transform("b", "{{ steps['a'].output }}")),
        "Step 'b' config.value refers to step 'a' which is not upstream of it "
        "(add 'a' to depends_on, directly or through another step)",
        id="ref-not-upstream",
    ),
    pytest.param(
        definition(transform("a", "{{ steps.a.output }}")),
        "Step 'a' config.value refers to step 'a' which is not upstream of it "
        "(add 'a' to depends_on, directly or through another step)",
        id="ref-self",
    ),
    pytest.param(
        definition(transform("a"), transform("b", when="steps.a.output")),
        "Step 'b' when refers to step 'a' which is not upstream of it "
        "(add 'a' to depends_on, directly or through another step)",
        id="ref-when",
    ),
    pytest.param(
        definition(transform("a", "{{ input.x }}")),
        "Step 'a' config.value uses unknown variable 'input' (available: env, inputs, run, secrets, steps)",
        id="unknown-variable",
    ),
    pytest.param(
        definition(transform("a", "{{ item }}")),
        "Step 'a' config.value uses 'item', which exists only inside a loop's step",
        id="item-outside-loop",
    ),
    pytest.param(
        definition({"id": "c", "type": "condition", "config": {"expression": "true", "then": ["x"]}}),
        "Step 'c' lists 'x' in then, which doesn't exist",
        id="branch-missing",
    ),
    pytest.param(
        definition(
            {"id": "c", "type": "condition", "config": {"expression": "true", "else": ["b"]}}, transform("b")
        ),
        "Step 'c' lists 'b' in else, but 'b' does not depend on 'c' (add 'c' to its depends_on)",
        id="branch-not-dependent",
    ),
    pytest.param(
        definition({"id": "c", "type": "condition", "config": {"expression": "true", "then": ["c"]}}),
        "Step 'c' lists itself in then",
        id="branch-self",
    ),
    pytest.param(
        definition(
            {"id": "c", "type": "condition", "config": {"expression": "true", "then": ["b"], "else": ["b"]}},
            transform("b", depends_on=["c"]),
        ),
        "Step 'c' config lists 'b' in both then and else",
        id="branch-both",
    ),
    pytest.param(
        definition(transform("a", retry={"max_attempts": 11})),
        "Step 'a' retry.max_attempts must be an integer from 1 to 10",
        id="retry-attempts",
    ),
    pytest.param(
        definition(transform("a", retry={"backoff_seconds": 3601})),
        "Step 'a' retry.backoff_seconds must be a number from 0 to 3600",
        id="retry-backoff",
    ),
    pytest.param(
        definition(transform("a", retry={"backoff_multiplier": 0.5})),
        "Step 'a' retry.backoff_multiplier must be a number from 1 to 10",
        id="retry-multiplier",
    ),
    pytest.param(
        definition(transform("a", retry={"jitter": True})),
        "Step 'a' retry has an unknown field 'jitter' "
        "(allowed: max_attempts, backoff_seconds, backoff_multiplier)",
        id="retry-unknown",
    ),
    pytest.param(
        definition(transform("a", retry=3)),
        "Step 'a' retry must be an object with max_attempts, backoff_seconds and backoff_multiplier",
        id="retry-type",
    ),
    pytest.param(
        definition(transform("a", timeout_seconds=86_401)),
        "Step 'a' timeout_seconds must be an integer from 1 to 86400",
        id="timeout-high",
    ),
    pytest.param(
        definition(transform("a", timeout_seconds=True)),
        "Step 'a' timeout_seconds must be an integer from 1 to 86400",
        id="timeout-bool",
    ),
    pytest.param(
        definition(transform("a", on_failure="ignore")),
        "Step 'a' on_failure must be one of: fail_run, continue",
        id="on-failure",
    ),
    pytest.param(
        definition(transform("a", name="n" * 201)),
        "Step 'a' name must be a string of at most 200 characters",
        id="step-name",
    ),
    pytest.param(
        definition(transform("a", foo=1)),
        "Step 'a' has an unknown field 'foo' (allowed: id, type, name, description, config, depends_on, "
        "when, retry, timeout_seconds, on_failure)",
        id="step-unknown-field",
    ),
    pytest.param(
        definition(*[transform(f"s{i}") for i in range(MAX_STEPS + 1)]),
        "The definition has 201 steps, over the limit of 200",
        id="too-many-steps",
    ),
]


@pytest.mark.parametrize(("definition", "sentence"), TABLE)
def test_each_problem_has_its_sentence(definition, sentence):
    assert sentence in validate_definition(definition)


def test_every_problem_is_reported_not_just_the_first():
    d = definition(
        transform("step_a", depends_on=["step_b"]),
        transform("step_b", depends_on=["step_a"]),
        transform("notify", depends_on=["fetch"]),
        {"id": "bad", "type": "nope"},
        transform("Bad-Id"),
        name="",
    )
    errors = validate_definition(d)
    assert errors == [
        "The definition's name must be a non-empty string",
        "Step id 'Bad-Id' is invalid: use 1 to 64 lowercase letters, digits or underscores, "
        "starting with a letter",
        "Step 'notify' depends on 'fetch' which doesn't exist",
        "Cycle detected: step_a → step_b → step_a",
        "Step 'bad' has unknown type 'nope' (known types: http_request, webhook, script, agent_task, "
        "condition, loop, wait, approval, input, transform, sub_workflow, end)",
    ]


def test_upstream_is_transitive_and_loop_items_are_visible_in_the_inline_step():
    d = definition(
        transform("a"),
        transform("b", depends_on=["a"]),
        {
            "id": "each",
            "type": "loop",
            "depends_on": ["b"],
            "config": {
                "items": "{{ steps.a.output }}",
                "step": {
                    "type": "transform",
                    "config": {"value": "{{ item }}-{{ index }}-{{ steps.b.output }}"},
                },
            },
        },
        transform("c", "{{ steps.a.output }} {{ steps.each.output['items'] }}", depends_on=["each"]),
    )
    assert validate_definition(d) == []


def test_loop_inline_step_refs_must_be_upstream_of_the_loop():
    d = definition(
        transform("a"),
        {
            "id": "each",
            "type": "loop",
            "config": {
                "items": [1, 2],
                "step": {"type": "transform", "config": {"value": "{{ steps.a.output }}"}},
            },
        },
    )
    assert validate_definition(d) == [
        "Step 'each' config.step.config.value refers to step 'a' which is not upstream of it "
        "(add 'a' to depends_on, directly or through another step)"
    ]


def test_literal_fields_are_not_templates():
    code = "print('{{ not a template }}' + '{% nor this')"
    d = definition(
        {"id": "s", "type": "script", "config": {"language": "python", "code": code}},
        {"id": "i", "type": "input", "config": {"message": "m", "schema": {"type": "object", "title": "{{"}}},
    )
    assert validate_definition(d) == []


def test_templates_are_checked_even_when_the_schema_fails():
    d = definition({"id": "a", "type": "http_request", "config": {"url": "{{ x", "method": "FETCH"}})
    errors = validate_definition(d)
    assert len(errors) == 2
    assert errors[1].startswith("Step 'a' config.url has a template that does not parse")


def test_a_definition_over_the_byte_limit_gets_one_sentence():
    d = definition(transform("a", "x" * MAX_DEFINITION_BYTES), extra="unknown")
    size = definition_size(d)
    assert validate_definition(d) == [
        f"The definition is {size:,} bytes of JSON, over the limit of {MAX_DEFINITION_BYTES:,} bytes"
    ]


def test_non_json_values_are_refused():
    assert validate_definition(definition(transform("a", {1, 2}))) == [
        "The definition must contain only JSON values (objects, arrays, strings, numbers, booleans, null)"
    ]


def test_validation_does_not_modify_the_definition():
    d = copy.deepcopy(API_EXAMPLE)
    validate_definition(d)
    assert d == API_EXAMPLE


def test_input_schema_defaults_to_an_open_object():
    assert input_schema(API_EXAMPLE) == API_EXAMPLE["inputs"]
    assert input_schema(definition(transform("a"))) == {"type": "object", "properties": {}}


def test_a_maximal_definition_is_valid():
    # How fast it validates is a benchmark check (bench/checks_bench.py).
    # 200 steps, each with two templates referring to upstream steps: a chain plus a fan-in.
    steps = [transform("s0", "{{ inputs.x }}")]
    for i in range(1, MAX_STEPS):
        deps = [f"s{i - 1}"] + ([f"s{i // 2}"] if i // 2 != i - 1 else [])
        steps.append(
            transform(
                f"s{i}",
                {"a": f"{{{{ steps.s{i - 1}.output }}}}", "b": f"{{{{ steps.s0.output }}}} {i}"},
                depends_on=deps,
                retry={"max_attempts": 3},
            )
        )
    d = definition(*steps, output="{{ steps.s199.output }}")
    assert len(json.dumps(d)) < MAX_DEFINITION_BYTES
    assert validate_definition(d) == []
