"""Run inside an I/O slots test's cluster environment (its database, broker and queue name).

`python -m tests.runs.support.io_driver start COUNT STEP_JSON` creates an enterprise organisation with no
cap on concurrent runs, a workflow of one step (STEP_JSON, e.g. an http_request to the test's server) and
COUNT runs, and prints {"runs": [ids], "actor": …}; `terminate RUN_ID` terminates a run as its owner;
`report TIMEOUT ID…` waits up to TIMEOUT seconds for the runs to be terminal and prints each one's status
and its steps' statuses, attempts and error codes; `steps ID…` prints the steps' statuses at once."""

import json
import sys
import uuid

import django

from tests.runs.support.waiting import wait_terminal


def start(count: int, step: dict) -> dict:
    from tests.factories import OrganizationFactory, RunFactory, WorkflowFactory, owner_of

    org = OrganizationFactory(
        name="I/O slots", plan="enterprise", owner__email=f"io-{uuid.uuid4().hex[:8]}@x.test"
    )
    org.max_concurrent_runs = None
    org.save(update_fields=["max_concurrent_runs"])
    actor = owner_of(org)
    workflow = WorkflowFactory(
        organization=org, actor=actor, definition={"name": "One call", "steps": [{"id": "call", **step}]}
    )
    return {"runs": [RunFactory(workflow=workflow, actor=actor).id for _ in range(count)]}


def terminate(run_id: str) -> dict:
    from runs.models import Run
    from runs.services import run_terminate
    from tests.factories import owner_of

    run = Run.objects.get(pk=run_id)
    run_terminate(run=run, actor=owner_of(run.organization))
    return {"terminated": run_id}


def steps(ids: list[str]) -> dict:
    from runs.models import Run

    report = {}
    for run in Run.objects.filter(pk__in=ids).prefetch_related("steps"):
        report[run.id] = {
            "status": run.status,
            "error": run.error,
            "steps": {
                row.step_id: {
                    "status": row.status,
                    "attempts": [entry["status"] for entry in row.attempts],
                    "errors": [(entry.get("error") or {}).get("code") for entry in row.attempts],
                    "error": (row.error or {}).get("code"),
                    "seconds": _seconds(row.started_at, row.completed_at),
                    # From the run's terminate request to the step's end.
                    "after_terminate": _seconds(run.terminate_requested_at, row.completed_at),
                }
                for row in run.steps.all()
            },
        }
    return report


def _seconds(start, end) -> float | None:
    return (end - start).total_seconds() if start and end else None


def report(timeout: float, ids: list[str]) -> dict:
    wait_terminal(ids, timeout)
    return steps(ids)


def main(argv):
    django.setup()
    command, args = argv[0], argv[1:]
    if command == "start":
        result = start(int(args[0]), json.loads(args[1]))
    elif command == "terminate":
        result = terminate(args[0])
    elif command == "report":
        result = report(float(args[0]), args[1:])
    else:
        result = steps(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
