"""The preparation steps `serve` runs before starting the processes."""

from django.contrib.auth import authenticate

from accounts.models import Membership, Organization
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
    assert sorted(w.name for w in workflows) == ["Approval-gated deployment", "Batch uptime check"]
    assert {w.status for w in workflows} == {"active"}
    rejected, waiting = Run.objects.filter(organization=created.organization).order_by("created_at")
    assert rejected.status == RunStatus.FAILED and rejected.completed_at is not None
    steps = dict(StepRun.objects.filter(run=rejected, parent__isnull=True).values_list("step_id", "status"))
    assert steps["prepare"] == StepStatus.COMPLETED and steps["approve"] == StepStatus.FAILED
    assert waiting.status == RunStatus.AWAITING_APPROVAL
    assert AuditEvent.objects.filter(organization=created.organization, event="run.rejected").exists()
    # The owner finds the waiting run in their inbox and may decide it (it was triggered by the system).
    from tests.dashboard.support.helpers import signed_in

    owner = Membership.objects.get(organization=created.organization).user
    inbox = signed_in(owner, created.organization).get("/approvals/").content.decode()
    assert waiting.id in inbox
