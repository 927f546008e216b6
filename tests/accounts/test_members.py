import threading

import pytest
from django.db import connection

from accounts.choices import Role
from accounts.models import Membership, User
from accounts.principal import Principal
from accounts.services import member_change_role, member_remove
from config.errors import Conflict
from tests.accounts.conftest import error_code, events
from tests.factories import add_member

MEMBERS = "/api/v1/members"


def test_admin_lists_members(admin_client, org, owner, admin, viewer):
    body = admin_client.get(MEMBERS).json()
    assert body["total"] == 3
    assert [m["email"] for m in body["members"]] == [owner.email, admin.email, viewer.email]
    assert set(body["members"][0]) == {"user_id", "email", "name", "role", "invited", "created_at"}


def test_members_are_paginated(admin_client, org, admin):
    for _ in range(4):
        add_member(org)
    body = admin_client.get(MEMBERS, {"limit": 2, "offset": 1}).json()
    assert (len(body["members"]), body["total"], body["limit"], body["offset"]) == (2, 6, 2, 1)
    assert admin_client.get(MEMBERS, {"limit": 0}).status_code == 400


def test_add_unknown_email_creates_an_invited_user(admin_client, org):
    response = admin_client.post(MEMBERS, {"email": "New@Acme.test", "role": "viewer"}, format="json")
    assert response.status_code == 201
    assert response.json()["role"] == "viewer" and response.json()["invited"] is True
    user = User.objects.get(email="new@acme.test")
    assert not user.has_usable_password()
    [event] = events(org, "member.added")[-1:]
    assert (event.target_id, event.data) == (user.id, {"email": "new@acme.test", "role": "viewer"})


def test_add_existing_user_keeps_their_account(admin_client, org, outsider):
    response = admin_client.post(MEMBERS, {"email": outsider.email}, format="json")
    assert response.status_code == 201
    assert response.json()["user_id"] == outsider.id and response.json()["role"] == "member"
    assert outsider.memberships.count() == 1


def test_adding_a_member_twice_is_409(admin_client, viewer):
    response = admin_client.post(MEMBERS, {"email": viewer.email.upper(), "role": "admin"}, format="json")
    assert response.status_code == 409
    assert error_code(response) == "member_exists"


def test_add_validates_input(admin_client):
    assert admin_client.post(MEMBERS, {"email": "not-an-email"}, format="json").status_code == 400
    assert admin_client.post(MEMBERS, {"email": "a@b.test", "role": "god"}, format="json").status_code == 400


def test_only_owners_add_owners(admin_client, jwt_client, org):
    refused = admin_client.post(MEMBERS, {"email": "boss@acme.test", "role": "owner"}, format="json")
    assert refused.status_code == 403 and error_code(refused) == "forbidden"
    assert (
        jwt_client.post(MEMBERS, {"email": "boss@acme.test", "role": "owner"}, format="json").status_code
        == 201
    )


def test_change_role(admin_client, org, viewer):
    response = admin_client.patch(f"{MEMBERS}/{viewer.id}", {"role": "member"}, format="json")
    assert response.status_code == 200 and response.json()["role"] == "member"
    [event] = events(org, "member.role_changed")
    assert event.data == {"email": viewer.email, "from": "viewer", "to": "member"}


def test_admin_cannot_touch_owners(admin_client, org, owner):
    add_member(org, Role.OWNER)  # two owners, so last_owner is not what refuses
    for response in (
        admin_client.patch(f"{MEMBERS}/{owner.id}", {"role": "viewer"}, format="json"),
        admin_client.delete(f"{MEMBERS}/{owner.id}"),
    ):
        assert response.status_code == 403 and error_code(response) == "forbidden"
    promote = admin_client.patch(f"{MEMBERS}/{owner.id}", {"role": "owner"}, format="json")
    assert promote.status_code == 200  # no change requested: nothing to refuse


def test_admin_cannot_promote_to_owner(admin_client, viewer):
    response = admin_client.patch(f"{MEMBERS}/{viewer.id}", {"role": "owner"}, format="json")
    assert response.status_code == 403


def test_last_owner_cannot_be_demoted_or_removed(jwt_client, org, owner):
    for response in (
        jwt_client.patch(f"{MEMBERS}/{owner.id}", {"role": "admin"}, format="json"),
        jwt_client.delete(f"{MEMBERS}/{owner.id}"),
    ):
        assert response.status_code == 409 and error_code(response) == "last_owner"
    assert Membership.objects.get(organization=org, user=owner).role == Role.OWNER


def test_an_owner_may_step_down_when_another_owner_exists(jwt_client, org, owner, admin):
    jwt_client.patch(f"{MEMBERS}/{admin.id}", {"role": "owner"}, format="json")
    assert jwt_client.patch(f"{MEMBERS}/{owner.id}", {"role": "admin"}, format="json").status_code == 200
    assert Membership.objects.filter(organization=org, role=Role.OWNER).get().user == admin


