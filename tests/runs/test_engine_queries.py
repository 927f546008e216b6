"""Query budget of the engine's hot path: a 40-step chain of transform steps, counted per step. As instant
steps, the chain runs in the transaction of the first step's claim; claimed with leases, each step is claimed
by the worker that finished the previous one, in the same transaction (docs/engine.md)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs.services import run_create
from tests.runs.conftest import transform

STEPS = 40


def chain(length):
    steps = [transform("s0", "{{ inputs.n }}")]
    steps += [
        transform(f"s{i}", f"{{{{ steps.s{i - 1}.output + 1 }}}}", depends_on=[f"s{i - 1}"])
        for i in range(1, length)
    ]
    return steps


@pytest.mark.parametrize("mode, budget", [("instant", 60_000), ("leased", 0)])  # a budget no chain exhausts
def test_a_transform_chain_costs_few_engine_queries_per_step(engine, settings, mode, budget):
    settings.BATON_INSTANT_STEPS_MS = budget
    workflow = engine.workflow(chain(STEPS), output=f"{{{{ steps.s{STEPS - 1}.output }}}}")
    run_create(workflow=workflow, actor=engine.actor, input_data={"n": 1})  # warm the prepared-plan cache
    engine.drain()
    with CaptureQueriesContext(connection) as queries:
        run = run_create(workflow=workflow, actor=engine.actor, input_data={"n": 1})
        engine.drain()
    run = engine.reload(run)
    assert run.status == "completed" and run.result == STEPS
    # The engine's own statements on its tables (the security policy and secrets lookups are not counted
    # here; transactions are savepoints inside the test's transaction and not counted either).
    engine_queries = [q["sql"] for q in queries.captured_queries if '"runs_' in q["sql"]]
    if mode == "instant":
        # Per step: save it (the run's rows are read once; events and the run are written once).
        assert len(engine_queries) / STEPS <= 1.5, len(engine_queries)
    else:
        # Per step: lock the run, re-read the step (lease CAS), save it, read the run's steps (advance), claim
        # the next one (UPDATE), insert the events, save the run — 7, plus run_create's few.
        assert len(engine_queries) / STEPS <= 8, len(engine_queries)


def test_the_run_outcome_is_appended_to_the_audit_chain_after_every_other_write(engine):
    """The append locks the organisation's chain head until the commit, and every run of the organisation
    that finishes waits for that lock: nothing else is written while it is held."""
    workflow = engine.workflow(chain(3), output="{{ steps.s2.output }}")
    with CaptureQueriesContext(connection) as queries:
        run = run_create(workflow=workflow, actor=engine.actor, input_data={"n": 1})
        engine.drain()
    assert engine.reload(run).status == "completed"
    statements = [q["sql"] for q in queries.captured_queries]
    # The last append (run.triggered came first, with the trigger), from the head's lock on: one statement
    # on PostgreSQL (lock, insert, update: docs/audit.md), else the head's read, then the insert.
    head = max(
        i for i, s in enumerate(statements) if s.startswith(("SELECT", "WITH")) and "auditchainhead" in s
    )
    assert any('UPDATE "runs_run"' in s for s in statements[:head])
    after = statements[head:]
    assert any('INSERT INTO "audit_auditevent"' in s for s in after)
    assert not [s for s in after if s.lstrip().startswith(("UPDATE", "INSERT")) and '"runs_' in s], after
