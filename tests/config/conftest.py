import pytest
from rest_framework.test import APIClient

from config.ratelimit import reset_rate_limits
from tests.conftest import key_for


@pytest.fixture(autouse=True)
def _fresh_rate_limits(db):
    """Redis counters outlive a test's transaction; start every test here from zero."""
    reset_rate_limits()
    yield
    reset_rate_limits()


@pytest.fixture
def key_client_for():
    """A client with an all-scopes API key of `organization` (owned by `user`)."""

    def make(organization, user, scopes=None):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key_for(organization, user, scopes)}")
        return client

    return make
