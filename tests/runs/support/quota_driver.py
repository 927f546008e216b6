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
    from accounts.models import User
    from tests.factories import make_org
    from workflows.services import workflow_create

    owner = User.objects.create_user(email=f"quota-{uuid.uuid4().hex[:8]}@example.com", password="x" * 12)
    org = make_org(name="Quota race", plan="enterprise", owner=owner)
    org.monthly_run_limit = limit
    org.save(update_fields=["monthly_run_limit"])
    steps = [{"id": "a", "type": "transform", "config": {"value": 1}}]
    workflow = workflow_create(organization=org, actor=_actor(org), definition={"name": "Q", "steps": steps})
    return {"org": org.id, "workflow": workflow.id}


def _actor(org):
    from accounts.models import Membership
    from accounts.principal import Principal

    membership = Membership.objects.filter(organization=org).select_related("user").first()
    return Principal(organization=org, user=membership.user, role="owner")


def trigger(org_id: str, workflow_id: str, count: int, start_file: str) -> dict:
    from accounts.models import Organization
    from config.errors import QuotaExceeded
    from runs.services import run_create
    from workflows.models import Workflow

    org = Organization.objects.get(pk=org_id)
    actor = _actor(org)
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
