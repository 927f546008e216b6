import threading
import time

import pytest

from config.models import RateLimitCounter
from config.ratelimit import DAY, MINUTE, counters, organization_hit, prune_expired_counters
from tests.factories import UserFactory, make_org
from tests.support.concurrency import at_once

pytestmark = pytest.mark.urls("tests.config.support.urls_testing")

RATE_HEADERS = [
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "RateLimit",
    "RateLimit-Policy",
]


def test_authenticated_response_carries_rate_limit_headers(api_key_client):
    before = int(time.time())
    first = api_key_client.get("/api/v1/_test/whoami")
    second = api_key_client.get("/api/v1/_test/whoami")

    assert first.status_code == second.status_code == 200
    assert first["X-RateLimit-Limit"] == "60"
    assert first["X-RateLimit-Remaining"] == "59"
    assert second["X-RateLimit-Remaining"] == "58"
    reset = int(first["X-RateLimit-Reset"])
    assert before < reset <= before + 61
    assert reset % 60 == 0
    assert first["RateLimit-Policy"] == "60;w=60, 5000;w=86400"
    limit, remaining, reset_in = (part.split("=") for part in first["RateLimit"].split(", "))
    assert limit == ["limit", "60"] and remaining == ["remaining", "59"]
    assert reset_in[0] == "reset" and 0 <= int(reset_in[1]) <= 60


def test_keys_and_jwt_count_against_the_same_organisation_but_a_session_does_not(
    api_key_client, jwt_client, session_client
):
    assert api_key_client.get("/api/v1/_test/whoami")["X-RateLimit-Remaining"] == "59"
    assert jwt_client.get("/api/v1/_test/whoami")["X-RateLimit-Remaining"] == "58"
    # A dashboard session is limited per session (BATON_DASHBOARD_REQUESTS_PER_MINUTE), not here.
    response = session_client.get("/api/v1/_test/whoami")
    assert response.status_code == 200 and "X-RateLimit-Remaining" not in response
    assert jwt_client.get("/api/v1/_test/whoami")["X-RateLimit-Remaining"] == "57"


def test_a_session_over_its_own_limit_is_refused(session_client, settings):
    settings.BATON_DASHBOARD_REQUESTS_PER_MINUTE = 10
    codes = [session_client.get("/api/v1/_test/whoami").status_code for _ in range(11)]
    assert codes == [200] * 10 + [429]
    response = session_client.get("/api/v1/_test/whoami")
    assert response.json()["error"]["code"] == "rate_limited" and int(response["Retry-After"]) >= 1


def test_organisations_are_counted_separately(api_key_client, outsider_key_client):
    api_key_client.get("/api/v1/_test/whoami")
    api_key_client.get("/api/v1/_test/whoami")

    assert outsider_key_client.get("/api/v1/_test/whoami")["X-RateLimit-Remaining"] == "59"


def test_headers_report_the_most_restrictive_window(org, api_key_client):
    org.rate_per_minute = 100
    org.rate_per_day = 3
    org.save()

    response = api_key_client.get("/api/v1/_test/whoami")

    assert response["X-RateLimit-Limit"] == "3"
    assert response["X-RateLimit-Remaining"] == "2"
    assert int(response["X-RateLimit-Reset"]) % DAY == 0
    assert response["RateLimit-Policy"] == "100;w=60, 3;w=86400"


def test_over_the_limit_is_429_with_retry_after_and_headers(org, api_key_client):
    org.rate_per_minute = 2
    org.save()
    assert api_key_client.get("/api/v1/_test/whoami").status_code == 200
    assert api_key_client.get("/api/v1/_test/whoami").status_code == 200

    response = api_key_client.get("/api/v1/_test/whoami")

    assert response.status_code == 429
    body = response.json()["error"]
    assert body["code"] == "rate_limited"
    assert body["details"]["limit"] == 2 and body["details"]["window_seconds"] == MINUTE
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 60
    assert response["X-RateLimit-Limit"] == "2"
    assert response["X-RateLimit-Remaining"] == "0"
    assert response["RateLimit"].startswith("limit=2, remaining=0, reset=")


def test_daily_limit_applies_too(org, api_key_client):
    org.rate_per_minute = None
    org.rate_per_day = 1
    org.save()
    assert api_key_client.get("/api/v1/_test/whoami").status_code == 200

    response = api_key_client.get("/api/v1/_test/whoami")

    assert response.status_code == 429
    assert response["RateLimit-Policy"] == "1;w=86400"
    assert 1 <= int(response["Retry-After"]) <= DAY


def test_unlimited_plan_sends_no_rate_limit_headers_and_counts_nothing(db, key_client_for):
    owner = UserFactory()
    enterprise = make_org(name="Big", plan="enterprise", owner=owner)
    client = key_client_for(enterprise, owner)

    responses = [client.get("/api/v1/_test/whoami") for _ in range(3)]

    assert all(r.status_code == 200 for r in responses)
    for header in RATE_HEADERS:
        assert header not in responses[-1]
    assert not RateLimitCounter.objects.filter(key__contains=enterprise.pk).exists()


def test_forbidden_response_still_carries_headers(make_key_client):
    client = make_key_client(["workflows:read"])

    response = client.get("/api/v1/_test/admin-only")

    assert response.status_code == 403
    assert response["X-RateLimit-Remaining"] == "59"


def test_unauthenticated_requests_are_not_org_throttled(api_client, org):
    org.rate_per_minute = 1
    org.save()

    responses = [api_client.get("/api/v1/_test/echo") for _ in range(3)]
    unauthorized = api_client.get("/api/v1/_test/whoami")

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert "X-RateLimit-Limit" not in responses[-1]
    assert unauthorized.status_code == 401 and "X-RateLimit-Limit" not in unauthorized


def test_counter_windows_roll_over(db):
    key = "test:rollover"
    start = 1_800_000_000 - 1_800_000_000 % 60

    assert counters().hit(key, 60, start + 1) == (1, 0)
    assert counters().hit(key, 60, start + 59) == (2, 0)
    assert counters().hit(key, 60, start + 61) == (1, 2)
    assert counters().peek(key, 60, start + 130) == (0, 1)


def test_state_binds_the_window_with_fewest_requests_left(org):
    org.rate_per_minute = 10
    org.rate_per_day = 1000
    org.save()

    state = organization_hit(org, now=1_800_000_030)

    assert state.binding.seconds == MINUTE
    assert state.headers()["RateLimit"] == "limit=10, remaining=9, reset=30"
    assert state.headers()["X-RateLimit-Reset"] == "1800000060"


@pytest.mark.django_db(transaction=True)
def test_concurrent_hits_are_counted_exactly_once_each():
    """Many threads (each with its own database connection, or Redis) increment one counter: every hit
    gets a distinct count and none is lost."""
    threads, per_thread = 8, 25
    seen: list[int] = []
    lock = threading.Lock()
    now = time.time()

    def work(_index):
        for _ in range(per_thread):
            count, _ = counters().hit("test:concurrent", MINUTE, now)
            with lock:
                seen.append(count)

    assert at_once(threads, work) == []
    assert sorted(seen) == list(range(1, threads * per_thread + 1))


def test_expired_database_counters_are_pruned(db):
    now = int(time.time())
    RateLimitCounter.objects.create(key="old", window=now - 300, count=5, expires_at=now - 180)
    RateLimitCounter.objects.create(key="live", window=now - 30, count=5, expires_at=now + 90)

    assert prune_expired_counters() == 1
    assert list(RateLimitCounter.objects.values_list("key", flat=True)) == ["live"]
