#!/usr/bin/env python
"""Held-out rate CC of the NSNN vs its membrane-noise level sigma (paper Fig. 9B, on the retina fit).

A thin caller of :func:`neurocode.sweep.sweep`: a grid over ``sigma`` (the membrane-noise SD of
the fit's architecture: ``rf.noise_sigma`` in the quick preset, ``snn.noise_sigma`` in the paper's) x seeds, run on Ray Tune when it is
installed (``--address`` for a cluster) or one fit after another. One NSNN is fitted per
(sigma, seed) with Gaussian membrane noise N(0, sigma^2) and noise-driven learning; runs go to
``OUT/runs/nsnn-sigma{sigma}-fold{k}-seed{s}`` and finished ones are not redone. Fits are on
``--data FILE`` / ``--recording NAME`` (default: the bundled retina-2 recording); a run folder
holding a fit on another recording is refused. The recorded Fano factor, baseline and ceiling
come from the runs' own metrics (their recording and test stimuli).

Writes into ``OUT`` (default ``results/noise_level_sweep``), beside the sweep's ``results.csv``/``.json``
(a row per fit) and ``comparison.png``:

    noise_level_sweep.csv/.json   sigma, rate_cc / count_cc / fano_corr mean and SD over seeds,
                                  model and recorded Fano factor, final training loss, the
                                  recording (``recording`` name, ``data`` file)
    noise_level_sweep.png         held-out rate CC vs sigma (baseline and ceiling as lines)

Examples::

    python analyses/noise_level_sweep.py --quick                      # sigma 0.1 and 0.4, 2 epochs
    python analyses/noise_level_sweep.py --sigmas 0.05 0.1 0.2 0.4 --seeds 0 1 2
    python analyses/noise_level_sweep.py --quick --data my_retina.h5 --recording flashes
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import time

import numpy as np

from _common import add_common_arguments, check_common_arguments, recording_key, resolve_preset  # noqa: E402

DEFAULT_SIGMAS = (0.05, 0.1, 0.2, 0.4)
QUICK_SIGMAS = (0.1, 0.4)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny run for CI: 2 sigmas, 2 epochs, 16 trials")
    p.add_argument("--sigmas", type=float, nargs="+", default=None, help=f"noise SDs (default {DEFAULT_SIGMAS})")
    from neurocode.fitting import PRESETS

    p.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="fit preset (default: quick; movie for a continuous recording)")
    p.add_argument("--fold", type=int, default=0, help="held-out fold")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (mean and SD over them)")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--eval-trials", type=int, default=None, help="sampled trials per test image")
    add_common_arguments(p, out="results/noise_level_sweep", ray=True)
    a = p.parse_args(argv)
    if a.sigmas is None:
        a.sigmas = list(QUICK_SIGMAS if a.quick else DEFAULT_SIGMAS)
    if any(not (s > 0 and math.isfinite(s)) for s in a.sigmas):
        p.error("every sigma must be a positive number")
    check_common_arguments(p, a)
    if a.quick:
        a.epochs = a.epochs or 2
        a.eval_trials = a.eval_trials or 16
    return a


def run_sweep(args):
    """The NSNN fits over sigma x seeds, through :func:`neurocode.sweep.sweep`; returns its result."""
    from neurocode.sweep import SweepError, sweep

    o = {"device": args.device}
    for key, val in (("epochs", args.epochs), ("eval_trials", args.eval_trials)):
        if val:
            o[key] = val
    try:
        # a folder holding a run with other settings, or on another recording, is refused (SweepError)
        return sweep(models=["nsnn"], folds=[args.fold], seeds=args.seeds,
                     grid={"sigma": [float(s) for s in args.sigmas]}, out=args.out, preset=args.preset,
                     data=args.data, recording=args.recording,
                     threads=args.threads or 1, cpus=args.cpus, address=args.address,
                     use_ray=False if args.no_ray else None, **o)
    except (SweepError, FileNotFoundError, KeyError) as exc:
        raise SystemExit(f"error: {exc.args[0] if exc.args else exc}") from None


def _mean_sd(vals):
    v = np.asarray([x for x in vals if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else 0.0)


def _fmt(v):
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.4f}"
    return str(v)


COLUMNS = ["sigma", "n_runs", "rate_cc_mean", "rate_cc_sd", "count_cc_mean", "count_cc_sd", "fano_corr_mean",
           "fano_corr_sd", "model_ff", "recorded_ff", "final_loss", "baseline_rate_cc", "ceiling_rate_cc",
           "recording", "data"]


def main(argv=None) -> int:
    args = parse_args(argv)
    from neurocode._io import write_json, write_text
    from neurocode.plotting import save_figure

    t0 = time.perf_counter()
    resolve_preset(args)
    wanted = recording_key(args.data, args.recording)
    result = run_sweep(args)
    metrics = {(r["sigma"], r["seed"]): json.loads((args.out / r["run"] / "metrics.json").read_text())
               for r in result.rows}
    rows = []
    for sigma in args.sigmas:
        ms = [metrics[(float(sigma), seed)] for seed in args.seeds]
        row = {"sigma": float(sigma), "n_runs": len(ms)}
        for k in ("rate_cc", "count_cc", "fano_corr"):
            row[f"{k}_mean"], row[f"{k}_sd"] = _mean_sd([m.get(k) for m in ms])
        for k in ("model_ff", "recorded_ff", "final_loss", "baseline_rate_cc", "ceiling_rate_cc"):
            row[k] = _mean_sd([m.get(k) for m in ms])[0]
        row["recording"] = wanted[1] if wanted[1] is not None else ms[0].get("recording")
        row["data"] = wanted[0]
        rows.append(row)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_fmt(r[c]) for c in COLUMNS])
    write_text(args.out / "noise_level_sweep.csv", buf.getvalue())
    write_json(args.out / "noise_level_sweep.json",
               {"data": rows[0]["data"], "recording": rows[0]["recording"], "preset": args.preset,
                "fold": args.fold, "seeds": args.seeds, "epochs": args.epochs,
                "table": rows})

    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 3.4), layout="constrained")
    ax = fig.subplots()
    x = [r["sigma"] for r in rows]
    ax.errorbar(x, [r["rate_cc_mean"] for r in rows], yerr=[r["rate_cc_sd"] for r in rows], marker="o", ms=4,
                capsize=3, color="C0", label="NSNN")
    ax.axhline(rows[0]["baseline_rate_cc"], ls=":", color="0.4", label="baseline (mean PSTH)")
    ax.axhline(rows[0]["ceiling_rate_cc"], ls="--", color="r", label="ceiling (split-half)")
    ax.set_xscale("log")
    ax.set_xticks(x, [f"{s:g}" for s in x])
    ax.minorticks_off()
    ax.set_xlabel("membrane-noise SD σ")
    ax.set_ylabel("held-out rate CC")
    ax.legend(frameon=False, fontsize="small")
    ax.set_title(f"NSNN on {rows[0]['recording']}, {args.preset} preset, fold {args.fold}, {len(args.seeds)} seed(s)",
                 fontsize="medium")
    save_figure(fig, args.out / "noise_level_sweep.png", dpi=120)

    print(f"\nHeld-out scores of the NSNN vs membrane-noise SD (mean ± SD over seeds), recording "
          f"{rows[0]['recording']!r} ({rows[0]['data']}):")
    print(f"{'sigma':>6}{'runs':>6}  {'rate_cc':<16}{'count_cc':<16}{'fano_corr':<16}{'model FF':>9}{'final loss':>11}")
    for r in rows:
        def ms(k):
            m, s = r[f"{k}_mean"], r[f"{k}_sd"]
            return "n/a" if not math.isfinite(m) else f"{m:.3f} ± {s:.3f}"
        print(f"{r['sigma']:>6g}{r['n_runs']:>6}  {ms('rate_cc'):<16}{ms('count_cc'):<16}{ms('fano_corr'):<16}"
              f"{r['model_ff']:>9.3f}{r['final_loss']:>11.4g}")
    print(f"(recorded FF {rows[0]['recorded_ff']:.3f}; baseline {rows[0]['baseline_rate_cc']:.3f}, "
          f"ceiling {rows[0]['ceiling_rate_cc']:.3f})")
    print(f"\nwritten to {args.out}/ (noise_level_sweep.csv, .json, .png; results.csv, results.json, comparison.png) "
          f"in {time.perf_counter() - t0:.0f} s (fits: {result.engine})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
