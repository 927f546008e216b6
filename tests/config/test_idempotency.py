from datetime import timedelta

import pytest
from django.utils import timezone

from config.api.idempotency import prune_expired
from config.models import IdempotencyRecord
from workflows.models import Project

pytestmark = pytest.mark.urls("tests.config.support.urls_testing")

URL = "/api/v1/_test/projects"


def post(client, body, key="key-1", **extra):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(URL, body, format="json", **headers, **extra)


def test_same_key_and_body_replays_the_first_response(api_key_client, org):
    first = post(api_key_client, {"name": "Alpha"})
    second = post(api_key_client, {"name": "Alpha"})

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Project.objects.filter(organization=org).count() == 1


def test_key_order_and_whitespace_of_the_body_do_not_matter(api_key_client, org):
    first = api_key_client.post(URL, '{"name": "Alpha"}', content_type="application/json",
                                HTTP_IDEMPOTENCY_KEY="k")  # fmt: skip
    second = api_key_client.post(URL, '{ "name" :"Alpha" }', content_type="application/json",
                                 HTTP_IDEMPOTENCY_KEY="k")  # fmt: skip

    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()


def test_same_key_with_another_body_is_422(api_key_client, org):
    post(api_key_client, {"name": "Alpha"})

    response = post(api_key_client, {"name": "Beta"})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert list(Project.objects.filter(organization=org).values_list("name", flat=True)) == ["Alpha"]


def test_same_key_on_another_endpoint_is_422(api_key_client):
    post(api_key_client, {"name": "Alpha"})

    response = api_key_client.post("/api/v1/_test/projects-elsewhere", {"name": "Alpha"}, format="json",
                                   HTTP_IDEMPOTENCY_KEY="key-1")  # fmt: skip

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_views_without_the_decorator_ignore_the_key(api_key_client):
    post(api_key_client, {"name": "Alpha"})

    response = api_key_client.post("/api/v1/_test/conflict", {"name": "Alpha"}, format="json",
                                   HTTP_IDEMPOTENCY_KEY="key-1")  # fmt: skip

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "run_not_cancellable"


def test_without_a_key_every_request_creates(api_key_client, org):
    assert post(api_key_client, {"name": "One"}, key=None).status_code == 201
    assert post(api_key_client, {"name": "Two"}, key=None).status_code == 201
    assert Project.objects.filter(organization=org).count() == 2
    assert not IdempotencyRecord.objects.exists()


def test_public_endpoint_ignores_the_key(api_client):
    responses = [api_client.post("/api/v1/_test/public-create", {}, format="json", HTTP_IDEMPOTENCY_KEY="k")
                 for _ in range(2)]  # fmt: skip

    assert [r.status_code for r in responses] == [201, 201]
    assert "Idempotent-Replayed" not in responses[1]
    assert not IdempotencyRecord.objects.exists()


def test_keys_are_per_organisation(api_key_client, outsider_key_client, org, other_org):
    mine = post(api_key_client, {"name": "Alpha"})
    theirs = post(outsider_key_client, {"name": "Alpha"})

    assert mine.status_code == theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs
    assert mine.json()["id"] != theirs.json()["id"]


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "ünï"])
def test_invalid_key_is_400(api_key_client, key):
    response = api_key_client.post(URL, {"name": "Alpha"}, format="json", HTTP_IDEMPOTENCY_KEY=key)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert not Project.objects.exists()


def test_key_of_255_characters_is_accepted(api_key_client):
    assert post(api_key_client, {"name": "Alpha"}, key="k" * 255).status_code == 201


def test_request_in_flight_is_409(api_key_client, org):
    IdempotencyRecord.objects.create(
        organization=org,
        key="key-1",
        fingerprint=_fingerprint_of(api_key_client, {"name": "Alpha"}),
        expires_at=timezone.now() + timedelta(hours=1),
    )

    response = post(api_key_client, {"name": "Alpha"})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_request_in_progress"
    assert not Project.objects.exists()


