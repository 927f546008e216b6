"""Schedules firing (runs/scheduling.py, docs/schedules.md): exactly once per fire time, catch-up and overlap
modes, paused and archived workflows, backfill. Time is driven by an injectable clock."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from runs.choices import RunStatus
from runs.models import Run
from runs.scheduling import Scheduler, schedule_backfill, schedule_fire, schedules_release_waiting
from tests.workflows.support.helpers import make_workflow, owner_actor
from workflows.choices import FireOutcome, WorkflowStatus
from workflows.models import Schedule, ScheduleFire
from workflows.schedules import schedule_create

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # a Monday, 09:00 in New York


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def workflow(org, owner, engine):
    return make_workflow(org, owner)


@pytest.fixture
def actor(org, owner):
    return owner_actor(org, owner)


def make_schedule(workflow, actor, *, next_run_at=T0, **values):
    schedule = schedule_create(
        workflow=workflow,
        actor=actor,
        values={"cron_expression": "*/5 * * * *", "input_data": {"who": "cron"}, **values},
    )
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=next_run_at)
    return Schedule.objects.get(pk=schedule.pk)


def runs_of(schedule):
    return list(Run.objects.filter(metadata__schedule_id=schedule.id).order_by("created_at"))


def test_a_due_schedule_starts_one_run_with_trigger_and_metadata(workflow, actor, settings):
    settings.BATON_SCHEDULER_MAX_SLEEP_SECONDS = 600
    schedule = make_schedule(workflow, actor)
    clock = Clock(T0 + timedelta(milliseconds=5))
    sleep = Scheduler(clock=clock).step()
    (run,) = runs_of(schedule)
    assert run.trigger == "schedule"
    assert run.metadata == {"schedule_id": schedule.id, "fire_time": "2026-03-02T14:00:00Z"}
    assert run.input_data == {"who": "cron"}
    schedule.refresh_from_db()
    assert schedule.next_run_at == T0 + timedelta(minutes=5)
    assert schedule.last_run_id == run.id
    assert 299 <= sleep <= 300  # sleeps until the next fire time
    assert ScheduleFire.objects.get(schedule=schedule).run_id == run.id


def test_firing_twice_at_the_same_time_starts_one_run(workflow, actor):
    schedule = make_schedule(workflow, actor)
    assert schedule_fire(schedule.id, now=T0) == [FireOutcome.STARTED]
    assert schedule_fire(schedule.id, now=T0) == []  # no longer due
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=T0)  # a scheduler that read stale state
    assert schedule_fire(schedule.id, now=T0) == ["duplicate"]
    assert len(runs_of(schedule)) == 1


def test_not_due_yet_fires_nothing_and_sleeps_until_due(workflow, actor):
    schedule = make_schedule(workflow, actor)
    sleep = Scheduler(clock=Clock(T0 - timedelta(seconds=2))).step()
    assert runs_of(schedule) == []
    assert 1.9 <= sleep <= 2.0


def test_the_sleep_is_capped_when_nothing_is_scheduled(db, settings):
    settings.BATON_SCHEDULER_MAX_SLEEP_SECONDS = 7
    assert Scheduler(clock=Clock(T0)).step() == 7


@pytest.mark.parametrize(
    ("catchup", "expected"),
    [
        ("none", []),
        ("last", ["2026-03-02T14:55:00Z"]),
        ("all", ["2026-03-02T14:05:00Z", "2026-03-02T14:10:00Z", "2026-03-02T14:55:00Z"]),
    ],
)
def test_catch_up_after_downtime(workflow, actor, catchup, expected):
    # Down from 14:00 to 14:56:30, window 52 minutes: fire times from 14:05 are within it (plus grace).
    schedule = make_schedule(
        workflow, actor, catchup=catchup, catchup_window_seconds=52 * 60, overlap="allow"
    )
    now = T0 + timedelta(minutes=56, seconds=30)
    schedule_fire(schedule.id, now=now)
    fired = [run.metadata["fire_time"] for run in runs_of(schedule)]
    if catchup == "all":
        assert fired[:2] == expected[:2] and fired[-1] == expected[-1] and len(fired) == 11
    else:
        assert fired == expected
    schedule.refresh_from_db()
    assert schedule.next_run_at == T0 + timedelta(minutes=60)


def test_a_fire_time_less_than_a_minute_late_is_not_missed(workflow, actor):
    schedule = make_schedule(workflow, actor, catchup="none")
    schedule_fire(schedule.id, now=T0 + timedelta(seconds=59))
    assert [run.metadata["fire_time"] for run in runs_of(schedule)] == ["2026-03-02T14:00:00Z"]
    late = make_schedule(workflow, actor, catchup="none")
    schedule_fire(late.id, now=T0 + timedelta(seconds=61))
    assert runs_of(late) == []


def test_overlap_skip_skips_while_the_previous_run_is_active(workflow, actor):
    schedule = make_schedule(workflow, actor)  # overlap defaults to skip
    schedule_fire(schedule.id, now=T0)
    assert schedule_fire(schedule.id, now=T0 + timedelta(minutes=5)) == [FireOutcome.SKIPPED_OVERLAP]
    assert len(runs_of(schedule)) == 1
    Run.objects.filter(metadata__schedule_id=schedule.id).update(status=RunStatus.COMPLETED)
    assert schedule_fire(schedule.id, now=T0 + timedelta(minutes=10)) == [FireOutcome.STARTED]


def test_overlap_allow_starts_every_time(workflow, actor):
    schedule = make_schedule(workflow, actor, overlap="allow")
    schedule_fire(schedule.id, now=T0)
    schedule_fire(schedule.id, now=T0 + timedelta(minutes=5))
    assert len(runs_of(schedule)) == 2


def test_overlap_queue_keeps_one_waiting_and_starts_it_when_the_previous_finishes(workflow, actor):
    schedule = make_schedule(workflow, actor, overlap="queue")
    schedule_fire(schedule.id, now=T0)
    assert schedule_fire(schedule.id, now=T0 + timedelta(minutes=5)) == [FireOutcome.WAITING]
    assert schedule_fire(schedule.id, now=T0 + timedelta(minutes=10)) == [FireOutcome.SKIPPED_OVERLAP]
    assert schedules_release_waiting(now=T0 + timedelta(minutes=11)) == 0  # the first still runs
    Run.objects.filter(metadata__schedule_id=schedule.id).update(status=RunStatus.COMPLETED)
    assert schedules_release_waiting(now=T0 + timedelta(minutes=12)) == 1
    fired = [run.metadata["fire_time"] for run in runs_of(schedule)]
    assert fired == ["2026-03-02T14:00:00Z", "2026-03-02T14:05:00Z"]
    assert not ScheduleFire.objects.filter(outcome=FireOutcome.WAITING).exists()


def test_the_scheduler_looks_again_soon_while_a_fire_waits(workflow, actor, settings):
    settings.BATON_RECONCILE_INTERVAL_MS = 1500
    schedule = make_schedule(workflow, actor, overlap="queue")
    schedule_fire(schedule.id, now=T0)
    schedule_fire(schedule.id, now=T0 + timedelta(minutes=5))
    assert Scheduler(clock=Clock(T0 + timedelta(minutes=6))).step() == 1.5


def test_paused_workflow_skips_its_fire_times(workflow, actor):
    schedule = make_schedule(workflow, actor)
    type(workflow).objects.filter(pk=workflow.pk).update(status=WorkflowStatus.PAUSED)
    assert schedule_fire(schedule.id, now=T0) == [FireOutcome.SKIPPED_PAUSED]
    schedule.refresh_from_db()
    assert runs_of(schedule) == [] and schedule.next_run_at == T0 + timedelta(minutes=5)
    type(workflow).objects.filter(pk=workflow.pk).update(status=WorkflowStatus.ACTIVE)
    assert schedule_fire(schedule.id, now=T0 + timedelta(minutes=5)) == [FireOutcome.STARTED]


def test_archived_workflow_disables_its_schedule_when_met(workflow, actor):
    schedule = make_schedule(workflow, actor)
    type(workflow).objects.filter(pk=workflow.pk).update(status=WorkflowStatus.ARCHIVED)
    assert schedule_fire(schedule.id, now=T0) == ["disabled"]
    schedule.refresh_from_db()
    assert schedule.enabled is False and schedule.next_run_at is None and runs_of(schedule) == []


def test_a_refused_run_is_recorded_once_with_its_reason_and_not_retried(workflow, actor, org, owner):
    from tests.workflows.support.helpers import definition
    from workflows.services import workflow_update

    schedule = make_schedule(workflow, actor, input_data={"who": "cron"})
    changed = definition()  # the workflow's schema changes after the schedule was made
    changed["inputs"]["required"] = ["who", "count"]
    workflow_update(workflow=workflow, actor=actor, definition=changed)
    assert schedule_fire(schedule.id, now=T0) == [FireOutcome.FAILED]
    fire = ScheduleFire.objects.get(schedule=schedule)
    assert fire.outcome == FireOutcome.FAILED and fire.run_id == ""
    assert fire.error["code"] == "invalid_input" and fire.error["fire_time"] == "2026-03-02T14:00:00Z"
    assert "count" in fire.error["details"]["errors"][0]
    schedule.refresh_from_db()
    assert schedule.last_error == fire.error
    assert schedule.next_run_at == T0 + timedelta(minutes=5)
    workflow_update(workflow=workflow, actor=actor, definition=definition())  # fixed: the next fire starts
    assert schedule_fire(schedule.id, now=T0 + timedelta(minutes=5)) == [FireOutcome.STARTED]
    schedule.refresh_from_db()
    assert schedule.last_error is None and schedule.last_run_id == runs_of(schedule)[0].id


def test_published_version_is_used(workflow, actor):
    from tests.workflows.support.helpers import definition
    from workflows.services import workflow_publish, workflow_update

    workflow_publish(workflow=workflow, actor=actor, version=1)
    workflow, _ = workflow_update(workflow=workflow, actor=actor, definition=definition("Greeter v2"))
    schedule = make_schedule(workflow, actor)
    schedule_fire(schedule.id, now=T0)
    assert runs_of(schedule)[0].workflow_version.number == 1


# ---------------------------------------------------------------------------------------------- backfill


def backfill_window():
    end = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=1)
    return end - timedelta(minutes=20), end


def test_backfill_creates_one_run_per_fire_time_once(workflow, actor, org):
    schedule = make_schedule(workflow, actor, next_run_at=timezone.now() + timedelta(days=1))
    start, end = backfill_window()
    dry = schedule_backfill(schedule=schedule, actor=actor, start=start, end=end, dry_run=True)
    assert len(dry["fire_times"]) in (4, 5) and dry["created"] == 0 and dry["runs"] == []
    assert runs_of(schedule) == []
    first = schedule_backfill(schedule=schedule, actor=actor, start=start, end=end)
    assert first["fire_times"] == dry["fire_times"]
    assert first["created"] == len(dry["fire_times"]) and first["skipped"] == 0
    assert sorted(r["fire_time"] for r in first["runs"]) == dry["fire_times"]
    assert all(run.metadata["backfill"] is True for run in runs_of(schedule))
    again = schedule_backfill(schedule=schedule, actor=actor, start=start, end=end)
    assert again["created"] == 0 and again["skipped"] == len(dry["fire_times"])
    assert len(runs_of(schedule)) == len(dry["fire_times"])
    assert AuditEvent.objects.filter(organization=org, event="schedule.backfilled").count() == 2


def test_backfilled_fire_times_survive_run_deletion(workflow, actor):
    schedule = make_schedule(workflow, actor, next_run_at=timezone.now() + timedelta(days=1))
    start, end = backfill_window()
    created = schedule_backfill(schedule=schedule, actor=actor, start=start, end=end)["created"]
    Run.objects.filter(metadata__schedule_id=schedule.id).delete()  # what retention does
    again = schedule_backfill(schedule=schedule, actor=actor, start=start, end=end)
    assert again["created"] == 0 and again["skipped"] == created


def test_backfill_is_all_or_nothing_under_the_quota(workflow, actor, org):
    org.monthly_run_limit = 2
    org.save()
    schedule = make_schedule(workflow, actor, next_run_at=timezone.now() + timedelta(days=1))
    start, end = backfill_window()
    from config.errors import QuotaExceeded

    with pytest.raises(QuotaExceeded):
        schedule_backfill(schedule=schedule, actor=actor, start=start, end=end)
    assert runs_of(schedule) == [] and not ScheduleFire.objects.filter(schedule=schedule).exists()


def test_backfill_api_shapes_and_limits(api_key_client, workflow, actor, settings):
    schedule = make_schedule(workflow, actor, next_run_at=timezone.now() + timedelta(days=1))
    start, end = backfill_window()
    url = f"/api/v1/schedules/{schedule.id}/backfill"
    body = {"start": start.isoformat(), "end": end.isoformat()}
    dry = api_key_client.post(url, {**body, "dry_run": True}, format="json")
    assert dry.status_code == 200, dry.content
    assert set(dry.json()) == {"fire_times", "runs", "created", "skipped"}
    done = api_key_client.post(url, body, format="json").json()
    assert done["created"] == len(dry.json()["fire_times"])
    assert {r["run_id"] for r in done["runs"]} == {run.id for run in runs_of(schedule)}
    future = {"start": start.isoformat(), "end": (timezone.now() + timedelta(hours=1)).isoformat()}
    assert api_key_client.post(url, future, format="json").status_code == 400
    backwards = {"start": end.isoformat(), "end": start.isoformat()}
    assert api_key_client.post(url, backwards, format="json").status_code == 400
    settings.BATON_SCHEDULE_BACKFILL_MAX_DAYS = 1
    long = {"start": (end - timedelta(days=2)).isoformat(), "end": end.isoformat()}
    assert "at most 1 days" in api_key_client.post(url, long, format="json").json()["error"]["message"]
    settings.BATON_SCHEDULE_BACKFILL_MAX_FIRES = 2
    many = api_key_client.post(url, body, format="json")
    assert many.status_code == 400 and "more than 2 fire times" in many.json()["error"]["message"]
    assert api_key_client.post(url, {**body, "colour": 1}, format="json").status_code == 400
