"""GET /audit/logs: newest first, filters, strict parameters, seq-keyset cursors, access and tenancy."""

import time
from datetime import UTC

import pytest

from audit.models import AuditEvent
from audit.services import event_as_dict
from tests.audit.conftest import record

URL = "/api/v1/audit/logs"


def all_pages(client, **params):
    """Follow next_cursor to the end; returns every page's events in order."""
    events, cursor = [], None
    for _ in range(100):
        response = client.get(URL, {**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.content
        body = response.json()
        events.extend(body["events"])
        cursor = body["next_cursor"]
        if cursor is None:
            return events
    raise AssertionError("pagination did not end")


def test_events_come_newest_first_in_the_chain_shape(chain, audit_client):
    body = audit_client.get(URL).json()
    stored = [event_as_dict(e) for e in AuditEvent.objects.filter(organization=chain).order_by("-seq")]
    assert body == {"events": stored, "next_cursor": None}
    assert [e["seq"] for e in body["events"]] == sorted((e["seq"] for e in stored), reverse=True)
    run_event = next(e for e in body["events"] if e["event"] == "run.triggered")
    assert run_event["target"] == {"type": "run", "id": "run_1"}
    assert run_event["run_id"] == "run_1" and run_event["note"] == "manual"
    assert run_event["timestamp"].endswith("Z") and run_event["actor_type"] == "system"


def test_cursor_pages_are_stable_while_events_are_appended(chain, audit_client):
    total = AuditEvent.objects.filter(organization=chain).count()
    first = audit_client.get(URL, {"limit": 3}).json()
    assert len(first["events"]) == 3 and first["next_cursor"]
    record(chain, 4, event="late.event")  # lands above the first page; must not shift later pages
    rest = all_pages(audit_client, limit=3, cursor=first["next_cursor"])
    seqs = [e["seq"] for e in first["events"] + rest]
    assert seqs == list(range(total, 0, -1))
    fresh = audit_client.get(URL, {"limit": 4}).json()["events"]
    assert [e["event"] for e in fresh] == ["late.event"] * 4


def test_last_page_has_no_cursor(chain, audit_client):
    total = AuditEvent.objects.filter(organization=chain).count()
    body = audit_client.get(URL, {"limit": total}).json()
    assert len(body["events"]) == total and body["next_cursor"] is None
    body = audit_client.get(URL, {"limit": total - 1}).json()
    assert body["next_cursor"] is not None
    last = audit_client.get(URL, {"limit": total - 1, "cursor": body["next_cursor"]}).json()
    assert [e["seq"] for e in last["events"]] == [1] and last["next_cursor"] is None


def test_default_limit_is_50(chain, audit_client):
    record(chain, 55)
    body = audit_client.get(URL).json()
    assert len(body["events"]) == 50 and body["next_cursor"]


def test_event_filter_exact_and_prefix(chain, audit_client):
    exact = all_pages(audit_client, event="workflow.created", limit=2)
    assert [e["event"] for e in exact] == ["workflow.created"] * 3
    prefix = all_pages(audit_client, event="run.*")
    assert sorted({e["event"] for e in prefix}) == ["run.completed", "run.triggered"] and len(prefix) == 3
    assert audit_client.get(URL, {"event": "run"}).json()["events"] == []


def test_actor_and_target_filters(chain, audit_client, owner):
    by_owner = all_pages(audit_client, actor=owner.id)
    assert {e["actor"] for e in by_owner} == {owner.id}
    assert {"organization.created", "member.added"} <= {e["event"] for e in by_owner}
    by_system = all_pages(audit_client, actor="system")
    assert len(by_system) == 8
    on_key = all_pages(audit_client, target="key_1")
    assert [e["target"] for e in on_key] == [{"type": "api_key", "id": "key_1"}] * 2
    typed = all_pages(audit_client, target_type="workflow")
    assert len(typed) == 3


def test_since_and_until_accept_iso_and_unix_seconds(chain, audit_client):
    time.sleep(0.02)
    middle = record(chain, 1, event="middle.event")[0]
    time.sleep(0.02)
    record(chain, 2, event="later.event")
    moment = middle.timestamp.astimezone(UTC)
    iso = moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    since_iso = all_pages(audit_client, since=iso)
    assert [e["event"] for e in since_iso] == ["later.event", "later.event", "middle.event"]
    since_unix = all_pages(audit_client, since=f"{moment.timestamp():.3f}")
    assert since_unix == since_iso
    until = all_pages(audit_client, until=iso)
    assert "middle.event" not in {e["event"] for e in until}
    assert len(until) + len(since_iso) == AuditEvent.objects.filter(organization=chain).count()
    assert all_pages(audit_client, since="2100-01-01") == []
    assert len(all_pages(audit_client, until=str(int(moment.timestamp()) + 3600))) == len(until) + 3


@pytest.mark.parametrize(
    "params",
    [
        {"since": "yesterday"},
        {"until": "2026-13-45T00:00:00Z"},
        {"since": "2026-11-22T00:00:00Z", "until": "2026-11-21T00:00:00Z"},
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "ten"},
        {"cursor": "not-a-cursor"},
        {"cursor": "eyJ2IjoxLCJiZWZvcmUiOi0xfQ"},  # a well-formed payload with a negative position
        {"event": "Robert'); DROP TABLE--"},
    ],
)
def test_bad_parameters_are_400(chain, audit_client, params):
    response = audit_client.get(URL, params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert set(params) & set(error["details"]["fields"])


def test_limit_200_is_allowed(chain, audit_client):
    assert audit_client.get(URL, {"limit": 200}).status_code == 200


def test_access_needs_admin_role_or_audit_read_scope(chain, make_key_client, make_jwt_client, admin, member,
                                                     viewer, api_client):  # fmt: skip
    assert make_jwt_client(admin, chain).get(URL).status_code == 200
    for person in (member, viewer):
        response = make_jwt_client(person, chain).get(URL)
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    response = make_key_client(["workflows:read", "runs:read"]).get(URL)
    assert response.status_code == 403 and response.json()["error"]["code"] == "insufficient_scope"
    assert make_key_client(["admin"]).get(URL).status_code == 200
    assert api_client.get(URL).status_code == 401


def test_another_organisations_events_are_invisible(chain, outsider_key_client, other_org):
    events = all_pages(outsider_key_client)
    assert {e["organization"] for e in events} == {other_org.id}
    assert not {e["id"] for e in events} & set(
        AuditEvent.objects.filter(organization=chain).values_list("id", flat=True)
    )
    cursor_of_ours = audit_cursor_for(chain)
    body = outsider_key_client.get(URL, {"cursor": cursor_of_ours}).json()
    assert {e["organization"] for e in body["events"]} <= {other_org.id}


def audit_cursor_for(org) -> str:
    from audit.api.cursor import encode_cursor

    return encode_cursor(AuditEvent.objects.filter(organization=org).count() + 100)
