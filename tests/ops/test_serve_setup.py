"""The preparation steps `serve` runs before starting the processes."""

from django.contrib.auth import authenticate

from accounts.models import Membership, Organization
from accounts.principal import Principal
from audit.models import AuditEvent
from config.management.commands.serve import create_demo_organization, load_builtin_templates


def test_demo_organisation_is_created_once_on_an_empty_database(db):
    created = create_demo_organization()
    assert created is not None
    assert len(created.password) >= 20
    user = authenticate(username=created.email, password=created.password)
    assert user is not None
    membership = Membership.objects.get(user=user)
    assert membership.organization == created.organization and membership.role == "owner"
    assert AuditEvent.objects.filter(organization=created.organization, event="organization.created").exists()
    assert create_demo_organization() is None
    assert Organization.objects.count() == 1


def test_demo_organisation_gets_the_default_plan_without_caps(db, settings):
    org = create_demo_organization().organization
    assert org.plan == "self_hosted"
    assert org.limits == dict.fromkeys(org.limits)  # every limit null: unlimited


def test_demo_organisation_follows_baton_default_plan(db, settings):
    settings.BATON_DEFAULT_PLAN = "starter"
    assert create_demo_organization().organization.plan == "starter"


def test_no_demo_organisation_when_organisations_exist(org):
    assert create_demo_organization() is None
    assert list(Organization.objects.values_list("name", flat=True)) == ["Acme"]


def test_demo_organisation_can_be_disabled(db, settings):
    settings.BATON_DEMO_ORG = False
    assert create_demo_organization() is None
    assert not Organization.objects.exists()


def test_builtin_template_hook_is_idempotent(db):
    load_builtin_templates()
    assert load_builtin_templates() == 0


def test_demo_organisation_comes_with_workflows_and_runs_the_engine_executed(db, settings):
    from runs.choices import RunStatus, StepStatus
    from runs.models import Run, StepRun
    from workflows.models import Workflow

    settings.BATON_ENGINE_DISPATCH = "queue"  # what serve runs with: the demo executes its runs itself
    load_builtin_templates()
    created = create_demo_organization()
    assert settings.BATON_ENGINE_DISPATCH == "queue"
    workflows = Workflow.objects.filter(organization=created.organization)
    assert sorted(w.name for w in workflows) == ["Approve and record a decision", "Batch uptime check"]
    assert {w.status for w in workflows} == {"active"}
    approved, below, waiting = Run.objects.filter(organization=created.organization).order_by("created_at")
    owner = Membership.objects.get(organization=created.organization).user
    assert approved.status == RunStatus.COMPLETED and approved.completed_at is not None
    assert approved.result["approved"] is True and approved.result["decided_by"] == owner.id
    assert approved.result["note"] == "Within this year's tooling budget."
    steps = dict(StepRun.objects.filter(run=approved, parent__isnull=True).values_list("step_id", "status"))
    assert steps == {
        "request": StepStatus.COMPLETED,
        "needs_approval": StepStatus.COMPLETED,
        "approve": StepStatus.COMPLETED,
        "below_threshold": StepStatus.SKIPPED,
        "record": StepStatus.COMPLETED,
    }
    # Below the threshold: approved by the condition's other branch, nobody asked.
    assert below.status == RunStatus.COMPLETED and below.result["decided_by"] == "threshold"
    steps = dict(StepRun.objects.filter(run=below, parent__isnull=True).values_list("step_id", "status"))
    assert steps["approve"] == StepStatus.SKIPPED and steps["below_threshold"] == StepStatus.COMPLETED
    assert waiting.status == RunStatus.AWAITING_APPROVAL
    assert AuditEvent.objects.filter(organization=created.organization, event="run.approved").exists()
    # The owner finds the waiting run in their inbox and may decide it (it was triggered by the system).
    from tests.dashboard.support.helpers import signed_in

    inbox = signed_in(owner, created.organization).get("/approvals/").content.decode()
    assert waiting.id in inbox
    # Approved, the waiting request completes too: nothing in the template needs the network.
    from runs.demo import _engine_in_this_process
    from runs.engine.dispatch import drain
    from runs.services import run_decide

    with _engine_in_this_process():
        run_decide(run=waiting, actor=Principal(organization=created.organization, user=owner, role="owner"),
                   approved=True, note="")  # fmt: skip
        drain()
    waiting.refresh_from_db()
    assert waiting.status == RunStatus.COMPLETED and waiting.result["title"] == "Buy a second build server"
