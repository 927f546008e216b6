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
import time
import uuid

import django

from tests.runs.support.starting_gate import wait_at_gate


def setup(racers: int) -> dict:
    from accounts.choices import Role
    from accounts.models import User
    from accounts.principal import Principal
    from runs.engine import dispatch
    from runs.people import run_decide
    from runs.services import run_create
    from tests.factories import add_member, make_org
    from workflows.services import workflow_create

    tag = uuid.uuid4().hex[:8]
    owner = User.objects.create_user(email=f"approve-{tag}@example.com", password="x" * 12)
    org = make_org(name="Approval race", plan="enterprise", owner=owner)
    users = [
        User.objects.create_user(email=f"a{i}-{tag}@example.com", password="x" * 12) for i in range(racers)
    ]
    admins = [add_member(org, Role.ADMIN, user) for user in users]
    actor = Principal(organization=org, user=owner, role=Role.OWNER)
    steps = [
        {"id": "ok", "type": "approval", "config": {"message": "?", "required_approvals": 2}},
        {"id": "ship", "type": "transform", "config": {"value": 1}, "depends_on": ["ok"]},
    ]
    workflow = workflow_create(organization=org, actor=actor, definition={"name": "Race", "steps": steps})
    run = run_create(workflow=workflow, actor=actor)
    dispatch.drain()
    run_decide(run=run, actor=actor, approved=True, note="first")
    return {"run": run.id, "racers": [user.id for user in admins]}


def decide(run_id: str, user_id: str, start_file: str) -> dict:
    from accounts.models import Membership
    from accounts.principal import Principal
    from config.errors import ApplicationError
    from runs.models import Run
    from runs.people import run_decide

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
    from accounts.models import User
    from accounts.principal import Principal
    from runs.services import run_create
    from tests.factories import add_member, make_org
    from workflows.services import workflow_create

    tag = uuid.uuid4().hex[:8]
    owner = User.objects.create_user(email=f"gate-{tag}@example.com", password="x" * 12)
    org = make_org(name="Approval cluster", plan="enterprise", owner=owner)
    admin = add_member(
        org, Role.ADMIN, User.objects.create_user(email=f"adm-{tag}@example.com", password="x" * 12)
    )
    actor = Principal(organization=org, user=owner, role=Role.OWNER)

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
        return workflow_create(organization=org, actor=actor, definition=definition)

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


def _wait_for(run_id: str, status: str, timeout: float) -> None:
    from runs.models import Run

    deadline = time.monotonic() + timeout
    while Run.objects.get(pk=run_id).status != status:
        if time.monotonic() > deadline:
            raise SystemExit(f"{run_id} never became {status}")
        time.sleep(0.05)


def cluster_answer(admin_id: str, approve_id: str, answer_id: str) -> dict:
    """Once the workers parked them: the admin approves one run and answers the other's input step."""
    from accounts.models import Membership
    from accounts.principal import Principal
    from runs.models import Run
    from runs.people import run_collect_inputs, run_decide

    membership = Membership.objects.select_related("user", "organization").get(user_id=admin_id)
    actor = Principal(organization=membership.organization, user=membership.user, role=membership.role)
    _wait_for(approve_id, "awaiting_approval", 60)
    _wait_for(answer_id, "awaiting_input", 60)
    approved = run_decide(run=Run.objects.get(pk=approve_id), actor=actor, approved=True, note="go")
    answered = run_collect_inputs(run=Run.objects.get(pk=answer_id), actor=actor, data={"n": 7})
    return {"approved": approved.status, "answered": answered.status}


def cluster_report(timeout: float, ids: list[str]) -> dict:
    from audit.models import AuditEvent
    from runs.choices import RUN_TERMINAL
    from runs.models import Run

    deadline = time.monotonic() + timeout
    while Run.objects.filter(pk__in=ids).exclude(status__in=RUN_TERMINAL).exists():
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
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
