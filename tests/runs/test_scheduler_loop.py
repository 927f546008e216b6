"""The scheduler loop and its doorbell (runs/scheduling.py, config/doorbell.py): a sleeping loop wakes at
once when schedules change, and fires within a second of the fire time without polling."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from config import doorbell
from runs.models import Run
from runs.scheduling import run_loop
from tests.workflows.support.helpers import make_workflow, owner_actor
from workflows.models import Schedule
from workflows.schedules import SCHEDULES_CHANNEL, schedule_create


def test_a_ring_wakes_a_listener_at_once(db):
    bell = doorbell.listen("test-channel")
    try:
        assert bell.wait(0.05) is False  # nothing rang: the timeout passes
        threading.Timer(0.2, doorbell.ring, args=("test-channel",)).start()
        started = time.monotonic()
        assert bell.wait(10) is True
        assert time.monotonic() - started < 2
        for _ in range(5):  # a burst of rings is one wake-up
            doorbell.ring("test-channel")
        time.sleep(0.1)
        assert bell.wait(1) is True
        assert bell.wait(0.05) is False
    finally:
        bell.close()


def test_rings_reach_every_listener_of_the_channel_only(db):
    first, second, other = doorbell.listen("chan-a"), doorbell.listen("chan-a"), doorbell.listen("chan-b")
    try:
        time.sleep(0.1)  # Redis: the subscriptions are in place
        first.wait(0), second.wait(0), other.wait(0)
        doorbell.ring("chan-a")
        assert first.wait(2) is True and second.wait(2) is True
        assert other.wait(0.1) is False
    finally:
        for bell in (first, second, other):
            bell.close()


@pytest.mark.slow
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="real time (it sleeps): one backend's pass is enough, the PostgreSQL + Redis one",
)
def test_the_loop_wakes_on_a_change_and_fires_within_a_second(transactional_db, org, owner, settings):
    """The loop runs against the real clock shifted so that a minute boundary (a fire time of `* * * * *`)
    comes 2 s after the schedule is created; it sleeps the long safety-net sleep until the doorbell rings."""
    settings.BATON_SCHEDULER_MAX_SLEEP_SECONDS = 60
    settings.BATON_ENGINE_DISPATCH = "manual"
    org.min_schedule_interval_seconds = None  # an unlimited plan: the server's 60 s floor applies
    org.save(update_fields=["min_schedule_interval_seconds"])
    workflow = make_workflow(org, owner)
    real_now = timezone.now()
    boundary = (real_now + timedelta(minutes=2)).replace(second=0, microsecond=0)
    offset = boundary - (real_now + timedelta(seconds=4))  # virtual time reaches `boundary` 4 s from now
    stop = threading.Event()
    loop = threading.Thread(target=run_loop, kwargs={"stop": stop, "clock": lambda: timezone.now() + offset})
    loop.start()
    try:
        time.sleep(1)  # the loop has looked once and sleeps (nothing is scheduled)
        schedule = schedule_create(
            workflow=workflow,
            actor=owner_actor(org, owner),
            values={"cron_expression": "* * * * *", "input_data": {"who": "clock"}, "overlap": "allow"},
        )
        # Its next fire time on the shifted clock; the update rings like any schedule change.
        Schedule.objects.filter(pk=schedule.pk).update(next_run_at=boundary)
        doorbell.ring(SCHEDULES_CHANNEL)
        deadline = time.monotonic() + 15
        while (
            time.monotonic() < deadline and not Run.objects.filter(metadata__schedule_id=schedule.id).exists()
        ):
            time.sleep(0.02)
        run = Run.objects.get(metadata__schedule_id=schedule.id)
        latency = (run.created_at + offset - boundary).total_seconds()
        print(f"fire time -> run created: {latency * 1000:.0f} ms")
        assert 0 <= latency < 1.0, latency
        assert run.metadata["fire_time"] == boundary.strftime("%Y-%m-%dT%H:%M:%SZ")
    finally:
        stop.set()
        doorbell.ring(SCHEDULES_CHANNEL)
        loop.join(10)
    assert not loop.is_alive()
