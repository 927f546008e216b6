"""The template sandbox: parsing, reference analysis, native values, strictness and sandboxing."""

import pytest
from jinja2 import UndefinedError
from jinja2.sandbox import SecurityError

from runs.engine.templating import evaluate_expression, render_template, render_value
from workflows.templating import (
    analyze_expression,
    analyze_template,
    is_template,
    lone_expression,
    step_references,
    used_names,
)


@pytest.mark.parametrize(
    ("source", "refs"),
    [
        ("{{ steps.fetch.output.body }}", {"fetch"}),
        ("{{ steps['fetch'].output }}", {"fetch"}),
        ('{{ steps["a"].output ~ steps.b.output }}', {"a", "b"}),
        ("{% for row in steps.rows.output %}{{ row }}{% endfor %}", {"rows"}),
        ("{% if steps.c.output.result %}{{ steps.d.output }}{% endif %}", {"c", "d"}),
        ("{{ inputs.steps.fetch }}", set()),  # a field called `steps` inside inputs is not a step reference
        ("plain text", set()),
    ],
)
def test_step_references_walk_the_ast(source, refs):
    assert step_references(source) == refs


def test_expression_references_and_names():
    assert step_references("steps.check.output.result and inputs.n > 3", expression=True) == {"check"}
    assert used_names("steps.check.output.result and inputs.n > 3", expression=True) == {"steps", "inputs"}


def test_used_names_exclude_builtins_and_locals():
    source = (
        "{% set total = 0 %}{% for i in range(3) %}{{ i }}{% endfor %}{{ secrets.KEY }}{{ item }}{{ env }}"
    )
    assert used_names(source) == {"secrets", "item", "env"}


def test_names_assigned_inside_branches_are_not_context_variables():
    source = "{% for r in inputs.rows %}{% if r %}{% set seen = r %}{% endif %}{% endfor %}"
    assert used_names(source) == {"inputs"}


def test_dynamic_step_access_is_flagged():
    assert analyze_template("{{ steps[inputs.name].output }}").dynamic_step_refs
    assert analyze_template("{{ steps | tojson }}").dynamic_step_refs
    assert not analyze_template("{{ steps.a.output }}").dynamic_step_refs


@pytest.mark.parametrize("source", ["{{ x ", "{% if x %}", "{{ x | }}", "{% for %}{% endfor %}", "{{ 1 + }}"])
def test_syntax_errors_are_reported_not_raised(source):
    info = analyze_template(source)
    assert info.error
    assert info.names == frozenset()


@pytest.mark.parametrize("source", ["inputs.x >", "a b", "inputs.x }}{{ 1"])
def test_bad_expressions_are_reported(source):
    assert analyze_expression(source).error


def test_is_template():
    assert is_template("a {{ b }}") and is_template("{% if a %}{% endif %}") and is_template("{# c #}")
    assert not is_template("https://example.com/{id}")


@pytest.mark.parametrize(
    ("source", "inner"),
    [
        ("{{ steps.a.output }}", "steps.a.output"),
        ("  {{ inputs.n + 1 }}\n", "inputs.n + 1"),
        ("{{- inputs.n -}}", "inputs.n"),
        ("{{ -1 }}", "-1"),
        ("{{ a ~ '}}' }}", "a ~ '}}'"),
        ("{{ a }}{{ b }}", None),
        ("x {{ a }}", None),
        ("{{ a }} x", None),
        ("no template", None),
    ],
)
def test_lone_expression(source, inner):
    assert lone_expression(source) == inner


def test_a_lone_expression_renders_to_a_native_value_and_mixed_text_to_a_string():
    context = {"inputs": {"items": [1, 2], "n": 3}, "steps": {"a": {"output": {"k": "v"}}}}
    assert render_template("{{ inputs.items }}", context) == [1, 2]
    assert render_template("{{ steps.a.output }}", context) == {"k": "v"}
    assert render_template("{{ inputs.n * 2 }}", context) == 6
    assert render_template("n={{ inputs.n }}", context) == "n=3"
    assert render_template("literal {id}", context) == "literal {id}"
    assert render_value({"list": ["{{ inputs.n }}", "x"], "k": 1}, context) == {"list": [3, "x"], "k": 1}
    assert evaluate_expression("inputs.n > 2", context) is True
    assert evaluate_expression("{{ inputs.n > 5 }}", context) is False


@pytest.mark.parametrize(
    "source", ["{{ inputs.missing }}", "x {{ inputs.missing }}", "{{ steps.nope.output }}"]
)
def test_undefined_values_raise(source):
    with pytest.raises(UndefinedError):
        render_template(source, {"inputs": {}, "steps": {}})


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ inputs.rows.append(3) }}",
        "{{ inputs.config.update({'a': 1}) }}",
        "{{ inputs.rows.pop() }}",
    ],
)
def test_the_sandbox_refuses_unsafe_and_mutating_access(source):
    context = {"inputs": {"rows": [1, 2], "config": {}}}
    with pytest.raises(SecurityError):
        render_template(source, context)
    assert context == {"inputs": {"rows": [1, 2], "config": {}}}


def test_dict_keys_win_over_dict_methods():
    context = {"steps": {"each": {"output": {"items": [1, 2], "values": "v"}}}, "inputs": {"a": 1}}
    assert render_template("{{ steps.each.output.items }}", context) == [1, 2]
    assert render_template("{{ steps.each.output.values }}", context) == "v"
    assert render_template("{{ inputs.get('a') }}", context) == 1  # no key "get": the method still works


@pytest.mark.parametrize("source", ["{{ 'x' * 10000000 }}", "{{ [0] * 2000000 }}", "{{ 10 ** 100000 }}"])
def test_the_sandbox_refuses_huge_results(source):
    with pytest.raises(SecurityError):
        render_template(source, {})


def test_ordinary_arithmetic_still_works():
    assert render_template("{{ 'ab' * 3 }}", {}) == "ababab"
    assert render_template("{{ 2 ** 10 }}", {}) == 1024
    assert render_template("{{ inputs.n * 1.5 }}", {"inputs": {"n": 2}}) == 3.0


def test_autoescape_is_off():
    assert render_template("{{ inputs.html }}!", {"inputs": {"html": "<b>&</b>"}}) == "<b>&</b>!"
