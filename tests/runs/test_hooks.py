"""Inbound webhooks (API.md `/hooks`, runs/api/hooks.py, workflows/webhooks.py)."""

import hashlib
import hmac
import json
import logging
import time

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEvent
from config.redaction import HookTokenFilter
from runs.models import Run
from tests.workflows.support.helpers import make_workflow
from workflows.models import Workflow
from workflows.webhooks import baton_signature


@pytest.fixture
def hooked(org, owner, engine):
    workflow = make_workflow(org, owner)
    Workflow.objects.filter(pk=workflow.pk).update(webhook_enabled=True)
    return Workflow.objects.get(pk=workflow.pk)


@pytest.fixture
def client():
    return APIClient()


def post_token(client, workflow, body=None, token=None, **headers):
    data = json.dumps({"who": "hook"} if body is None else body)
    url = f"/api/v1/hooks/{workflow.id}/{token or workflow.webhook_secret}"
    return client.post(url, data, content_type="application/json", **headers)


def signed_headers(workflow, raw: bytes, stamp=None):
    stamp = int(time.time()) if stamp is None else stamp
    return {"HTTP_X_BATON_SIGNATURE": f"t={stamp},v1={baton_signature(workflow.webhook_secret, stamp, raw)}"}


def post_signed(client, workflow, raw: bytes, headers, content_type="application/json"):
    return client.post(f"/api/v1/hooks/{workflow.id}", raw, content_type=content_type, **headers)


def test_token_hook_starts_a_webhook_run(client, hooked):
    response = post_token(client, hooked, HTTP_USER_AGENT="curl/8", HTTP_X_SECRET_THING="no")
    assert response.status_code == 202, response.content
    run = Run.objects.get(pk=response.json()["run_id"])
    assert set(response.json()) == {"run_id"}
    assert run.trigger == "webhook" and run.input_data == {"who": "hook"}
    assert run.metadata["webhook"]["user-agent"] == "curl/8"
    assert run.metadata["webhook"]["content-type"] == "application/json"
    assert "x-secret-thing" not in run.metadata["webhook"]


def test_wrong_token_unknown_workflow_and_disabled_hook_are_the_same_404(client, hooked, org, owner):
    wrong = post_token(client, hooked, token="0" * 48)
    unknown = client.post(
        f"/api/v1/hooks/wf_nope/{hooked.webhook_secret}", "{}", content_type="application/json"
    )
    disabled = make_workflow(org, owner, name="Quiet")
    off = post_token(client, disabled)
    bodies = [r.json()["error"] for r in (wrong, unknown, off)]
    assert [r.status_code for r in (wrong, unknown, off)] == [404, 404, 404]
    assert {b["code"] for b in bodies} == {"workflow_not_found"}
    assert wrong.json()["error"]["message"] == off.json()["error"]["message"].replace(disabled.id, hooked.id)
    assert not Run.objects.exists()


def test_archived_is_404_and_paused_is_409(client, hooked):
    Workflow.objects.filter(pk=hooked.pk).update(status="paused")
    paused = post_token(client, hooked)
    assert paused.status_code == 409 and paused.json()["error"]["code"] == "workflow_disabled"
    Workflow.objects.filter(pk=hooked.pk).update(status="archived")
    assert post_token(client, hooked).status_code == 404


def test_input_is_validated_and_malformed_json_is_400(client, hooked):
    invalid = post_token(client, hooked, body={"who": 5})
    assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "invalid_input"
    url = f"/api/v1/hooks/{hooked.id}/{hooked.webhook_secret}"
    broken = client.post(url, "{not json", content_type="application/json")
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_request"
    array = client.post(url, "[1]", content_type="application/json")
    assert array.status_code == 400
    xml = client.post(url, "<a/>", content_type="application/xml")
    assert xml.status_code == 415


