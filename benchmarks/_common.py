"""What the benchmark scripts share (they run as ``python benchmarks/NAME.py``, so this folder
is on ``sys.path``): median timers, the process's resident-memory counters, and where a run
ran (CPU model, the kernel build's instruction set, threads; ``--isa`` forces a build)."""

from __future__ import annotations

import os
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


ISA_CHOICES = ("avx512", "avx2", "scalar", "generic")


def add_isa_argument(parser) -> None:
    """``--isa NAME``: run on that kernel build (sets NEUROCODE_ISA, which the benchmark's
    subprocesses inherit); default: the best build this CPU runs, or NEUROCODE_ISA if set."""
    parser.add_argument("--isa", choices=ISA_CHOICES, default=None,
                        help="kernel build to run on (NEUROCODE_ISA; default: the best this CPU runs)")


def apply_isa(args) -> None:
    """Puts ``--isa`` into the environment before the kernel loads (it loads on first use)."""
    if getattr(args, "isa", None):
        os.environ["NEUROCODE_ISA"] = args.isa


def machine_line(threads: int | None = None) -> str:
    """``CPU <model>; kernel build <isa> (<why>); threads <n>``: where a benchmark ran."""
    import torch

    from neurocode.neurons import _kernels
    forced = os.environ.get("NEUROCODE_ISA", "").strip()
    try:
        isa = _kernels.isa()
    except ValueError as exc:
        isa = f"none ({exc})"
    why = (f"forced by NEUROCODE_ISA on a CPU that runs {', '.join(_kernels.supported_isas())}" if forced
           else "the best this CPU runs")
    if os.environ.get("NEUROCODE_NO_KERNEL", "") not in ("", "0"):
        why += "; kernel disabled (NEUROCODE_NO_KERNEL)"
    n = torch.get_num_threads() if threads is None else threads
    return f"CPU {_kernels.cpu_model()}; kernel build {isa} ({why}); threads {n}"
