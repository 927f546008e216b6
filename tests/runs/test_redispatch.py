"""The reconciler's re-dispatch through the real broker (django-q2's ORM broker on SQLite, Redis with
REDIS_URL): a step queued for long is sent again, unless the queue still holds a backlog, where it most
likely waits (then only a step queued ten times as long goes again)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from runs.engine import dispatch
from runs.engine.reconciler import BACKLOG_PATIENCE, reconcile_once
from runs.models import StepRun
from tests.runs.conftest import transform


@pytest.fixture
def queue(settings):
    """Dispatch through the configured broker, with its queue empty before and after."""
    broker = dispatch.broker()
    broker.purge_queue()
    settings.BATON_ENGINE_DISPATCH = "queue"
    yield broker
    broker.purge_queue()


def _age(run, seconds):
    StepRun.objects.filter(run=run, status="queued").update(
        dispatched_at=timezone.now() - timedelta(seconds=seconds)
    )


@pytest.mark.django_db  # making django-q2's ORM broker asks the connection for its autocommit
def test_the_broker_is_made_once_per_process():
    assert dispatch.broker() is dispatch.broker()


def test_a_stale_step_is_sent_again_when_the_queue_is_empty(engine, queue, settings):
    run = engine.start([transform("a", 1)], drain=False)
    queue.purge_queue()  # the message was lost
    assert dispatch.backlog() == 0
    _age(run, settings.BATON_REDISPATCH_AFTER_SECONDS + 1)

    assert reconcile_once()["redispatched"] == 1
    assert dispatch.backlog() == 1  # rung again through the broker


def test_a_backlog_holds_re_dispatch_back_until_ten_times_the_delay(engine, queue, settings):
    run = engine.start([transform("a", 1)], drain=False)
    queue.purge_queue()
    dispatch.enqueue(["sr_other_backlog"])  # another step's message still waits in the queue
    assert dispatch.backlog() == 1
    _age(run, settings.BATON_REDISPATCH_AFTER_SECONDS + 1)
    assert reconcile_once()["redispatched"] == 0  # most likely still in the queue: no duplicate

    _age(run, settings.BATON_REDISPATCH_AFTER_SECONDS * BACKLOG_PATIENCE + 1)
    assert reconcile_once()["redispatched"] == 1
    assert dispatch.backlog() == 2
