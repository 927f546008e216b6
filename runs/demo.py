"""What the demo organisation that `manage.py serve` creates on an empty database comes with, so the first
page after `make run` shows Baton at work: two workflows installed from the built-in templates and runs
executed by the real engine (docs/operations.md "First run").

Every template ships steps that call other services, which a fresh install may not reach (offline, or
blocked by the SSRF rules), so the runs stop where no network is needed: a production deployment whose
approval was rejected (finished) and one waiting for the owner's approval (the inbox's first item)."""

from contextlib import contextmanager

from django.conf import settings

from accounts.models import Organization, User
from accounts.principal import SYSTEM, Principal
from runs.choices import RunTrigger
from runs.engine.dispatch import drain
from runs.models import Run
from runs.services import run_decide, run_trigger
from workflows.choices import WorkflowStatus
from workflows.selectors import template_get
from workflows.services import template_install, workflow_set_status

DEPLOY_TEMPLATE = "tpl_approval_gated_deploy"
UPTIME_TEMPLATE = "tpl_uptime_check"


def _deploy_input(version: str, changelog: str) -> dict:
    return {
        "service": "checkout",
        "version": version,
        "environment": "production",
        "deploy_webhook_url": "https://deploy.example.com/hooks/checkout",
        "health_url": "https://checkout.example.com/healthz",
        "changelog": changelog,
    }


@contextmanager
def _engine_in_this_process():
    """Whatever the configured dispatch, collect the steps (dispatch "manual") for `drain()` to execute here
    and now, in or out of a transaction."""
    previous = settings.BATON_ENGINE_DISPATCH
    settings.BATON_ENGINE_DISPATCH = "manual"
    try:
        yield
    finally:
        settings.BATON_ENGINE_DISPATCH = previous


def demo_content_create(*, organization: Organization, owner: User) -> list[Run]:
    """Install the deployment (with its approval step) and uptime-check templates as active workflows, and
    run the deployment twice: one rejected by `owner` (finished), one waiting for their approval. Call it
    in or out of a transaction. Returns the two runs."""
    actor = Principal(organization=organization, user=owner, role="owner")
    workflows = {}
    for template_id in (DEPLOY_TEMPLATE, UPTIME_TEMPLATE):
        template = template_get(organization=organization, template_id=template_id)
        workflow = template_install(template=template, organization=organization, actor=actor)
        workflows[template_id] = workflow_set_status(
            workflow=workflow, actor=actor, status=WorkflowStatus.ACTIVE
        )
    deploy = workflows[DEPLOY_TEMPLATE]
    with _engine_in_this_process():
        # Triggered by the system (as a release pipeline would), so the owner may decide them.
        rejected = run_trigger(
            workflow=deploy,
            actor=SYSTEM,
            input_data=_deploy_input("2.4.0", "Moves payments to the new provider."),
            trigger=RunTrigger.MANUAL,
        )
        drain()
        run_decide(
            run=Run.objects.get(pk=rejected.pk),
            actor=actor,
            approved=False,
            note="Not during the end-of-month freeze.",
        )
        drain()
        waiting = run_trigger(
            workflow=deploy,
            actor=SYSTEM,
            input_data=_deploy_input("2.4.1", "Fixes the rounding of refunds."),
            trigger=RunTrigger.MANUAL,
        )
        drain()
    return [Run.objects.get(pk=rejected.pk), Run.objects.get(pk=waiting.pk)]
