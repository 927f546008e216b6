import pytest

from accounts.models import User
from runs.models import RunEvent, StepRun
from tests.runs.conftest import transform


@pytest.fixture
def superuser_client(client, db):
    client.force_login(User.objects.create_superuser("root@baton.test", "correct-horse-battery"))
    return client


def test_admin_shows_runs_read_only(engine, superuser_client):
    run = engine.start([transform("a", 1), transform("b", 2, depends_on=["a"])])
    step = StepRun.objects.filter(run=run).first()
    urls = [
        "/admin/runs/run/",
        f"/admin/runs/run/{run.id}/change/",
        "/admin/runs/steprun/",
        f"/admin/runs/steprun/{step.id}/change/",
        "/admin/runs/runevent/",
        "/admin/runs/runfile/",
    ]
    for url in urls:
        response = superuser_client.get(url)
        assert response.status_code == 200, url
    assert run.id.encode() in superuser_client.get("/admin/runs/run/").content
    assert superuser_client.get("/admin/runs/run/add/").status_code == 403
    event = RunEvent.objects.filter(run=run).first()
    delete = superuser_client.post(f"/admin/runs/runevent/{event.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 403
    assert RunEvent.objects.filter(pk=event.pk).exists()
