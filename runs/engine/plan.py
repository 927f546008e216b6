"""The pinned definition of a run, prepared once per workflow version (versions are immutable)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from runs.models import Run, StepRun
from workflows.definition import dependency_graph, topological_order
from workflows.models import WorkflowVersion


@dataclass(frozen=True)
class Plan:
    version: int
    steps: dict[str, dict]
    order: list[str]  # topological
    deps: dict[str, list[str]]
    output: Any
    has_output: bool


def plan_for(run: Run) -> Plan:
    """The prepared definition of the run's pinned version."""
    return _plan(run.workflow_version_id, run.definition_hash)


def plan_for_version(version) -> Plan:
    return _plan(version.pk, version.content_hash)


@lru_cache(maxsize=512)
def _plan(version_pk: int, content_hash: str) -> Plan:
    version = WorkflowVersion.objects.only("number", "definition").get(
        pk=version_pk, content_hash=content_hash
    )
    definition = version.definition
    return Plan(
        version=version.number,
        steps={step["id"]: step for step in definition["steps"]},
        order=topological_order(definition),
        deps=dependency_graph(definition),
        output=definition.get("output"),
        has_output="output" in definition,
    )


def step_definition(plan: Plan, step_run: StepRun) -> tuple[dict, dict]:
    """(the step as written, the policy step: the loop step for an iteration, else the step itself)."""
    step = plan.steps[step_run.step_id]
    if step_run.parent_id is None:
        return step, step
    inline = step["config"]["step"]
    return {"id": step["id"], **inline, "config": inline.get("config", {})}, step


def downstream(plan: Plan, seeds: Iterable[str]) -> set[str]:
    """`seeds` and every step that depends on one of them, directly or not."""
    dependents: dict[str, list[str]] = {}
    for step_id, deps in plan.deps.items():
        for dep in deps:
            dependents.setdefault(dep, []).append(step_id)
    found = set(seeds)
    todo = list(found)
    while todo:
        for step_id in dependents.get(todo.pop(), ()):
            if step_id not in found:
                found.add(step_id)
                todo.append(step_id)
    return found
