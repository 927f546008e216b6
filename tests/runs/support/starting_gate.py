"""A starting gate for race tests that drive several subprocesses: each driver announces it is ready (Django
set up, its rows loaded) and waits for the start file; the test opens the gate once every driver is ready,
so the racing part of each process really overlaps however slowly the processes started."""

import os
import time
from pathlib import Path

TIMEOUT = 60


def wait_at_gate(start_file: str) -> None:
    """Driver side: announce readiness, then wait (up to TIMEOUT s) for the start file."""
    Path(f"{start_file}.ready.{os.getpid()}").touch()
    deadline = time.monotonic() + TIMEOUT
    while not os.path.exists(start_file) and time.monotonic() < deadline:
        time.sleep(0.002)


def open_gate(start_file: Path, drivers: int) -> None:
    """Test side: wait until `drivers` drivers are ready (up to TIMEOUT s), then start them all."""
    deadline = time.monotonic() + TIMEOUT
    while len(list(start_file.parent.glob(f"{start_file.name}.ready.*"))) < drivers:
        assert time.monotonic() < deadline, "the drivers did not get ready in time"
        time.sleep(0.01)
    start_file.touch()
