"""Personas and ready clients. Every persona belongs to `org`; `outsider` owns another organisation."""

import os

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.authentication import ORG_CLAIM
from accounts.choices import ALL_SCOPES, Role
from accounts.principal import Principal
from accounts.services import api_key_create
from tests.factories import UserFactory, add_member, make_org

PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """The SQLite test database is a file, as Baton's always is (WAL, busy timeout, writer lock). Django's
    default, a shared-cache `:memory:` database, fails a writer at once when another connection holds the
    table ("database table is locked", no busy wait), and when it was set up before `live_server` started,
    every request thread shares the test's one connection and their transactions interleave: threads
    racing through the live server then test the harness, not Baton."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    # Under pytest-xdist the suffix fixture has already named it `test_<path>_gw<N>` (it does not know
    # config.sqlite is SQLite): each worker's temporary directory is its own, so the file needs no suffix.
    if database["ENGINE"] == "config.sqlite" and not os.environ.get("BATON_TEST_DB_NAME"):
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")


@pytest.fixture
def owner(db):
    return UserFactory(email="owner@acme.test")


@pytest.fixture
def org(owner):
    return make_org(name="Acme", owner=owner)


@pytest.fixture
def admin(org):
    return add_member(org, Role.ADMIN, UserFactory(email="admin@acme.test"))


@pytest.fixture
def member(org):
    return add_member(org, Role.MEMBER, UserFactory(email="member@acme.test"))


@pytest.fixture
def viewer(org):
    return add_member(org, Role.VIEWER, UserFactory(email="viewer@acme.test"))


@pytest.fixture
def outsider(db):
    return UserFactory(email="outsider@other.test")


@pytest.fixture
def other_org(outsider):
    return make_org(name="Other", owner=outsider)


def owner_principal(org, user):
    return Principal(organization=org, user=user, role=Role.OWNER)


def jwt_for(user, org) -> str:
    refresh = RefreshToken.for_user(user)
    refresh[ORG_CLAIM] = org.id
    return str(refresh.access_token)


def key_for(org, user, scopes=None) -> str:
    return api_key_create(
        organization=org,
        actor=owner_principal(org, user),
        name="test key",
        scopes=scopes if scopes is not None else ALL_SCOPES,
    ).key


def bearer_client(token: str) -> APIClient:
    """A client that sends `Authorization: Bearer <token>` (an API key or a JWT)."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def client_with_jwt(user, org) -> APIClient:
    """A client signed in as `user` in `org` (a JWT)."""
    return bearer_client(jwt_for(user, org))


def client_with_key(org, user, scopes=None) -> APIClient:
    """A client with an API key of `org` (every scope unless `scopes` says)."""
    return bearer_client(key_for(org, user, scopes))


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def api_key_client(org, owner):
    """A client with an API key that has every scope."""
    return bearer_client(key_for(org, owner))


@pytest.fixture
def make_key_client(org, owner):
    def make(scopes, organization=None, user=None):
        return bearer_client(key_for(organization or org, user or owner, scopes))

    return make


@pytest.fixture
def jwt_client(org, owner):
    """A client with the owner's JWT."""
    return bearer_client(jwt_for(owner, org))


@pytest.fixture
def make_jwt_client():
    def make(user, organization):
        return bearer_client(jwt_for(user, organization))

    return make


@pytest.fixture
def session_client(org, owner):
    """A dashboard session of the owner (CSRF enforced, as in a browser)."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(owner)
    return client


@pytest.fixture
def outsider_key_client(other_org, outsider):
    return bearer_client(key_for(other_org, outsider))


@pytest.fixture
def outsider_jwt_client(other_org, outsider):
    return bearer_client(jwt_for(outsider, other_org))


@pytest.fixture(autouse=True)
def _engine_security_cache_reset():
    """The engine caches each organisation's policy and secrets per process (runs/engine/secrets.py); a
    test that changes them with a bulk update (no signal) must not see the previous test's copy."""
    from runs.engine.secrets import invalidate

    invalidate()
    yield
    invalidate()


@pytest.fixture(autouse=True)
def _redis_rate_limits_reset(settings):
    """Redis rate-limit counters outlive a test's transaction (database ones roll back): reset them."""
    if settings.REDIS_URL:
        from config.ratelimit import reset_rate_limits

        reset_rate_limits()
