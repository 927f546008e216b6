"""Versions, diffs (applying the diff to v1 yields v2), rollback, publish and clone."""

import copy

import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.models import AuditEvent
from tests.workflows.support.helpers import definition, transform
from workflows.diff import definition_patch, definition_summary, same_json
from workflows.models import ImmutableError, WorkflowVersion
from workflows.services import definition_hash

pytestmark = pytest.mark.django_db

V2 = definition(
    steps=[
        transform("hello", "Hello there {{ inputs.who }}"),
        transform("shout", "{{ steps.hello.output }}!", ["hello"]),
        transform("log", "{{ steps.shout.output }}", ["shout"]),
    ]
) | {"output": "{{ steps.shout.output }}"}


@pytest.fixture
def three_versions(api_key_client, workflow):
    url = f"/api/v1/workflows/{workflow.id}"
    assert (
        api_key_client.put(url, {"definition": V2, "change_summary": "Add log"}, format="json").status_code
        == 200
    )
    v3 = definition(steps=[transform("hello", "Hi")])
    assert (
        api_key_client.put(url, {"definition": v3, "change_summary": "Trim"}, format="json").status_code
        == 200
    )
    return workflow


def test_versions_newest_first_with_published_flag(api_key_client, three_versions):
    url = f"/api/v1/workflows/{three_versions.slug}"
    api_key_client.post(f"{url}/publish", {"version": 2}, format="json")
    body = api_key_client.get(f"{url}/versions").json()
    assert body["total"] == 3
    assert [v["version"] for v in body["versions"]] == [3, 2, 1]
    assert [v["published"] for v in body["versions"]] == [False, True, False]
    assert body["versions"][1]["change_summary"] == "Add log"
    assert body["versions"][0]["created_by"].startswith("key_")
    assert set(body["versions"][0]) >= {"version", "change_summary", "created_at", "created_by", "published"}


def test_one_version_has_its_definition(api_key_client, three_versions):
    response = api_key_client.get(f"/api/v1/workflows/{three_versions.id}/versions/2")
    assert response.status_code == 200
    body = response.json()
    assert body["definition"] == V2 and body["version"] == 2 and body["workflow_id"] == three_versions.id
    assert body["content_hash"] == definition_hash(V2)


@pytest.mark.parametrize("number", ["4", "0", "abc"])
def test_unknown_version_is_version_not_found(api_key_client, three_versions, number):
    response = api_key_client.get(f"/api/v1/workflows/{three_versions.id}/versions/{number}")
    assert response.status_code == 404 and response.json()["error"]["code"] == "version_not_found"


