"""A django-q2 task that does (almost) nothing, for the raw broker throughput: it appends the time it ran
to a file, so the benchmark can tell when every task ran, across worker processes, and at what rate."""

import os
import time


def noop(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{time.time():.6f}\n".encode())
    finally:
        os.close(fd)
