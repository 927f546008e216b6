"""Secrets and the security policy through real runs: `{{ secrets.NAME }}`, redaction of everything stored or
returned (checked by dumping every table), and policy enforcement (scripts, outbound networks, duration,
step cap). Real local servers on 127.0.0.1 and real sandboxed scripts; nothing mocked."""

import io
import json
import logging
import urllib.parse
from datetime import timedelta

import pytest
from django.apps import apps

from accounts.services import secret_create, security_policy_update
from runs.engine import secrets as engine_secrets
from runs.engine.redaction import Redactor, SecretRedactingFilter
from runs.models import Run, StepRun
from tests.conftest import owner_principal
from tests.runs.support.http_server import running_server

TOKEN = "tok-Live-9f8e7d6c5b4a3210"
OTHER = "second-secret-value-XYZ"


@pytest.fixture
def server():
    with running_server() as srv:
        yield srv


@pytest.fixture
def actor(org, owner):
    return owner_principal(org, owner)


@pytest.fixture
def token(org, actor):
    secret_create(organization=org, actor=actor, name="API_TOKEN", value=TOKEN)
    secret_create(organization=org, actor=actor, name="OTHER_SECRET", value=OTHER)
    return TOKEN


def set_policy(org, actor, **changes):
    security_policy_update(organization=org, actor=actor, changes=changes)


def whole_database() -> str:
    """Every row of every table, as text (the secrets' own table holds only ciphertexts)."""
    dump = []
    for model in apps.get_models():
        dump.append(json.dumps(list(model.objects.values()), default=str))
    return "\n".join(dump)


def http_step(step_id, config, **extra):
    return {"id": step_id, "type": "http_request", "config": config, **extra}


# --- secrets in templates and redaction ------------------------------------------------------------------


