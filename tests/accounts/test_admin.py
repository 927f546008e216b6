import pytest
from django.test import Client

from tests.conftest import key_for
from tests.factories import ProjectFactory, UserFactory


@pytest.fixture
def superuser_client(db):
    client = Client()
    client.force_login(UserFactory(email="root@baton.test", is_staff=True, is_superuser=True))
    return client


def test_admin_pages_render_without_the_key(superuser_client, org, owner):
    raw = key_for(org, owner)
    ProjectFactory(organization=org, name="Admin project")
    from accounts.models import ApiKey

    api_key = ApiKey.objects.get(organization=org)
    pages = [
        "/admin/accounts/user/",
        f"/admin/accounts/user/{owner.id}/change/",
        "/admin/accounts/organization/",
        f"/admin/accounts/organization/{org.id}/change/",
        "/admin/accounts/apikey/",
        f"/admin/accounts/apikey/{api_key.id}/change/",
        "/admin/workflows/project/",
    ]
    for page in pages:
        response = superuser_client.get(page)
        assert response.status_code == 200, page
        assert raw not in response.content.decode()
    assert b"Admin project" in superuser_client.get("/admin/workflows/project/").content
    assert superuser_client.get("/admin/accounts/apikey/add/").status_code == 403


def test_superuser_adds_a_user_in_the_admin(superuser_client):
    from accounts.models import User

    assert superuser_client.get("/admin/accounts/user/add/").status_code == 200
    response = superuser_client.post(
        "/admin/accounts/user/add/",
        {
            "email": "New.Person@Acme.test",
            "name": "New",
            "password1": "a-long-enough-pass",
            "password2": "a-long-enough-pass",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302, response.content[:500]
    user = User.objects.get(email="new.person@acme.test")
    assert user.check_password("a-long-enough-pass")
