"""Run inside an approval race test's subprocess (its own database connection; `manual` dispatch).

`python -m tests.runs.support.approval_driver setup N` creates an organisation with an owner and N admins, a
run waiting at an approval step that needs 2 approvals, and the owner's approval; prints the run id and the N
admins' ids. `python -m tests.runs.support.approval_driver decide RUN USER START` writes START.ready.<pid>,
waits for the file START (so every process decides at the same moment), approves as that user and prints
{"status": 200|4xx, "code"}. `check RUN` prints the step's status, its decisions and the audited decisions.
`cluster_start`, `cluster_answer ADMIN APPROVE ANSWER` and `cluster_report TIMEOUT ID...` drive the test on a
real cluster (see there)."""

import json
import sys
import uuid

import django

from tests.runs.support.starting_gate import wait_at_gate
from tests.runs.support.waiting import wait_status, wait_terminal


def setup(racers: int) -> dict:
    from accounts.choices import Role
    from runs.engine import dispatch
    from runs.services import run_decide
    from tests.factories import (
        OrganizationFactory,
        RunFactory,
        UserFactory,
        WorkflowFactory,
        add_member,
        owner_of,
    )

    tag = uuid.uuid4().hex[:8]
    org = OrganizationFactory(name="Approval race", plan="enterprise", owner__email=f"approve-{tag}@x.test")
    users = [UserFactory(email=f"a{i}-{tag}@x.test") for i in range(racers)]
    admins = [add_member(org, Role.ADMIN, user) for user in users]
    actor = owner_of(org)
    steps = [
        {"id": "ok", "type": "approval", "config": {"message": "?", "required_approvals": 2}},
        {"id": "ship", "type": "transform", "config": {"value": 1}, "depends_on": ["ok"]},
    ]
    workflow = WorkflowFactory(organization=org, actor=actor, name="Race", steps=steps)
    run = RunFactory(workflow=workflow, actor=actor)
    dispatch.drain()
    run_decide(run=run, actor=actor, approved=True, note="first")
    return {"run": run.id, "racers": [user.id for user in admins]}


def decide(run_id: str, user_id: str, start_file: str) -> dict:
    from accounts.models import Membership
    from accounts.principal import Principal
    from config.errors import ApplicationError
    from runs.models import Run
    from runs.services import run_decide

    membership = Membership.objects.select_related("user", "organization").get(user_id=user_id)
    actor = Principal(organization=membership.organization, user=membership.user, role=membership.role)
    run = Run.objects.get(pk=run_id)
    wait_at_gate(start_file)
    try:
        run_decide(run=run, actor=actor, approved=True, note=user_id)
    except ApplicationError as exc:
        return {"status": exc.status, "code": exc.code}
    return {"status": 200, "code": None}


def check(run_id: str) -> dict:
    from audit.models import AuditEvent
    from runs.models import Run, StepRun

    step = StepRun.objects.get(run_id=run_id, step_id="ok")
    return {
        "run_status": Run.objects.get(pk=run_id).status,
        "step_status": step.status,
        "decisions": len(step.output_data["decisions"]),
        "audited": AuditEvent.objects.filter(run_id=run_id, event="run.approved").count(),
    }


# --- on a real cluster (`manage.py qcluster`, queue dispatch, its reconciler) -----------------------------


def cluster_start() -> dict:
    """Three runs through the real broker: one to approve, one whose approval times out (on_timeout approve,
    1 s), one input step to answer."""
    from accounts.choices import Role
    from runs.services import run_create
    from tests.factories import OrganizationFactory, UserFactory, WorkflowFactory, add_member, owner_of

    tag = uuid.uuid4().hex[:8]
    org = OrganizationFactory(name="Approval cluster", plan="enterprise", owner__email=f"gate-{tag}@x.test")
    admin = add_member(org, Role.ADMIN, UserFactory(email=f"adm-{tag}@x.test"))
    actor = owner_of(org)

    def flow(name, first):
        after = {
            "id": "after",
            "type": "transform",
            "depends_on": ["gate"],
            "config": {"value": "{{ steps.gate.output }}"},
        }
        definition = {
            "name": name,
            "steps": [{"id": "gate", **first}, after],
            "output": "{{ steps.after.output }}",
        }
        return WorkflowFactory(organization=org, actor=actor, definition=definition)

    approve = flow("Approve", {"type": "approval", "config": {"message": "Go?", "approvers": ["admin"]}})
    timeout = flow("Timeout", {"type": "approval", "config": {"timeout_seconds": 1, "on_timeout": "approve"}})
    answer = flow("Answer", {"type": "input", "config": {"message": "n?", "schema": {"type": "object",
                  "properties": {"n": {"type": "integer"}}, "required": ["n"]}}})  # fmt: skip
    return {
        "admin": admin.id,
        "approve": run_create(workflow=approve, actor=actor).id,
        "timeout": run_create(workflow=timeout, actor=actor).id,
        "answer": run_create(workflow=answer, actor=actor).id,
    }


def cluster_answer(admin_id: str, approve_id: str, answer_id: str) -> dict:
    """Once the workers parked them: the admin approves one run and answers the other's input step."""
    from accounts.models import Membership
    from accounts.principal import Principal
    from runs.models import Run
    from runs.services import run_collect_inputs, run_decide

    membership = Membership.objects.select_related("user", "organization").get(user_id=admin_id)
    actor = Principal(organization=membership.organization, user=membership.user, role=membership.role)
    wait_status(approve_id, "awaiting_approval", 60)
    wait_status(answer_id, "awaiting_input", 60)
    approved = run_decide(run=Run.objects.get(pk=approve_id), actor=actor, approved=True, note="go")
    answered = run_collect_inputs(run=Run.objects.get(pk=answer_id), actor=actor, data={"n": 7})
    return {"approved": approved.status, "answered": answered.status}


def cluster_report(timeout: float, ids: list[str]) -> dict:
    from audit.models import AuditEvent
    from runs.models import Run

    wait_terminal(ids, timeout)
    report = {}
    for run in Run.objects.filter(pk__in=ids).prefetch_related("steps", "events"):
        report[run.id] = {
            "status": run.status,
            "result": run.result,
            "pause_signal": run.pause_signal,
            "events": [event.type for event in sorted(run.events.all(), key=lambda event: event.seq)],
            "audit": list(
                AuditEvent.objects.filter(run_id=run.id).order_by("seq").values_list("event", "actor")
            ),
        }
    return report


def main(argv):
    django.setup()
    if argv[0] == "setup":
        print(json.dumps(setup(int(argv[1]))))
    elif argv[0] == "decide":
        print(json.dumps(decide(argv[1], argv[2], argv[3])))
    elif argv[0] == "check":
        print(json.dumps(check(argv[1])))
    elif argv[0] == "cluster_start":
        print(json.dumps(cluster_start()))
    elif argv[0] == "cluster_answer":
        print(json.dumps(cluster_answer(argv[1], argv[2], argv[3])))
    elif argv[0] == "cluster_report":
        print(json.dumps(cluster_report(float(argv[1]), argv[2:])))


if __name__ == "__main__":
    main(sys.argv[1:])
