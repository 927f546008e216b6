"""Run inside a quota race test's subprocess (its own database connection; `manual` dispatch: nothing runs).

`python -m tests.runs.support.quota_driver setup LIMIT` creates an organisation with monthly_run_limit LIMIT
and a workflow; prints their ids. `python -m tests.runs.support.quota_driver trigger ORG WORKFLOW COUNT START`
writes START.ready.<pid>, waits for the file START (so every process triggers at the same moment), calls
run_create COUNT times and prints {"created": [...ids], "refused": n} (n: 402 quota_exceeded answers)."""

import json
import sys
import uuid

import django

from tests.runs.support.starting_gate import wait_at_gate


def setup(limit: int) -> dict:
    from tests.factories import OrganizationFactory, WorkflowFactory

    org = OrganizationFactory(
        name="Quota race", plan="enterprise", owner__email=f"quota-{uuid.uuid4().hex[:8]}@x.test"
    )
    org.monthly_run_limit = limit
    org.save(update_fields=["monthly_run_limit"])
    workflow = WorkflowFactory(organization=org, name="Q")
    return {"org": org.id, "workflow": workflow.id}


def trigger(org_id: str, workflow_id: str, count: int, start_file: str) -> dict:
    from accounts.models import Organization
    from config.errors import QuotaExceeded
    from runs.services import run_create
    from tests.factories import owner_of
    from workflows.models import Workflow

    org = Organization.objects.get(pk=org_id)
    actor = owner_of(org)
    workflow = Workflow.objects.get(pk=workflow_id)
    wait_at_gate(start_file)
    created, refused = [], 0
    for _ in range(count):
        try:
            created.append(run_create(workflow=workflow, actor=actor).id)
        except QuotaExceeded:
            refused += 1
    return {"created": created, "refused": refused}


def main(argv):
    django.setup()
    if argv[0] == "setup":
        print(json.dumps(setup(int(argv[1]))))
    elif argv[0] == "trigger":
        print(json.dumps(trigger(argv[1], argv[2], int(argv[3]), argv[4])))


if __name__ == "__main__":
    main(sys.argv[1:])