def test_remove_member(admin_client, org, viewer):
    assert admin_client.delete(f"{MEMBERS}/{viewer.id}").status_code == 204
    assert not Membership.objects.filter(organization=org, user=viewer).exists()
    assert User.objects.filter(pk=viewer.pk).exists()
    [event] = events(org, "member.removed")
    assert event.data == {"email": viewer.email, "role": "viewer"}


def test_unknown_member_is_404(admin_client, outsider):
    for response in (
        admin_client.delete(f"{MEMBERS}/{outsider.id}"),
        admin_client.patch(f"{MEMBERS}/usr_nope", {"role": "viewer"}, format="json"),
    ):
        assert response.status_code == 404 and error_code(response) == "member_not_found"


def test_removed_member_loses_access_at_once(admin_client, make_jwt_client, org, viewer):
    client = make_jwt_client(viewer, org)
    admin_client.delete(f"{MEMBERS}/{viewer.id}")
    assert client.get("/api/v1/projects").status_code == 401


@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_at_once_leave_one_owner():
    """Race: both requests see two owners; the owner-row lock makes the second see one and refuse."""
    from tests.factories import UserFactory, make_org

    first, second = UserFactory(), UserFactory()
    org = make_org(owner=first)
    add_member(org, Role.OWNER, second)
    barrier = threading.Barrier(2)
    outcomes = []

    def demote(actor_user, target_user):
        try:
            barrier.wait()
            member_change_role(
                organization=org,
                actor=Principal(organization=org, user=actor_user, role=Role.OWNER),
                user_id=target_user.id,
                role=Role.ADMIN,
            )
            outcomes.append("ok")
        except Conflict as exc:
            outcomes.append(exc.code)
        except Exception as exc:
            outcomes.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=demote, args=pair) for pair in ((first, second), (second, first))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Never zero owners: the loser waits for the lock (PostgreSQL's row lock, SQLite's writer lock) and
    # then sees one owner left.
    assert sorted(outcomes) == ["last_owner", "ok"], outcomes
    assert Membership.objects.filter(organization=org, role=Role.OWNER).count() == 1


def test_service_refuses_removing_the_last_owner(org, owner):
    with pytest.raises(Conflict) as caught:
        member_remove(
            organization=org, actor=Principal(organization=org, user=owner, role=Role.OWNER), user_id=owner.id
        )
    assert caught.value.code == "last_owner"


def test_add_is_idempotent_and_audited_with_the_actor(admin_client, org, admin):
    body = {"email": "once@acme.test", "role": "viewer"}
    first = admin_client.post(MEMBERS, body, format="json", HTTP_IDEMPOTENCY_KEY="m-1")
    again = admin_client.post(MEMBERS, body, format="json", HTTP_IDEMPOTENCY_KEY="m-1")
    assert first.status_code == again.status_code == 201
    assert first.json()["invitation_url"].startswith("http://testserver/invitation/")
    # The link works like a password: a replay does not show it again.
    assert again["Idempotent-Replayed"] == "true" and again.json() == {**first.json(), "invitation_url": None}
    [event] = [e for e in events(org, "member.added") if e.data["email"] == "once@acme.test"]
    assert (event.actor, event.actor_type) == (admin.id, "user")


def test_add_answers_with_an_invitation_link_that_sets_the_password(admin_client, org, settings, client):
    settings.BATON_PUBLIC_URL = "https://baton.example.com"
    response = admin_client.post(MEMBERS, {"email": "invitee@acme.test", "role": "member"}, format="json")
    assert response.status_code == 201
    url = response.json()["invitation_url"]
    assert url.startswith("https://baton.example.com/invitation/")
    path = url.removeprefix("https://baton.example.com")
    form = client.get(path, follow=True)  # Django moves the token into the session, then shows the form
    assert form.status_code == 200 and b"new_password1" in form.content
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "a long new secret 1", "new_password2": "a long new secret 1"},
    )
    assert done.status_code == 302
    assert User.objects.get(email="invitee@acme.test").check_password("a long new secret 1")
    # One-time: the same link no longer opens the form.
    assert b"new_password1" not in client.get(path, follow=True).content


def test_adding_an_existing_account_has_no_invitation_link(admin_client, org, owner):
    other_org_user = User.objects.create_user("has-password@acme.test", "a long password 1")
    response = admin_client.post(MEMBERS, {"email": other_org_user.email, "role": "viewer"}, format="json")
    assert response.status_code == 201 and response.json()["invitation_url"] is None
    assert response.json()["invited"] is False


def test_members_list_has_no_invitation_link(admin_client, org):
    admin_client.post(MEMBERS, {"email": "later@acme.test"}, format="json")
    assert all("invitation_url" not in m for m in admin_client.get(MEMBERS).json()["members"])


def test_the_invitation_is_emailed_when_email_is_configured(admin_client, org, settings, mailoutbox):
    settings.BATON_EMAIL_URL = "smtp://mail.example.com:587"
    url = admin_client.post(MEMBERS, {"email": "mailed@acme.test"}, format="json").json()["invitation_url"]
    [message] = mailoutbox
    assert message.to == ["mailed@acme.test"] and url in message.body
