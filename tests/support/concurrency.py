"""Racing threads and processes: release them together, collect what each raised or reported."""

import json
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from django.db import connections

from tests.runs.support.starting_gate import open_gate


def at_once(count: int, target: Callable[[int], object], *, timeout: float = 60) -> list[Exception]:
    """Call target(0) … target(count - 1) on `count` threads released together by a barrier, each closing
    its database connections when done. Returns what they raised (the test asserts it is empty)."""
    barrier = threading.Barrier(count)
    errors: list[Exception] = []

    def work(index):
        try:
            barrier.wait(timeout=timeout)
            target(index)
        except Exception as exc:  # handed to the test, in the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    return errors


def race_drivers(drivers: list[subprocess.Popen], start_file: Path, *, timeout: float = 120) -> list[dict]:
    """Open the starting gate to driver processes once all are ready and return each one's JSON report
    (its stdout); a driver still running when this ends (a failure) is killed."""
    reports = []
    try:
        open_gate(start_file, len(drivers))
        for driver in drivers:
            out, err = driver.communicate(timeout=timeout)
            assert driver.returncode == 0, err
            reports.append(json.loads(out))
    finally:
        for driver in drivers:
            if driver.poll() is None:
                driver.kill()
    return reports
