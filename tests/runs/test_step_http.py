"""http_request and webhook steps end to end through the engine, against a real server on 127.0.0.1.

The outbound policy blocks loopback by default; these tests allow it with the deployment-wide
`BATON_HTTP_ALLOWLIST` setting (the `local_http` fixture), which is what the handlers read.
"""

import json
import time

import pytest

from runs.engine import signing
from runs.engine.context import StepContext, StepError
from runs.engine.steps import http_request, webhook
from tests.runs.support.http_server import running_server

# a local HTTP server on a thread: a read that never ends would hang the test
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server():
    with running_server() as srv:
        yield srv


@pytest.fixture
def local_http(settings):
    settings.BATON_HTTP_ALLOWLIST = ["127.0.0.1"]


def http_step(step_id, config, **extra):
    return {"id": step_id, "type": "http_request", "config": config, **extra}


# --- http_request ---------------------------------------------------------------------------------------


def test_get_json_body_is_parsed(engine, server, local_http):
    run = engine.start(
        [http_step("fetch", {"url": f"{server.base}/json"})], output="{{ steps.fetch.output }}"
    )
    assert run.status == "completed", run.error
    output = engine.steps(run)["fetch"].output_data
    assert output["status_code"] == 200 and output["body"] == {"ok": True, "items": [1, 2]}
    assert output["headers"]["x-served-by"] == "test" and output["truncated"] is False
    assert run.result == output


def test_text_body_stays_text_and_feeds_later_templates(engine, server, local_http):
    steps = [
        http_step("fetch", {"url": f"{server.base}/text"}),
        {"id": "shout", "type": "transform", "depends_on": ["fetch"],
         "config": {"value": "{{ steps.fetch.output.body | upper }}"}},
    ]  # fmt: skip
    run = engine.start(steps)
    assert run.status == "completed"
    assert engine.steps(run)["fetch"].output_data["body"] == "hello there"
    assert engine.steps(run)["shout"].output_data == "HELLO THERE"


def test_method_query_headers_and_json_body_are_sent(engine, server, local_http):
    config = {
        "method": "POST",
        "url": f"{server.base}/echo",
        "query": {"q": "{{ inputs.term }}", "n": 3, "flag": True},
        "headers": {"X-Trace": "abc-{{ inputs.term }}"},
        "json": {"term": "{{ inputs.term }}", "list": [1, 2]},
    }
    run = engine.start([http_step("send", config)], input_data={"term": "hello"})
    assert run.status == "completed", run.error
    (request,) = server.requests
    assert request["method"] == "POST" and request["query"] == {"q": "hello", "n": "3", "flag": "true"}
    assert request["headers"]["x-trace"] == "abc-hello"
    assert request["headers"]["content-type"] == "application/json"
    assert json.loads(request["body"]) == {"term": "hello", "list": [1, 2]}
    assert engine.steps(run)["send"].output_data["body"]["method"] == "POST"


def test_raw_body_is_sent_as_is(engine, server, local_http):
    config = {"method": "PUT", "url": f"{server.base}/echo", "body": "raw text",
              "headers": {"Content-Type": "text/plain"}}  # fmt: skip
    run = engine.start([http_step("put", config)])
    assert run.status == "completed"
    assert server.requests[0]["body"] == b"raw text" and server.requests[0]["method"] == "PUT"


def test_status_outside_expect_status_fails_the_step(engine, server, local_http):
    config = {"url": f"{server.base}/text", "expect_status": [201, 202]}
    run = engine.start([http_step("fetch", config, retry={"max_attempts": 3})])
    fetch = engine.steps(run)["fetch"]
    assert run.status == "failed" and run.error["code"] == "http_status" and run.error["step_id"] == "fetch"
    assert fetch.error["details"]["status_code"] == 200
    assert fetch.attempt == 1 and server.count("/text") == 1  # a wrong 2xx is not worth retrying


def test_expect_status_may_accept_an_error_status(engine, server, local_http):
    run = engine.start([http_step("fetch", {"url": f"{server.base}/status/404", "expect_status": 404})])
    assert run.status == "completed"
    assert engine.steps(run)["fetch"].output_data["status_code"] == 404


def test_4xx_fails_without_retrying(engine, server, local_http):
    run = engine.start([http_step("fetch", {"url": f"{server.base}/status/404"}, retry={"max_attempts": 3})])
    fetch = engine.steps(run)["fetch"]
    assert run.status == "failed" and fetch.error["code"] == "http_status"
    assert fetch.error["details"] == {"status_code": 404, "body": "status body"}
    assert fetch.attempt == 1 and server.count("/status/404") == 1


