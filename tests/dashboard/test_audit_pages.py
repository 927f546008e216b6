"""An audit event's own page: every field, whether its link holds, its neighbours (docs/dashboard.md)."""

from audit.models import AuditEvent
from tests.dashboard.support.helpers import make_workflow, signed_in


def test_event_page_shows_the_event_its_link_and_neighbours(org, owner, admin):
    make_workflow(org, owner)
    make_workflow(org, owner, name="Second")
    events = list(AuditEvent.objects.filter(organization=org).order_by("seq"))
    middle = events[len(events) // 2]
    client = signed_in(admin, org)
    log = client.get("/audit/").content.decode()
    assert f'href="/audit/{middle.id}/"' in log
    body = client.get(f"/audit/{middle.id}/").content.decode()
    assert middle.hash in body and middle.prev_hash in body and middle.event in body
    assert "<strong>holds</strong>" in body
    assert f"?actor={middle.actor}" in body
    assert 'rel="prev"' in body and 'rel="next"' in body


def test_a_changed_event_shows_that_its_link_does_not_hold(org, owner, admin):
    from django.db import connection

    make_workflow(org, owner)
    event = AuditEvent.objects.filter(organization=org, event="workflow.created").get()
    with connection.cursor() as cursor:  # tampering behind the model's back (its update() refuses)
        cursor.execute(
            f"UPDATE {AuditEvent._meta.db_table} SET actor = %s WHERE id = %s", ["usr_forged", event.id]
        )
    body = signed_in(admin, org).get(f"/audit/{event.id}/").content.decode()
    assert "<strong>does not hold</strong>" in body


def test_event_page_is_for_admins(org, owner, member, viewer):
    make_workflow(org, owner)
    event = AuditEvent.objects.filter(organization=org).latest("seq")
    for person in (member, viewer):
        assert signed_in(person, org).get(f"/audit/{event.id}/").status_code == 403
    assert signed_in(owner, org).get("/audit/evt_nope/").status_code == 404
