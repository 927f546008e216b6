"""GET /metrics: Prometheus text format behind BATON_METRICS_TOKEN, with values from the database."""

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from runs import metrics as runs_metrics
from tests.runs.conftest import transform

TOKEN = "m" * 32


@pytest.fixture
def scrape(settings, db):
    settings.BATON_METRICS_TOKEN = TOKEN
    runs_metrics._totals = runs_metrics._EventTotals()  # a test database's event ids start over
    client = Client()

    def scrape() -> dict[tuple[str, tuple], float]:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain; version=")
        samples = {}
        for family in text_string_to_metric_families(response.content.decode()):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    return scrape


def test_no_token_setting_means_no_endpoint(settings, db):
    settings.BATON_METRICS_TOKEN = ""
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


def test_a_missing_or_wrong_token_is_401(settings, db):
    settings.BATON_METRICS_TOKEN = TOKEN
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer nope"}, {"HTTP_AUTHORIZATION": f"Basic {TOKEN}"}):
        response = Client().get("/metrics", **headers)
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert TOKEN not in response.content.decode()
    assert Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


def test_values_follow_runs_steps_and_requests(scrape, engine, settings):
    settings.BATON_INSTANT_STEPS_MS = 0  # every step claimed with a lease, through the manual queue
    before = scrape()
    assert before[("baton_queue_depth", ())] >= 0
    requests = before.get(("baton_http_request_duration_seconds_count", (("method", "GET"),)), 0)

    run = engine.start([transform("a", 1), transform("b", 2, depends_on=["a"])], drain=False)
    pending = scrape()
    assert (
        pending[("baton_runs", (("status", "running"),))]
        == before[("baton_runs", (("status", "running"),))] + 1
    )
    assert pending[("baton_steps_in_flight", (("status", "queued"),))] == 1
    assert pending[("baton_http_request_duration_seconds_count", (("method", "GET"),))] == requests + 1

    engine.drain()
    assert engine.reload(run).status == "completed"
    after = scrape()
    assert after[("baton_runs", (("status", "running"),))] == before[("baton_runs", (("status", "running"),))]
    assert after[("baton_steps_in_flight", (("status", "queued"),))] == 0
    assert after[("baton_worker_slots_used", ())] == 0
    finished = ("baton_runs_finished_total", (("status", "completed"),))
    assert after[finished] == before[finished] + 1
    steps = ("baton_steps_finished_total", (("outcome", "completed"),))
    assert after[steps] == before[steps] + 2
    count = ("baton_step_duration_seconds_count", ())
    assert after[count] == before[count] + 2
    assert after[("baton_step_duration_seconds_bucket", (("le", "+Inf"),))] == after[count]
