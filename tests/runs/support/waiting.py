"""Polling the database from a driver or a test: until runs are terminal, or a run reaches a status."""

import time


def wait_terminal(ids: list[str], timeout: float) -> bool:
    """Poll until every run of `ids` is terminal (True) or `timeout` seconds pass (False)."""
    from runs.choices import RUN_TERMINAL
    from runs.models import Run

    deadline = time.monotonic() + timeout
    while Run.objects.filter(pk__in=ids).exclude(status__in=RUN_TERMINAL).exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def wait_status(run_id: str, status: str, timeout: float) -> None:
    """Poll until the run has `status`; exits the driver with a message after `timeout` seconds."""
    from runs.models import Run

    deadline = time.monotonic() + timeout
    while Run.objects.get(pk=run_id).status != status:
        if time.monotonic() > deadline:
            raise SystemExit(f"{run_id} never became {status}")
        time.sleep(0.05)
