import pytest

from runs.models import RunEvent
from tests.runs.conftest import transform

# Every test twice: transforms (and conditions, ends) as instant steps, and claimed with leases.
pytestmark = pytest.mark.usefixtures("both_step_modes")


def test_linear_chain_runs_in_order_and_renders_output(engine):
    run = engine.start(
        [
            transform("a", "{{ inputs.n + 1 }}"),
            transform("b", "{{ steps.a.output * 2 }}", depends_on=["a"]),
            transform("c", {"total": "{{ steps.b.output }}", "text": "n={{ inputs.n }}"}, depends_on=["b"]),
        ],
        input_data={"n": 4},
        output={"answer": "{{ steps.c.output.total }}", "label": "{{ steps.c.output.text }}"},
    )
    assert run.status == "completed"
    assert run.result == {"answer": 10, "label": "n=4"}
    steps = engine.steps(run)
    assert steps["c"].output_data == {"total": 10, "text": "n=4"}
    assert steps["a"].attempts[0]["status"] == "completed"
    types = [event.type for event in RunEvent.objects.filter(run=run).order_by("seq")]
    assert types == ["run_queued", "run_started"] + ["step_started", "step_completed"] * 3 + ["run_completed"]
    seqs = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