def test_form_encoded_body_is_the_input(client, hooked):
    url = f"/api/v1/hooks/{hooked.id}/{hooked.webhook_secret}"
    response = client.post(url, "who=form", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 202, response.content
    assert Run.objects.get(pk=response.json()["run_id"]).input_data == {"who": "form"}


def test_body_over_the_limit_is_413(client, hooked, settings):
    settings.BATON_WEBHOOK_MAX_BODY_BYTES = 1024
    response = post_token(client, hooked, body={"who": "x" * 2000})
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


def test_rate_limit_per_workflow_answers_429_with_headers(client, hooked, settings):
    settings.BATON_WEBHOOK_RATE_PER_MINUTE = 2
    first = post_token(client, hooked)
    assert first.status_code == 202 and first["X-RateLimit-Limit"] == "2"
    assert first["X-RateLimit-Remaining"] == "1"
    post_token(client, hooked)
    third = post_token(client, hooked)
    assert third.status_code == 429 and third.json()["error"]["code"] == "rate_limited"
    assert int(third["Retry-After"]) >= 1 and third["X-RateLimit-Remaining"] == "0"
    assert "RateLimit" in third and "RateLimit-Policy" in third


def test_idempotency_key_and_github_delivery_answer_the_first_run(client, hooked):
    first = post_token(client, hooked, HTTP_IDEMPOTENCY_KEY="abc")
    again = post_token(client, hooked, HTTP_IDEMPOTENCY_KEY="abc")
    assert again.status_code == 202 and again.json()["run_id"] == first.json()["run_id"]
    gh = post_token(client, hooked, HTTP_X_GITHUB_DELIVERY="d-1")
    gh_again = post_token(client, hooked, HTTP_X_GITHUB_DELIVERY="d-1")
    assert gh_again.json()["run_id"] == gh.json()["run_id"]
    assert Run.objects.count() == 2


def test_github_ping_starts_no_run(client, hooked):
    response = post_token(client, hooked, HTTP_X_GITHUB_EVENT="ping", HTTP_X_GITHUB_DELIVERY="p-1")
    assert response.status_code == 200 and response.json() == {"ok": True, "event": "ping"}
    assert not Run.objects.exists()


def test_baton_signature_accepted_once_then_replay_409(client, hooked):
    raw = json.dumps({"who": "signed"}).encode()
    headers = signed_headers(hooked, raw)
    ok = post_signed(client, hooked, raw, headers)
    assert ok.status_code == 202, ok.content
    assert Run.objects.get(pk=ok.json()["run_id"]).input_data == {"who": "signed"}
    replay = post_signed(client, hooked, raw, headers)
    assert replay.status_code == 409 and replay.json()["error"]["code"] == "webhook_replayed"


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ("t=1,v1=abc", "stale"),
        ("v1=abc", "malformed"),
        ("t=³,v1=abc", "a non-ASCII digit: isdigit() says yes, int() refuses"),
        ("t=١٢,v1=abc", "Arabic-Indic digits, which int() would read"),
        (None, "wrong"),
        ("", "missing"),
    ],
)
def test_bad_or_stale_signatures_are_401(client, hooked, header, why):
    raw = b'{"who": "x"}'
    if header is None:
        header = f"t={int(time.time())},v1={'0' * 64}"
    headers = {"HTTP_X_BATON_SIGNATURE": header} if header else {}
    response = post_signed(client, hooked, raw, headers)
    assert response.status_code == 401, why
    assert response.json()["error"]["code"] == "invalid_signature"


def test_signature_tolerance_is_five_minutes(client, hooked):
    raw = b'{"who": "x"}'
    assert (
        post_signed(client, hooked, raw, signed_headers(hooked, raw, int(time.time()) - 290)).status_code
        == 202
    )
    assert (
        post_signed(client, hooked, raw, signed_headers(hooked, raw, int(time.time()) - 310)).status_code
        == 401
    )


def test_signature_over_another_body_is_401(client, hooked):
    headers = signed_headers(hooked, b'{"who": "a"}')
    assert post_signed(client, hooked, b'{"who": "b"}', headers).status_code == 401


