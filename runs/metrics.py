"""What `GET /metrics` reports about runs, steps and the queue (docs/operations.md "Metrics"), computed from
the database at scrape time, each by an indexed read:

- runs and steps not finished yet, by status (the status-leading indexes: the active set is small however
  many finished rows the tables hold), steps holding a live lease (a worker slot each), and the broker's
  queue depth (one LLEN on Redis, one COUNT with the embedded broker);
- runs finished by status and the step duration histogram, as counters: each process reads the run events
  appended since its last scrape (a primary-key range, at most EVENTS_PER_SCRAPE rows a scrape) and adds
  them up, starting from the oldest event still stored, so every process reports the same totals. Retention
  deletes events, so a process started later counts fewer: Prometheus takes that for a counter reset.
"""

from __future__ import annotations

import threading

from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from runs.choices import RUN_ACTIVE, STEP_IN_FLIGHT, EventType, StepStatus
from runs.models import Run, RunEvent, StepRun

# Seconds; from an instant transform to a long agent call.
STEP_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
EVENTS_PER_SCRAPE = 100_000
_CHUNK = 5_000
_RUN_ENDS = {
    EventType.RUN_COMPLETED.value: "completed",
    EventType.RUN_FAILED.value: "failed",
    EventType.RUN_CANCELLED.value: "cancelled",
}
_STEP_ENDS = {EventType.STEP_COMPLETED.value: "completed", EventType.STEP_FAILED.value: "failed"}


class _EventTotals:
    """Counters this process adds up from the run event log, from the oldest stored event on."""

    def __init__(self):
        self.lock = threading.Lock()
        self.after = 0  # the last event id read
        self.runs_finished = dict.fromkeys(_RUN_ENDS.values(), 0)
        self.steps_finished = dict.fromkeys(_STEP_ENDS.values(), 0)
        self.buckets = [0] * len(STEP_BUCKETS)  # non-cumulative: observations per bucket
        self.inf = 0  # observations above the last bucket
        self.sum = 0.0

    def read_new(self) -> None:
        wanted = [*_RUN_ENDS, EventType.STEP_COMPLETED.value, EventType.STEP_FAILED.value]
        read = 0
        while read < EVENTS_PER_SCRAPE:
            # By primary key only, so the range scan stops after _CHUNK rows whatever their types.
            ids = list(
                RunEvent.objects.filter(pk__gt=self.after)
                .order_by("pk")
                .values_list("pk", flat=True)[:_CHUNK]
            )
            if not ids:
                return
            rows = RunEvent.objects.filter(pk__gte=ids[0], pk__lte=ids[-1], type__in=wanted).values_list(
                "type", "data"
            )
            for event_type, data in rows:
                self._add(event_type, data)
            self.after = ids[-1]
            read += len(ids)

    def _add(self, event_type: str, data) -> None:
        if event_type in _RUN_ENDS:
            self.runs_finished[_RUN_ENDS[event_type]] += 1
            return
        self.steps_finished[_STEP_ENDS[event_type]] += 1
        duration_ms = data.get("duration_ms") if isinstance(data, dict) else None
        if event_type != EventType.STEP_COMPLETED or not isinstance(duration_ms, int | float):
            return
        seconds = duration_ms / 1000
        self.sum += seconds
        for index, bound in enumerate(STEP_BUCKETS):
            if seconds <= bound:
                self.buckets[index] += 1
                return
        self.inf += 1


_totals = _EventTotals()
_broker = None


def _queue_depth() -> int:
    global _broker
    if _broker is None:
        from django_q.brokers import get_broker

        _broker = get_broker()
    return _broker.queue_size()


def collect():
    """The metric families of one scrape."""
    runs = GaugeMetricFamily("baton_runs", "Runs not finished yet, by status.", labels=["status"])
    counts = dict(
        Run.objects.filter(status__in=RUN_ACTIVE).values_list("status").annotate(n=Count("id")).order_by()
    )
    for status in sorted(RUN_ACTIVE):
        runs.add_metric([status], counts.get(status, 0))
    yield runs

    steps = GaugeMetricFamily(
        "baton_steps_in_flight", "Steps started and not finished, by status.", labels=["status"]
    )
    counts = dict(
        StepRun.objects.filter(status__in=STEP_IN_FLIGHT)
        .values_list("status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for status in sorted(STEP_IN_FLIGHT):
        steps.add_metric([status], counts.get(status, 0))
    yield steps

    leased = StepRun.objects.filter(status=StepStatus.RUNNING, lease_expires_at__gt=timezone.now()).count()
    yield GaugeMetricFamily(
        "baton_worker_slots_used",
        "Steps a worker holds a live lease on (one worker slot each).",
        value=leased,
    )
    yield GaugeMetricFamily(
        "baton_queue_depth", "Messages waiting in the task broker's queue (django-q2).", value=_queue_depth()
    )

    with _totals.lock:
        _totals.read_new()
        finished = CounterMetricFamily("baton_runs_finished", "Runs finished, by status.", labels=["status"])
        for status, count in _totals.runs_finished.items():
            finished.add_metric([status], count)
        yield finished
        steps_done = CounterMetricFamily(
            "baton_steps_finished", "Steps finished, by outcome.", labels=["outcome"]
        )
        for outcome, count in _totals.steps_finished.items():
            steps_done.add_metric([outcome], count)
        yield steps_done
        cumulative, buckets = 0, []
        for bound, count in zip(STEP_BUCKETS, _totals.buckets, strict=True):
            cumulative += count
            buckets.append((repr(float(bound)), cumulative))
        buckets.append(("+Inf", cumulative + _totals.inf))
        yield HistogramMetricFamily(
            "baton_step_duration_seconds",
            "Duration of completed steps (their last attempt), from the run event log.",
            buckets=buckets,
            sum_value=_totals.sum,
        )
