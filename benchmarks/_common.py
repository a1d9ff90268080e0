"""What the benchmark scripts share (they run as ``python benchmarks/NAME.py``, so this folder
is on ``sys.path``): a median timer and the process's resident-memory counters."""

from __future__ import annotations

import statistics
import time


def timed(fn, repeat: int) -> float:
    """Median seconds of ``repeat`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def rss_kb(field: str) -> int:
    """A memory counter of this process from /proc/self/status in kB (VmRSS, VmHWM, ...)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0
