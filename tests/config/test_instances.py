"""config/instances.py: `new(model, **values)` makes the instance `model(**values)` makes."""

import pytest
from django.db.models import signals

from audit.models import AuditEvent
from config.instances import new
from runs.models import Run, StepRun
from workflows.models import Workflow

GENERATED = {"id", "created_at"}  # a new value on every call (ids, now)


def _fields(instance) -> dict:
    return {k: v for k, v in instance.__dict__.items() if k != "_state" and k not in GENERATED}


@pytest.mark.parametrize(
    "model, values",
    [
        (
            Run,
            {"organization_id": "org_1", "workflow_id": "wf_1", "status": "queued", "input_data": {"n": 1}},
        ),
        (StepRun, {"run_id": "run_1", "step_id": "a", "type": "transform", "name": ""}),
        (AuditEvent, {"organization_id": "org_1", "event": "run.triggered", "actor": "key_1", "hash": ""}),
    ],
)
def test_the_same_instance_as_the_models_constructor(model, values):
    made, expected = new(model, **values), model(**values)
    assert _fields(made) == _fields(expected)
    assert type(made) is model and made._state.adding and made._state.db is None
    assert made.pk and made.pk != expected.pk  # its own default id


def test_mutable_defaults_are_not_shared():
    first, second = (
        new(StepRun, run_id="run_1", step_id="a", type="t"),
        new(StepRun, run_id="run_1", step_id="b", type="t"),
    )
    first.state["x"] = 1
    first.attempts.append(1)
    assert second.state == {} and second.attempts == []


def test_a_related_instance_sets_the_key_and_is_cached():
    run = Run(organization_id="org_1")
    step = new(StepRun, run=run, step_id="a", type="transform")
    assert step.run_id == run.pk and step.run is run
    expected = StepRun(run=run, step_id="a", type="transform")
    assert step._state.db == expected._state.db and _fields(step) == _fields(expected)
    none = new(Run, organization_id="org_1", parent_run=None)
    assert none.parent_run_id is None and none.parent_run is None


def test_wrong_keywords_fail_as_in_the_constructor():
    with pytest.raises(TypeError, match="unexpected keyword"):
        new(StepRun, run_id="run_1", no_such_field=1)
    with pytest.raises(ValueError, match='must be a "Run" instance'):
        new(StepRun, run=Workflow(), step_id="a", type="t")


def test_the_constructor_is_used_when_post_init_is_listened_to():
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance)

    signals.post_init.connect(receiver, sender=StepRun)
    try:
        step = new(StepRun, run_id="run_1", step_id="a", type="t")
    finally:
        signals.post_init.disconnect(receiver, sender=StepRun)
    assert seen == [step]
