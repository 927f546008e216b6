import pytest

from audit.models import AuditEvent


def events(org, name=None):
    """The organisation's audit events (optionally of one type), oldest first."""
    rows = AuditEvent.objects.filter(organization=org).order_by("seq")
    return list(rows.filter(event=name) if name else rows)


def error_code(response) -> str:
    return response.json()["error"]["code"]


@pytest.fixture
def admin_client(make_jwt_client, org, admin):
    return make_jwt_client(admin, org)


@pytest.fixture
def member_client(make_jwt_client, org, member):
    return make_jwt_client(member, org)


@pytest.fixture
def viewer_client(make_jwt_client, org, viewer):
    return make_jwt_client(viewer, org)
