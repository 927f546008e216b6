"""What the demo organisation that `manage.py serve` creates on an empty database comes with, so the first
page after `make run` shows Baton at work: two workflows installed from the built-in templates and runs
executed by the real engine (docs/operations.md "First run").

A fresh install may reach no other service (offline, or blocked by the SSRF rules), so the runs are of the
decision template, which calls none: a request the owner approved (completed), one approved by its
threshold without asking anyone (completed), and one waiting for the owner's approval (the inbox's first
item, which completes when approved). The uptime check is installed to be run by hand."""

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

DECISION_TEMPLATE = "tpl_decision_record"
UPTIME_TEMPLATE = "tpl_uptime_check"
AUTO_APPROVE_BELOW = 500


def _request(title: str, amount: int, details: str) -> dict:
    return {
        "title": title,
        "details": details,
        "requested_by": "ada@example.com",
        "amount": amount,
        "auto_approve_below": AUTO_APPROVE_BELOW,
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
    """Install the decision (with its approval step) and uptime-check templates as active workflows, and
    run the decision three times: approved by `owner`, approved by its threshold, and waiting for the
    owner's approval. Call it in or out of a transaction. Returns the three runs, oldest first."""
    actor = Principal(organization=organization, user=owner, role="owner")
    workflows = {}
    for template_id in (DECISION_TEMPLATE, UPTIME_TEMPLATE):
        template = template_get(organization=organization, template_id=template_id)
        workflow = template_install(template=template, organization=organization, actor=actor)
        workflows[template_id] = workflow_set_status(
            workflow=workflow, actor=actor, status=WorkflowStatus.ACTIVE
        )
    decision = workflows[DECISION_TEMPLATE]
    requests = [
        _request("Renew the error-tracking plan", 2400, "Yearly plan; the price is unchanged."),
        _request("Buy a USB-C hub for the front desk", 45, "The old one is broken."),
        _request("Buy a second build server", 4200, "The build queue waits 20 minutes at peak."),
    ]
    runs = []
    with _engine_in_this_process():
        for input_data in requests:
            # Triggered by the system (as a form or a chat command would), so the owner may decide them.
            run = run_trigger(
                workflow=decision, actor=SYSTEM, input_data=input_data, trigger=RunTrigger.MANUAL
            )
            drain()
            runs.append(run)
        run_decide(
            run=Run.objects.get(pk=runs[0].pk),
            actor=actor,
            approved=True,
            note="Within this year's tooling budget.",
        )
        drain()
    return [Run.objects.get(pk=run.pk) for run in runs]
