"""The load test's short version (`make load` runs 50 clients for 60 s on each backend): 10 clients for 10 s
of triggers, run reads, run lists and SSE streams against `manage.py serve` (bench/load.py), without one
error: no 5xx, no unexpected status, never "database is locked" (in an answer or the server's log)."""

import pytest

from tests.reliability.support import run_program

pytestmark = [pytest.mark.soak, pytest.mark.timeout(300)]


def test_ten_clients_for_ten_seconds_get_no_error():
    report = run_program("bench/load.py", "--clients", "10", "--seconds", "10", timeout=280)
    assert report["errors"] == {}, report
    assert report["server_log_locked"] == 0 and report["server_log_tracebacks"] == 0, report
    assert all(figures["requests"] > 0 for figures in report["kinds"].values()), report
    assert report["stream_events"] > 0 and report["exit_status"] == 0
