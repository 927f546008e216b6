"""Property-based tests of the DAG checks: acyclic graphs pass, any cycle is found and its path is real."""

import graphlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workflows.definition import (
    MAX_STEPS,
    dependency_graph,
    dependents,
    find_cycles,
    topological_order,
    upstream_steps,
    validate_definition,
)

CYCLE_PREFIX = "Cycle detected: "


@st.composite
def dags(draw, max_steps=40):
    """A random DAG as {step index: set of dependency indices}, edges only from lower to higher index."""
    n = draw(st.integers(min_value=1, max_value=max_steps))
    graph = {}
    for j in range(n):
        graph[j] = draw(st.sets(st.integers(min_value=0, max_value=j - 1), max_size=4)) if j else set()
    return graph


def as_definition(graph):
    return {
        "name": "Random",
        "steps": [
            {
                "id": f"s{j}",
                "type": "transform",
                "config": {"value": j},
                "depends_on": [f"s{i}" for i in sorted(deps)],
            }
            for j, deps in graph.items()
        ],
    }


def ancestors(graph, node):
    seen, pending = set(), list(graph[node])
    while pending:
        current = pending.pop()
        if current not in seen:
            seen.add(current)
            pending.extend(graph[current])
    return seen


def reported_cycles(errors):
    return [
        error.removeprefix(CYCLE_PREFIX).split(" → ") for error in errors if error.startswith(CYCLE_PREFIX)
    ]


def assert_real_cycle(path, definition):
    deps = {step["id"]: set(step["depends_on"]) for step in definition["steps"]}
    assert len(path) >= 2
    assert path[0] == path[-1]
    assert len(set(path[:-1])) == len(path) - 1, f"{path} repeats a step"
    for before, after in itertools.pairwise(path):
        # Paths read in execution order: each step depends on the one before it.
        assert before in deps[after], f"{after} does not depend on {before} in {path}"


@given(dags())
@settings(max_examples=150, deadline=None)
def test_random_dags_pass(graph):
    definition = as_definition(graph)
    assert validate_definition(definition) == []
    order = topological_order(definition)
    position = {step_id: k for k, step_id in enumerate(order)}
    assert sorted(order) == sorted(f"s{j}" for j in graph)
    for j, deps in graph.items():
        for i in deps:
            assert position[f"s{i}"] < position[f"s{j}"]
        assert upstream_steps(definition, f"s{j}") == {f"s{i}" for i in ancestors(graph, j)}


@given(dags(), st.data())
@settings(max_examples=200, deadline=None)
def test_an_added_back_edge_is_reported_as_a_real_cycle(graph, data):
    # Make a step depend on one of its descendants (or itself): that always closes a cycle.
    target = data.draw(st.sampled_from(sorted(graph)))
    candidates = sorted(ancestors(graph, target) | {target})
    source = data.draw(st.sampled_from(candidates))
    graph[source] = graph[source] | {target}
    definition = as_definition(graph)

    errors = validate_definition(definition)
    cycles = reported_cycles(errors)
    assert cycles, errors
    for path in cycles:
        assert_real_cycle(path, definition)
    assert len({tuple(path) for path in cycles}) == len(cycles), "a cycle was reported twice"
    # The new edge takes part in at least one reported cycle.
    assert any(
        f"s{target}" in path and f"s{source}" == path[path.index(f"s{target}") + 1] for path in cycles
    ), (source, target, cycles)
    with pytest.raises(ValueError, match="Cycle detected"):
        topological_order(definition)


@given(
    st.integers(min_value=1, max_value=15).flatmap(
        lambda n: st.dictionaries(
            st.integers(0, n - 1), st.sets(st.integers(0, n - 1), max_size=3), min_size=n, max_size=n
        )
    )
)
@settings(max_examples=300, deadline=None)
def test_cycles_are_reported_exactly_when_graphlib_finds_one(graph):
    definition = as_definition(graph)
    try:
        tuple(graphlib.TopologicalSorter({j: deps for j, deps in graph.items()}).static_order())
        acyclic = True
    except graphlib.CycleError:
        acyclic = False
    cycles = reported_cycles(validate_definition(definition))
    assert (not cycles) == acyclic
    for path in cycles:
        assert_real_cycle(path, definition)


def test_each_distinct_cycle_is_reported_once():
    # Two separate cycles plus a step that sits downstream of both.
    graph = {"a": ["b"], "b": ["a"], "c": ["d"], "d": ["e"], "e": ["c"], "f": ["a", "c"]}
    assert find_cycles(graph) == [["a", "b", "a"], ["c", "e", "d", "c"]]
    definition = {
        "name": "Cycles",
        "steps": [
            {"id": k, "type": "transform", "config": {"value": 1}, "depends_on": v} for k, v in graph.items()
        ],
    }
    assert [e for e in validate_definition(definition) if e.startswith(CYCLE_PREFIX)] == [
        "Cycle detected: a → b → a",
        "Cycle detected: c → e → d → c",
    ]


def test_graph_helpers_on_a_diamond():
    definition = {
        "name": "Diamond",
        "steps": [
            {"id": "top", "type": "transform", "config": {"value": 1}},
            {"id": "left", "type": "transform", "config": {"value": 1}, "depends_on": ["top"]},
            {"id": "right", "type": "transform", "config": {"value": 1}, "depends_on": ["top"]},
            {"id": "bottom", "type": "transform", "config": {"value": 1}, "depends_on": ["right", "left"]},
        ],
    }
    assert dependency_graph(definition) == {
        "top": [],
        "left": ["top"],
        "right": ["top"],
        "bottom": ["right", "left"],
    }
    assert dependents(definition) == {
        "top": ["left", "right"],
        "left": ["bottom"],
        "right": ["bottom"],
        "bottom": [],
    }
    assert topological_order(definition) == ["top", "left", "right", "bottom"]
    assert upstream_steps(definition, "bottom") == {"top", "left", "right"}


def test_a_long_chain_at_the_step_limit_is_checked_without_recursion_limits():
    chain = {f"s{j}": ([f"s{j - 1}"] if j else [f"s{MAX_STEPS - 1}"]) for j in range(MAX_STEPS)}
    cycles = find_cycles(chain)
    assert len(cycles) == 1
    assert len(cycles[0]) == MAX_STEPS + 1


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["{{ steps.a.output }}", "{{ x", "{% if %}", "inputs.x >", "a", "loop", "transform"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
STEP_KEYS = st.sampled_from(
    [
        "id",
        "type",
        "config",
        "depends_on",
        "when",
        "retry",
        "timeout_seconds",
        "on_failure",
        "name",
        "step",
        "items",
        "then",
        "else",
        "expression",
    ]
)
STEPS = st.lists(
    st.dictionaries(
        STEP_KEYS, JSON | st.sampled_from(["a", "b", ["a"], ["b"], {"items": "x", "step": {"type": "loop"}}])
    ),
    max_size=5,
)


@given(
    st.one_of(
        JSON, st.fixed_dictionaries({"name": JSON, "steps": STEPS}, optional={"inputs": JSON, "output": JSON})
    )
)
@settings(max_examples=400, deadline=None)
def test_validation_never_raises_and_always_answers_sentences(definition):
    errors = validate_definition(definition)
    assert isinstance(errors, list)
    assert all(isinstance(error, str) and error for error in errors)
