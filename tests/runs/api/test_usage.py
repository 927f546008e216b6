"""GET /usage counts this month's runs, tokens and cost (accounts.selectors.run_totals)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.selectors import usage_period
from runs.models import Run
from runs.quotas import run_totals
from tests.runs.api.conftest import GreeterRunFactory


def test_usage_counts_this_months_runs_tokens_and_cost(
    api_key_client, org, workflow, actor, other_org, outsider
):
    org.monthly_run_limit = 1000
    org.save(update_fields=["monthly_run_limit"])
    period, start, _end = usage_period()
    this_month = [GreeterRunFactory(workflow=workflow, actor=actor) for _ in range(3)]
    Run.objects.filter(pk=this_month[0].pk).update(total_tokens=1200, cost_usd=Decimal("0.0200"))
    Run.objects.filter(pk=this_month[1].pk).update(total_tokens=300, cost_usd=Decimal("0.0041"))
    last_month = GreeterRunFactory(workflow=workflow, actor=actor, created_at=start - timedelta(seconds=1))
    Run.objects.filter(pk=last_month.pk).update(total_tokens=99_999, cost_usd=Decimal("9"))

    body = api_key_client.get("/api/v1/usage").json()

    assert body["period"] == period
    assert body["runs"]["used"] == 3 and body["runs"]["limit"] == 1000
    assert body["tokens"]["used"] == 1500
    assert body["cost_usd"] == 0.0241


def test_run_totals_is_one_query_and_bounded_by_the_period(org, workflow, actor):
    GreeterRunFactory(workflow=workflow, actor=actor, created_at=datetime(2026, 1, 31, 23, 59, tzinfo=UTC))
    GreeterRunFactory(workflow=workflow, actor=actor, created_at=datetime(2026, 2, 1, tzinfo=UTC))
    GreeterRunFactory(workflow=workflow, actor=actor, created_at=datetime(2026, 3, 1, tzinfo=UTC))
    _, start, end = usage_period(datetime(2026, 2, 14, tzinfo=UTC))

    with CaptureQueriesContext(connection) as ctx:
        totals = run_totals(organization=org, start=start, end=end)

    assert totals == (1, 0, 0.0)
    assert len(ctx.captured_queries) == 1


def test_usage_of_an_organisation_without_runs_is_zero(api_key_client):
    body = api_key_client.get("/api/v1/usage").json()
    assert (body["runs"]["used"], body["tokens"]["used"], body["cost_usd"]) == (0, 0, 0.0)
