"""Admins and owners see and remove a workflow's failure-notice subscribers from its settings page
(runs/services/subscriptions.py); members and viewers see them and remove only their own subscription."""

import pytest

from runs.models import WorkflowSubscription
from tests.dashboard.support.helpers import make_workflow, signed_in
from tests.factories import add_member


@pytest.fixture
def followed(org, owner, member, viewer):
    workflow = make_workflow(org, owner)
    for person in (member, viewer):
        WorkflowSubscription.objects.create(workflow=workflow, user=person)
    return workflow


def _followers(workflow) -> set:
    return set(WorkflowSubscription.objects.filter(workflow=workflow).values_list("user__email", flat=True))


def test_settings_page_loads_the_subscribers_section(org, owner, followed):
    page = signed_in(owner, org).get(f"/workflows/{followed.id}/settings/").content.decode()
    assert f"<title>Settings of {followed.name} · Baton</title>" in page
    assert f'hx-get="/workflows/{followed.id}/subscribers/"' in page
    assert f'href="/workflows/{followed.id}/subscribers/"' in page  # without JavaScript: a page of its own


@pytest.mark.parametrize(("persona", "can_remove"), [("owner", True), ("admin", True), ("member", False),
                                                     ("viewer", False)])  # fmt: skip
def test_everyone_sees_the_subscribers_admins_get_remove_buttons(request, org, followed, persona, can_remove,
                                                                  member, viewer):  # fmt: skip
    client = signed_in(request.getfixturevalue(persona), org)
    for partial in (False, True):
        headers = {"HTTP_HX_REQUEST": "true"} if partial else {}
        response = client.get(f"/workflows/{followed.id}/subscribers/", **headers)
        body = response.content.decode()
        assert response.status_code == 200
        assert member.email in body and viewer.email in body
        assert ('data-testid="remove-subscriber"' in body) is can_remove
        assert ("<html" in body) is not partial


@pytest.mark.parametrize("persona", ["owner", "admin"])
def test_admins_remove_a_subscription(request, org, followed, member, viewer, persona):
    client = signed_in(request.getfixturevalue(persona), org)
    response = client.post(f"/workflows/{followed.id}/subscribers/{member.id}/remove/")
    assert response.status_code == 302 and response["Location"] == f"/workflows/{followed.id}/settings/"
    assert _followers(followed) == {viewer.email}
    # With htmx, the section comes back without the person.
    partial = client.post(f"/workflows/{followed.id}/subscribers/{viewer.id}/remove/", HTTP_HX_REQUEST="true")
    assert partial.status_code == 200 and viewer.email not in partial.content.decode()
    assert "Nobody is told by email" in partial.content.decode() and _followers(followed) == set()


@pytest.mark.parametrize("persona", ["member", "viewer"])
def test_members_and_viewers_cannot_remove_subscriptions(request, org, followed, member, viewer, persona):
    client = signed_in(request.getfixturevalue(persona), org)
    for person in (member, viewer):
        assert client.post(f"/workflows/{followed.id}/subscribers/{person.id}/remove/").status_code == 403
    assert _followers(followed) == {member.email, viewer.email}


def test_removing_someone_not_subscribed_is_a_404(org, owner, admin, followed):
    client = signed_in(admin, org)
    assert client.post(f"/workflows/{followed.id}/subscribers/{owner.id}/remove/").status_code == 404
    assert client.post(f"/workflows/{followed.id}/subscribers/usr_nobody/remove/").status_code == 404


def test_a_former_members_subscription_is_neither_listed_nor_removable(org, admin, followed, other_org):
    stranger = add_member(other_org, "owner")
    WorkflowSubscription.objects.create(workflow=followed, user=stranger)
    client = signed_in(admin, org)
    assert stranger.email not in client.get(f"/workflows/{followed.id}/subscribers/").content.decode()
    assert client.post(f"/workflows/{followed.id}/subscribers/{stranger.id}/remove/").status_code == 404


def test_remove_needs_post_and_csrf(org, admin, member, followed):
    url = f"/workflows/{followed.id}/subscribers/{member.id}/remove/"
    assert signed_in(admin, org).get(url).status_code == 405
    client = signed_in(admin, org, csrf=True)
    assert client.post(url).status_code == 403
    assert member.email in _followers(followed)


def test_a_person_removes_their_own_subscription_through_the_service(org, member, followed):
    from accounts.principal import Principal
    from runs.services.subscriptions import subscription_remove

    me = Principal(organization=org, user=member, role="member")
    assert subscription_remove(workflow=followed, actor=me, user_id=member.id) == member
    assert member.email not in _followers(followed)
