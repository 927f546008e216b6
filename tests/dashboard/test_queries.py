"""Each dashboard page costs the same number of queries whatever it lists (as tests/test_list_queries.py
checks for the API): no query per row."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.services import api_key_create
from runs.models import Run
from runs.services import run_create
from tests.dashboard.support.helpers import APPROVAL_STEPS, actor, make_workflow, signed_in
from tests.factories import add_member

PAGES = [
    "/",
    "/workflows/",
    "/runs/",
    "/approvals/",
    "/settings/api-keys/",
    "/settings/members/",
    "/audit/",
    "RUN",
]


def _add_rows(org, owner, engine, count, start):
    principal = actor(org, owner)
    for i in range(start, start + count):
        workflow = make_workflow(org, owner, name=f"Flow {i}", steps=APPROVAL_STEPS, tags=[f"t{i}"])
        run_create(workflow=workflow, actor=principal, input_data={})
        done = run_create(workflow=workflow, actor=principal, input_data={})
        Run.objects.filter(pk=done.pk).update(status="failed", error={"code": "x", "message": "boom"})
        api_key_create(organization=org, actor=principal, name=f"key {i}")
        add_member(org, "member")
    engine.drain()


def _queries(client, url) -> int:
    client.get(url)  # warm the engine's per-process caches of prepared definitions
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return len(ctx.captured_queries)


@pytest.mark.parametrize("page", PAGES)
def test_page_query_count_does_not_grow_with_rows(page, org, owner, manual_engine):
    client = signed_in(owner, org)
    _add_rows(org, owner, manual_engine, 1, 0)
    first_run = Run.objects.filter(status="awaiting_approval").earliest("created_at")
    url = f"/runs/{first_run.id}/" if page == "RUN" else page
    few = _queries(client, url)
    _add_rows(org, owner, manual_engine, 8, 1)
    assert _queries(client, url) == few
