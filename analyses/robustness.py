#!/usr/bin/env python
"""Robustness to spike-state perturbation, NSNN vs DSNN (paper Table 3 style, on the retina fit).

Every spiking layer's output spikes are flipped (1 -> 0 and 0 -> 1) independently with
probability beta during prediction (:func:`neurocode.analysis.perturb_spikes`); the
held-out rate CC of the perturbed model is reported per beta. The fitted models come from
``--runs DIR`` (a folder of run folders, e.g. ``results/retina_fit_comparison/runs``: every
``nsnn-*`` / ``dsnn-*`` folder with a ``checkpoint.pt`` is used), or are fitted here into
``OUT/runs`` (fold 0, seed 0; reused when run again). Fits and reused runs are on
``--data FILE`` / ``--recording NAME`` (default: the bundled retina-2 recording); a run
folder fitted on another recording is refused. Scores are on each run's own test stimuli.

Writes into ``OUT`` (default ``results/robustness``):

    robustness.csv/.json   model, beta, rate_cc mean/SD over runs, relative to beta = 0
                           (the JSON also names the recording: ``data`` file, ``recording``)
    robustness.png         rate CC vs beta, one line per model

Examples::

    python analyses/robustness.py --quick
    python analyses/robustness.py --runs results/retina_fit_comparison/runs
    python analyses/robustness.py --quick --data my_retina.h5 --recording flashes
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from _common import (  # noqa: E402
    add_common_arguments, check_common_arguments, describe, ensure_run, recording_key, run_key,
)

DEFAULT_BETAS = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
QUICK_BETAS = (0.0, 0.01, 0.05)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny run for CI: 3 betas, 2-epoch fits, 16 trials")
    p.add_argument("--runs", type=Path, default=None,
                   help="folder of finished run folders to reuse (nsnn-*/dsnn-* with checkpoint.pt)")
    p.add_argument("--betas", type=float, nargs="+", default=None, help=f"flip probabilities (default {DEFAULT_BETAS})")
    from neurocode.fitting import PRESETS

    p.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="preset of fits made here (default: quick; movie for a continuous recording)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of fits made here (default: the preset's)")
    p.add_argument("--trials", type=int, default=None, help="sampled trials per test image (default 64; quick 16)")
    p.add_argument("--repeats", type=int, default=1, help="independent perturbation draws per beta (averaged)")
    add_common_arguments(p, out="results/robustness",
                         data_help="recording file (neurocode HDF5 or .nwb) of the fits; --runs must have been "
                                   "fitted on it (default: the bundled retina-2 file)")
    a = p.parse_args(argv)
    if a.betas is None:
        a.betas = list(QUICK_BETAS if a.quick else DEFAULT_BETAS)
    if any(not 0.0 <= b <= 1.0 for b in a.betas):
        p.error("every beta must be in [0, 1]")
    check_common_arguments(p, a)
    if a.quick:
        a.epochs = a.epochs or 2
        a.trials = a.trials or 16
    a.trials = a.trials or 64
    return a


def find_runs(args, wanted: tuple[str, str | None]) -> list[Path]:
    """Run folders to perturb: from --runs, else fitted here (NSNN and DSNN, fold 0, seed 0).

    Every one must have been fitted on ``wanted`` (the --data/--recording recording).
    """

    if args.runs is not None:
        if not args.runs.is_dir():
            raise SystemExit(f"error: --runs {args.runs}: no such folder")
        found = sorted(d for d in args.runs.iterdir() if d.is_dir() and (d / "checkpoint.pt").exists()
                       and (d / "config.json").exists()
                       and json.loads((d / "config.json").read_text()).get("model") in ("nsnn", "dsnn"))
        if not found:
            raise SystemExit(f"error: --runs {args.runs}: no NSNN/DSNN run folder with a checkpoint.pt in it")
        for d in found:
            if run_key(d) != wanted:
                raise SystemExit(f"error: --runs: {d} was fitted on {describe(run_key(d))}, not on {describe(wanted)} "
                                 "(--data/--recording); pass the --data/--recording the runs were fitted on, or a "
                                 "--runs folder holding runs of that recording only")
        return found
    runs = []
    for model in ("nsnn", "dsnn"):
        run_dir = args.out / "runs" / f"{model}-fold0-seed0"
        o = {"eval_trials": args.trials}
        if args.epochs:
            o["epochs"] = args.epochs
        if args.threads:
            o["threads"] = args.threads
        ensure_run(run_dir, model, args, wanted, **o)
        runs.append(run_dir)
    return runs


def perturbed_scores(config, net, data, betas, trials: int, repeats: int) -> list[float]:
    """Held-out rate CC (mean over cells) of ``net`` under spike flips with each beta."""
    import torch

    from neurocode.analysis import perturb_spikes
    from neurocode.neurons import LIF, NoisyLIF
    from neurocode.analysis.scores import compute_metrics

    counts = data.counts.numpy()
    out = []
    for beta in betas:
        scores = []
        for rep in range(repeats):
            gen = torch.Generator().manual_seed(1000 * rep + 17)
            with perturb_spikes(net, beta, layer_types=(NoisyLIF, LIF), generator=gen):
                preds = predict_trials(config, net, data, trials, seed=config.seed + 10_000 + rep)
            m = compute_metrics(counts[data.test_idx], preds, counts[data.train_idx], spiking=True,
                                bin_size=config.bin_size)
            scores.append(m["rate_cc"] if m["rate_cc"] is not None else float("nan"))
        out.append(float(np.nanmean(scores)))
    return out


def predict_trials(config, net, data, trials: int, seed: int) -> np.ndarray:
    """K sampled trials per test image, ``[n_test, T, K, cells]`` float32 (spike counts, or
    the fraction of a cell's units firing for a population-mean readout). Both models run K trials
    (a DSNN's are identical without perturbation; the spike flips differ between trials)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    previous = net.generator
    net.generator = gen  # the NSNN's membrane noise (a DSNN has none)
    try:
        out = []
        with torch.no_grad():
            for i in data.test_idx:
                s = net(data.images[int(i) : int(i) + 1], n_trials=trials)  # [T, K, 1, N]
                out.append(s[:, :, 0].float())  # counts, or a population readout's fractions
        return torch.stack(out).numpy()
    finally:
        net.generator = previous


def _fmt(v):
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.4f}"
    return str(v)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from neurocode._io import write_json, write_text
    from neurocode.plotting import save_figure
    from neurocode.pipeline import load_run

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    wanted = recording_key(args.data, args.recording)
    per_model: dict[str, list[list[float]]] = {}
    for run_dir in find_runs(args, wanted):
        config, net, data = load_run(run_dir)
        print(f"[perturb] {run_dir.name}: betas {args.betas}", flush=True)
        per_model.setdefault(config.model, []).append(
            perturbed_scores(config, net, data, args.betas, args.trials, args.repeats))
    rows = []
    for model in ("nsnn", "dsnn"):
        if model not in per_model:
            continue
        s = np.asarray(per_model[model], dtype=float)  # [runs, betas]
        for j, beta in enumerate(args.betas):
            mean = float(np.nanmean(s[:, j]))
            sd = float(np.nanstd(s[:, j], ddof=1)) if s.shape[0] > 1 else 0.0
            ref = float(np.nanmean(s[:, 0])) if args.betas[0] == 0 else float("nan")
            rows.append({"model": model.upper(), "beta": float(beta), "n_runs": int(s.shape[0]),
                         "rate_cc_mean": mean, "rate_cc_sd": sd,
                         "relative_to_beta0": mean / ref if math.isfinite(ref) and ref != 0 else float("nan")})
    cols = ["model", "beta", "n_runs", "rate_cc_mean", "rate_cc_sd", "relative_to_beta0"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([_fmt(r[c]) for c in cols])
    write_text(args.out / "robustness.csv", buf.getvalue())
    write_json(args.out / "robustness.json", {"data": wanted[0], "recording": wanted[1], "betas": args.betas, "trials": args.trials, "repeats": args.repeats,
                                              "runs": {k: len(v) for k, v in per_model.items()}, "table": rows})

    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 3.4), layout="constrained")
    ax = fig.subplots()
    for model, color in (("NSNN", "C0"), ("DSNN", "C1")):
        rs = [r for r in rows if r["model"] == model]
        if rs:
            ax.errorbar([r["beta"] for r in rs], [r["rate_cc_mean"] for r in rs], yerr=[r["rate_cc_sd"] for r in rs],
                        marker="o", ms=4, capsize=3, color=color, label=model)
    ax.set_xscale("symlog", linthresh=min([b for b in args.betas if b > 0] or [1e-3]))
    ax.set_xlabel("spike-flip probability β (every spiking layer)")
    ax.set_ylabel("held-out rate CC")
    ax.legend(frameon=False)
    if wanted[1] is not None:
        ax.set_title(f"recording {wanted[1]!r} ({Path(wanted[0]).name})", fontsize="medium")
    save_figure(fig, args.out / "robustness.png", dpi=120)

    print(f"\nHeld-out rate CC under spike flips (mean ± SD over runs), {describe(wanted)}:")
    print(f"{'model':<6}{'beta':>8}{'runs':>6}  {'rate_cc':<16}{'vs beta=0':>10}")
    for r in rows:
        rel = "" if not math.isfinite(r["relative_to_beta0"]) else f"{r['relative_to_beta0']:.3f}"
        print(f"{r['model']:<6}{r['beta']:>8.4g}{r['n_runs']:>6}  {r['rate_cc_mean']:.3f} ± {r['rate_cc_sd']:.3f}   {rel:>8}")
    print(f"\nwritten to {args.out}/ (robustness.csv, robustness.json, robustness.png) "
          f"in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
