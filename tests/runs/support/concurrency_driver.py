"""Run inside a concurrency race test's subprocess (its database; `inline` dispatch, so each process executes
the runs it starts or admits).

`python -m tests.runs.support.concurrency_driver setup CAP` creates an organisation with max_concurrent_runs
CAP, a workflow limited to one run per `inputs.k` (policy queue) and one without a limit; prints their ids.
`python -m tests.runs.support.concurrency_driver trigger ORG LIMITED FREE COUNT SEED START` waits at the
starting gate START (tests/runs/support/starting_gate.py), triggers COUNT runs (keys "a"/"b" on the limited
workflow, every third run on the free one), executes what it can, prints the ids and those of the runs a limit
held back."""

import json
import random
import sys
import uuid

import django

from tests.runs.support.starting_gate import wait_at_gate

BURN = " + ".join(["(range(20000) | sum) * 0"] * 2)


def _steps() -> list[dict]:
    return [
        {
            "id": f"s{i}",
            "type": "transform",
            "config": {"value": f"{{{{ {i} + {BURN} }}}}"},
            **({"depends_on": [f"s{i - 1}"]} if i else {}),
        }
        for i in range(3)
    ]


def setup(cap: int) -> dict:
    from tests.factories import OrganizationFactory, WorkflowFactory

    org = OrganizationFactory(
        name="Race", plan="enterprise", owner__email=f"race-{uuid.uuid4().hex[:8]}@x.test"
    )
    org.max_concurrent_runs = cap
    org.save(update_fields=["max_concurrent_runs"])
    limited = WorkflowFactory(organization=org, name="Limited", steps=_steps())
    limited.concurrency = {"limit": 1, "key": "{{ inputs.k }}", "on_limit": "queue"}
    limited.save(update_fields=["concurrency"])
    free = WorkflowFactory(organization=org, name="Free", steps=_steps())
    return {"org": org.id, "limited": limited.id, "free": free.id}


def trigger(org_id: str, limited_id: str, free_id: str, count: int, seed: int, start_file: str) -> dict:
    from accounts.models import Organization
    from runs.services import run_create
    from tests.factories import owner_of
    from workflows.models import Workflow

    org = Organization.objects.get(pk=org_id)
    actor = owner_of(org)
    limited, free = Workflow.objects.get(pk=limited_id), Workflow.objects.get(pk=free_id)
    rng = random.Random(seed)
    wait_at_gate(start_file)
    ids, held = [], []
    for index in range(count):
        workflow = free if index % 3 == 2 else limited
        run = run_create(workflow=workflow, actor=actor, input_data={"k": rng.choice("ab")})
        ids.append(run.id)
        if run.status == "queued":  # not admitted when triggered: a limit held it back
            held.append(run.id)
    return {"runs": ids, "held": held}


def main(argv):
    django.setup()
    if argv[0] == "setup":
        print(json.dumps(setup(int(argv[1]))))
    elif argv[0] == "trigger":
        print(json.dumps(trigger(argv[1], argv[2], argv[3], int(argv[4]), int(argv[5]), argv[6])))


if __name__ == "__main__":
    main(sys.argv[1:])
