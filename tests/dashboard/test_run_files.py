"""The run page's files (uploaded with the trigger) and a step's whole input or output as a download."""

from django.core.files.uploadedfile import SimpleUploadedFile

from runs.models import Run, StepRun
from tests.conftest import bearer_client, key_for
from tests.dashboard.support.helpers import make_workflow, signed_in


def test_run_page_lists_its_files_and_they_download_with_the_session(org, owner, viewer):
    workflow = make_workflow(org, owner)
    api = bearer_client(key_for(org, owner))
    upload = SimpleUploadedFile("report.csv", b"a,b\n1,2\n", content_type="text/csv")
    response = api.post(f"/api/v1/workflows/{workflow.id}/run", {"attachment": upload, "name": "Ada"})
    assert response.status_code == 202, response.content
    run_id = response.json()["run_id"]
    client = signed_in(viewer, org)
    body = client.get(f"/runs/{run_id}/").content.decode()
    file_id = Run.objects.get(pk=run_id).files.get().id
    assert f'href="/api/v1/runs/{run_id}/files/{file_id}" download>report.csv</a>' in body
    download = client.get(f"/api/v1/runs/{run_id}/files/{file_id}")
    assert download.status_code == 200 and b"".join(download.streaming_content) == b"a,b\n1,2\n"


def test_large_step_values_are_cut_with_a_download(org, owner, viewer, manual_engine):
    from runs.services import run_create
    from tests.dashboard.support.helpers import actor

    run = run_create(workflow=make_workflow(org, owner), actor=actor(org, owner), input_data={"name": "x"})
    manual_engine.drain()
    big = {"rows": ["x" * 100] * 100}
    StepRun.objects.filter(run=run, step_id="greet").update(output_data=big)
    client = signed_in(viewer, org)
    body = client.get(f"/runs/{run.id}/").content.decode()
    link = f"/runs/{run.id}/steps/greet/output/"
    assert f'<a href="{link}" download>Download the whole value (JSON)</a>' in body
    response = client.get(link)
    assert response.status_code == 200 and response.json() == big
    assert response["Content-Disposition"] == f'attachment; filename="{run.id}-greet-output.json"'
    assert client.get(f"/runs/{run.id}/steps/greet/input/").status_code == 200
    assert client.get(f"/runs/{run.id}/steps/nope/output/").status_code == 404
    assert client.get(f"/runs/{run.id}/steps/greet/secrets/").status_code == 404
