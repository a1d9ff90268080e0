#!/usr/bin/env python
"""Fig. 4B: mean Fano factor vs prediction cosine similarity, on the recorded retina and fitted models.

For each stimulus (flashed image), the spike count of every cell (output unit) in the 0-300 ms
window is taken on each of the repeated trials: the Fano factor (Var/mean across trials)
averaged over cells measures the variability of the code, and the mean pairwise cosine
similarity between the trials' population count vectors ("prediction vectors") measures
how consistent the code is. The paper reports a significantly negative Pearson correlation
across stimuli in NSNNs; we test it on the recorded retina (30 trials) and on fitted models
(K sampled trials per image, all 60 images).

The models come from ``--run DIR`` (repeatable; any NSNN/DSNN run folder with a
``checkpoint.pt``), or an NSNN is fitted here into ``OUT/runs/nsnn-fold0-seed0`` (reused
when run again).

Writes into ``OUT`` (default ``results/coding_analysis``):

    coding.csv/.json           source, n_stimuli, trials, r, p, slope, mean FF, mean cosine
    coding_per_stimulus.csv    per image: mean FF and cosine similarity of every source
    coding_recorded.png, coding_<run>.png   the Fig. 4B scatters

Examples::

    python analyses/coding_analysis.py --quick
    python analyses/coding_analysis.py --run results/retina_fit_comparison/runs/nsnn-fold0-seed0
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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny run for CI: a 2-epoch NSNN fit, 10 trials")
    p.add_argument("--run", type=Path, action="append", default=None,
                   help="a fitted NSNN/DSNN run folder (repeatable); default: fit an NSNN here")
    p.add_argument("--trials", type=int, default=None, help="model trials per image (default 30, as recorded)")
    p.add_argument("--preset", choices=("quick", "paper"), default="quick", help="preset of the fit made here")
    p.add_argument("--epochs", type=int, default=None, help="epochs of the fit made here")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path("results/coding_analysis"), help="results folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    if a.quick:
        a.epochs = a.epochs or 2
        a.trials = a.trials or 10
    a.trials = a.trials or 30
    if a.trials < 2:
        p.error("--trials must be >= 2 (a Fano factor needs repeated trials)")
    return a


def model_runs(args) -> list[Path]:
    import neurocode

    if args.run:
        for r in args.run:
            if not (r / "checkpoint.pt").exists() or not (r / "config.json").exists():
                raise SystemExit(f"error: --run {r}: not a finished run folder (config.json and checkpoint.pt needed)")
            cfg = json.loads((r / "config.json").read_text())
            model = cfg.get("model")
            if model not in ("nsnn", "dsnn"):
                raise SystemExit(f"error: --run {r}: a {model} run; the coding analysis needs a spiking model")
            if (cfg.get("snn") or {}).get("readout") == "mean":
                raise SystemExit(f"error: --run {r}: its population-mean readout predicts rates, not trials; "
                                 "the coding analysis needs sampled spike trials")
        return list(args.run)
    run_dir = args.out / "runs" / "nsnn-fold0-seed0"
    if not (run_dir / "metrics.json").exists():
        o = {"eval_trials": 16}
        if args.epochs:
            o["epochs"] = args.epochs
        if args.threads:
            o["threads"] = args.threads
        resume = (run_dir / "config.json").exists()
        print(f"[{'resume' if resume else 'fit'}] {run_dir}", flush=True)
        neurocode.fit("nsnn", preset=args.preset, fold=0, seed=0, out=run_dir, resume=resume,
                      progress=not args.no_progress, **o)
    return [run_dir]


def model_counts(run_dir: Path, trials: int) -> tuple[str, np.ndarray]:
    """(model name, output-layer spike counts ``[60 images, K, cells]``) of a run's model."""

    from neurocode.fitting import predict
    from neurocode.pipeline import load_run

    config, net, data = load_run(run_dir)
    all_images = np.arange(data.images.shape[0])
    spikes = predict(config, net, data, all_images, n_trials=trials, seed=12345)  # [n, T, K, N]
    return config.model, spikes.sum(axis=1)


def _fmt(v):
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    return str(v)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from neurocode._io import atomic_path, write_json, write_text
    from neurocode.analysis import coding_analysis, recorded_coding_analysis
    from neurocode.data import load_recording
    from neurocode.plotting import plot_coding_scatter

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rec = load_recording()
    results = {"recorded": (recorded_coding_analysis(rec), rec.n_trials)}
    for run_dir in model_runs(args):
        model, counts = model_counts(run_dir, args.trials)
        name = f"{model.upper()} ({run_dir.name})"
        results[name] = (coding_analysis(counts), args.trials)

    rows, per_stim = [], {}
    for name, (res, k) in results.items():
        rows.append({"source": name, "n_stimuli": int(len(res.mean_fano)), "n_valid": res.n_valid, "trials": int(k),
                     "r": float(res.r), "p": float(res.p), "slope": float(res.slope),
                     "mean_fano": float(np.nanmean(res.mean_fano)) if np.isfinite(res.mean_fano).any() else float("nan"),
                     "mean_cosine": float(np.nanmean(res.cosine)) if np.isfinite(res.cosine).any() else float("nan")})
        per_stim[name] = res
    cols = ["source", "n_stimuli", "n_valid", "trials", "r", "p", "slope", "mean_fano", "mean_cosine"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([_fmt(r[c]) for c in cols])
    write_text(args.out / "coding.csv", buf.getvalue())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    names = list(per_stim)
    w.writerow(["stimulus"] + [f"{n} {q}" for n in names for q in ("mean_fano", "cosine")])
    for s in range(len(per_stim["recorded"].mean_fano)):
        w.writerow([s] + [_fmt(float(getattr(per_stim[n], q)[s])) for n in names for q in ("mean_fano", "cosine")])
    write_text(args.out / "coding_per_stimulus.csv", buf.getvalue())
    write_json(args.out / "coding.json", {"trials": args.trials, "table": rows,
                                          "per_stimulus": {n: {"mean_fano": r.mean_fano, "cosine": r.cosine}
                                                           for n, r in per_stim.items()}})
    figures = []
    for name, res in per_stim.items():
        fname = "coding_recorded.png" if name == "recorded" else \
            f"coding_{name.split(' (')[1].rstrip(')') if ' (' in name else name}.png"
        fig = plot_coding_scatter(res, title=f"{name}\nr = {res.r:.3f}, p = {res.p:.2g}")
        with atomic_path(args.out / fname) as tmp:
            fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        figures.append(fname)

    print("\nFig. 4B: Pearson r across images between mean Fano factor and prediction cosine similarity")
    print(f"{'source':<34}{'images':>7}{'trials':>7}{'r':>9}{'p':>11}{'mean FF':>9}{'mean cos':>9}")
    for r in rows:
        rr = "n/a" if not math.isfinite(r["r"]) else f"{r['r']:.3f}"
        pp = "n/a" if not math.isfinite(r["p"]) else f"{r['p']:.2g}"
        print(f"{r['source']:<34}{r['n_valid']:>7}{r['trials']:>7}{rr:>9}{pp:>11}{r['mean_fano']:>9.3f}"
              f"{r['mean_cosine']:>9.3f}")
    print(f"\nwritten to {args.out}/ (coding.csv, coding.json, coding_per_stimulus.csv, {', '.join(figures)}) "
          f"in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
