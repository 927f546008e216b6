"""`total` is exact up to EXACT_TOTAL_LIMIT matches; beyond, PostgreSQL answers the planner's estimate
with `"total_estimated": true` (API.md "Pagination"); SQLite always counts. The limit is lowered here so
a handful of projects crosses it."""

import pytest
from django.db import connection

from config.api import pagination
from tests.factories import ProjectFactory


@pytest.fixture
def projects(org):
    return [ProjectFactory(organization=org, name=f"P{n}") for n in range(6)]


def test_total_is_exact_up_to_the_limit(api_key_client, projects, monkeypatch):
    monkeypatch.setattr(pagination, "EXACT_TOTAL_LIMIT", 6)

    body = api_key_client.get("/api/v1/projects?limit=2").json()

    assert body["total"] == 6
    assert "total_estimated" not in body
    assert len(body["projects"]) == 2


def test_beyond_the_limit_postgresql_estimates_and_says_so(api_key_client, projects, monkeypatch):
    monkeypatch.setattr(pagination, "EXACT_TOTAL_LIMIT", 3)

    body = api_key_client.get("/api/v1/projects?limit=2").json()

    if connection.vendor == "postgresql":
        assert body["total_estimated"] is True
        assert body["total"] >= 4  # never below the exact limit + 1
    else:
        assert body["total"] == 6
        assert "total_estimated" not in body
    assert len(body["projects"]) == 2
