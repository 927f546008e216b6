"""Dashboard pages through Django's client: each page and action per role, and another organisation's
objects are 404s (docs/dashboard.md)."""

import re

import pytest
from django.test import Client

from accounts.models import ApiKey
from audit.models import AuditEvent
from runs.models import Run
from runs.services import run_create
from tests.dashboard.support.helpers import APPROVAL_STEPS, INPUTS, actor, make_workflow, signed_in


@pytest.fixture
def owner_client(org, owner):
    return signed_in(owner, org)


# --- layout, headers, limits ---------------------------------------------------------------------------


def test_pages_carry_a_strict_csp_and_deny_framing(owner_client):
    response = owner_client.get("/")
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response["X-Frame-Options"] == "DENY"
    body = response.content.decode()
    assert 'href="#main"' in body and 'id="main"' in body  # skip link and its target
    assert "/static/baton/vendor/htmx-2.0.11.min.js" in body and "/static/baton/dashboard.js" in body
    assert "<script>" not in body and " style=" not in body  # no inline code for the CSP to refuse


def test_login_page_has_the_csp_too_but_the_api_docs_keep_their_own(db):
    client = Client()
    assert "script-src 'self'" in client.get("/login/")["Content-Security-Policy"]
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200 and "Content-Security-Policy" not in docs


def test_signed_out_visitor_is_sent_to_sign_in(db):
    response = Client().get("/runs/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=/runs/"


def test_session_limit_applies_to_dashboard_pages(owner_client, settings):
    settings.BATON_DASHBOARD_REQUESTS_PER_MINUTE = 10
    codes = [owner_client.get("/runs/").status_code for _ in range(11)]
    assert codes[:10] == [200] * 10
    assert codes[10] == 429


def test_dashboard_requests_do_not_use_the_organisations_api_limit(owner_client, org):
    org.rate_per_minute = 2
    org.save(update_fields=["rate_per_minute"])
    for _ in range(5):
        assert owner_client.get("/workflows/").status_code == 200
    assert owner_client.get("/api/v1/me").status_code == 200  # the first API request of the minute


def test_forms_need_the_csrf_token(org, owner):
    client = signed_in(owner, org, csrf=True)
    workflow = make_workflow(org, owner)
    assert client.post(f"/workflows/{workflow.id}/run/", {}).status_code == 403
    assert not Run.objects.exists()


def test_timestamps_are_time_elements_with_utc_title(owner_client, org, owner):
    make_workflow(org, owner)
    body = owner_client.get("/workflows/").content.decode()
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT[\d:.]+Z" title="[\d-]+ [\d:]+ UTC">', body)


# --- overview ------------------------------------------------------------------------------------------


def test_overview_empty_state_says_what_to_do(owner_client):
    body = owner_client.get("/").content.decode()
    assert "No runs in the last 24 hours" in body and "/workflows/" in body
    assert "Nothing waits for your decision" in body and "No failed runs" in body


def test_overview_counts_runs_by_status_and_lists_failures_and_usage(owner_client, org, owner):
    workflow = make_workflow(org, owner)
    for _ in range(2):
        run_create(workflow=workflow, actor=actor(org, owner), input_data={})
    failed = run_create(workflow=workflow, actor=actor(org, owner), input_data={})
    Run.objects.filter(pk=failed.pk).update(status="failed", error={"code": "boom", "message": "It broke"})
    body = owner_client.get("/").content.decode()
    numbers = re.search(r'data-testid="runs-by-status">(.*?)</ul>', body, re.S).group(1)
    assert "<strong>1</strong>" in numbers and "Failed" in numbers
    assert "<strong>2</strong>" in numbers and "Running" in numbers
    assert "It broke" in body and f"/runs/{failed.id}/" in body
    assert "Runs: 3 of" in body


# --- workflows -----------------------------------------------------------------------------------------


def test_workflow_list_filters_and_shows_the_last_run(owner_client, org, owner):
    first = make_workflow(org, owner, name="Invoice intake", tags=["billing"])
    make_workflow(org, owner, name="Nightly report", tags=["ops"])
    run = run_create(workflow=first, actor=actor(org, owner), input_data={})
    body = owner_client.get("/workflows/").content.decode()
    assert "Invoice intake" in body and "Nightly report" in body
    assert f"/runs/{run.id}/" in body and "never run" in body
    body = owner_client.get("/workflows/?q=invoice").content.decode()
    assert "Invoice intake" in body and "Nightly report" not in body
    body = owner_client.get("/workflows/?tag=ops").content.decode()
    assert "Nightly report" in body and "Invoice intake" not in body
    body = owner_client.get("/workflows/?status=archived").content.decode()
    assert "No workflow matches these filters" in body


def test_workflow_list_shows_each_workflows_newest_run(owner_client, org, owner):
    from datetime import timedelta

    from runs.views.selectors import last_runs_attach, workflows_listed

    principal = actor(org, owner)
    flows = [make_workflow(org, owner, name=f"Flow {i}") for i in range(3)]
    older = run_create(workflow=flows[0], actor=principal, input_data={})
    newest = run_create(workflow=flows[0], actor=principal, input_data={})
    Run.objects.filter(pk=older.pk).update(created_at=newest.created_at - timedelta(hours=1))
    Run.objects.filter(pk=newest.pk).update(status="failed")
    other = run_create(workflow=flows[1], actor=principal, input_data={})
    Run.objects.filter(pk=other.pk).update(status="completed")
    listed = last_runs_attach(list(workflows_listed(organization=org)))
    assert [(w.name, w.last_run_id, w.last_run_status) for w in listed] == [
        ("Flow 0", newest.id, "failed"),
        ("Flow 1", other.id, "completed"),
        ("Flow 2", None, None),
    ]
    body = owner_client.get("/workflows/").content.decode()
    assert f"/runs/{newest.id}/" in body and f"/runs/{older.id}/" not in body
    # The newest run deleted: the one before it is the last run.
    Run.objects.filter(pk=newest.pk).delete()
    assert last_runs_attach([flows[0]])[0].last_run_id == older.id
    assert last_runs_attach([]) == []


def test_workflow_list_empty_state(owner_client):
    assert "No workflows yet" in owner_client.get("/workflows/").content.decode()


def test_workflow_detail_draws_the_dag(owner_client, org, owner):
    workflow = make_workflow(org, owner)
    response = owner_client.get(f"/workflows/{workflow.slug}/")
    assert response.status_code == 200
    body = response.content.decode()
    svg = re.search(r"<svg class=\"dag\".*?</svg>", body, re.S).group(0)
    assert svg.count('class="node') == 3
    assert 'data-edge="greet->shout"' in svg and 'data-edge="greet->done"' in svg
    assert ">greet<" in svg and "transform" in svg
    # Layers: greet above shout and done, which share a row.
    ys = {m[0]: int(m[1]) for m in re.findall(r'data-step="(\w+)".*?<rect x="\d+" y="(\d+)"', svg, re.S)}
    assert ys["greet"] < ys["shout"] == ys["done"]


def test_other_organisations_workflow_is_a_404(owner_client, other_org, outsider):
    theirs = make_workflow(other_org, outsider)
    assert owner_client.get(f"/workflows/{theirs.id}/").status_code == 404
    assert owner_client.get(f"/workflows/{theirs.id}/run/").status_code == 404
    assert theirs.name not in owner_client.get("/workflows/").content.decode()


def test_run_form_has_a_field_per_input_type(owner_client, org, owner):
    workflow = make_workflow(org, owner, inputs=INPUTS)
    body = owner_client.get(f"/workflows/{workflow.id}/run/").content.decode()
    assert 'name="input-name"' in body and "required" in body
    assert 'type="number" name="input-count"' in body and 'min="1"' in body
    assert 'name="input-ratio"' in body and 'step="any"' in body
    assert 'type="checkbox" name="input-loud"' in body
    assert '<select name="input-mood"' in body and ">calm<" in body
    assert '<textarea name="input-tags"' in body and "One per line." in body
    assert '<textarea name="input-extra"' in body and "As JSON." in body
    assert 'for="id_input-name"' in body  # every field has its label


def test_run_form_triggers_through_the_service_with_typed_values(owner_client, org, owner):
    workflow = make_workflow(org, owner, inputs=INPUTS)
    response = owner_client.post(
        f"/workflows/{workflow.id}/run/",
        {"input-name": "Ada", "input-count": "3", "input-ratio": "0.5", "input-loud": "on",
         "input-mood": '"busy"', "input-tags": "a\n\nb\n", "input-extra": '{"k": [1]}'},
    )  # fmt: skip
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.id}/"
    assert run.input_data == {"name": "Ada", "count": 3, "ratio": 0.5, "loud": True, "mood": "busy",
                              "tags": ["a", "b"], "extra": {"k": [1]}}  # fmt: skip
    assert run.triggered_by == owner.id
    assert AuditEvent.objects.filter(event="run.triggered", target_id=run.id).exists()


