import pytest
from django.test import RequestFactory

from config.errors import RateLimited
from config.ratelimit import (
    _sliding_count,
    _sliding_retry_after,
    login_check,
    login_failed,
    login_succeeded,
)


@pytest.fixture
def limits(settings, db):
    settings.BATON_LOGIN_LIMIT_PER_IP = 5
    settings.BATON_LOGIN_LIMIT_PER_ACCOUNT = 3
    settings.BATON_LOGIN_LIMIT_WINDOW = 300
    return settings


def from_ip(ip: str):
    return RequestFactory().post("/api/v1/auth/token", REMOTE_ADDR=ip)


def test_ip_is_limited_across_accounts(limits):
    request = from_ip("203.0.113.7")
    for n in range(5):
        login_check(request, f"user{n}@example.com")

    with pytest.raises(RateLimited) as refused:
        login_check(request, "someone-else@example.com")

    assert refused.value.status == 429 and refused.value.code == "rate_limited"
    assert 1 <= refused.value.retry_after <= 2 * 300  # the sliding estimate may hold up to two windows
    login_check(from_ip("203.0.113.8"), "user0@example.com")  # another address is unaffected


def test_account_is_limited_after_failures_from_any_address(limits):
    for n in range(3):
        login_check(from_ip(f"198.51.100.{n}"), "Victim@Example.com")
        login_failed(from_ip(f"198.51.100.{n}"), "Victim@Example.com")

    with pytest.raises(RateLimited) as refused:
        login_check(from_ip("198.51.100.99"), "victim@example.com")  # lower-cased: the same account

    assert "account" in refused.value.message
    assert 1 <= refused.value.retry_after <= 2 * 300  # the sliding estimate may hold up to two windows
    login_check(from_ip("198.51.100.99"), "bystander@example.com")


def test_successful_sign_in_resets_the_account_count(limits):
    request = from_ip("192.0.2.1")
    for _ in range(2):
        login_check(request, "me@example.com")
        login_failed(request, "me@example.com")
    login_check(request, "me@example.com")
    login_succeeded(request, "me@example.com")

    login_failed(request, "me@example.com")
    login_failed(request, "me@example.com")
    login_check(from_ip("192.0.2.2"), "me@example.com")  # 2 failures since the success: still allowed
    login_failed(request, "me@example.com")
    with pytest.raises(RateLimited) as refused:  # the third since the success reaches the limit
        login_check(from_ip("192.0.2.3"), "me@example.com")
    assert "account" in refused.value.message


def test_client_ip_honours_trusted_proxies(limits):
    limits.BATON_TRUSTED_PROXIES = 1

    def via_proxy(client):
        return RequestFactory().post("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=client)

    for _ in range(5):
        login_check(via_proxy("203.0.113.50"), "a@x.io")

    with pytest.raises(RateLimited):
        login_check(via_proxy("203.0.113.50"), "b@x.io")
    login_check(via_proxy("203.0.113.51"), "c@x.io")


def test_sliding_window_weights_the_previous_window():
    # 30 s into a 300 s window, 10 hits last window still weigh 9.
    assert _sliding_count(current=2, previous=10, now=330, seconds=300) == pytest.approx(11)
    # Limit 10 allowed-before-next = 9: wait until previous weighs 7 → 90 s into the window → 60 s.
    assert _sliding_retry_after(current=2, previous=10, now=330, seconds=300, allowed=9) == 60
    # Current window alone is over: wait for the window end plus the decay of the current count.
    assert _sliding_retry_after(current=12, previous=0, now=330, seconds=300, allowed=9) == 270 + 75