def test_5xx_is_retried_per_the_retry_policy_then_succeeds(engine, server, local_http):
    step = http_step("fetch", {"url": f"{server.base}/flaky?fail=2"}, retry={"max_attempts": 3})
    run = engine.start([step])
    fetch = engine.steps(run)["fetch"]
    assert run.status == "completed", run.error
    assert server.count("/flaky") == 3 and fetch.attempt == 3
    assert fetch.output_data["body"] == {"count": 3}
    assert [a["status"] for a in fetch.attempts] == ["failed", "failed", "completed"]
    assert fetch.attempts[0]["error"]["details"]["status_code"] == 503
    assert [kind for kind, _ in engine.events(run)].count("step_retrying") == 2


def test_5xx_without_a_retry_policy_fails_the_run(engine, server, local_http):
    run = engine.start([http_step("fetch", {"url": f"{server.base}/status/500"})])
    assert run.status == "failed" and run.error["code"] == "http_status"
    assert server.count("/status/500") == 1


def test_large_body_is_truncated_in_the_output(engine, server, local_http):
    run = engine.start([http_step("fetch", {"url": f"{server.base}/big"})])
    output = engine.steps(run)["fetch"].output_data
    assert run.status == "completed"
    assert output["truncated"] is True and len(output["body"]) == http_request.STORED_BODY_MAX_CHARS


def test_timeout_fails_with_the_outbound_code(engine, server, local_http):
    started = time.monotonic()
    run = engine.start([http_step("fetch", {"url": f"{server.base}/slow", "timeout_seconds": 1})])
    assert time.monotonic() - started < 1.9
    fetch = engine.steps(run)["fetch"]
    assert run.status == "failed" and fetch.error["code"] == "timeout"
    assert fetch.error["details"]["outbound_code"] == "timeout"


@pytest.mark.parametrize(
    ("url", "reason"),
    [("http://169.254.169.254/latest/meta-data/", "metadata"), ("http://10.0.0.1/", "private")],
)
def test_ssrf_targets_fail_with_policy_violation(engine, local_http, url, reason):
    started = time.monotonic()
    run = engine.start([http_step("fetch", {"url": url}, retry={"max_attempts": 3})])
    fetch = engine.steps(run)["fetch"]
    assert run.status == "failed" and run.error["code"] == "policy_violation"
    assert fetch.error["details"]["outbound_code"] == "ssrf_blocked"
    assert fetch.error["details"]["reason"] == reason
    assert fetch.attempt == 1  # refused before connecting, and never retried
    assert time.monotonic() - started < 1


def test_loopback_is_blocked_without_an_allowlist_entry(engine, server):
    run = engine.start([http_step("fetch", {"url": f"{server.base}/json"})])
    assert run.status == "failed" and run.error["code"] == "policy_violation"
    assert engine.steps(run)["fetch"].error["details"]["reason"] == "loopback"
    assert server.requests == []


def test_dry_run_executes_get_but_skips_post(engine, server, local_http):
    steps = [
        http_step("read", {"url": f"{server.base}/json"}),
        http_step("write", {"method": "POST", "url": f"{server.base}/echo", "json": {"a": 1}}),
        {
            "id": "hook",
            "type": "webhook",
            "config": {"url": f"{server.base}/hook", "payload": {"a": 1}},
        },
    ]
    run = engine.start(steps, dry_run=True)
    rows = engine.steps(run)
    assert run.status == "completed"
    assert rows["read"].status == "completed" and rows["read"].output_data["body"]["ok"] is True
    assert rows["write"].status == "skipped" and rows["write"].skip_reason == "dry_run"
    assert rows["hook"].status == "skipped" and rows["hook"].input_data["payload"] == {"a": 1}
    assert [r["path"] for r in server.requests] == ["/json"]


# --- webhook --------------------------------------------------------------------------------------------


def test_webhook_delivers_a_payload_the_receiver_can_verify(engine, server, local_http, org):
    server.hook_secret = signing.organization_signing_secret(org.id)
    step = {
        "id": "notify",
        "type": "webhook",
        "config": {
            "url": f"{server.base}/hook",
            "payload": {"event": "done", "who": "{{ inputs.who }}"},
            "headers": {"X-Custom": "1", "X-Baton-Signature": "forged"},
        },
    }
    run = engine.start([step], input_data={"who": "ann"})
    assert run.status == "completed", run.error
    row = engine.steps(run)["notify"]
    assert row.output_data == {"status_code": 204, "delivered": True}
    (request,) = server.requests
    assert json.loads(request["body"]) == {"event": "done", "who": "ann"}
    assert request["headers"]["x-custom"] == "1" and request["headers"]["content-type"] == "application/json"
    assert request["headers"]["x-baton-delivery"] == row.id and request["headers"]["x-baton-run-id"] == run.id
    assert request["headers"]["x-baton-signature"].startswith("t=")


