import pytest

from config.ratelimit import reset_rate_limits
from tests.conftest import client_with_key


@pytest.fixture(autouse=True)
def _fresh_rate_limits(db):
    """Redis counters outlive a test's transaction; start every test here from zero."""
    reset_rate_limits()
    yield
    reset_rate_limits()


@pytest.fixture
def key_client_for():
    """A client with an all-scopes API key of `organization` (owned by `user`)."""

    return client_with_key
