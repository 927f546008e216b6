"""Notifications (docs/notifications.md): approval and input requests reach the people who may answer,
failed runs the workflow's subscribers — by email (Django's locmem backend here) and through the
organisation's Slack-compatible webhook (a real HTTP server on 127.0.0.1); a failing webhook never
touches the run."""

import json
import time

import pytest
from django.core import mail

from accounts.principal import Principal
from accounts.services import organization_update, security_policy_update
from runs.models import WorkflowSubscription
from runs.notifications import notify
from tests.dashboard.support.helpers import signed_in
from tests.factories import add_member
from tests.runs.support.http_server import running_server

APPROVAL = [{"id": "ok", "type": "approval", "config": {"message": "Ship it?", "approvers": ["admin"]}}]
INPUT = [
    {
        "id": "ask",
        "type": "input",
        "config": {
            "message": "Which colour?",
            "schema": {"type": "object", "properties": {"c": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def people(org):
    return {role: add_member(org, role) for role in ("admin", "member", "viewer")}


def owner_actor(org, owner):
    return Principal(organization=org, user=owner, role="owner")


def recipients():
    return sorted(address for message in mail.outbox for address in message.to)


def test_an_approval_request_emails_those_who_may_decide(engine, org, owner, people, settings):
    settings.BATON_PUBLIC_URL = "https://baton.example.com"
    run = engine.start(APPROVAL)
    assert run.status == "awaiting_approval"
    # approvers: ["admin"] — the admin and the owner (roles at least admin), not the member or the viewer.
    assert recipients() == sorted([owner.email, people["admin"].email])
    message = mail.outbox[0]
    assert message.subject == "Approval needed: Test flow"
    assert "Ship it?" in message.body and f"https://baton.example.com/runs/{run.id}/" in message.body


def test_a_person_can_turn_request_emails_off(engine, org, owner, people):
    client = signed_in(people["admin"], org)
    assert client.post("/profile/", {"name": "Ada", "notify_failures_email": "on"}).status_code == 302
    engine.start(APPROVAL)
    assert recipients() == [owner.email]


def test_an_input_request_emails_the_members(engine, org, owner, people):
    run = engine.start(INPUT)
    assert run.status == "awaiting_input"
    assert recipients() == sorted([owner.email, people["admin"].email, people["member"].email])
    assert mail.outbox[0].subject == "Input needed: Test flow"


def test_a_failed_run_emails_the_workflows_subscribers_and_posts_the_webhook(engine, org, owner, people):
    with running_server() as server:
        security_policy_update(
            organization=org, actor=owner_actor(org, owner), changes={"http_allowlist": ["127.0.0.1"]}
        )
        organization_update(
            organization=org,
            actor=owner_actor(org, owner),
            notification_webhook_url=f"{server.base}/status/200",
        )
        steps = [{"id": "call", "type": "http_request", "config": {"url": f"{server.base}/status/404"}}]
        workflow = engine.workflow(steps)
        # The viewer follows it from the workflow page; the member subscribed and then stopped.
        assert (
            signed_in(people["viewer"], org)
            .post(f"/workflows/{workflow.id}/notifications/", {"subscribe": "1"})
            .status_code
            == 302
        )
        member = signed_in(people["member"], org)
        member.post(f"/workflows/{workflow.id}/notifications/", {"subscribe": "1"})
        member.post(f"/workflows/{workflow.id}/notifications/", {"subscribe": "0"})
        from runs.services import run_create

        run = run_create(workflow=workflow, actor=owner_actor(org, owner), input_data={})
        engine.drain()
        run.refresh_from_db()
        assert run.status == "failed"
        assert recipients() == [people["viewer"].email]
        assert mail.outbox[0].subject == "Run failed: Test flow"
        [hook] = [r for r in server.requests if r["path"] == "/status/200"]
        body = json.loads(hook["body"])
        assert hook["method"] == "POST" and hook["headers"]["content-type"] == "application/json"
        assert body["text"].startswith(f"Run {run.id} of Test flow failed")
        assert body["blocks"][0]["text"]["text"] == body["text"] and body["baton"] == {"kind": "failure"}


def test_a_failing_webhook_leaves_the_run_and_the_emails_alone(engine, org, owner, people):
    with running_server() as server:
        security_policy_update(
            organization=org, actor=owner_actor(org, owner), changes={"block_private_networks": False}
        )
        organization_update(
            organization=org,
            actor=owner_actor(org, owner),
            notification_webhook_url=f"{server.base}/status/500",
        )
        run = engine.start(APPROVAL)
        assert server.count("/status/500") == 1
    assert run.status == "awaiting_approval" and len(mail.outbox) == 2


def test_the_webhook_is_under_the_ssrf_rules(engine, org, owner, people):
    with running_server() as server:
        organization_update(
            organization=org,
            actor=owner_actor(org, owner),
            notification_webhook_url=f"{server.base}/status/200",
        )
        run = engine.start(APPROVAL)
        assert server.requests == []  # 127.0.0.1 is a private address, blocked by default
    assert run.status == "awaiting_approval" and len(mail.outbox) == 2


def test_notify_never_raises(db):
    assert notify("run_missing", "failure") == 0


def test_subscriptions_are_per_organisation(org, owner, other_org, outsider, engine):
    workflow = engine.workflow(APPROVAL)
    client = signed_in(outsider, other_org)
    assert client.post(f"/workflows/{workflow.id}/notifications/", {"subscribe": "1"}).status_code == 404
    assert client.get(f"/workflows/{workflow.id}/notifications/").status_code == 404
    assert not WorkflowSubscription.objects.exists()
    page = signed_in(owner, org).get(f"/workflows/{workflow.id}/notifications/", HTTP_HX_REQUEST="true")
    assert page.status_code == 200 and "Nobody is told" in page.content.decode()
    assert (
        "workflow-notifications" in signed_in(owner, org).get(f"/workflows/{workflow.id}/").content.decode()
    )


@pytest.mark.slow
def test_a_cluster_worker_posts_the_notice_once_the_run_waits(cluster):
    """The real path: a worker executes the approval step, and the notice is a django-q2 task that a worker
    picks up and posts to the webhook."""
    with running_server() as server:
        cluster.start()
        started = cluster.driver(
            "start", f"{server.base}/status/200", module="tests.runs.support.notifications_driver"
        )
        deadline = time.monotonic() + 60
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(server.requests) == 1
        body = json.loads(server.requests[0]["body"])
    assert body["baton"] == {"kind": "approval"} and started["run"] in body["text"]
    assert "Ship it?" in body["text"]
