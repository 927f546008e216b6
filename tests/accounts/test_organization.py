from datetime import UTC, datetime

import pytest

from accounts.choices import LIMIT_FIELDS, plan_limits
from accounts.selectors import usage_period
from runs.quotas import usage_for
from tests.accounts.conftest import error_code, events

ORG = "/api/v1/organization"


def test_me_for_a_person(jwt_client, owner, org):
    body = jwt_client.get("/api/v1/me").json()
    assert body["actor_type"] == "user"
    assert body["user"] == {"id": owner.id, "email": owner.email, "name": owner.name}
    assert body["api_key"] is None
    assert body["organization"]["id"] == org.id
    assert body["role"] == "owner"
    assert body["organizations"] == [{"id": org.id, "name": "Acme", "role": "owner"}]


def test_me_for_an_api_key(make_key_client, org):
    body = make_key_client(["runs:read", "workflows:read"]).get("/api/v1/me").json()
    assert body["actor_type"] == "api_key"
    assert body["user"] is None
    assert body["api_key"]["prefix"].startswith("bt_live_")
    assert "key" not in body["api_key"] and "key_hash" not in body["api_key"]
    assert body["scopes"] == ["runs:read", "workflows:read"]
    assert body["organization"]["id"] == org.id


def test_organization_has_the_contract_shape(viewer_client, org):
    body = viewer_client.get(ORG).json()
    assert set(body) == {
        "id", "name", "plan", "limits", "retention_days", "require_two_factor", "notification_webhook_set",
        "created_at",
    }  # fmt: skip
    assert set(body["limits"]) == set(LIMIT_FIELDS)
    assert body["limits"] == plan_limits("starter")
    assert body["retention_days"] == 90


def test_admin_may_rename(admin_client, org):
    response = admin_client.patch(ORG, {"name": "Acme Inc"}, format="json")
    assert response.status_code == 200
    assert response.json()["name"] == "Acme Inc"
    [event] = events(org, "organization.updated")
    assert event.data == {"changes": {"name": {"from": "Acme", "to": "Acme Inc"}}}


@pytest.mark.parametrize(
    "body", [{"plan": "growth"}, {"limits": {"rate_per_minute": 5}}, {"retention_days": 30}]
)
def test_only_the_owner_changes_plan_limits_and_retention(admin_client, api_key_client, org, body):
    for client in (admin_client, api_key_client):
        response = client.patch(ORG, body, format="json")
        assert response.status_code == 403
        assert error_code(response) == "forbidden"
    org.refresh_from_db()
    assert org.plan == "starter" and org.retention_days == 90 and org.rate_per_minute == 60
    assert events(org, "organization.updated") == []


def test_member_cannot_rename(member_client):
    assert member_client.patch(ORG, {"name": "x"}, format="json").status_code == 403


def test_changing_plan_resets_limits_to_the_plan(jwt_client, org):
    jwt_client.patch(ORG, {"limits": {"rate_per_minute": 7}}, format="json")
    body = jwt_client.patch(ORG, {"plan": "growth"}, format="json").json()
    assert body["plan"] == "growth"
    assert body["limits"] == plan_limits("growth")
    event = events(org, "organization.updated")[-1]
    assert event.data["changes"]["plan"] == {"from": "starter", "to": "growth"}
    assert event.data["changes"]["limits"]["to"]["rate_per_minute"] == 300


def test_plan_with_limits_applies_limits_on_top(jwt_client):
    body = jwt_client.patch(
        ORG, {"plan": "enterprise", "limits": {"monthly_run_limit": 10}}, format="json"
    ).json()
    assert body["limits"] == plan_limits("enterprise") | {"monthly_run_limit": 10}


def test_partial_limits_and_null_means_unlimited(jwt_client, org):
    body = jwt_client.patch(
        ORG, {"limits": {"rate_per_day": None, "max_concurrent_runs": 0}}, format="json"
    ).json()
    assert body["limits"] == plan_limits("starter") | {"rate_per_day": None, "max_concurrent_runs": 0}
    org.refresh_from_db()
    assert org.rate_per_day is None


@pytest.mark.parametrize(
    "body",
    [
        {"limits": {"rate_per_minute": -1}},
        {"limits": {"rate_per_minute": "10"}},
        {"limits": {"rate_per_minute": 1.5}},
        {"limits": {"rate_per_minute": True}},
        {"limits": {"bogus": 1}},
        {"limits": [1]},
        {"retention_days": 0},
        {"retention_days": 3651},
        {"plan": "platinum"},
        {"name": ""},
        {"colour": "red"},
    ],
)
def test_invalid_updates_are_400(jwt_client, org, body):
    response = jwt_client.patch(ORG, body, format="json")
    assert response.status_code == 400, response.json()
    assert error_code(response) == "invalid_request"
    assert events(org, "organization.updated") == []


def test_no_change_is_not_audited(jwt_client, org):
    assert jwt_client.patch(ORG, {"name": "Acme", "plan": "starter"}, format="json").status_code == 200
    assert events(org, "organization.updated") == []


def test_usage_is_zero_until_runs_exist(viewer_client, org):
    body = viewer_client.get("/api/v1/usage").json()
    assert body == {
        "period": datetime.now(UTC).strftime("%Y-%m"),
        "runs": {"used": 0, "limit": 1000},
        "tokens": {"used": 0, "limit": 1_000_000},
        "cost_usd": 0,
    }


def test_usage_limit_is_null_when_unlimited(jwt_client, org):
    jwt_client.patch(ORG, {"plan": "enterprise"}, format="json")
    body = jwt_client.get("/api/v1/usage").json()
    assert body["runs"]["limit"] is None and body["tokens"]["limit"] is None


def test_usage_period_is_the_utc_calendar_month(org):
    period, start, end = usage_period(datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    assert period == "2026-12"
    assert start == datetime(2026, 12, 1, tzinfo=UTC) and end == datetime(2027, 1, 1, tzinfo=UTC)
    assert usage_for(org, datetime(2026, 3, 2, tzinfo=UTC))["period"] == "2026-03"


def test_admin_requires_two_factor_and_sets_the_webhook_write_only(admin_client, org, admin):
    from tests.accounts.test_two_factor_api import turn_on

    turn_on(admin)  # else the requirement refuses the admin's own token from the next call on
    url = "https://hooks.example.com/services/T0/B0/secret"
    response = admin_client.patch(
        ORG, {"require_two_factor": True, "notification_webhook_url": url}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["require_two_factor"] is True and body["notification_webhook_set"] is True
    assert url not in response.content.decode() and url not in admin_client.get(ORG).content.decode()
    bad = admin_client.patch(ORG, {"notification_webhook_url": "file:///etc/passwd"}, format="json")
    assert bad.status_code == 400
    for port in ("³", "١٢"):  # str.isdigit() says yes to both; int() refuses or reads them
        url = f"https://hooks.example.com:{port}/x"
        bad = admin_client.patch(ORG, {"notification_webhook_url": url}, format="json")
        assert bad.status_code == 400, bad.content
        error = bad.json()["error"]
        assert error["code"] == "invalid_request" and "bad port" in error["message"]
    cleared = admin_client.patch(ORG, {"notification_webhook_url": ""}, format="json").json()
    assert cleared["notification_webhook_set"] is False
