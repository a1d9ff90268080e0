#!/usr/bin/env python
"""LN vs CNN vs dispersion CNN vs DSNN vs NSNN on the retina over folds x seeds (paper Fig. 5B, on our data).

A thin caller of :func:`neurocode.sweep.sweep` (the fits run on Ray Tune when it is installed: a
local Ray session on the free cores, or a cluster with ``--address``; else one after another in this
process, with the same results). Every (model, fold, seed) is one :func:`neurocode.fit` run in
``OUT/runs/{model}-fold{k}-seed{s}``. A run whose ``metrics.json`` exists is not redone; one
interrupted mid-fit (checkpoint, no metrics) is resumed from its last epoch. Running the command
again therefore continues where it stopped, and adding folds or seeds only fits the new ones.
Fits are on ``--data FILE`` / ``--recording NAME`` (default: the bundled retina-2 recording); a run
folder holding a fit on another recording is refused, and the baseline and ceiling come from the
runs' own metrics.

Writes into ``OUT`` (default ``results/retina_fit_comparison``), beside the sweep's own
``results.csv``/``results.json`` (a row per fit, all digits):

    runs.csv            one row per fit: rate_cc, count_cc, fano_corr, validation rate_cc and best
                        epoch, baseline, ceiling, the single-trial distribution scores and their
                        split-half floors, parameters, recording and data file
    summary.csv/.json   per model mean and SD over folds x seeds, plus the baseline
                        (stimulus-independent mean PSTH) and ceiling (split-half reliability) rows;
                        the ceiling row holds the recording's own split-half value of every score
                        that has one (rate CC, the MMD² floors, the noise-correlation pattern);
                        the JSON's ``protocol`` names the recording (``data``, ``recording``);
                        its ``best_per_split``: per score, the splits where each model is the
                        best of all models (e.g. the lowest MMD²)
    differences.csv     per pair of models and score: mean paired difference over splits, 95 %
                        t-interval and the splits the first model wins (``better``: which way)
    comparison.png      rate CC per model (bars: mean +- SD over runs, dots: runs) with the
                        baseline and ceiling as lines
    rate_cc_per_cell.png  per-cell rate CC (averaged over runs) per model, Fig. 5B style

Examples::

    python analyses/retina_fit_comparison.py --quick             # CI: 1 fold x 1 seed, 2 epochs
    python analyses/retina_fit_comparison.py                     # quick preset, 5 folds x 3 seeds
    python analyses/retina_fit_comparison.py --full              # paper preset, 5 folds x 3 seeds (GPU advised)
    python analyses/retina_fit_comparison.py --data my_retina.h5 --recording flashes --out results/my_retina

The fits run ``cores / --threads`` at a time (default ``--threads 1``); a last run without new
work only collects the table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from _common import add_common_arguments, check_common_arguments, recording_key, resolve_preset  # noqa: E402

#: cnn_cmp: the CNN with a learnt count dispersion per cell (Conway-Maxwell-Poisson output), the
#: strongest non-spiking anchor for the single-trial distribution scores.
MODELS = ("ln", "cnn", "cnn_cmp", "dsnn", "nsnn")
SCORES = ("rate_cc", "count_cc", "fano_corr")
#: The single-trial distribution scores (:mod:`neurocode.analysis.distribution`) and which way is better.
DISTRIBUTION_SCORES = {"mmd2": "lower", "mmd2_cell": "lower", "ff_abs_diff": "lower", "ff_corr": "higher",
                       "noise_corr_r": "higher", "peak_ratio": "closer to 1", "peak_max_ratio": "closer to 1"}
#: The recording's own split-half value of a score, shown in the ceiling row.
SPLIT_HALF = {"rate_cc": "ceiling_rate_cc", "mmd2": "mmd2_floor", "mmd2_cell": "mmd2_cell_floor",
              "noise_corr_r": "noise_corr_split_half_r"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="tiny run for CI: fold 0, seed 0, 2 epochs, 16 evaluation trials")
    p.add_argument("--full", action="store_true",
                   help="the full protocol: paper preset, folds 0-4, seeds 0-2 (hours on a CPU; resumable)")
    from neurocode.fitting import PRESETS

    p.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="fit preset (default: quick; movie for a continuous recording; --full: paper)")
    p.add_argument("--folds", type=int, nargs="+", default=None, help="held-out folds (default: 0 1 2 3 4)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: 0 1 2; --quick: 0)")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="models to compare")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epoch count")
    p.add_argument("--eval-trials", type=int, default=None, help="override the sampled trials per test image")
    add_common_arguments(p, out="results/retina_fit_comparison", ray=True)
    a = p.parse_args(argv)
    if a.quick and a.full:
        p.error("--quick and --full exclude each other")
    check_common_arguments(p, a)
    if a.preset is None and a.full:
        a.preset = "paper"  # else chosen by resolve_preset, from the recording's kind
    if a.folds is None:
        a.folds = [0] if a.quick else [0, 1, 2, 3, 4]
    if a.seeds is None:
        a.seeds = [0] if a.quick else [0, 1, 2]
    if a.quick:
        a.epochs = a.epochs or 2
        a.eval_trials = a.eval_trials or 16
    return a


def overrides(args) -> dict:
    o = {"device": args.device}
    if args.epochs:
        o["epochs"] = args.epochs
    if args.eval_trials:
        o["eval_trials"] = args.eval_trials
    return o


#: what this script writes beside the sweep's tables (a re-run with the same --out continues)
OWN_FILES = ("runs.csv", "differences.csv", "summary.json", "rate_cc_per_cell.png")


def run_sweep(args):
    """The fits of the comparison, through :func:`neurocode.sweep.sweep`; returns its result."""
    from neurocode.sweep import SweepError, sweep

    try:
        return sweep(models=[m for m in MODELS if m in args.models], folds=args.folds, seeds=args.seeds,
                     out=args.out, preset=args.preset, data=args.data, recording=args.recording,
                     threads=args.threads or 1, cpus=args.cpus, address=args.address,
                     use_ray=False if args.no_ray else None, own_files=OWN_FILES, **overrides(args))
    except (SweepError, FileNotFoundError, KeyError) as exc:
        raise SystemExit(f"error: {exc.args[0] if exc.args else exc}") from None


def _mean_sd(values) -> tuple[float, float]:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def summarise(runs: list[dict]) -> list[dict]:
    """Per-model mean/SD over runs, plus baseline and ceiling rows (over the distinct splits)."""
    rows = []
    for model in MODELS:
        ms = [m for m in runs if m["model"] == model]
        if not ms:
            continue
        row = {"model": model.upper(), "n_runs": len(ms)}
        for k in (*SCORES, *DISTRIBUTION_SCORES):
            row[f"{k}_mean"], row[f"{k}_sd"] = _mean_sd([m.get(k) for m in ms])
        row["parameter_count"] = int(ms[0]["parameter_count"])
        row["model_ff_mean"], _ = _mean_sd([m.get("model_ff") for m in ms])
        row["recorded_ff_mean"], _ = _mean_sd([m.get("recorded_ff") for m in ms])
        rows.append(row)
    # the baseline and ceiling depend on the split only (fold, seed), not on the model
    splits = {}
    for m in runs:
        splits[(m["fold"], m["seed"])] = m
    for name, keys in (("baseline", {"rate_cc": "baseline_rate_cc"}), ("ceiling", SPLIT_HALF)):
        row = {"model": name, "n_runs": len(splits)}
        for k in (*SCORES, *DISTRIBUTION_SCORES):
            row[f"{k}_mean"], row[f"{k}_sd"] = (_mean_sd([m.get(keys[k]) for m in splits.values()]) if k in keys
                                                else (float("nan"), float("nan")))
        row["parameter_count"] = 0
        row["model_ff_mean"] = row["recorded_ff_mean"] = float("nan")
        rows.append(row)
    return rows


#: Paired comparisons (first - second) over the splits both models were fitted on.
PAIRS = (("nsnn", "cnn"), ("nsnn", "cnn_cmp"), ("nsnn", "dsnn"), ("nsnn", "ln"), ("cnn", "ln"), ("cnn_cmp", "cnn"))


def _wins(a: np.ndarray, b: np.ndarray, better: str) -> np.ndarray:
    """Per split: whether the first model's score ``a`` beats the second's ``b``."""
    if better == "lower":
        return a < b
    if better == "closer to 1":
        return np.abs(a - 1) < np.abs(b - 1)
    return a > b


def paired_differences(runs: list[dict]) -> list[dict]:
    """Per pair of models and score: the per-split differences' mean, 95 % t-interval and wins.

    A split is a (fold, seed); the two models of a pair were fitted on the same training images
    and scored on the same test images, so their difference is paired. The difference is always
    first minus second; a win is a split where the first is better (``better``: higher, lower or
    closer to 1).
    """
    from scipy import stats

    by = {(m["model"], m["fold"], m["seed"]): m for m in runs}
    out = []
    for a, b in PAIRS:
        splits = sorted({(f, s) for (mod, f, s) in by if mod == a} & {(f, s) for (mod, f, s) in by if mod == b})
        for k, better in (("rate_cc", "higher"), ("count_cc", "higher"), *DISTRIBUTION_SCORES.items()):
            both = [(by[(a, f, s)][k], by[(b, f, s)][k]) for f, s in splits
                    if by[(a, f, s)].get(k) is not None and by[(b, f, s)].get(k) is not None]
            if not both:
                continue
            va, vb = np.array(both, dtype=float).T
            d = va - vb
            half = float(stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else math.nan
            out.append({"pair": f"{a.upper()} - {b.upper()}", "score": k, "better": better, "n_splits": int(d.size),
                        "mean": float(d.mean()), "ci_low": float(d.mean() - half), "ci_high": float(d.mean() + half),
                        "wins": int(_wins(va, vb, better).sum()), "ties": int((d == 0).sum())})
    return out


def best_per_split(runs: list[dict]) -> list[dict]:
    """Per score: in how many splits each model is the best of *all* models fitted on that split.

    Only splits where every model of the folder has the score count (``n_splits``); a tie for the
    best counts for each tied model. The issue's question "does the NSNN have the lowest
    distribution distance of all models, the dispersion CNN included" is the ``mmd2`` row.
    """
    by_split: dict[tuple, dict[str, dict]] = {}
    for m in runs:
        by_split.setdefault((m["fold"], m["seed"]), {})[m["model"]] = m
    models = sorted({m["model"] for m in runs})
    out = []
    distance = {"lower": lambda v: v, "higher": lambda v: -v, "closer to 1": lambda v: abs(v - 1)}
    for k, better in (("rate_cc", "higher"), ("count_cc", "higher"), *DISTRIBUTION_SCORES.items()):
        wins, n, key = dict.fromkeys(models, 0), 0, distance[better]
        for split in by_split.values():
            values = {mod: split[mod].get(k) for mod in models if mod in split}
            if len(values) < len(models) or any(v is None or not math.isfinite(v) for v in values.values()):
                continue
            n += 1
            best = min(key(v) for v in values.values())
            for mod, v in values.items():
                wins[mod] += key(v) == best
        if n:
            out.append({"score": k, "better": better, "n_splits": n, "best_splits": {m.upper(): w for m, w in wins.items()}})
    return out


def format_differences(rows: list[dict]) -> str:
    lines = [f"{'pair':<14}{'score':<16}{'mean':>8}  {'95% CI':<20}{'wins':>8}  better"]
    for r in rows:
        lines.append(f"{r['pair']:<14}{r['score']:<16}{r['mean']:>+8.4f}  [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
                     f"{r['wins']:>5} / {r['n_splits']}  {r['better']}")
    return "\n".join(lines)


COLUMNS = (["model", "n_runs"] + [f"{k}_{s}" for k in SCORES for s in ("mean", "sd")]
           + ["parameter_count", "model_ff_mean", "recorded_ff_mean"]
           + [f"{k}_{s}" for k in DISTRIBUTION_SCORES for s in ("mean", "sd")])
DIFFERENCE_COLUMNS = ["pair", "score", "better", "n_splits", "mean", "ci_low", "ci_high", "wins", "ties"]
RUN_COLUMNS = ["model", "fold", "seed", "epochs", "best_epoch", "val_rate_cc", "rate_cc", "count_cc", "fano_corr",
               "ln_rate_cc", "ln_count_cc", "baseline_rate_cc", "ceiling_rate_cc", "model_ff", "recorded_ff",
               "parameter_count", "recording", "data", *DISTRIBUTION_SCORES, "mmd2_floor", "mmd2_cell_floor",
               "ff_recorded", "ff_model", "ff_n_cells", "noise_corr_n_pairs", "noise_corr_null_sd",
               "noise_corr_split_half_r", "peak_n_bins"]


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.4f}"
    return str(v)


def format_table(rows: list[dict]) -> str:
    def ms(r, k):
        m, s = r.get(f"{k}_mean"), r.get(f"{k}_sd")
        return "n/a" if m is None or not math.isfinite(m) else f"{m:.3f} ± {s:.3f}"

    lines = [f"{'model':<9}{'runs':>5}  {'rate_cc':<16}{'count_cc':<16}{'fano_corr':<16}{'parameters':>11}"
             f"  {'FF model / recorded':>20}"]
    for r in rows:
        params = f"{r['parameter_count']:,}" if r["parameter_count"] else "-"
        ff = (f"{r['model_ff_mean']:.3f} / {r['recorded_ff_mean']:.3f}" if math.isfinite(r.get("model_ff_mean", math.nan))
              else "")
        lines.append(f"{r['model']:<9}{r['n_runs']:>5}  {ms(r, 'rate_cc'):<16}{ms(r, 'count_cc'):<16}"
                     f"{ms(r, 'fano_corr'):<16}{params:>11}  {ff:>20}")
    return "\n".join(lines)


def format_distribution_table(rows: list[dict]) -> str:
    """The single-trial distribution scores per model (mean ± SD over runs); the ceiling row is the
    recording's own split half (the MMD² floors, the noise-correlation pattern's reliability)."""

    def ms(r, k):
        m, s = r.get(f"{k}_mean"), r.get(f"{k}_sd")
        return "n/a" if m is None or not math.isfinite(m) else f"{m:.3f} ± {s:.3f}"

    keys = list(DISTRIBUTION_SCORES)
    lines = [f"{'model':<9}" + "".join(f"{k:<16}" for k in keys)]
    for r in rows:
        if r["model"] == "baseline":
            continue
        lines.append(f"{r['model']:<9}" + "".join(f"{ms(r, k):<16}" for k in keys))
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    from neurocode._io import write_json, write_text
    from neurocode.plotting import plot_cc_bars, save_figure
    from neurocode.sweep.report import to_csv

    out = args.out
    t0 = time.perf_counter()
    resolve_preset(args)
    wanted = recording_key(args.data, args.recording)
    result = run_sweep(args)  # the fits, results.csv/.json, comparison.png
    runs = [json.loads((out / r["run"] / "metrics.json").read_text()) for r in result.rows]
    rows = summarise(runs)
    rec_name = wanted[1] if wanted[1] is not None else runs[0].get("recording")
    run_rows = [{c: (m["model"].upper() if c == "model" else m.get(c)) for c in RUN_COLUMNS} for m in runs]
    for r in run_rows:  # every run was checked to be on ``wanted`` (metrics' "data" is null for the bundled file)
        r["recording"], r["data"] = rec_name, wanted[0]
    write_text(out / "runs.csv", to_csv(run_rows, RUN_COLUMNS, formatter=_fmt))
    write_text(out / "summary.csv", to_csv(rows, COLUMNS, formatter=_fmt))
    differences = paired_differences(runs)
    write_text(out / "differences.csv", to_csv(differences, DIFFERENCE_COLUMNS, formatter=_fmt))
    epochs = sorted({m["epochs"] for m in runs})
    protocol = {"data": wanted[0], "recording": rec_name, "preset": args.preset, "folds": args.folds,
                "seeds": args.seeds, "models": args.models, "epochs": epochs, "quick": args.quick,
                "engine": result.engine}
    best = best_per_split(runs)
    write_json(out / "summary.json", {"protocol": protocol, "summary": rows, "differences": differences,
                                      "best_per_split": best, "runs": run_rows})
    title = (f"{rec_name}, {args.preset} preset, {len(args.folds)} fold(s) x {len(args.seeds)} seed(s), "
             f"{'/'.join(map(str, epochs))} epochs")
    per_cell = {}
    for model in args.models:
        cc = [np.asarray(m["per_cell"]["rate_cc"], dtype=float) for m in runs if m["model"] == model]
        per_cell[model.upper()] = np.nanmean(np.stack(cc), axis=0) if cc else np.array([np.nan])
    ceiling = np.nanmean(np.stack([np.asarray(m["per_cell"]["ceiling_rate_cc"], float) for m in runs]), axis=0)
    save_figure(plot_cc_bars(per_cell, per_cell=False, ceiling=ceiling), out / "rate_cc_per_cell.png", dpi=120)
    print()
    print(f"Held-out scores, mean ± SD over folds x seeds ({title}; {wanted[0]}; fits: {result.engine}):")
    print(format_table(rows))
    print("\nSingle-trial distribution (MMD² on PSP traces, lower is better; FF over image/cell pairs with a "
          "recorded mean count >= 0.5; ceiling = the recording's split half):")
    print(format_distribution_table(rows))
    if differences:
        print("\nPaired differences per split (mean, 95 % t-interval, splits where the first is better):")
        print(format_differences(differences))
    if best:
        print("\nSplits where each model is the best of all models (ties count for each):")
        for r in best:
            print(f"  {r['score']:<16}({r['better']}, {r['n_splits']} splits)  "
                  + "  ".join(f"{m} {w}" for m, w in r["best_splits"].items()))
    print(f"\nwritten to {out}/ (summary.csv, summary.json, differences.csv, runs.csv, results.csv, results.json, comparison.png, "
          f"rate_cc_per_cell.png) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
