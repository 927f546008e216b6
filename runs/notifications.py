"""Notifications (docs/notifications.md): a run waiting for an approval or an input tells the people who
may give it, a failed run tells its workflow's subscribers — by email (each person chooses in their
profile) and through the organisation's Slack-compatible webhook (Settings → organisation).

The engine only notes which events call for a notice (`note_events`, from the unit of work) and, once its
transaction commits, enqueues one django-q2 task per notice (`notify`). The task reads what it needs and
sends; whatever fails there (SMTP, the webhook) is logged and dropped, so a notification never slows or
breaks a run. With the engine dispatching inline or manually (tests, `serve`'s demo), the notice is sent
in the same process after the commit, its failures swallowed the same way."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail

from accounts.choices import Role
from accounts.crypto import DecryptionError, decrypt
from accounts.links import absolute_url
from accounts.models import Membership
from accounts.network import OutboundError
from accounts.principal import Principal
from runs.choices import EventType
from runs.engine.dispatch import after_commit, broker
from runs.engine.outbound import fetch
from runs.engine.secrets import outbound_policy_for
from runs.models import Run, StepRun, WorkflowSubscription

logger = logging.getLogger("baton.notifications")

KINDS = {
    EventType.RUN_AWAITING_APPROVAL: "approval",
    EventType.RUN_AWAITING_INPUT: "input",
    EventType.RUN_FAILED: "failure",
}
WEBHOOK_TIMEOUT_SECONDS = 10
WEBHOOK_MAX_RESPONSE_BYTES = 64 * 1024
TEXT_MAX = 2000


def note_events(run_id: str, events: list[tuple]) -> None:
    """Called with the events a unit of work writes (`(run_id, seq, type, step_id, data, created_at)`):
    schedule a notice for each that calls for one, after the transaction commits."""
    notices = [(KINDS[event[2]], event[3]) for event in events if event[2] in KINDS]
    if notices:
        after_commit(lambda: enqueue(run_id, notices))


def enqueue(run_id: str, notices: list[tuple[str, str]]) -> None:
    for kind, step_id in notices:
        if settings.BATON_ENGINE_DISPATCH == "queue":
            from django_q.tasks import async_task

            async_task("runs.notifications.notify", run_id, kind, step_id, broker=broker())
        else:
            notify(run_id, kind, step_id)


def notify(run_id: str, kind: str, step_id: str = "") -> int:
    """The django-q2 task: send the notice of `kind` ("approval", "input", "failure") about a run by email and
    webhook. Returns the number of emails sent; never raises."""
    try:
        return _notify(run_id, kind, step_id)
    except Exception:
        logger.exception("notification %s of run %s failed", kind, run_id)
        return 0


def _notify(run_id: str, kind: str, step_id: str) -> int:
    run = Run.objects.select_related("workflow", "organization").filter(pk=run_id).first()
    if run is None:
        return 0
    step = (
        StepRun.objects.filter(run_id=run.id, step_id=step_id, parent__isnull=True).first()
        if step_id
        else None
    )
    subject, text = message(run, kind, step)
    recipients = recipients_of(run, kind, step)
    wants = "notify_failures_email" if kind == "failure" else "notify_requests_email"
    emails = [user.email for user in recipients if getattr(user, wants) and user.has_usable_password()]
    sent = 0
    for email in emails:
        try:
            sent += send_mail(subject, text, None, [email])
        except Exception:  # one bad address or a refused message must not stop the others
            logger.warning("notification email of run %s could not be sent", run.id, exc_info=True)
    post_webhook(run, kind, text)
    return sent


def recipients_of(run: Run, kind: str, step: StepRun | None) -> list:
    """Who hears of it: for an approval, members who may decide the step (its `approvers`, else any member);
    for an input, the members; for a failure, the workflow's subscribers still in the organisation."""
    memberships = Membership.objects.filter(
        organization=run.organization, user__is_active=True
    ).select_related("user")
    if kind == "failure":
        subscribed = WorkflowSubscription.objects.filter(workflow_id=run.workflow_id).values("user_id")
        return [m.user for m in memberships.filter(user_id__in=subscribed)]
    from runs.services import is_approver  # the services import the engine, which imports this module

    deciders = memberships.filter(role__in=[Role.OWNER, Role.ADMIN, Role.MEMBER])
    if kind != "approval":
        return [membership.user for membership in deciders]
    approvers = (step.input_data or {}).get("approvers") if step is not None else None
    return [
        membership.user
        for membership in deciders
        if is_approver(
            approvers, Principal(organization=run.organization, user=membership.user, role=membership.role)
        )
    ]


def message(run: Run, kind: str, step: StepRun | None) -> tuple[str, str]:
    """The subject and the plain text of a notice (also the webhook's `text`), with a link to the run."""
    workflow = run.workflow.name
    link = absolute_url(f"/runs/{run.id}/")
    if kind == "failure":
        what = (run.error or {}).get("message") if isinstance(run.error, dict) else ""
        subject, body = f"Run failed: {workflow}", f"Run {run.id} of {workflow} failed"
    else:
        # The step's own message (its rendered config), else the run's pause signal (the environment gate).
        what = (step.input_data or {}).get("message") if step is not None else ""
        what = what or (run.pause_signal or {}).get("message") or ""
        need = "an approval" if kind == "approval" else "an input"
        subject = f"{'Approval' if kind == 'approval' else 'Input'} needed: {workflow}"
        body = f"Run {run.id} of {workflow} waits for {need}"
    step_part = f" at step '{step.step_id}'" if step is not None else ""
    text = f"{body}{step_part}.\n\n{what or ''}".rstrip() + f"\n\nOpen it: {link}\n"
    return subject[:200], text[:TEXT_MAX]


def webhook_payload(kind: str, text: str) -> dict:
    """Slack's incoming-webhook shape: `text` (the fallback every compatible receiver shows) and blocks."""
    return {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
        "baton": {"kind": kind},
    }


def post_webhook(run: Run, kind: str, text: str) -> bool:
    """POST the notice to the organisation's webhook, if any, through the SSRF-protected client under its
    security policy. True when it was accepted (2xx); failures are logged without the URL (a secret)."""
    token = run.organization.notification_webhook_encrypted
    if not token:
        return False
    try:
        url = decrypt(token)
        response = fetch(
            "POST",
            url,
            json=webhook_payload(kind, text),
            timeout=WEBHOOK_TIMEOUT_SECONDS,
            policy=outbound_policy_for(run.organization_id),
            max_response_bytes=WEBHOOK_MAX_RESPONSE_BYTES,
            follow_redirects=False,
        )
    except (DecryptionError, OutboundError, ValueError) as exc:
        logger.warning(
            "notification webhook of %s not delivered: %s", run.organization_id, type(exc).__name__
        )
        return False
    if not 200 <= response.status_code < 300:
        logger.warning("notification webhook of %s answered %s", run.organization_id, response.status_code)
        return False
    return True
