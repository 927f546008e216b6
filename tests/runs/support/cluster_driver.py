"""Run inside a cluster test's environment (its database, broker and queue name).

`python -m tests.runs.support.cluster_driver start RUNS STEPS [WORK]` creates an organisation, a workflow and
RUNS runs (dispatched through the real broker) and prints {"runs": [ids]}; `python -m
tests.runs.support.cluster_driver wait TIMEOUT ID...` waits until those runs are terminal and prints each
one's status, result and per-step record."""

import json
import sys
import uuid

import django

from tests.runs.support.waiting import wait_terminal


def definition(steps: int, work: int = 1) -> dict:
    """A DAG of `steps` transform steps: a root, a fan-out of two, a join, then a chain. Each step burns
    some CPU (`work` sums in the sandbox) so that a worker can be caught in the middle of one, and may be
    retried (a reclaimed step is retried per its policy)."""
    burn = " + ".join(["(range(20000) | sum) * 0"] * work)

    def step(step_id, expression, *deps):
        node = {"id": step_id, "type": "transform", "retry": {"max_attempts": 3},
                "config": {"value": f"{{{{ {expression} + {burn} }}}}"}}  # fmt: skip
        return {**node, "depends_on": list(deps)} if deps else node

    nodes = [
        step("s0", "inputs.n"),
        step("s1", "steps.s0.output + 1", "s0"),
        step("s2", "steps.s0.output + 2", "s0"),
        step("s3", "steps.s1.output + steps.s2.output", "s1", "s2"),
    ]
    nodes += [step(f"s{i}", f"steps.s{i - 1}.output + 1", f"s{i - 1}") for i in range(4, steps)]
    return {"name": "Cluster DAG", "steps": nodes, "output": {"last": f"{{{{ steps.s{steps - 1}.output }}}}"}}


def expected_result(n: int, steps: int) -> int:
    return (n + 1) + (n + 2) + (steps - 4)


def start(runs: int, steps: int, work: int = 1) -> dict:
    from tests.factories import OrganizationFactory, RunFactory, WorkflowFactory, owner_of

    org = OrganizationFactory(
        name="Cluster", plan="enterprise", owner__email=f"cluster-{uuid.uuid4().hex[:8]}@x.test"
    )
    actor = owner_of(org)
    workflow = WorkflowFactory(organization=org, actor=actor, definition=definition(steps, work))
    ids = [RunFactory(workflow=workflow, actor=actor, input_data={"n": index}).id for index in range(runs)]
    return {"runs": ids}


def wait(timeout: float, ids: list[str]) -> dict:
    from runs.models import Run

    wait_terminal(ids, timeout)
    report = {}
    for run in Run.objects.filter(pk__in=ids).prefetch_related("steps", "events"):
        events = sorted(run.events.all(), key=lambda event: event.seq)
        report[run.id] = {
            "status": run.status,
            "n": run.input_data["n"],
            "result": run.result,
            "error": run.error,
            "seqs": [event.seq for event in events],
            "completed_events": [event.step_id for event in events if event.type == "step_completed"],
            "steps": {
                row.step_id: {"status": row.status, "attempts": [entry["status"] for entry in row.attempts]}
                for row in run.steps.all()
            },
        }
    return report


def main(argv):
    django.setup()
    if argv[0] == "start":
        print(json.dumps(start(*(int(arg) for arg in argv[1:]))))
    elif argv[0] == "wait":
        print(json.dumps(wait(float(argv[1]), argv[2:])))


if __name__ == "__main__":
    main(sys.argv[1:])