def test_diff_round_trip_and_summary(api_key_client, three_versions):
    response = api_key_client.get(f"/api/v1/workflows/{three_versions.id}/diff", {"v1": 1, "v2": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["v1"] == 1 and body["v2"] == 2
    assert body["summary"] == "Added 1 step, modified 1 step"
    assert jsonpatch.apply_patch(definition(), body["diff"]) == V2
    back = api_key_client.get(f"/api/v1/workflows/{three_versions.id}/diff", {"v1": 3, "v2": 1}).json()
    v3 = three_versions.versions.get(number=3).definition
    assert jsonpatch.apply_patch(copy.deepcopy(v3), back["diff"]) == definition()
    same = api_key_client.get(f"/api/v1/workflows/{three_versions.id}/diff", {"v1": 2, "v2": "2"}).json()
    assert same == {"diff": [], "summary": "No changes", "v1": 2, "v2": 2}
    latest = api_key_client.get(
        f"/api/v1/workflows/{three_versions.id}/diff", {"v1": 1, "v2": "latest"}
    ).json()
    assert latest["v2"] == 3


@pytest.mark.parametrize("params", [{}, {"v1": 1}, {"v2": 2}, {"v1": "x", "v2": 2}, {"v1": 1, "v2": "-1"}])
def test_diff_needs_two_versions(api_key_client, three_versions, params):
    response = api_key_client.get(f"/api/v1/workflows/{three_versions.id}/diff", params)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"


def test_diff_with_missing_version_is_404(api_key_client, three_versions):
    response = api_key_client.get(f"/api/v1/workflows/{three_versions.id}/diff", {"v1": 1, "v2": 9})
    assert response.status_code == 404 and response.json()["error"]["code"] == "version_not_found"


def test_summary_sentences():
    base = definition()
    removed = definition(steps=[transform("hello", "Hello {{ inputs.who }}")])
    assert definition_summary(base, removed) == "Removed 1 step, changed output"
    inputs = copy.deepcopy(base) | {"inputs": {"type": "object", "properties": {}}}
    assert definition_summary(base, inputs) == "Changed inputs"
    reordered = copy.deepcopy(base)
    reordered["steps"].reverse()
    assert definition_summary(base, reordered) == "Reordered steps"
    two = definition(steps=[transform("a", "1"), transform("b", "2")])
    assert definition_summary(removed, two).startswith("Added 2 steps, removed 1 step")


def test_booleans_and_numbers_are_not_confused():
    v1 = definition(steps=[{"id": "stop", "type": "end", "config": {"status": "completed", "output": 1}}])
    v2 = copy.deepcopy(v1)
    v2["steps"][0]["config"]["output"] = True
    assert definition_summary(v1, v2) == "Modified 1 step"
    patch = definition_patch(v1, v2)
    assert patch == [{"op": "replace", "path": "/steps/0/config/output", "value": True}]
    assert jsonpatch.apply_patch(copy.deepcopy(v1), patch)["steps"][0]["config"]["output"] is True


# -- property: for random edits of a definition, the diff applied to v1 gives v2 -------------------

step_ids = st.sampled_from(["fetch", "parse", "notify", "store", "check", "log", "end_step"])
values = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
scalars = st.one_of(st.booleans(), st.integers(-3, 3), st.none(), values)


@st.composite
def definitions(draw):
    ids = draw(st.lists(step_ids, min_size=1, max_size=6, unique=True))
    steps = []
    for index, step_id in enumerate(ids):
        step = transform(step_id, draw(st.one_of(values, st.lists(scalars, max_size=3))))
        earlier = ids[:index]
        if earlier and draw(st.booleans()):
            step["depends_on"] = draw(
                st.lists(st.sampled_from(earlier), min_size=1, max_size=len(earlier), unique=True)
            )
        if draw(st.booleans()):
            step["name"] = draw(values)
        steps.append(step)
    result = definition(draw(values) or "x", steps=steps)
    if draw(st.booleans()):
        result["inputs"]["properties"][draw(st.sampled_from(["a", "b", "c"]))] = {"type": "integer"}
    return result


@settings(max_examples=150, deadline=None)
@given(definitions(), definitions())
def test_diff_applied_to_v1_yields_v2(v1, v2):
    patch = definition_patch(v1, v2)
    assert same_json(jsonpatch.apply_patch(copy.deepcopy(v1), patch), v2)
    assert (patch == []) == same_json(v1, v2)
    assert (definition_summary(v1, v2) == "No changes") == same_json(v1, v2)


@settings(max_examples=60, deadline=None)
@given(definitions())
def test_diff_after_single_step_edit_names_it(v1):
    v2 = copy.deepcopy(v1)
    v2["steps"][0]["config"]["value"] += "!"
    assert definition_summary(v1, v2) == "Modified 1 step"
    assert jsonpatch.apply_patch(copy.deepcopy(v1), definition_patch(v1, v2)) == v2


def test_rollback_creates_a_new_version_equal_to_the_old(api_key_client, org, three_versions):
    response = api_key_client.post(
        f"/api/v1/workflows/{three_versions.id}/rollback", {"version": 2}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["current_version"] == 4 and body["definition"] == V2
    assert body["change_summary"] == "Rolled back to version 2"
    v3 = WorkflowVersion.objects.get(workflow=three_versions, number=3).definition
    assert v3["steps"][0]["config"] == {"value": "Hi"}
    event = AuditEvent.objects.filter(organization=org, event="workflow.rolled_back").get()
    assert event.data == {"to_version": 2, "version": 4}


@pytest.mark.parametrize("body, status", [({"version": 9}, 404), ({}, 400), ({"version": 0}, 400)])
def test_rollback_errors(api_key_client, three_versions, body, status):
    response = api_key_client.post(f"/api/v1/workflows/{three_versions.id}/rollback", body, format="json")
    assert response.status_code == status


def test_publish_defaults_to_latest_and_is_audited(api_key_client, org, three_versions):
    url = f"/api/v1/workflows/{three_versions.id}/publish"
    assert api_key_client.post(url, {}, format="json").json()["published_version"] == 3
    assert api_key_client.post(url, {"version": 1}, format="json").json()["published_version"] == 1
    events = AuditEvent.objects.filter(organization=org, event="workflow.published").order_by("seq")
    assert [e.data for e in events] == [{"version": 3, "previous": None}, {"version": 1, "previous": 3}]
    missing = api_key_client.post(url, {"version": 7}, format="json")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "version_not_found"


def test_clone_makes_a_copy_draft(api_key_client, org, three_versions):
    api_key_client.patch(f"/api/v1/workflows/{three_versions.id}", {"tags": ["x"]}, format="json")
    api_key_client.patch(f"/api/v1/workflows/{three_versions.id}/status", {"status": "active"}, format="json")
    response = api_key_client.post(f"/api/v1/workflows/{three_versions.id}/clone", {}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    clone = body["workflow"]
    assert body["id"] == clone["id"] != three_versions.id
    assert (
        clone["name"] == "Greeter (Copy)" and clone["slug"] == "greeter-copy" and clone["status"] == "draft"
    )
    assert clone["current_version"] == 1 and clone["tags"] == ["x"]
    assert clone["definition"]["steps"] == three_versions.versions.get(number=3).definition["steps"]
    assert clone["definition"]["name"] == "Greeter (Copy)"
    event = AuditEvent.objects.filter(organization=org, event="workflow.created", target_id=clone["id"]).get()
    assert event.data["cloned_from"] == three_versions.id
    named = api_key_client.post(
        f"/api/v1/workflows/{three_versions.id}/clone", {"name": "Mine"}, format="json"
    )
    assert named.json()["workflow"]["name"] == "Mine"


def test_clone_is_idempotent_with_a_key(api_key_client, workflow):
    url = f"/api/v1/workflows/{workflow.id}/clone"
    first = api_key_client.post(url, {}, format="json", HTTP_IDEMPOTENCY_KEY="clone-1")
    again = api_key_client.post(url, {}, format="json", HTTP_IDEMPOTENCY_KEY="clone-1")
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true" and again.json()["id"] == first.json()["id"]


def test_create_is_idempotent_with_a_key(api_key_client):
    body = {"definition": definition("Once")}
    first = api_key_client.post("/api/v1/workflows", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = api_key_client.post("/api/v1/workflows", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    other = api_key_client.post("/api/v1/workflows", {"definition": definition("Twice")}, format="json",
                                HTTP_IDEMPOTENCY_KEY="k1")  # fmt: skip
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"


def test_versions_are_immutable(workflow):
    version = workflow.versions.get()
    version.change_summary = "rewritten"
    with pytest.raises(ImmutableError):
        version.save()
    with pytest.raises(ImmutableError):
        WorkflowVersion.objects.filter(pk=version.pk).update(change_summary="x")
    with pytest.raises(ImmutableError):
        version.delete()
    assert WorkflowVersion.objects.get(pk=version.pk).change_summary == "Created"