def test_abandoned_reservation_is_taken_over(api_key_client, org):
    IdempotencyRecord.objects.create(
        organization=org,
        key="key-1",
        fingerprint=_fingerprint_of(api_key_client, {"name": "Alpha"}),
        created_at=timezone.now() - timedelta(minutes=6),
        expires_at=timezone.now() + timedelta(hours=1),
    )

    response = post(api_key_client, {"name": "Alpha"})

    assert response.status_code == 201
    assert Project.objects.count() == 1
    assert IdempotencyRecord.objects.get(key="key-1").in_progress is False


def test_failed_request_releases_the_key(api_key_client, org):
    invalid = post(api_key_client, {"name": ""})
    refused = post(api_key_client, {"name": "refuse"}, key="key-2")

    assert invalid.status_code == 400 and refused.status_code == 409
    assert not IdempotencyRecord.objects.exists()
    retried = post(api_key_client, {"name": "Alpha"})
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried


def test_crashing_handler_releases_the_key(api_key_client):
    api_key_client.raise_request_exception = False
    crashed = post(api_key_client, {"name": "fail-with-500"})

    assert crashed.status_code == 500
    assert crashed.json()["error"]["code"] == "internal_error"
    assert not IdempotencyRecord.objects.exists()


def test_expired_record_is_forgotten_and_pruned(api_key_client, org, settings):
    first = post(api_key_client, {"name": "Alpha"})
    IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    again = post(api_key_client, {"name": "Beta"})  # same key, new body: fine once the first expired

    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in again
    IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert prune_expired() == 1
    assert not IdempotencyRecord.objects.exists()


def test_record_expires_after_the_configured_ttl(api_key_client, settings):
    settings.BATON_IDEMPOTENCY_TTL = 3600
    before = timezone.now()
    post(api_key_client, {"name": "Alpha"})

    record = IdempotencyRecord.objects.get()
    assert timedelta(seconds=3590) < record.expires_at - before < timedelta(seconds=3610)
    assert record.response_status == 201 and record.response_body["name"] == "Alpha"


def _fingerprint_of(client, body) -> str:
    """The fingerprint the decorator computes, taken from a first real request with another key."""
    client.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="probe")
    record = IdempotencyRecord.objects.get(key="probe")
    Project.objects.all().delete()
    record.delete()
    return record.fingerprint


def test_what_the_handler_created_commits_with_the_stored_answer(api_key_client, org):
    """A handler that dies after its write leaves nothing (the reservation, the object and the answer are one
    transaction), so the retry with the key creates the object once (the crash soak's web kill)."""
    crashed = post(api_key_client, {"name": "Alpha"}, HTTP_X_TEST_CRASH="after-create")
    assert crashed.status_code == 500
    assert not Project.objects.filter(organization=org).exists()
    assert not IdempotencyRecord.objects.filter(key="key-1").exists()
    retried = post(api_key_client, {"name": "Alpha"})
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried
    assert list(Project.objects.filter(organization=org).values_list("name", flat=True)) == ["Alpha"]


@pytest.mark.django_db(transaction=True)
def test_a_committing_pipeline_in_the_handler_leaves_the_commit_to_the_stored_answer(api_key_client, org):
    """A handler whose last write is a committing pipeline (the engine's `work.save(last=True)`, run at the
    idempotent block's depth) does not commit before the answer is stored: a crash after it leaves neither
    the object nor a key stuck `in progress` (issue 22). Real transactions, so that a commit shows."""
    api_key_client.raise_request_exception = False
    crashed = post(api_key_client, {"name": "Alpha"}, HTTP_X_TEST_CRASH="after-committing-pipeline")
    assert crashed.status_code == 500
    assert not Project.objects.filter(organization=org).exists()
    assert not IdempotencyRecord.objects.filter(key="key-1").exists()
    retried = post(api_key_client, {"name": "Alpha"})
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried
    assert IdempotencyRecord.objects.get(key="key-1").in_progress is False
