"""A synchronous driver for the engine: dispatch collects step run ids, `drain()` executes them here."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from accounts.principal import Principal
from accounts.services import llm_provider_create
from runs.engine import dispatch as dispatch_module
from runs.engine.reconciler import reconcile_once
from runs.models import Run, StepRun
from runs.services import run_create
from tests.runs.support.cluster import Cluster, cluster_env
from tests.runs.support.llm_fake import API_KEY, FakeLlm
from workflows.services import workflow_create


class Driver:
    def __init__(self, org, actor):
        self.org = org
        self.actor = actor

    def workflow(self, steps, **definition):
        return workflow_create(
            organization=self.org,
            actor=self.actor,
            definition={"name": "Test flow", "steps": steps, **definition},
        )

    def start(self, steps, *, input_data=None, drain=True, **options):
        definition = {key: options.pop(key) for key in ("output", "inputs") if key in options}
        workflow = self.workflow(steps, **definition)
        run = run_create(workflow=workflow, actor=self.actor, input_data=input_data, **options)
        if drain:
            self.drain()
        return Run.objects.get(pk=run.pk)

    def drain(self) -> int:
        return dispatch_module.drain()

    @property
    def queued(self) -> list[str]:
        return list(dispatch_module.MANUAL_QUEUE)

    def steps(self, run) -> dict[str, StepRun]:
        return {row.step_id: row for row in StepRun.objects.filter(run=run, parent__isnull=True)}

    def statuses(self, run) -> dict[str, str]:
        return {step_id: row.status for step_id, row in self.steps(run).items()}

    def events(self, run) -> list[tuple[str, str]]:
        return [(event.type, event.step_id) for event in run.events.order_by("seq")]

    def reload(self, run) -> Run:
        return Run.objects.get(pk=run.pk)

    def fast_forward(self, run) -> dict:
        """Make every timer of the run due now, reconcile once, and drain what it woke."""
        StepRun.objects.filter(run=run, wake_at__isnull=False).update(
            wake_at=timezone.now() - timedelta(seconds=1)
        )
        counts = reconcile_once()
        self.drain()
        return counts


@pytest.fixture
def engine(settings, org, owner):
    settings.BATON_ENGINE_DISPATCH = "manual"
    dispatch_module.MANUAL_QUEUE.clear()
    dispatch_module.MANUAL_ADMISSIONS.clear()
    dispatch_module.MANUAL_CALLBACKS.clear()
    yield Driver(org, Principal(organization=org, user=owner, role="owner"))
    dispatch_module.MANUAL_QUEUE.clear()
    dispatch_module.MANUAL_ADMISSIONS.clear()
    dispatch_module.MANUAL_CALLBACKS.clear()


# Tests whose threads race for row locks: SQLite serialises its writers instead (each has a process-based
# or single-threaded twin that runs on both backends).
pg_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="threads need a server database (row locks); runs on PostgreSQL"
)


@pytest.fixture(params=["instant", "leased"])
def both_step_modes(request, settings):
    """Run a test twice: transform, condition and end steps as instant steps (the default: executed in the
    transaction that found them ready) and, with BATON_INSTANT_STEPS_MS=0, claimed with a lease each."""
    settings.BATON_INSTANT_STEPS_MS = 100 if request.param == "instant" else 0
    return request.param


def transform(step_id, value, **extra):
    return {"id": step_id, "type": "transform", "config": {"value": value}, **extra}


class Flaky:
    """A test-only step type registered like any other: it fails its first `fail_times[step_id]` attempts
    and can run a hook mid-execution (to act concurrently with a running step)."""

    def __init__(self):
        self.calls: list[tuple[str, int]] = []
        self.fail_times: dict[str, int] = {}
        self.hooks: dict = {}

    def execute(self, context):
        from runs.engine.context import StepError, StepOutcome

        self.calls.append((context.step_id, context.attempt))
        hook = self.hooks.get(context.step_id)
        if hook:
            hook(context)
        if context.attempt <= self.fail_times.get(context.step_id, 0):
            raise StepError("flaky_failure", f"attempt {context.attempt} of {context.step_id} failed")
        return StepOutcome.completed({"attempt": context.attempt, "value": context.config.get("value")})


@pytest.fixture
def flaky(monkeypatch):
    from workflows.steps import STEP_TYPES, StepType, object_schema

    double = Flaky()
    step_type = StepType(
        name="flaky",
        description="test double",
        config_schema=object_schema({"value": {}}),
        execute=double.execute,
    )
    monkeypatch.setitem(STEP_TYPES, "flaky", step_type)
    return double


def flaky_step(step_id, **extra):
    return {"id": step_id, "type": "flaky", "config": {"value": step_id}, **extra}


# --- LLM steps: a local OpenAI- or Anthropic-compatible server (support/llm_fake.py) and its provider


@pytest.fixture
def local_http(settings):
    settings.BATON_HTTP_ALLOWLIST = ["127.0.0.1"]


@pytest.fixture(params=["openai", "anthropic"])
def fake(request):
    server = FakeLlm(request.param).start()
    yield server
    server.stop()


@pytest.fixture
def actor(org, owner):
    return Principal(organization=org, user=owner, role="owner")


@pytest.fixture
def provider(fake, org, actor, local_http):
    return llm_provider_create(
        organization=org,
        actor=actor,
        name="Local",
        kind=fake.kind,
        base_url=fake.base_url,
        api_key=API_KEY,
        default_model="default-model",
        input_price_per_million="2.5",
        output_price_per_million="10",
    )


# --- a real cluster (tests/runs/support/cluster.py)


@pytest.fixture(scope="module")
def module_cluster_env(django_db_setup, django_db_blocker, tmp_path_factory):
    """A cluster environment for the module's tests (its SQLite file migrated once)."""
    with django_db_blocker.unblock():
        return cluster_env(tmp_path_factory.mktemp("cluster"))


@pytest.fixture
def cluster(module_cluster_env, transactional_db):
    """A cluster on its own queue; on PostgreSQL it shares the test database, flushed after the test."""
    cluster = Cluster(module_cluster_env)
    yield cluster
    cluster.kill()