def test_run_form_shows_errors_next_to_the_fields(owner_client, org, owner):
    workflow = make_workflow(org, owner, inputs=INPUTS)
    data = {"input-count": "0", "input-extra": "{oops"}
    response = owner_client.post(f"/workflows/{workflow.id}/run/", data)
    assert response.status_code == 400
    body = response.content.decode()
    assert "This field is required." in body and "Not valid JSON" in body
    assert "greater than or equal to 1" in body
    assert not Run.objects.exists()


def test_viewer_cannot_open_the_run_form(org, viewer, owner):
    workflow = make_workflow(org, owner)
    client = signed_in(viewer, org)
    assert client.get(f"/workflows/{workflow.id}/run/").status_code == 403
    assert client.post(f"/workflows/{workflow.id}/run/", {}).status_code == 403
    assert "Run this workflow" not in client.get(f"/workflows/{workflow.id}/").content.decode()
    assert not Run.objects.exists()


def test_member_can_run(org, member, owner):
    workflow = make_workflow(org, owner)
    response = signed_in(member, org).post(f"/workflows/{workflow.id}/run/", {})
    assert response.status_code == 302, response.content.decode()
    assert Run.objects.get().triggered_by == member.id


# --- runs ----------------------------------------------------------------------------------------------


def test_run_list_filters_and_pages(owner_client, org, owner):
    workflow = make_workflow(org, owner)
    other = make_workflow(org, owner, name="Other flow")
    runs = [run_create(workflow=workflow, actor=actor(org, owner), input_data={}) for _ in range(3)]
    run_create(workflow=other, actor=actor(org, owner), input_data={})
    Run.objects.filter(pk=runs[0].pk).update(status="failed")
    body = owner_client.get("/runs/?status=failed").content.decode()
    assert runs[0].id in body and runs[1].id not in body
    body = owner_client.get(f"/runs/?workflow={other.slug}").content.decode()
    assert body.count('href="/runs/run_') == 1
    assert "No run matches these filters" in owner_client.get("/runs/?env=nowhere").content.decode()
    tagged = run_create(workflow=workflow, actor=actor(org, owner), input_data={}, metadata={"ticket": "T-1"})
    body = owner_client.get("/runs/?metadata=ticket%3DT-1").content.decode()
    assert tagged.id in body and body.count('href="/runs/run_') == 1
    assert "Write it as key=value." in owner_client.get("/runs/?metadata=oops").content.decode()