def test_webhook_signed_for_another_organisation_is_rejected(engine, server, local_http, other_org):
    server.hook_secret = signing.organization_signing_secret(other_org.id)
    step = {
        "id": "notify",
        "type": "webhook",
        "config": {"url": f"{server.base}/hook", "payload": [1]},
    }
    run = engine.start([step], input_data={})
    row = engine.steps(run)["notify"]
    assert run.status == "failed" and row.error["code"] == "http_status"
    assert row.error["details"]["status_code"] == 401


def test_webhook_5xx_is_retried_and_4xx_is_not(engine, server, local_http):
    steps = [
        {"id": "flaky", "type": "webhook", "config": {"url": f"{server.base}/flaky?fail=1"},
         "retry": {"max_attempts": 2}},
        {"id": "gone", "type": "webhook", "config": {"url": f"{server.base}/status/410"},
         "retry": {"max_attempts": 3}, "on_failure": "continue"},
    ]  # fmt: skip
    run = engine.start(steps)
    rows = engine.steps(run)
    assert rows["flaky"].status == "completed" and rows["flaky"].attempt == 2
    assert rows["flaky"].output_data == {"status_code": 200, "delivered": True}
    assert rows["gone"].status == "failed" and rows["gone"].attempt == 1 and server.count("/status/410") == 1
    assert run.status == "completed"


def test_webhook_to_a_private_address_is_a_policy_violation(engine, local_http):
    step = {"id": "notify", "type": "webhook", "config": {"url": "http://192.168.1.10/hook"}}
    run = engine.start([step])
    assert run.status == "failed" and run.error["code"] == "policy_violation"


# --- signing --------------------------------------------------------------------------------------------


def test_signing_round_trip_and_rejections(org, other_org):
    secret = signing.organization_signing_secret(org.id)
    assert secret.startswith("whsec_") and secret == signing.organization_signing_secret(org.id)
    assert secret != signing.organization_signing_secret(other_org.id)
    body = b'{"a":1}'
    header = signing.sign(secret, body, timestamp=1_700_000_000)
    assert signing.verify(secret, body, header, now=1_700_000_100)
    assert not signing.verify(secret, b'{"a":2}', header, now=1_700_000_100)  # tampered body
    assert not signing.verify(secret, body, header, now=1_700_000_400)  # too old (replay)
    other_secret = signing.organization_signing_secret(other_org.id)
    assert not signing.verify(other_secret, body, header, now=1_700_000_100)
    assert not signing.verify(secret, body, None) and not signing.verify(secret, body, "t=x,v1=00")
    rotated = f"{header},v1={'0' * 64}"
    assert signing.verify(secret, body, rotated, now=1_700_000_000)
    # The stored secret is random, not derived; rotation: tests/accounts/test_security_api.py.


# --- direct handler checks ------------------------------------------------------------------------------


def _context(config, **extra):
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    return StepContext(
        run_id="run_x", step_run_id="sr_x", step_id="s", step_type="http_request", config=config,
        step={}, attempt=1, deadline=extra.pop("deadline", now + timedelta(seconds=30)), now=now,
        dry_run=False, variables={}, organization_id=extra.pop("organization_id", "org_x"), **extra,
    )  # fmt: skip


def test_handler_bounds_the_timeout_by_the_step_deadline(server, local_http, db):
    from datetime import UTC, datetime, timedelta

    context = _context({"url": f"{server.base}/slow", "timeout_seconds": 30},
                       deadline=datetime.now(UTC) + timedelta(seconds=0.5))  # fmt: skip
    started = time.monotonic()
    with pytest.raises(StepError) as caught:
        http_request.execute(context)
    assert caught.value.code == "timeout" and caught.value.retryable
    assert time.monotonic() - started < 1.5


def test_handler_refuses_an_invalid_url_without_retry(local_http, org):
    with pytest.raises(StepError) as caught:
        webhook.execute(_context({"url": "ftp://127.0.0.1/x"}, organization_id=org.id))
    assert caught.value.code == "invalid_url" and not caught.value.retryable
