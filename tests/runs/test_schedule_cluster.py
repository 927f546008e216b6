"""Exactly once on real clusters: two `manage.py qcluster` on PostgreSQL + Redis fire the same schedules,
and one of them is SIGKILLed while its workers are in the middle of fires
(tests/runs/support/kill_harness.py). Every fire time still gets exactly one run."""

from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from runs.models import Run
from tests.factories import make_org
from tests.runs.support.kill_harness import Cluster, cluster_env, in_flight, slow_inserts, wait_for
from tests.workflows.support.helpers import make_workflow
from workflows.models import Schedule, ScheduleFire

SCHEDULES = 40
ORGANIZATIONS = 4

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL + Redis: row locks with SKIP LOCKED between clusters, and a server that "
        "rolls back a killed client's transaction",
    ),
]


@pytest.fixture
def clusters(transactional_db, tmp_path):
    env = cluster_env(tmp_path, BATON_SCHEDULER_MAX_SLEEP_SECONDS="5")
    started = [Cluster(env, "a"), Cluster(env, "b")]
    yield started
    for cluster in started:
        cluster.kill()


def test_two_clusters_and_a_kill_mid_fire_start_each_fire_time_once(clusters, org, owner):
    # Four organisations: a pass fires one organisation per transaction, so one commits while another is
    # still in flight when the kill lands.
    organizations = [org, *(make_org(name=f"Org {n}", owner=owner) for n in range(ORGANIZATIONS - 1))]
    workflows = [make_workflow(organization, owner) for organization in organizations]
    fire_time = timezone.now().replace(second=0, microsecond=0)  # a fire time of `* * * * *`, just past
    Schedule.objects.bulk_create(
        Schedule(
            organization_id=workflow.organization_id, workflow=workflow, cron_expression="* * * * *",
            input_data={"who": "cluster"}, catchup="all", catchup_window_seconds=3600, overlap="allow",
            next_run_at=fire_time,
        )
        for workflow in (workflows[n % ORGANIZATIONS] for n in range(SCHEDULES))
    )  # fmt: skip
    first, second = clusters
    with slow_inserts("workflows_schedulefire", 0.25):
        first.start()
        second.start()
        # Both clusters fire; once `first` is inside a fire (its transaction sleeping in the insert), kill it.
        wait_for(lambda: in_flight(first.application_name) and ScheduleFire.objects.count() >= 2, timeout=60)
        first.kill()
        killed_mid_fire = True
        try:
            wait_for(
                lambda: (
                    ScheduleFire.objects.filter(fire_time=fire_time).exclude(run_id="").count() == SCHEDULES
                ),
                timeout=30,
            )
        except AssertionError:
            print(
                Counter(ScheduleFire.objects.values_list("fire_time", "outcome")), fire_time, timezone.now()
            )
            print(Counter(Schedule.objects.values_list("next_run_at", flat=True)))
            print(second.pids())
            raise
        # Nothing commits while the fires and the runs are read below (two statements): once the next minute
        # is due, `second` fires it, and a pass committing between the two reads added runs to the second.
        second.kill()
    assert killed_mid_fire
    # No fire time twice, none missed: one record and one run per (schedule, fire time).
    fires = list(ScheduleFire.objects.values_list("schedule_id", "fire_time", "run_id"))
    assert Counter((schedule_id, at) for schedule_id, at, _ in fires).most_common(1)[0][1] == 1
    assert {schedule_id for schedule_id, at, _ in fires if at == fire_time} == set(
        Schedule.objects.values_list("pk", flat=True)
    )
    runs = list(Run.objects.filter(workflow__in=workflows).values_list("id", "metadata"))
    per_fire = Counter((metadata["schedule_id"], metadata["fire_time"]) for _, metadata in runs)
    assert per_fire and max(per_fire.values()) == 1, per_fire.most_common(3)
    assert {run_id for run_id, _ in runs} == {run_id for _, _, run_id in fires if run_id}
    assert all(run.trigger == "schedule" for run in Run.objects.filter(workflow__in=workflows))
    # The survivor keeps firing: every schedule's next fire time is in the future or just being fired.
    assert Schedule.objects.filter(next_run_at__lt=timezone.now() - timedelta(seconds=30)).count() == 0
