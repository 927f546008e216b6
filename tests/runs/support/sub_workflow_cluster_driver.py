"""Run inside a cluster test's environment (see tests/runs/test_cluster.py): sub-workflows on a real cluster.

`python -m tests.runs.support.sub_workflow_cluster_driver start RUNS` creates an organisation, a child
workflow (it doubles `n`) and a parent workflow (a `sub_workflow` step, then a step using the child's result),
starts RUNS parent runs and prints {"runs": [ids]}; `... wait TIMEOUT ID...` waits until those runs are
terminal and prints each one's status, result, and its children."""

import json
import sys
import uuid

import django

from tests.runs.support.waiting import wait_terminal


def start(runs: int) -> dict:
    from accounts.models import Organization
    from tests.factories import OrganizationFactory, RunFactory, WorkflowFactory, owner_of

    org = OrganizationFactory(
        name="Sub-workflows", plan="enterprise", owner__email=f"subwf-{uuid.uuid4().hex[:8]}@x.test"
    )
    Organization.objects.filter(pk=org.pk).update(max_concurrent_runs=None)
    actor = owner_of(org)
    child = WorkflowFactory(
        organization=org,
        actor=actor,
        definition={
            "name": "Child",
            "inputs": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
            "steps": [{"id": "double", "type": "transform", "config": {"value": "{{ inputs.n * 2 }}"}}],
            "output": {"doubled": "{{ steps.double.output }}"},
        },
    )
    parent = WorkflowFactory(
        organization=org,
        actor=actor,
        definition={
            "name": "Parent",
            "steps": [
                {"id": "child", "type": "sub_workflow",
                 "config": {"workflow": child.slug, "input": {"n": "{{ inputs.n }}"}}},
                {"id": "after", "type": "transform", "depends_on": ["child"],
                 "config": {"value": "{{ steps.child.output.doubled + 1 }}"}},
            ],
            "output": {"final": "{{ steps.after.output }}"},
        },
    )  # fmt: skip
    ids = [RunFactory(workflow=parent, actor=actor, input_data={"n": index}).id for index in range(runs)]
    return {"runs": ids}


def wait(timeout: float, ids: list[str]) -> dict:
    from runs.models import Run

    wait_terminal(ids, timeout)
    report = {}
    for run in Run.objects.filter(pk__in=ids).prefetch_related("child_runs", "steps"):
        steps = {row.step_id: row for row in run.steps.all()}
        report[run.id] = {
            "status": run.status,
            "n": run.input_data["n"],
            "result": run.result,
            "error": run.error,
            "step_child_run_id": (steps["child"].input_data or {}).get("child_run_id"),
            "children": [
                {"id": child.id, "status": child.status, "result": child.result,
                 "parent_step_run_id": child.parent_step_run_id, "step_run_id": steps["child"].id}
                for child in run.child_runs.all()
            ],
        }  # fmt: skip
    return report


def main(argv):
    django.setup()
    if argv[0] == "start":
        print(json.dumps(start(int(argv[1]))))
    elif argv[0] == "wait":
        print(json.dumps(wait(float(argv[1]), argv[2:])))


if __name__ == "__main__":
    main(sys.argv[1:])