def test_secret_in_a_header_echoed_back_appears_nowhere(engine, server, org, actor, token, api_key_client):
    set_policy(org, actor, http_allowlist=["127.0.0.1"])
    steps = [
        http_step(
            "call",
            {
                "method": "POST",
                "url": f"{server.base}/echo?key={{{{ secrets.API_TOKEN }}}}",
                "headers": {"Authorization": "Bearer {{ secrets.API_TOKEN }}"},
                "json": {
                    "token": "{{ secrets.API_TOKEN }}",
                    "both": "{{ secrets.API_TOKEN }}/{{ secrets.OTHER_SECRET }}",
                },
            },
        ),
        {"id": "copy", "type": "transform", "depends_on": ["call"],
         "config": {"value": "{{ steps.call.output.body.headers.authorization }}"}},
    ]  # fmt: skip
    run = engine.start(steps, output="{{ steps.call.output.body }}")
    assert run.status == "completed", run.error
    # The server got the real value: the handler was given the unredacted config.
    (request,) = server.requests
    assert request["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert request["query"] == {"key": TOKEN}
    assert json.loads(request["body"]) == {"token": TOKEN, "both": f"{TOKEN}/{OTHER}"}
    rows = engine.steps(run)
    assert rows["call"].input_data["headers"] == {"Authorization": "Bearer ***"}
    assert rows["call"].input_data["json"] == {"token": "***", "both": "***/***"}
    assert rows["call"].output_data["body"]["headers"]["authorization"] == "Bearer ***"
    assert rows["copy"].output_data == "Bearer ***"
    assert run.result["query"] == {"key": "***"}
    database = whole_database()
    assert TOKEN not in database and OTHER not in database
    response = api_key_client.get(f"/api/v1/runs/{run.id}")
    assert response.status_code == 200, response.content
    body = response.content.decode()
    assert "Bearer ***" in body and TOKEN not in body and OTHER not in body
    events = api_key_client.get(f"/api/v1/runs/{run.id}/events")
    assert events.status_code == 200 and TOKEN not in events.content.decode()


def test_secret_in_errors_attempts_and_events_is_redacted(engine, server, org, actor, token):
    """A failing script prints the secret to stderr: the error details, every attempt, the retry event, the
    run error and the run.failed audit event carry *** instead."""
    code = 'echo "token is $TOKEN" >&2\necho "and $TOKEN" \nexit 3\n'
    config = {"language": "shell", "code": code, "env": {"TOKEN": "{{ secrets.API_TOKEN }}"}}
    step = {"id": "leak", "type": "script", "retry": {"max_attempts": 2}, "config": config}
    run = engine.start([step])
    row = engine.steps(run)["leak"]
    assert run.status == "failed" and row.error["code"] == "script_failed" and row.attempt == 2
    assert row.error["details"]["stderr"] == "token is ***\n"
    assert row.input_data["env"] == {"TOKEN": "***"}
    assert all(a["error"]["details"]["stderr"] == "token is ***\n" for a in row.attempts)
    assert TOKEN not in whole_database()


def test_end_step_message_and_handler_errors_are_redacted(engine, org, actor, token):
    steps = [{"id": "stop", "type": "end",
              "config": {"status": "failed", "output": {"t": "{{ secrets.API_TOKEN }}"},
                         "message": "gave up with {{ secrets.API_TOKEN }}"}}]  # fmt: skip
    run = engine.start(steps)
    assert run.status == "failed"
    assert TOKEN not in json.dumps(run.error) and TOKEN not in json.dumps(run.result)
    assert TOKEN not in whole_database()


def test_unknown_secret_is_a_template_error_naming_step_and_name(engine, token):
    steps = [{"id": "use", "type": "transform", "config": {"value": "{{ secrets.NOPE }}"}}]
    run = engine.start(steps)
    row = engine.steps(run)["use"]
    assert run.status == "failed" and row.error["code"] == "template_error"
    assert "Step 'use' config.value" in row.error["message"] and "NOPE" in row.error["message"]
    assert row.attempt == 1


def test_secrets_are_per_organisation(engine, other_org, outsider, token):
    secret_create(organization=other_org, actor=owner_principal(other_org, outsider), name="THEIRS",
                  value="their-value-1234")  # fmt: skip
    run = engine.start([{"id": "use", "type": "transform", "config": {"value": "{{ secrets.THEIRS }}"}}])
    assert run.status == "failed" and engine.steps(run)["use"].error["code"] == "template_error"


def test_redact_patterns_apply_to_stored_traces(engine, org, actor):
    set_policy(org, actor, redact_patterns=[r"card-\d{4}-\d{4}", r"(?i)ssn:\s*\d+"])
    value = {"a": "{{ inputs.card }}", "b": "SSN: 12345"}
    step = {"id": "t", "type": "transform", "config": {"value": value}}
    run = engine.start([step], input_data={"card": "card-1234-5678"}, output="{{ steps.t.output }}")
    assert run.status == "completed", run.error
    assert engine.steps(run)["t"].output_data == {"a": "***", "b": "***"}
    assert run.result == {"a": "***", "b": "***"}


def test_secrets_are_loaded_once_per_step_execution(engine, token):
    """Many references in one step: one query for the secrets, not one per template."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    value = {f"k{i}": "{{ secrets.API_TOKEN }}" for i in range(20)}
    with CaptureQueriesContext(connection) as captured:
        run = engine.start([{"id": "t", "type": "transform", "config": {"value": value}}])
    assert run.status == "completed", run.error
    secret_queries = [q for q in captured.captured_queries if '"accounts_secret"' in q["sql"]]
    assert len(secret_queries) == 1


def test_engine_log_lines_are_redacted(engine, token, monkeypatch):
    """A handler raising an exception that carries the value: the engine's log line and traceback, as
    written by a handler with the redacting filter (settings.LOGGING puts it on every handler), hide it."""
    from workflows.steps import STEP_TYPES, StepType, object_schema

    def explode(context):
        raise RuntimeError(f"connection refused for key {context.config['key']}")

    monkeypatch.setitem(STEP_TYPES, "explode", StepType(
        name="explode", description="test double", config_schema=object_schema({"key": {}}), execute=explode,
    ))  # fmt: skip
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretRedactingFilter())
    logger = logging.getLogger("baton.engine")
    logger.addHandler(handler)
    try:
        run = engine.start([{"id": "boom", "type": "explode", "config": {"key": "{{ secrets.API_TOKEN }}"}}])
    finally:
        logger.removeHandler(handler)
    row = engine.steps(run)["boom"]
    assert row.error["code"] == "step_error" and row.error["message"].endswith("for key ***")
    logged = stream.getvalue()
    assert "raised" in logged and "RuntimeError: connection refused for key ***" in logged
    assert TOKEN not in logged and TOKEN not in whole_database()


def test_every_logging_handler_has_the_redacting_filter(settings):
    assert "redact_secrets" in settings.LOGGING["filters"]
    for handler in settings.LOGGING["handlers"].values():
        assert "redact_secrets" in handler.get("filters", [])


def test_redactor_rules():
    redactor = Redactor(["abcd1234", "abcd", "ab", "", "x" * 3], patterns=["(", r"\d{6}"])
    assert redactor.text("key abcd1234 and abcd and ab") == "key *** and *** and ab"  # < 4 chars: kept
    assert redactor.text("pin 123456") == "pin ***"  # a pattern; the invalid "(" is ignored
    redacted = redactor.value({"abcd": ["abcd1234", 5, None, {"k": "xabcdx"}]})
    assert redacted == {"***": ["***", 5, None, {"k": "x***x"}]}
    assert not Redactor() and Redactor().value({"a": "abcd"}) == {"a": "abcd"}


# --- policy enforcement --------------------------------------------------------------------------------


def test_script_steps_can_be_forbidden(engine, org, actor):
    set_policy(org, actor, allow_script_steps=False)
    step = {"id": "s", "type": "script", "retry": {"max_attempts": 3},
            "config": {"language": "python", "code": "print(1)"}}  # fmt: skip
    run = engine.start([step])
    row = engine.steps(run)["s"]
    assert run.status == "failed" and run.error["code"] == "policy_violation"
    assert row.attempt == 1 and "allow_script_steps" in row.error["message"]
    set_policy(org, actor, allow_script_steps=True)
    assert engine.start([step]).status == "completed"


def test_private_networks_follow_the_policy(engine, server, org, actor, settings):
    settings.BATON_HTTP_ALLOWLIST = []
    step = http_step("fetch", {"url": f"{server.base}/json"})
    run = engine.start([step])
    assert run.status == "failed" and run.error["code"] == "policy_violation" and server.requests == []
    set_policy(org, actor, http_allowlist=["127.0.0.0/8"])
    assert engine.start([step]).status == "completed"
    set_policy(org, actor, http_allowlist=[], block_private_networks=False)
    assert engine.start([step]).status == "completed"
    # Metadata addresses stay refused even with the private-network block off.
    run = engine.start([http_step("meta", {"url": "http://169.254.169.254/latest/"})])
    assert run.status == "failed" and run.error["code"] == "policy_violation"
    assert len(server.requests) == 2


def test_the_deployment_allowlist_still_applies_to_every_organisation(engine, server, settings):
    settings.BATON_HTTP_ALLOWLIST = ["127.0.0.1"]
    assert engine.start([http_step("fetch", {"url": f"{server.base}/json"})]).status == "completed"


def test_outbound_policy_for_joins_policy_and_setting(org, actor, other_org, settings):
    settings.BATON_HTTP_ALLOWLIST = ["ops.internal.example"]
    set_policy(org, actor, http_allowlist=["api.corp.example", "10.1.0.0/16"], block_private_networks=False)
    policy = engine_secrets.outbound_policy_for(org.id)
    assert policy.allowlist == ("api.corp.example", "10.1.0.0/16", "ops.internal.example")
    assert policy.block_private_networks is False
    other = engine_secrets.outbound_policy_for(other_org.id)
    assert other.allowlist == ("ops.internal.example",) and other.block_private_networks is True


def test_run_deadline_is_the_smaller_of_policy_and_setting(engine, org, actor, settings):
    settings.BATON_MAX_RUN_DURATION_SECONDS = 3600
    set_policy(org, actor, max_run_duration_seconds=120)
    run = engine.start([{"id": "t", "type": "transform", "config": {"value": 1}}])
    assert run.deadline_at - run.started_at == timedelta(seconds=120)
    settings.BATON_MAX_RUN_DURATION_SECONDS = 60
    run = engine.start([{"id": "t", "type": "transform", "config": {"value": 1}}])
    assert run.deadline_at - run.started_at == timedelta(seconds=60)


def test_a_definition_over_the_step_cap_fails_at_start(engine, org, actor):
    set_policy(org, actor, max_steps_per_run=2)
    steps = [{"id": f"s{i}", "type": "transform", "config": {"value": i}} for i in range(3)]
    run = engine.start(steps)
    assert run.status == "failed" and run.error["code"] == "policy_violation"
    assert "max_steps_per_run (2)" in run.error["message"]
    assert set(engine.statuses(run).values()) == {"cancelled"}  # nothing executed


def test_loop_iterations_count_towards_the_step_cap(engine, org, actor):
    set_policy(org, actor, max_steps_per_run=5)
    inline = {"type": "transform", "config": {"value": "{{ item }}"}}
    loop = {"id": "each", "type": "loop", "config": {"items": "{{ inputs.items }}", "step": inline}}
    run = engine.start([loop], input_data={"items": [1, 2, 3, 4]})  # 1 loop + 4 iterations = 5
    assert run.status == "completed", run.error
    run = engine.start([loop], input_data={"items": [1, 2, 3, 4, 5]})
    row = engine.steps(run)["each"]
    assert run.status == "failed" and row.error["code"] == "policy_violation" and row.attempt == 1
    assert StepRun.objects.filter(run=run).count() == 1  # no iteration was created


def test_webhook_signs_with_the_current_and_previous_secret_in_grace(engine, server, org, actor, settings):
    from accounts.services import signing_secret_get, signing_secret_rotate
    from runs.engine import signing

    settings.BATON_HTTP_ALLOWLIST = ["127.0.0.1"]
    signing_secret_get(organization_id=org.id)
    old = signing.organization_signing_secret(org.id)
    signing_secret_rotate(organization=org, actor=actor, grace_seconds=600)
    new = signing.organization_signing_secret(org.id)
    step = {
        "id": "notify",
        "type": "webhook",
        "config": {"url": f"{server.base}/hook", "payload": {"a": 1}},
    }
    for receiver_secret in (old, new):  # a receiver that has not switched yet, and one that has
        server.hook_secret = receiver_secret
        run = engine.start([step])
        assert run.status == "completed", run.error
    header = server.requests[-1]["headers"]["x-baton-signature"]
    assert header.count("v1=") == 2
    assert Run.objects.filter(status="completed").count() == 2


def test_a_when_error_quoting_a_secret_is_redacted(engine, token):
    """Jinja quotes the missing key: `steps[secrets.API_TOKEN]` would put the value in the stored error."""
    when = "{{ steps[secrets.API_TOKEN] }}"
    steps = [{"id": "t", "type": "transform", "when": when, "config": {"value": 1}}]
    run = engine.start(steps)
    row = engine.steps(run)["t"]
    assert run.status == "failed" and row.error["code"] == "template_error"
    assert "***" in row.error["message"] and TOKEN not in whole_database()


def test_a_template_error_quoting_a_secret_is_redacted(engine, token):
    steps = [{"id": "t", "type": "transform", "config": {"value": "{{ steps[secrets.API_TOKEN].output }}"}}]
    run = engine.start(steps)
    row = engine.steps(run)["t"]
    assert run.status == "failed" and row.error["code"] == "template_error"
    assert "***" in row.error["message"] and TOKEN not in whole_database()


def test_encoded_forms_of_a_secret_are_redacted(engine, server, org, actor):
    """The server echoes the request as JSON text (quotes escaped, é as \\u00e9); the step fails on purpose
    (expect_status), so that raw text is stored in the error details — redacted in its encoded form."""
    special = 'p@ss w/rd+"quoted"&é'
    secret_create(organization=org, actor=actor, name="SPECIAL", value=special)
    set_policy(org, actor, http_allowlist=["127.0.0.1"])
    config = {"method": "POST", "url": f"{server.base}/echo", "expect_status": 299,
              "body": "raw={{ secrets.SPECIAL }}", "headers": {"Content-Type": "text/plain"}}  # fmt: skip
    run = engine.start([http_step("call", config)])
    assert run.status == "failed" and run.error["code"] == "http_status"
    assert server.requests[0]["body"].decode() == f"raw={special}"  # the server got the real value
    raw = engine.steps(run)["call"].error["details"]["body"]
    escaped = json.dumps(special)[1:-1]
    assert escaped != special and '"body": "raw=***"' in raw
    database = whole_database()
    assert special not in database and escaped not in database


def test_redactor_covers_url_and_json_encodings():
    special = 'p@ss w/rd+"quoted"&é'
    redactor = Redactor([special])
    for form in (special, urllib.parse.quote(special, safe=""), urllib.parse.quote_plus(special),
                 json.dumps(special)[1:-1], json.dumps(special, ensure_ascii=False)[1:-1]):  # fmt: skip
        assert redactor.text(f"<{form}>") == "<***>", form
