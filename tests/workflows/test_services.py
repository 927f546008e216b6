"""Service guarantees that the HTTP tests cannot show (concurrent version numbers and slugs) and the admin."""

import json
import subprocess
from pathlib import Path

import pytest

from audit.models import AuditEvent
from tests.support.concurrency import at_once
from tests.support.processes import django_code, run_django_code, sqlite_child_env
from tests.workflows.support.helpers import definition, make_workflow, owner_actor, transform
from workflows.models import Workflow, WorkflowVersion
from workflows.services import workflow_create, workflow_update


@pytest.mark.django_db(transaction=True)
def test_concurrent_updates_never_collide_on_version_numbers(org, owner):
    workflow = make_workflow(org, owner)
    actor = owner_actor(org, owner)

    def update(index):
        steps = [transform("hello", f"edit {index}")]
        workflow_update(
            workflow=workflow, actor=actor, definition=definition(steps=steps), change_summary=str(index)
        )

    errors = at_once(8, update)
    assert errors == []
    numbers = sorted(WorkflowVersion.objects.filter(workflow=workflow).values_list("number", flat=True))
    assert numbers == list(range(1, 10))
    workflow.refresh_from_db()
    assert workflow.current_version == 9
    assert AuditEvent.objects.filter(organization=org, event="workflow.updated").count() == 8


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_with_one_name_get_distinct_slugs(org, owner):
    actor = owner_actor(org, owner)
    errors = at_once(
        6, lambda i: workflow_create(organization=org, actor=actor, definition=definition("Same"))
    )
    assert errors == []
    slugs = sorted(Workflow.objects.filter(organization=org).values_list("slug", flat=True))
    assert len(slugs) == 6 and len(set(slugs)) == 6 and "same" in slugs


ROOT = Path(__file__).resolve().parents[2]
SETUP = """
from django.core.management import call_command
call_command("migrate", verbosity=0)
from tests.factories import make_org, UserFactory
from tests.workflows.support.helpers import make_workflow
owner = UserFactory(email="load@baton.test")
print(make_workflow(make_org(name="Load", owner=owner), owner, "Load").id)
"""
WORKER = """
import sys
from accounts.principal import SYSTEM
from tests.workflows.support.helpers import definition, transform
from workflows.models import Workflow
from workflows.services import workflow_update
for i in range(int(sys.argv[3])):
    workflow = Workflow.objects.get(pk=sys.argv[1])
    steps = [transform("hello", f"worker {sys.argv[2]} edit {i}")]
    workflow_update(workflow=workflow, actor=SYSTEM, definition=definition(steps=steps))
"""
REPORT = """
import json, sys
from workflows.models import Workflow
workflow = Workflow.objects.get(pk=sys.argv[1])
numbers = sorted(workflow.versions.values_list("number", flat=True))
print(json.dumps({"numbers": numbers, "current": workflow.current_version}))
"""


@pytest.mark.slow
def test_concurrent_process_updates_on_file_sqlite_get_distinct_versions(tmp_path):
    env = sqlite_child_env(tmp_path)
    workflow_id = run_django_code(env, SETUP)
    workers = [
        subprocess.Popen(
            django_code(WORKER, workflow_id, n, 5), cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
        )
        for n in range(3)
    ]
    failures = [proc.stderr.read() for proc in workers if proc.wait(timeout=120) != 0]
    assert failures == []
    report = json.loads(run_django_code(env, REPORT, workflow_id))
    assert report == {"numbers": list(range(1, 17)), "current": 16}


@pytest.mark.django_db
def test_admin_lists_and_shows_pretty_definitions(client, org, owner):
    owner.is_staff = owner.is_superuser = True
    owner.save()
    client.force_login(owner)
    workflow = make_workflow(org, owner, "Admin visible")
    version = workflow.versions.get()
    listing = client.get("/admin/workflows/workflow/")
    assert listing.status_code == 200 and b"Admin visible" in listing.content
    assert client.get(f"/admin/workflows/workflow/{workflow.pk}/change/").status_code == 200
    page = client.get(f"/admin/workflows/workflowversion/{version.pk}/change/")
    assert page.status_code == 200
    assert b"<pre" in page.content and b"&quot;steps&quot;: [\n" in page.content
    assert (
        workflow.webhook_secret.encode()
        not in client.get(f"/admin/workflows/workflow/{workflow.pk}/change/").content
    )
    assert client.get("/admin/workflows/workflowversion/").status_code == 200
    assert client.get("/admin/workflows/workflowtemplate/").status_code == 200
    assert client.post(f"/admin/workflows/workflowversion/{version.pk}/delete/").status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("project", [True, False])
def test_workflow_get_finds_by_id_or_slug_in_its_organisation_only(org, owner, project):
    from config.errors import NotFound
    from tests.factories import make_org
    from workflows.selectors import workflow_get

    workflow = make_workflow(org, owner)
    for ref in (workflow.id, workflow.slug):
        found = workflow_get(organization=org, ref=ref, project=project)
        assert (found.pk, found.name, found.current_version) == (workflow.pk, workflow.name, 1)
    other = make_org(name="Other")
    for ref in (workflow.id, workflow.slug, "wf_missing", "missing"):
        with pytest.raises(NotFound):
            workflow_get(organization=other if ref in (workflow.id, workflow.slug) else org, ref=ref,
                         project=project)  # fmt: skip
