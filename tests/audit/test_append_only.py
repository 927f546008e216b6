"""The model refuses updates and deletes of audit events; the admin shows them read-only."""

import pytest
from django.db import transaction

from accounts.models import User
from audit.models import AppendOnlyError, AuditEvent


def test_saving_an_existing_event_is_refused(chain):
    event = AuditEvent.objects.filter(organization=chain).first()
    event.note = "edited"
    with pytest.raises(AppendOnlyError):
        event.save()
    assert AuditEvent.objects.get(pk=event.pk).note is None


def test_deleting_an_event_is_refused(chain):
    event = AuditEvent.objects.filter(organization=chain).first()
    with pytest.raises(AppendOnlyError):
        event.delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_queryset_update_and_delete_are_refused(chain):
    events = AuditEvent.objects.filter(organization=chain)
    count = events.count()
    with pytest.raises(AppendOnlyError):
        events.update(event="forged")
    with pytest.raises(AppendOnlyError):
        events.delete()
    with pytest.raises(AppendOnlyError), transaction.atomic():
        AuditEvent.objects.bulk_update(list(events[:1]), ["event"])
    assert AuditEvent.objects.filter(organization=chain).count() == count
    assert not AuditEvent.objects.filter(event="forged").exists()


@pytest.fixture
def superuser_client(client):
    user = User.objects.create_superuser("root@baton.test", "correct-horse-battery")
    client.force_login(user)
    return client


def test_admin_lists_events_but_cannot_add_change_or_delete(chain, superuser_client):
    event = AuditEvent.objects.filter(organization=chain).first()
    listing = superuser_client.get("/admin/audit/auditevent/")
    assert listing.status_code == 200
    assert event.event.encode() in listing.content
    assert superuser_client.get("/admin/audit/auditevent/add/").status_code == 403
    assert superuser_client.get(f"/admin/audit/auditevent/{event.pk}/delete/").status_code == 403
    detail = superuser_client.get(f"/admin/audit/auditevent/{event.pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    posted = superuser_client.post(f"/admin/audit/auditevent/{event.pk}/change/", {"event": "forged"})
    assert posted.status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).event == event.event
