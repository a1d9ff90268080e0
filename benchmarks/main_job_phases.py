"""Where the main job's time goes: its phases as fractions of the same run's total.

Runs the main job (``neurocode.fit(MODEL, preset=PRESET)``, fold 0, seed 0, into a temporary
folder) in this process with each phase's function wrapped by a timer, and prints per phase its
exclusive seconds (a phase called inside another, e.g. the LN reference inside training's
start, is counted once, in itself) and its fraction of the whole fit:

    data          loading the recording and preparing it (binning, images, RFs, the split)
    LN reference  the closed-form LN fit (start of the spiking models, the comparison column)
    training      the training loop (calibration, steps, validation), without the LN reference
    prediction    the held-out images' sampled trials and rates (validation inside training counts
                  as training)
    scoring       the held-out scores and the distribution scores
    figures       the run's figures
    other         everything else (start-up of the fit call, run folder, checkpoints' writes)

Per-layer figures of one training step are ``benchmarks/fit_step.py``'s. Nothing is asserted;
the fractions are of one run (``--repeat N``: the median fraction over N runs).

    python benchmarks/main_job_phases.py [--model nsnn] [--preset quick] [--threads 2] [--repeat 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _common import add_isa_argument, apply_isa, machine_line

#: phase -> (module, function) whose calls are that phase's time.
PHASES = {
    "data": [("neurocode.data", "load_recording"), ("neurocode.fitting", "prepare_data")],
    "LN reference": [("neurocode.fitting", "fit_ln_reference")],
    "training": [("neurocode.fitting", "train")],
    "prediction": [("neurocode.fitting", "predict")],
    "scoring": [("neurocode.pipeline", "_evaluate")],
    "figures": [("neurocode.plotting", "save_figure")],
}
#: Phases whose functions also run inside another phase and count there (validation predictions
#: inside training, the LN reference's own training and predictions).
OUTERMOST_ONLY = {"prediction", "training"}


class PhaseTimer:
    """Wraps functions so that each call's time, less the time of wrapped calls inside it, adds to its phase."""

    def __init__(self):
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self._stack: list[list[float]] = []  # per open call: [start, time of nested wrapped calls]

    def wrap(self, phase: str, fn):
        def timed(*args, **kwargs):
            if phase in OUTERMOST_ONLY and self._stack:
                return fn(*args, **kwargs)
            self._stack.append([time.perf_counter(), 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                start, nested = self._stack.pop()
                total = time.perf_counter() - start
                self.seconds[phase] += total - nested
                if self._stack:
                    self._stack[-1][1] += total

        return timed


def run_once(model: str, preset: str, threads: int) -> tuple[float, dict[str, float], float]:
    import importlib

    import neurocode

    timer = PhaseTimer()
    originals = []
    for phase, targets in PHASES.items():
        for module_name, name in targets:
            module = importlib.import_module(module_name)
            originals.append((module, name, getattr(module, name)))
            setattr(module, name, timer.wrap(phase, getattr(module, name)))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            result = neurocode.fit(model, preset=preset, out=Path(tmp) / "run", threads=threads, progress=False)
            total = time.perf_counter() - t0
    finally:
        for module, name, fn in originals:
            setattr(module, name, fn)
    return total, timer.seconds, float(result.metrics["rate_cc"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="nsnn")
    p.add_argument("--preset", default="quick")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1)
    add_isa_argument(p)
    a = p.parse_args(argv)
    apply_isa(a)
    import torch

    torch.set_num_threads(a.threads)
    runs = [run_once(a.model, a.preset, a.threads) for _ in range(a.repeat)]
    print(f"{a.model}, {a.preset} preset, fold 0, seed 0; {machine_line(a.threads)}")
    totals = [t for t, _, _ in runs]
    print(f"whole fit: {statistics.median(totals):.1f} s (median of {len(runs)}), rate CC {runs[0][2]:.4f}")
    print(f"{'phase':<14}{'seconds':>9}{'fraction':>10}")
    for phase in (*PHASES, "other"):
        if phase == "other":
            values = [(t - sum(s.values()), t) for t, s, _ in runs]
        else:
            values = [(s[phase], t) for t, s, _ in runs]
        seconds = statistics.median(v for v, _ in values)
        fraction = statistics.median(v / t for v, t in values)
        print(f"{phase:<14}{seconds:>9.1f}{fraction:>10.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