def test_github_signature_and_form_payload(client, hooked):
    payload = json.dumps({"who": "octocat"})
    from urllib.parse import urlencode

    raw = urlencode({"payload": payload}).encode()
    digest = hmac.new(hooked.webhook_secret.encode(), raw, hashlib.sha256).hexdigest()
    headers = {
        "HTTP_X_HUB_SIGNATURE_256": f"sha256={digest}",
        "HTTP_X_GITHUB_EVENT": "push",
        "HTTP_X_GITHUB_DELIVERY": "gh-42",
    }
    response = post_signed(client, hooked, raw, headers, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 202, response.content
    run = Run.objects.get(pk=response.json()["run_id"])
    assert run.input_data == {"who": "octocat"}
    assert run.metadata["webhook"]["x-github-event"] == "push"
    assert run.metadata["webhook"]["x-github-delivery"] == "gh-42"
    # GitHub's redelivery of the same delivery: the first run again.
    again = post_signed(client, hooked, raw, headers, content_type="application/x-www-form-urlencoded")
    assert again.status_code == 202 and again.json()["run_id"] == run.id
    bad = {**headers, "HTTP_X_HUB_SIGNATURE_256": "sha256=" + "0" * 64, "HTTP_X_GITHUB_DELIVERY": "gh-43"}
    assert (
        post_signed(client, hooked, raw, bad, content_type="application/x-www-form-urlencoded").status_code
        == 401
    )


def test_no_api_key_needed_and_an_api_key_changes_nothing(hooked, api_key_client):
    response = post_token(api_key_client, hooked)
    assert response.status_code == 202


def test_admins_see_the_hook_url_built_from_the_public_url(
    api_key_client, make_jwt_client, member, org, hooked, settings
):
    settings.BATON_PUBLIC_URL = "https://baton.example.com"
    detail = api_key_client.get(f"/api/v1/workflows/{hooked.id}").json()
    assert (
        detail["webhook_url"] == f"https://baton.example.com/api/v1/hooks/{hooked.id}/{hooked.webhook_secret}"
    )
    assert detail["webhook_signed_url"] == f"https://baton.example.com/api/v1/hooks/{hooked.id}"
    member_view = make_jwt_client(member, org).get(f"/api/v1/workflows/{hooked.id}").json()
    assert "webhook_url" not in member_view and "webhook_secret" not in member_view


def test_rotating_the_secret_is_admin_only_audited_and_immediate(
    api_key_client, make_jwt_client, member, org, hooked, client
):
    old = hooked.webhook_secret
    assert (
        make_jwt_client(member, org).post(f"/api/v1/workflows/{hooked.id}/webhook-secret/rotate").status_code
        == 403
    )
    rotated = api_key_client.post(f"/api/v1/workflows/{hooked.id}/webhook-secret/rotate")
    assert rotated.status_code == 200, rotated.content
    new = rotated.json()["webhook_secret"]
    assert new != old and rotated.json()["webhook_url"].endswith(f"/hooks/{hooked.id}/{new}")
    assert post_token(client, hooked, token=old).status_code == 404
    hooked.refresh_from_db()
    assert post_token(client, hooked).status_code == 202
    event = AuditEvent.objects.get(organization=org, event="workflow.webhook_secret_rotated")
    assert old not in json.dumps(event.data) and new not in json.dumps(event.data)


def test_hook_tokens_never_reach_a_log():
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "POST", "/api/v1/hooks/wf_abc/s3cr3tt0ken?x=1", "1.1", 202), None,
    )  # fmt: skip
    HookTokenFilter().filter(record)
    message = record.getMessage()
    assert "s3cr3tt0ken" not in message and "/api/v1/hooks/wf_abc/…" in message
    assert isinstance(record.args, tuple) and len(record.args) == 5  # uvicorn's formatter unpacks them
    from uvicorn.logging import AccessFormatter

    formatted = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s').format(record)
    assert "s3cr3tt0ken" not in formatted and "/api/v1/hooks/wf_abc/…" in formatted


def test_a_404_for_a_hook_logs_no_token(client, hooked, caplog):
    with caplog.at_level(logging.DEBUG):
        post_token(client, hooked, token="t0psecrett0ken")
    handler_filter = HookTokenFilter()
    for record in caplog.records:
        handler_filter.filter(record)
        assert "t0psecrett0ken" not in record.getMessage()


def test_deliveries_are_forgotten_after_the_idempotency_ttl(client, hooked, settings):
    from datetime import timedelta

    from django.utils import timezone

    from workflows.models import WebhookDelivery
    from workflows.webhooks import webhook_deliveries_prune

    first = post_token(client, hooked, HTTP_IDEMPOTENCY_KEY="old")
    assert webhook_deliveries_prune() == 0
    later = timezone.now() + timedelta(seconds=settings.BATON_IDEMPOTENCY_TTL + 1)
    assert webhook_deliveries_prune(now=later) == 1
    assert not WebhookDelivery.objects.exists()
    again = post_token(client, hooked, HTTP_IDEMPOTENCY_KEY="old")
    assert again.status_code == 202 and again.json()["run_id"] != first.json()["run_id"]
