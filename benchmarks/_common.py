"""What the benchmark scripts share (they run as ``python benchmarks/NAME.py``, so this folder
is on ``sys.path``): median timers and the process's resident-memory counters."""

from __future__ import annotations

import statistics
import time


def timed(fn, repeat: int) -> float:
    """Median seconds of ``repeat`` calls of ``fn`` after one warm-up call."""
    return timed_interleaved([fn], repeat)[0]


def timed_interleaved(fns, repeat: int) -> list[float]:
    """Median seconds of each of ``fns``, called in turn ``repeat`` times after one warm-up round:
    on a shared machine whatever else runs slows them alike, so their ratio holds better than
    that of separate :func:`timed` runs."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def rss_kb(field: str) -> int:
    """A memory counter of this process from /proc/self/status in kB (VmRSS, VmHWM, ...)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0
