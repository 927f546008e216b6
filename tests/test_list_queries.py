"""List endpoints cost the same number of queries whatever the page holds: no query per row."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.principal import Principal
from accounts.services import api_key_create
from config.ratelimit import DatabaseCounters
from workflows.services import project_create

LISTS = [
    "/api/v1/workflows",
    "/api/v1/projects",
    "/api/v1/members",
    "/api/v1/api-keys",
    "/api/v1/audit/logs",
    "/api/v1/templates",
    "/api/v1/runs",
    "/api/v1/workflows/w0/runs",
]


@pytest.fixture(autouse=True)
def no_counter_prune(monkeypatch):
    """The rate-limit counters prune expired rows once a minute, in whichever request comes then: a query
    of no list's (it made a measured request one query longer now and then)."""
    monkeypatch.setattr(DatabaseCounters, "_last_prune", float("inf"))


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(ctx.captured_queries)


def _add_rows(client, org, owner, start, count):
    actor = Principal(organization=org, user=owner, role="owner")
    for i in range(start, start + count):
        project = project_create(organization=org, actor=actor, name=f"Project {i}")
        api_key_create(organization=org, actor=actor, name=f"key {i}")
        definition = {"name": f"W{i}", "steps": [{"id": "a", "type": "transform", "config": {"value": i}}]}
        response = client.post(
            "/api/v1/workflows",
            {"definition": definition, "project": project.id, "tags": ["t"]},
            format="json",
        )
        assert response.status_code == 201, response.content
        for ref in (response.json()["id"], "w0"):  # runs of every workflow, and more of the first one
            triggered = client.post(f"/api/v1/workflows/{ref}/run", {}, format="json")
            assert triggered.status_code == 202, triggered.content


@pytest.mark.parametrize("url", LISTS)
def test_list_query_count_does_not_grow_with_rows(api_key_client, org, owner, url):
    _add_rows(api_key_client, org, owner, 0, 1)
    few = _queries(api_key_client, url)
    _add_rows(api_key_client, org, owner, 1, 15)
    assert _queries(api_key_client, url) == few
