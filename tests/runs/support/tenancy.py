"""Tenancy-test factories for this area's routes (see tests/support/tenancy_registry.py)."""

from runs.models import RunFile
from runs.services import run_create
from tests.support.tenancy_registry import register
from tests.workflows.support.helpers import make_workflow, owner_actor


def _run(org, owner):
    workflow = make_workflow(org, owner)
    return run_create(workflow=workflow, actor=owner_actor(org, owner), input_data={"who": "Ada"})


@register("workflow-run", "workflow-runs")
def _workflow(org, owner):
    return {"ref": make_workflow(org, owner).id}


@register("run-detail", "run-cancel", "run-terminate", "run-events", "run-pin")
def _run_kwargs(org, owner):
    return {"run_id": _run(org, owner).id}


@register("run-approve", "run-reject")  # approvals (tests/runs/test_approvals.py)
@register("run-pause", "run-resume", "run-rerun")  # tests/runs/api/test_resume_rerun.py
def _run_for_decisions(org, owner):
    return {"run_id": _run(org, owner).id}


# The owner's download needs the file's bytes on disk; tests/runs/api/test_files.py reads them (and
# checks another organisation's 404) with a private MEDIA_ROOT, so the registry writes no file here.
@register("run-file", sanity_get=False)
def _run_file(org, owner):
    run = _run(org, owner)
    row = RunFile.objects.create(
        run=run, organization=org, name="a.txt", size=1, sha256="0" * 64, storage_path=f"{org.id}/missing"
    )
    return {"run_id": run.id, "file_id": row.id}
