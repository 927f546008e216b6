"""What every benchmark module shares: the table row and small timing helpers."""

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Row:
    benchmark: str
    metric: str
    value: str
    target: str = ""
    notes: str = ""
    met: bool | None = None  # None: no target


def best_of(repeats: int, func: Callable[[], object]) -> tuple[float, object]:
    """Run func `repeats` times; returns (fastest wall seconds, last result)."""
    wall, _, result = timed(repeats, func)
    return wall, result


def timed(repeats: int, func: Callable[[], object]) -> tuple[float, float, object]:
    """Run func `repeats` times; returns (fastest wall seconds, fastest CPU seconds of this process,
    last result). CPU time is what a loaded machine (other processes on the same cores) distorts least."""
    wall = cpu = float("inf")
    result = None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = func()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu, result


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s"
