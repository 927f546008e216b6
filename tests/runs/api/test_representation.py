"""The hand-written run object (runs/api/representation.py) against the serializers it stands in for: the
same JSON for runs in every shape the API can show (statuses, errors, skips, loops, tokens, flags, legacy
attempt entries), in the detail and in lists."""

import json
from decimal import Decimal

from runs import selectors
from runs.api import serializers
from runs.api.representation import run_data, run_detail, token_counts
from runs.models import Run, StepRun
from tests.runs.conftest import transform


def _same(fast, reference):
    # Compared as JSON text, so that types matter too (1 and 1.0, "1" and 1) and key order.
    assert json.dumps(fast) == json.dumps(reference)


def _check_detail(org, run):
    fetch = lambda: selectors.run_get(organization=org, run_id=run.pk, for_detail=True)  # noqa: E731
    reference = serializers.serialized_run_detail(fetch())
    _same(run_detail(fetch()), reference)
    # The API's read: only the columns it shows, into rows (GET /runs/{id} and the actions' answers).
    _same(run_detail(*selectors.run_shown(organization=org, run_id=run.pk)), reference)


def _runs(engine):
    finished = engine.start(
        [
            transform("a", "{{ inputs.n + 1 }}"),
            transform("b", {"x": "{{ steps.a.output }}", "items": [1, 2.5, None]}, depends_on=["a"]),
            transform("skipped", 1, depends_on=["a"], when="false"),
        ],
        input_data={"n": 1},
        output={"b": "{{ steps.b.output }}"},
        metadata={"team": "growth", "ticket": "T-1"},
        env="staging",
    )
    failed = engine.start([transform("a", "{{ inputs.nope }}"), transform("b", 1, depends_on=["a"])])
    looped = engine.start(
        [
            {"id": "each", "type": "loop", "name": "Each item",
             "config": {"items": "{{ [1, 2, 3] }}", "step": {"type": "transform",
                                                             "config": {"value": "{{ item * 2 }}"}}}},
        ]
    )  # fmt: skip
    queued = engine.start([transform("a", 1)], drain=False)
    return finished, failed, looped, queued


def test_the_detail_is_the_serializers_output_for_runs_of_every_shape(engine, org):
    finished, failed, looped, queued = _runs(engine)
    for run in (finished, failed, looped, queued):
        _check_detail(org, run)
    # Tokens and cost on a step and the run, the flags and signals a run can carry, a legacy attempt entry
    # without started_at, a step with a name, an API key as the trigger.
    row = StepRun.objects.get(run=finished, step_id="a")
    StepRun.objects.filter(pk=row.pk).update(
        tokens={"prompt_tokens": 3, "completion_tokens": 4},
        cost_usd=Decimal("0.012345"),
        name="First",
        attempts=[{"attempt": 1, "status": "completed", "error": None, "duration_ms": 7}],
    )
    Run.objects.filter(pk=finished.pk).update(
        total_tokens=7,
        cost_usd=Decimal("1.5"),
        pinned=True,
        dry_run=True,
        model="gpt-test",
        pause_signal={"type": "request_user_action", "step_id": "a"},
        triggered_by="key_123",
        triggered_by_type="api_key",
        parent_run_id=failed.pk,
    )
    _check_detail(org, finished)
    _check_detail(org, failed)  # now with a child run


def test_a_list_page_is_the_serializers_output(engine, org):
    _runs(engine)
    page = list(selectors.run_list(organization=org).order_by("-created_at", "-id"))
    assert len(page) == 4
    current = selectors.current_step_ids([run.id for run in page])
    fast = [run_data(run, current.get(run.id, [])) for run in page]
    _same(fast, serializers.serialized_run_list(page))
    _same(serializers.run_list_data(page), fast)


def test_token_counts_read_every_providers_names():
    assert (
        token_counts(None)
        == token_counts([1])
        == token_counts({})
        == {"prompt": 0, "completion": 0, "total": 0}
    )
    assert token_counts({"prompt_tokens": 3, "completion_tokens": 4.0}) == {
        "prompt": 3,
        "completion": 4,
        "total": 7,
    }
    assert token_counts({"input": True, "input_tokens": 2, "output_tokens": 5, "total_tokens": 9}) == {
        "prompt": 2,
        "completion": 5,
        "total": 9,
    }
    assert token_counts({"prompt": "3", "output": 1, "total": 0}) == {
        "prompt": 0,
        "completion": 1,
        "total": 1,
    }
