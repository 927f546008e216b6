"""Run inside a cluster test's environment (its database, broker and queue name).

`python -m tests.runs.cluster_driver start RUNS STEPS` creates an organisation, a workflow and RUNS runs
(dispatched through the real broker) and prints {"runs": [ids]};
`python -m tests.runs.cluster_driver wait TIMEOUT ID...` waits until those runs are terminal and prints
each one's status, result and per-step record.
"""

import json
import sys
import time
import uuid

import django


def definition(steps: int) -> dict:
    """A DAG of `steps` transform steps: a root, a fan-out of two, a join, then a chain. Each step burns a
    little CPU (a sum in the sandbox) so that a worker can be caught in the middle of one."""
    work = "(range(20000) | sum) * 0"
    nodes = [
        {"id": "s0", "type": "transform", "config": {"value": "{{ inputs.n + %s }}" % work}},
        {"id": "s1", "type": "transform", "depends_on": ["s0"], "config": {"value": "{{ steps.s0.output + 1 + %s }}" % work}},
        {"id": "s2", "type": "transform", "depends_on": ["s0"], "config": {"value": "{{ steps.s0.output + 2 + %s }}" % work}},
        {"id": "s3", "type": "transform", "depends_on": ["s1", "s2"],
         "config": {"value": "{{ steps.s1.output + steps.s2.output + %s }}" % work}},
    ]  # fmt: skip
    for index in range(4, steps):
        previous = f"s{index - 1}"
        nodes.append({"id": f"s{index}", "type": "transform", "depends_on": [previous],
                      "config": {"value": "{{ steps.%s.output + 1 + %s }}" % (previous, work)}})  # fmt: skip
    return {"name": "Cluster DAG", "steps": nodes, "output": {"last": "{{ steps.s%d.output }}" % (steps - 1)}}


def expected_result(n: int, steps: int) -> int:
    return (n + 1) + (n + 2) + (steps - 4)


def start(runs: int, steps: int) -> dict:
    from accounts.models import User
    from accounts.principal import Principal
    from runs.services import run_create
    from tests.factories import make_org
    from workflows.services import workflow_create

    owner = User.objects.create_user(email=f"cluster-{uuid.uuid4().hex[:8]}@example.com", password="x" * 12)
    org = make_org(name="Cluster", plan="enterprise", owner=owner)
    actor = Principal(organization=org, user=owner, role="owner")
    workflow = workflow_create(organization=org, actor=actor, definition=definition(steps))
    ids = [run_create(workflow=workflow, actor=actor, input_data={"n": index}).id for index in range(runs)]
    return {"runs": ids}


def wait(timeout: float, ids: list[str]) -> dict:
    from runs.choices import RUN_TERMINAL
    from runs.models import Run

    deadline = time.monotonic() + timeout
    while Run.objects.filter(pk__in=ids).exclude(status__in=RUN_TERMINAL).exists():
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
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
        print(json.dumps(start(int(argv[1]), int(argv[2]))))
    elif argv[0] == "wait":
        print(json.dumps(wait(float(argv[1]), argv[2:])))


if __name__ == "__main__":
    main(sys.argv[1:])
