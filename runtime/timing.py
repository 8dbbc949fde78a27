"""One way to time a call, shared by the export's timings, ``ortpipe doctor`` and the benchmarks."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def time_calls(call: Callable[[], object], repeats: int, warmup: int = 5) -> list[float]:
    """Wall times of ``repeats`` runs of ``call()`` in seconds, after ``warmup`` untimed runs."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def median_ms(call: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``call()`` in milliseconds over ``repeats`` runs, after ``warmup`` runs."""
    return round(statistics.median(time_calls(call, repeats, warmup)) * 1000, 3)
