from audit.chain import verify_chain
from audit.models import AuditEvent
from audit.services import event_as_dict


def test_organization_create_starts_a_valid_chain(org):
    events = [event_as_dict(e) for e in AuditEvent.objects.filter(organization=org).order_by("seq")]
    assert [e["event"] for e in events] == ["organization.created", "member.added"]
    result = verify_chain(events, expected_head={"seq": 2})
    assert result.valid, result.first_invalid
