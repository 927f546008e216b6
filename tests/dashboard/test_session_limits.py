"""The live run page's event stream, opened with the dashboard session, is limited as a session, never
against the organisation's API rate limit (docs/dashboard.md "Security")."""

from runs.models import Run
from runs.services import run_create
from tests.conftest import bearer_client, key_for
from tests.dashboard.support.helpers import actor, make_workflow, signed_in


def _finished_run(org, owner):
    run = run_create(workflow=make_workflow(org, owner), actor=actor(org, owner), input_data={})
    Run.objects.filter(pk=run.pk).update(status="completed")
    return run


def _open(client, run) -> int:
    """The stream's request handling (authentication, permission, limit, lookup), with the client's
    session, up to its response; the body is not iterated (it would hand the test's database connection
    to the stream's poller)."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import get_user
    from django.test import RequestFactory

    from runs.stream import RunStreamView

    request = RequestFactory().get(f"/api/v1/runs/{run.id}/stream", HTTP_ACCEPT="text/event-stream")
    engine = import_module(settings.SESSION_ENGINE)
    request.session = engine.SessionStore(client.cookies[settings.SESSION_COOKIE_NAME].value)
    request.user = get_user(request)
    response = RunStreamView.as_view()(request, run_id=run.id)
    assert response.status_code != 200 or response["Content-Type"].startswith("text/event-stream")
    return response.status_code


def test_session_streams_do_not_use_the_organisations_api_limit(org, owner):
    org.rate_per_minute = 2
    org.save(update_fields=["rate_per_minute"])
    run = _finished_run(org, owner)
    client = signed_in(owner, org)
    assert [_open(client, run) for _ in range(4)] == [200] * 4
    api = bearer_client(key_for(org, owner))
    first = api.get("/api/v1/me")
    assert first.status_code == 200 and first["X-RateLimit-Remaining"] == "1"  # the key's first request


def test_session_streams_count_against_the_session_limit(org, owner, settings):
    settings.BATON_DASHBOARD_REQUESTS_PER_MINUTE = 10
    run = _finished_run(org, owner)
    client = signed_in(owner, org)
    assert client.get(f"/runs/{run.id}/").status_code == 200  # the page and its stream share the count
    codes = [_open(client, run) for _ in range(10)]
    assert codes == [200] * 9 + [429]