def test_run_list_cursor_pagination(owner_client, org, owner, monkeypatch):
    from runs.views import runs as run_views

    monkeypatch.setattr(run_views, "PAGE_SIZE", 2)
    workflow = make_workflow(org, owner)
    made = [run_create(workflow=workflow, actor=actor(org, owner), input_data={}) for _ in range(5)]
    seen = []
    url = "/runs/"
    while url:
        body = owner_client.get(url).content.decode()
        seen += re.findall(r'href="/runs/(run_\w+)/"', body)
        older = re.search(r'href="\?([^"]*)" rel="next"', body)
        url = "/runs/?" + older.group(1).replace("&amp;", "&") if older else None
    assert sorted(seen) == sorted(run.id for run in made) and len(seen) == 5


def test_run_list_empty_state(owner_client):
    assert "No runs yet" in owner_client.get("/runs/").content.decode()


def test_run_detail_shows_steps_events_and_coloured_dag(owner_client, org, owner, manual_engine):
    workflow = make_workflow(org, owner)
    run = run_create(workflow=workflow, actor=actor(org, owner), input_data={"name": "Ada"})
    manual_engine.drain()
    response = owner_client.get(f"/runs/{run.id}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-testid="run-status"><span class="status status-completed">' in body
    assert 'class="node s-completed" data-step="greet"' in body
    assert "&quot;Hello Ada&quot;" in body  # the step's output, as JSON
    assert "run_completed" in body and "step_started" in body
    assert f'data-stream="/api/v1/runs/{run.id}/stream"' in body and 'data-finished="1"' in body
    timeline = re.search(r'<svg class="timeline".*?</svg>', body, re.S).group(0)
    assert timeline.count("<rect") == 3 and 'data-step="shout"' in timeline
    assert re.search(r'data-testid="run-duration">\d+(\.\d)? ?(ms|s)<', body)
    live = owner_client.get(f"/runs/{run.id}/live/")
    assert live.status_code == 200 and "<html" not in live.content.decode()


def test_run_detail_truncates_large_values(owner_client, org, owner, manual_engine):
    big = {"id": "big", "type": "transform", "config": {"value": "x" * 9000}}
    workflow = make_workflow(org, owner, steps=[big])
    run = run_create(workflow=workflow, actor=actor(org, owner), input_data={})
    manual_engine.drain()
    body = owner_client.get(f"/runs/{run.id}/").content.decode()
    assert "Truncated: 4000 of" in body


def test_other_organisations_run_is_a_404_everywhere(owner_client, other_org, outsider):
    workflow = make_workflow(other_org, outsider)
    theirs = run_create(workflow=workflow, actor=actor(other_org, outsider), input_data={})
    for path in ("", "live/"):
        assert owner_client.get(f"/runs/{theirs.id}/{path}").status_code == 404
    for path in ("control/", "decide/", "answer/", "rerun/", "delete/"):
        response = owner_client.post(f"/runs/{theirs.id}/{path}", {"decision": "approve", "action": "cancel"})
        assert response.status_code == 404
    assert Run.objects.get(pk=theirs.pk).status == theirs.status
    assert theirs.id not in owner_client.get("/runs/").content.decode()


def test_member_cancels_viewer_cannot(org, owner, member, viewer):
    run = run_create(workflow=make_workflow(org, owner), actor=actor(org, owner), input_data={})
    assert signed_in(viewer, org).post(f"/runs/{run.id}/control/", {"action": "cancel"}).status_code == 403
    assert Run.objects.get(pk=run.pk).status == run.status
    client = signed_in(member, org)
    response = client.post(f"/runs/{run.id}/control/", {"action": "cancel"})
    assert response.status_code == 302
    assert Run.objects.get(pk=run.pk).status == "cancelled"
    body = client.get(f"/runs/{run.id}/").content.decode()
    assert "Cancellation requested." in body and "Cancel run" not in body


def test_cancelling_a_finished_run_is_a_409_page(owner_client, org, owner):
    run = run_create(workflow=make_workflow(org, owner), actor=actor(org, owner), input_data={})
    Run.objects.filter(pk=run.pk).update(status="completed")
    response = owner_client.post(f"/runs/{run.id}/control/", {"action": "cancel"})
    assert response.status_code == 409 and "Not possible now" in response.content.decode()


def test_pause_resume_pin_rerun_and_delete(org, owner, member, manual_engine, settings):
    settings.BATON_INSTANT_STEPS_MS = 0
    run = run_create(workflow=make_workflow(org, owner), actor=actor(org, owner), input_data={"name": "Ada"})
    client = signed_in(member, org)

    def act(action):
        return client.post(f"/runs/{run.id}/control/", {"action": action})

    assert act("pause").status_code == 302
    manual_engine.drain()
    assert Run.objects.get(pk=run.pk).status == "paused"
    assert act("resume").status_code == 302
    manual_engine.drain()
    assert Run.objects.get(pk=run.pk).status == "completed"
    assert act("pin").status_code == 302 and Run.objects.get(pk=run.pk).pinned
    assert act("unpin").status_code == 302 and not Run.objects.get(pk=run.pk).pinned
    assert act("explode").status_code == 400
    response = client.post(f"/runs/{run.id}/rerun/", {"from_step": "shout"})
    rerun = Run.objects.exclude(pk=run.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{rerun.id}/"
    assert rerun.trigger == "rerun" and rerun.triggered_by == member.id
    assert client.post(f"/runs/{run.id}/delete/").status_code == 302
    assert not Run.objects.filter(pk=run.pk).exists()
    events = set(AuditEvent.objects.filter(target_id=run.id).values_list("event", flat=True))
    assert {"run.paused", "run.resumed", "run.deleted"} <= events


def test_viewer_sees_no_run_actions(org, owner, viewer):
    run = run_create(workflow=make_workflow(org, owner), actor=actor(org, owner), input_data={})
    body = signed_in(viewer, org).get(f"/runs/{run.id}/").content.decode()
    assert 'name="action"' not in body and "Rerun" not in body
    for path, data in (("control/", {"action": "pin"}), ("rerun/", {}), ("delete/", {})):
        assert signed_in(viewer, org).post(f"/runs/{run.id}/{path}", data).status_code == 403
    assert not Run.objects.get(pk=run.pk).pinned


# --- approvals -----------------------------------------------------------------------------------------


def _waiting_run(org, owner, engine, steps=None):
    workflow = make_workflow(org, owner, name="Release", steps=steps or APPROVAL_STEPS)
    run = run_create(workflow=workflow, actor=actor(org, owner), input_data={})
    engine.drain()
    return Run.objects.get(pk=run.pk)


def test_inbox_lists_the_approval_with_a_badge_and_decides_inline(org, owner, member, manual_engine):
    run = _waiting_run(org, owner, manual_engine)
    assert run.status == "awaiting_approval"
    client = signed_in(member, org)
    body = client.get("/approvals/").content.decode()
    assert body.count('data-testid="inbox-item"') == 1 and "Ship it?" in body
    assert re.search(r'data-testid="inbox-badge">.*?1', body)
    assert 'hx-post="/runs/' in body
    decision = {"decision": "approve", "note": "LGTM", "step_id": "ok"}
    response = client.post(f"/runs/{run.id}/decide/", decision, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "Approved" in response.content.decode()
    assert "<html" not in response.content.decode()  # a fragment for htmx
    manual_engine.drain()
    assert Run.objects.get(pk=run.pk).status == "completed"
    event = AuditEvent.objects.get(event="run.approved")
    assert event.note == "LGTM" and event.actor == member.id
    body = client.get("/approvals/").content.decode()
    assert 'data-testid="inbox-empty"' in body and "inbox-badge" not in body


def test_reject_from_the_run_page(org, owner, member, manual_engine):
    run = _waiting_run(org, owner, manual_engine)
    response = signed_in(member, org).post(f"/runs/{run.id}/decide/", {"decision": "reject", "step_id": "ok"})
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.id}/"
    manual_engine.drain()
    assert Run.objects.get(pk=run.pk).status == "failed"


def test_viewer_sees_no_approvals_and_cannot_decide(org, owner, viewer, manual_engine):
    run = _waiting_run(org, owner, manual_engine)
    client = signed_in(viewer, org)
    assert 'data-testid="inbox-empty"' in client.get("/approvals/").content.decode()
    assert client.post(f"/runs/{run.id}/decide/", {"decision": "approve"}).status_code == 403
    assert Run.objects.get(pk=run.pk).status == "awaiting_approval"


def test_inbox_leaves_out_steps_whose_approvers_exclude_the_person(org, owner, member, manual_engine):
    steps = [{"id": "ok", "type": "approval", "config": {"message": "Admins only", "approvers": ["admin"]}}]
    run = _waiting_run(org, owner, manual_engine, steps=steps)
    client = signed_in(member, org)
    assert 'data-testid="inbox-empty"' in client.get("/approvals/").content.decode()
    response = client.post(f"/runs/{run.id}/decide/", {"decision": "approve", "step_id": "ok"})
    assert response.status_code == 403 and "may only be decided by" in response.content.decode()
    assert 'data-testid="inbox-item"' in signed_in(owner, org).get("/approvals/").content.decode()


def test_answer_an_input_request_from_its_schema(org, owner, member, manual_engine):
    schema = {"type": "object", "required": ["size"], "properties": {"size": {"type": "integer"}}}
    steps = [{"id": "ask", "type": "input", "config": {"message": "How many?", "schema": schema}}]
    run = _waiting_run(org, owner, manual_engine, steps=steps)
    assert run.status == "awaiting_input"
    client = signed_in(member, org)
    page = client.get(f"/runs/{run.id}/").content.decode()
    assert 'name="in-ask-size"' in page and "How many?" in page
    bad = client.post(f"/runs/{run.id}/answer/", {"step_id": "ask", "in-ask-size": "many"})
    assert bad.status_code == 400 and "Enter a whole number." in bad.content.decode()
    good = client.post(f"/runs/{run.id}/answer/", {"step_id": "ask", "in-ask-size": "4"})
    assert good.status_code == 302
    manual_engine.drain()
    run.refresh_from_db()
    assert run.status == "completed"


# --- settings: API keys --------------------------------------------------------------------------------


def test_admin_creates_a_key_shown_once_that_works_against_the_api(org, owner, admin):
    client = signed_in(admin, org)
    data = {"name": "CI", "scopes": ["runs:read", "workflows:read"], "expires_in_days": "30"}
    response = client.post("/settings/api-keys/", data)
    assert response.status_code == 200
    raw = re.search(r'data-testid="new-key-value">([^<]+)<', response.content.decode()).group(1)
    key = ApiKey.objects.get(name="CI")
    assert key.scopes == ["runs:read", "workflows:read"] and key.expires_at is not None
    assert Client().get("/api/v1/runs", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    listing = client.get("/settings/api-keys/").content.decode()
    assert raw not in listing and key.prefix in listing


def test_revoke_a_key(org, owner, admin):
    client = signed_in(admin, org)
    client.post("/settings/api-keys/", {"name": "Temp", "scopes": ["runs:read"]})
    key = ApiKey.objects.get(name="Temp")
    assert client.post(f"/settings/api-keys/{key.id}/revoke/").status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert AuditEvent.objects.filter(event="api_key.revoked", target_id=key.id).exists()


def test_key_form_needs_a_scope(org, admin):
    response = signed_in(admin, org).post("/settings/api-keys/", {"name": "Nothing"})
    assert response.status_code == 400 and not ApiKey.objects.filter(name="Nothing").exists()


def test_members_cannot_manage_keys(org, member):
    client = signed_in(member, org)
    assert client.get("/settings/api-keys/").status_code == 403
    assert client.post("/settings/api-keys/", {"name": "x", "scopes": ["runs:read"]}).status_code == 403
    assert not ApiKey.objects.filter(name="x").exists()


def test_other_organisations_key_cannot_be_revoked(owner_client, other_org, outsider):
    from tests.conftest import key_for

    key_for(other_org, outsider)
    theirs = ApiKey.objects.get(organization=other_org)
    assert owner_client.post(f"/settings/api-keys/{theirs.id}/revoke/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


# --- audit ---------------------------------------------------------------------------------------------


def test_audit_log_filters_pages_and_verifies(org, owner, admin):
    client = signed_in(admin, org)
    for i in range(3):
        client.post("/settings/api-keys/", {"name": f"k{i}", "scopes": ["runs:read"]})
    body = client.get("/audit/?event=api_key.*").content.decode()
    assert body.count("<code>api_key.created</code>") == 3 and "organization.created" not in body
    assert 'href="/api/v1/audit/export"' in body
    export = client.get("/api/v1/audit/export")  # the link works with the dashboard's session
    assert export.status_code == 200 and b"api_key.created" in b"".join(export.streaming_content)
    verify = client.post("/audit/verify/", HTTP_HX_REQUEST="true")
    assert verify.status_code == 200 and "The chain is intact" in verify.content.decode()
    assert "<html" not in verify.content.decode()


def test_audit_log_pages_by_sequence(org, admin, monkeypatch):
    from audit import views as audit_views

    monkeypatch.setattr(audit_views, "PAGE_SIZE", 2)
    client = signed_in(admin, org)
    for i in range(4):
        client.post("/settings/api-keys/", {"name": f"k{i}", "scopes": ["runs:read"]})
    first = client.get("/audit/").content.decode()
    older = re.search(r'href="\?([^"]*)" rel="next"', first).group(1).replace("&amp;", "&")
    second = client.get(f"/audit/?{older}").content.decode()
    seqs = [int(s) for s in re.findall(r"<tr>\s*<td>(\d+)</td>", first + second)]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 4


def test_audit_log_is_for_admins(org, member):
    client = signed_in(member, org)
    assert client.get("/audit/").status_code == 403
    assert client.post("/audit/verify/").status_code == 403


# --- settings: members ---------------------------------------------------------------------------------


def test_admin_adds_changes_and_removes_a_member(org, owner, admin, member):
    from accounts.models import Membership

    client = signed_in(admin, org)
    response = client.post("/settings/members/", {"email": "New@Acme.test", "role": "viewer"})
    assert response.status_code == 200 and 'data-testid="invitation-url"' in response.content.decode()
    membership = Membership.objects.get(organization=org, user__email="new@acme.test")
    assert membership.role == "viewer"
    assert "has not joined yet" in client.get("/settings/members/").content.decode()
    assert client.post(f"/settings/members/{membership.user_id}/role/", {"role": "member"}).status_code == 302
    membership.refresh_from_db()
    assert membership.role == "member"
    assert client.post(f"/settings/members/{membership.user_id}/remove/").status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()
    events = set(AuditEvent.objects.filter(target_id=membership.user_id).values_list("event", flat=True))
    assert events == {"member.added", "member.role_changed", "member.removed"}


def test_an_existing_account_is_added_without_an_invitation(org, admin, other_org, outsider):
    response = signed_in(admin, org).post("/settings/members/", {"email": outsider.email, "role": "member"})
    assert response.status_code == 302
    body = signed_in(admin, org).get("/settings/members/").content.decode()
    assert outsider.email in body and "invitation-url" not in body


def _invite(org, admin, email="joiner@acme.test") -> str:
    response = signed_in(admin, org).post("/settings/members/", {"email": email, "role": "member"})
    return re.search(r'data-testid="invitation-url">([^<]+)<', response.content.decode()).group(1)


def test_invitation_link_sets_the_password_once_and_signs_in(org, admin, settings):
    from accounts.models import User

    url = _invite(org, admin).replace("http://testserver", "")
    guest = Client()
    form = guest.get(url, follow=True)
    assert form.status_code == 200 and "joiner@acme.test" in form.content.decode()
    set_url = form.redirect_chain[-1][0] if form.redirect_chain else url
    response = guest.post(
        set_url, {"new_password1": "a-long-new-passphrase", "new_password2": "a-long-new-passphrase"}
    )
    assert response.status_code == 302 and response["Location"] == "/"
    overview = guest.get("/").content.decode()
    assert "Acme" in overview and "Welcome to Baton" in overview
    assert User.objects.get(email="joiner@acme.test").check_password("a-long-new-passphrase")
    again = Client().get(url, follow=True).content.decode()
    assert 'data-testid="link-invalid"' in again


def test_invitation_email_is_sent_when_email_is_configured(org, admin, settings, mailoutbox):
    settings.BATON_EMAIL_URL = "smtp://mail.example:587"
    url = _invite(org, admin)
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["joiner@acme.test"] and url in mailoutbox[0].body


def test_password_reset_by_email(org, owner, mailoutbox):
    client = Client()
    assert "Forgot your password?" in client.get("/login/").content.decode()
    response = client.post("/password-reset/", {"email": owner.email})
    assert response.status_code == 302 and response["Location"] == "/password-reset/sent/"
    link = re.search(r"http://testserver(/password-reset/\S+)", mailoutbox[0].body).group(1)
    form = client.get(link, follow=True)
    set_url = form.redirect_chain[-1][0]
    new = "another-long-passphrase"
    assert client.post(set_url, {"new_password1": new, "new_password2": new}).status_code == 302
    owner.refresh_from_db()
    assert owner.check_password(new)
    assert client.post("/password-reset/", {"email": "nobody@acme.test"}).status_code == 302
    assert len(mailoutbox) == 1  # no email, and no hint, for an unknown address


def test_admin_cannot_make_an_owner_and_the_last_owner_stays(org, owner, admin):
    client = signed_in(admin, org)
    response = client.post("/settings/members/", {"email": "boss@acme.test", "role": "owner"})
    assert response.status_code == 403 and "Only an owner" in response.content.decode()
    response = signed_in(owner, org).post(f"/settings/members/{owner.id}/role/", {"role": "admin"})
    assert response.status_code == 409 and "last owner" in response.content.decode()


def test_members_page_is_for_admins_and_scoped(org, member, other_org, outsider, owner_client):
    assert signed_in(member, org).get("/settings/members/").status_code == 403
    assert owner_client.post(f"/settings/members/{outsider.id}/remove/").status_code == 404
    assert outsider.email not in owner_client.get("/settings/members/").content.decode()


# --- templates -----------------------------------------------------------------------------------------


def _template(org=None, name="Support triage"):
    from workflows.models import WorkflowTemplate

    definition = {"name": name, "steps": [{"id": "a", "type": "transform", "config": {"value": 1}}]}
    return WorkflowTemplate.objects.create(organization=org, name=name, definition=definition)


def test_template_gallery_installs_a_workflow(org, owner, member):
    template = _template(org)
    client = signed_in(member, org)
    body = client.get("/templates/").content.decode()
    assert "Support triage" in body and 'id="dag-' in body
    response = client.post(f"/templates/{template.id}/install/", {"name": "My triage"})
    from workflows.models import Workflow

    workflow = Workflow.objects.get(organization=org, name="My triage")
    assert response.status_code == 302 and response["Location"] == f"/workflows/{workflow.id}/"
    assert AuditEvent.objects.filter(event="template.installed", target_id=workflow.id).exists()


def test_viewer_cannot_install_and_other_organisations_templates_are_hidden(org, viewer, other_org):
    theirs = _template(other_org, name="Their secret flow")
    client = signed_in(viewer, org)
    assert "Their secret flow" not in client.get("/templates/").content.decode()
    assert client.post(f"/templates/{theirs.id}/install/").status_code == 403
    assert signed_in_owner_post(org, f"/templates/{theirs.id}/install/").status_code == 404


def signed_in_owner_post(org, url):
    from accounts.models import Membership

    owner = Membership.objects.get(organization=org, role="owner").user
    return signed_in(owner, org).post(url)


def test_bulk_cancel_and_delete_from_the_list(org, owner, member, viewer, other_org, outsider):
    workflow = make_workflow(org, owner)
    active = [run_create(workflow=workflow, actor=actor(org, owner), input_data={}) for _ in range(2)]
    theirs = run_create(
        workflow=make_workflow(other_org, outsider), actor=actor(other_org, outsider), input_data={}
    )
    ids = [run.id for run in active] + [theirs.id]
    assert signed_in(viewer, org).post("/runs/bulk/", {"run": ids, "action": "cancel"}).status_code == 403
    client = signed_in(member, org)
    assert 'name="run" value="' in client.get("/runs/").content.decode()
    response = client.post("/runs/bulk/", {"run": ids, "action": "cancel", "query": "status=running"})
    assert response.status_code == 302 and response["Location"] == "/runs/?status=running"
    assert set(Run.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        "cancelled",
        theirs.status,
    }
    assert "2 of 2 selected runs asked to stop" in client.get("/runs/").content.decode()
    client.post("/runs/bulk/", {"run": ids, "action": "delete"})
    assert list(Run.objects.filter(pk__in=ids).values_list("pk", flat=True)) == [theirs.id]


def test_workflow_lifecycle_actions(org, owner, member, viewer):
    from workflows.models import Workflow
    from workflows.services import workflow_update

    workflow = make_workflow(org, owner)
    definition = {**workflow.versions.get().definition, "description": "v2"}
    workflow_update(workflow=workflow, actor=actor(org, owner), definition=definition)
    url = f"/workflows/{workflow.id}/action/"
    assert signed_in(viewer, org).post(url, {"action": "archive"}).status_code == 403
    client = signed_in(member, org)

    def status():
        return Workflow.objects.get(pk=workflow.pk)

    assert client.post(url, {"action": "activate"}).status_code == 302 and status().status == "active"
    assert client.post(url, {"action": "publish"}).status_code == 302 and status().published_version == 2
    assert client.post(url, {"action": "rollback", "version": "1"}).status_code == 302
    assert status().current_version == 3
    for digits in ("³", "١"):  # str.isdigit() says yes to both; int() refuses or reads them
        assert client.post(url, {"action": "rollback", "version": digits}).status_code == 400
        assert client.post(url, {"action": "publish", "version": digits}).status_code == 302
    assert status().published_version == 3  # no number given: the latest
    assert client.post(url, {"action": "archive"}).status_code == 302 and status().status == "archived"
    assert client.post(url, {"action": "delete"}).status_code == 403  # owners only
    assert client.post(url, {"action": "explode"}).status_code == 400
    assert signed_in(owner, org).post(url, {"action": "delete"}).status_code == 302
    assert not Workflow.objects.filter(pk=workflow.pk).exists()


def test_definition_editor_validates_and_saves_versions(org, owner, member, viewer):
    import json

    from workflows.models import Workflow

    client = signed_in(member, org)
    check = client.post(
        "/workflows/validate/", {"definition": '{"name": "x", "steps": []}'}, HTTP_HX_REQUEST="true"
    )
    assert check.status_code == 200 and 'data-testid="definition-errors"' in check.content.decode()
    assert "Not valid JSON" in client.post("/workflows/validate/", {"definition": "{"}).content.decode()
    good = {"name": "Fresh", "steps": [{"id": "a", "type": "transform", "config": {"value": 1}}]}
    ok = client.post("/workflows/validate/", {"definition": json.dumps(good)})
    assert 'data-testid="definition-ok"' in ok.content.decode()

    response = client.post("/workflows/new/", {"definition": json.dumps(good)})
    workflow = Workflow.objects.get(organization=org, name="Fresh")
    assert response.status_code == 302 and response["Location"] == f"/workflows/{workflow.id}/"
    edit = f"/workflows/{workflow.id}/edit/"
    assert '"Fresh"' in client.get(edit).content.decode().replace("&quot;", '"')
    changed = {**good, "description": "Second"}
    saved = client.post(
        edit, {"definition": json.dumps(changed), "base_version": "1", "change_summary": "Describe"}
    )
    assert saved.status_code == 302
    workflow.refresh_from_db()
    assert workflow.current_version == 2 and workflow.versions.get(number=2).change_summary == "Describe"
    stale = client.post(
        edit, {"definition": json.dumps({**good, "description": "Third"}), "base_version": "1"}
    )
    assert stale.status_code == 409
    third = {"definition": json.dumps({**good, "description": "Third"}), "base_version": "³"}
    assert client.post(edit, third).status_code == 302  # not a number: no base, saved as the latest
    assert workflow.versions.count() == 3
    invalid = client.post(edit, {"definition": '{"name": "x", "steps": []}', "base_version": "2"})
    assert invalid.status_code == 400 and "problem" in invalid.content.decode()
    assert signed_in(viewer, org).get(edit).status_code == 403


def test_inline_decision_refused_by_the_service_is_shown_in_place(org, owner, manual_engine):
    steps = [{"id": "ok", "type": "approval", "config": {"message": "Ship?", "allow_self_approval": False}}]
    run = _waiting_run(org, owner, manual_engine, steps=steps)  # triggered by the owner
    response = signed_in(owner, org).post(
        f"/runs/{run.id}/decide/", {"decision": "approve", "step_id": "ok"}, HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    assert response.status_code == 200 and 'data-testid="decide-error"' in body and "<html" not in body
    assert Run.objects.get(pk=run.pk).status == "awaiting_approval"


def test_unknown_dashboard_address_is_a_404_page(owner_client):
    response = owner_client.get("/nothing-here/")
    assert response.status_code == 404 and "Back to the overview" in response.content.decode()


def test_environment_gate_is_decided_from_the_inbox_and_the_run_page(org, owner, member, manual_engine):
    run = run_create(
        workflow=make_workflow(org, owner),
        actor=actor(org, owner),
        input_data={"name": "Ada"},
        env="production",
    )
    assert run.status == "awaiting_approval"
    client = signed_in(member, org)
    inbox = client.get("/approvals/").content.decode()
    assert "environment approval" in inbox and "needs an approval before it starts" in inbox
    assert "Approval needed before this run starts" in client.get(f"/runs/{run.id}/").content.decode()
    response = client.post(f"/runs/{run.id}/decide/", {"decision": "approve", "step_id": ""})
    assert response.status_code == 302
    manual_engine.drain()
    finished = Run.objects.get(pk=run.pk)
    assert finished.status == "completed", finished.error


def test_organisation_settings_by_role(org, owner, admin, member):
    from accounts.models import Organization

    assert signed_in(member, org).get("/settings/").status_code == 403
    client = signed_in(admin, org)
    data = {"name": "Acme Corp", "plan": org.plan, "retention_days": org.retention_days}
    assert client.post("/settings/", data).status_code == 302
    assert Organization.objects.get(pk=org.pk).name == "Acme Corp"
    refused = client.post("/settings/", {**data, "retention_days": 7})
    assert refused.status_code == 403 and "Only an organisation owner" in refused.content.decode()
    assert (
        signed_in(owner, org).post("/settings/", {**data, "plan": "growth", "retention_days": 7}).status_code
        == 302
    )
    org.refresh_from_db()
    assert (org.plan, org.retention_days) == ("growth", 7)
    assert "Limits of the Growth plan" in signed_in(owner, org).get("/settings/").content.decode()


def test_parent_and_child_runs_link_to_each_other(owner_client, org, owner, manual_engine):
    child_flow = make_workflow(
        org, owner, name="Child", steps=[{"id": "a", "type": "transform", "config": {"value": 2}}]
    )
    parent_flow = make_workflow(
        org,
        owner,
        name="Parent",
        steps=[{"id": "sub", "type": "sub_workflow", "config": {"workflow": child_flow.id}}],
    )
    parent = run_create(workflow=parent_flow, actor=actor(org, owner), input_data={})
    manual_engine.drain()
    child = Run.objects.get(parent_run=parent)
    assert f'href="/runs/{child.id}/"' in owner_client.get(f"/runs/{parent.id}/").content.decode()
    assert f'href="/runs/{parent.id}/"' in owner_client.get(f"/runs/{child.id}/").content.decode()


def test_profile_shows_organisations_and_changes_the_password(org, owner, other_org):
    from tests.conftest import PASSWORD
    from tests.factories import add_member

    add_member(other_org, "viewer", owner)
    client = signed_in(owner, org)
    body = client.get("/profile/").content.decode()
    assert "Acme — Owner (current)" in body and "Switch to Other" in body
    new = "a-brand-new-passphrase"
    wrong = client.post(
        "/profile/password/", {"old_password": "nope", "new_password1": new, "new_password2": new}
    )
    assert wrong.status_code == 200 and 'class="field-error"' in wrong.content.decode()
    data = {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    assert client.post("/profile/password/", data).status_code == 302
    owner.refresh_from_db()
    assert owner.check_password(new)
    assert client.get("/profile/").status_code == 200  # still signed in
    assert Client().get("/profile/password/").status_code == 302  # sign-in first


def test_audit_log_shows_the_last_checkpoint_and_its_signature(org, admin):
    from django.db import connection

    from audit.checkpoints import audit_checkpoint_create
    from audit.models import AuditCheckpoint

    client = signed_in(admin, org)
    assert "No signed checkpoint yet" in client.get("/audit/").content.decode()
    audit_checkpoint_create(organization=org)
    checkpoint = AuditCheckpoint.objects.filter(organization=org).order_by("-id").first()
    body = client.get("/audit/").content.decode()
    assert f"Last signed checkpoint: event {checkpoint.seq}," in body and "signature valid" in body
    with connection.cursor() as cursor:  # a forged signature (the model refuses updates; tamper with SQL)
        cursor.execute(
            "UPDATE audit_auditcheckpoint SET signature = %s WHERE id = %s", ["AAAA", checkpoint.pk]
        )
    assert "signature does not hold" in client.get("/audit/").content.decode()
