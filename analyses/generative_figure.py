#!/usr/bin/env python
"""The NSNN as a generative model: recorded vs model rasters and PSTHs, per-cell Fano factors, distances.

Reads a comparison folder (``analyses/retina_fit_comparison.py``'s ``OUT``, whose run folders
``OUT/runs/{model}-fold{k}-seed{s}/`` hold ``predictions.h5`` and ``metrics.json``) and draws,
for one split (``--fold``, ``--seed``) and the models present (any of NSNN, DSNN, CNN, the
dispersion CNN ``cnn_cmp``, LN; a model without a finished run of the split is left out):

1. rasters and PSTHs of the same cells on the same test images: the recorded trials (all of
   them) above each model's single trials, each model sampled from its own likelihood exactly
   as its distribution scores were (:func:`neurocode.analysis.distribution.model_single_trials`
   with the run's ``distribution_sampling``, ``eval_trials`` and seed: an NSNN's sampled spikes,
   Poisson draws from a CNN's or LN's rates, ...); a raster shows as many model trials as were
   recorded, the PSTH (spikes/s) is the mean over all of them. The cells: the two with the
   highest recorded PSTH peak on the split's test images, and the one with the median peak (a
   typical cell); the images: the two test images with the largest recorded count summed over
   those cells, each cell's counts relative to its own largest (``--cells``, ``--images``
   choose others);
2. the per-cell Fano factor of the whole-window count (0.3 s on the bundled retina), model vs
   recorded, one panel per model: :func:`neurocode.analysis.distribution.fano_scores` on the
   recorded and sampled counts (the (image, cell) pairs with a recorded mean count >= 0.5,
   averaged per cell), its |ΔFF| and r in the panel's title;
3. the distribution-distance table over *all* the folder's splits: per model mean ± SD of
   rate CC, count CC, MMD² (joint and per cell), |ΔFF|, FF r, noise-correlation r and the PSTH
   peak ratios, read from the runs' ``metrics.json`` and summarised by
   ``retina_fit_comparison.summarise`` (the comparison's own table code), with the
   recording's split-half row (the MMD² floors, the rate-CC ceiling, the noise-correlation
   pattern's reliability).

The runs must all be on one recording (``--data``/``--recording``, if given, must be it). Nothing
is fitted here: make the folder first (``retina_fit_comparison.py``; ``--quick`` for a minute's
worth).

Writes into ``--fig-dir`` (default ``OUT/figures``):

    generative_rasters_fold{k}_seed{s}.png   (1)
    generative_ff_fold{k}_seed{s}.png         (2)
    generative_ff_fold{k}_seed{s}.csv         the Fano factors drawn in (2): model, cell, recorded, model
    generative_fold{k}_seed{s}.json           the split, cells, images and the rules that chose them,
                                              each model's sampling, the Fano summaries, the table rows
    distribution_distances.md                 (3), also printed

Examples::

    python analyses/retina_fit_comparison.py --quick --out /tmp/cmp    # a minute's worth of 2-epoch fits
    python analyses/generative_figure.py --out /tmp/cmp
    python analyses/generative_figure.py --out results/retina_fit_comparison --fold 1 --seed 0
    python analyses/generative_figure.py --out results/retina_fit_comparison --cells 12 30 --images 4 27
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from _common import add_common_arguments, check_common_arguments, describe, recording_key, run_key  # noqa: E402
from retina_fit_comparison import summarise  # noqa: E402

#: The models drawn, in this order (the dispersion CNN ``cnn_cmp`` where its runs exist).
MODELS = ("nsnn", "dsnn", "cnn", "cnn_cmp", "ln")
LABELS = {"nsnn": "NSNN", "dsnn": "DSNN", "cnn": "CNN (Poisson)", "cnn_cmp": "CNN (CMP dispersion)",
          "ln": "LN (Poisson)"}
COLORS = {"nsnn": "tab:red", "dsnn": "tab:orange", "cnn": "tab:blue", "cnn_cmp": "tab:green", "ln": "tab:gray"}
RUN_NAME = re.compile(r"^(?P<model>[a-z_]+)-fold(?P<fold>\d+)-seed(?P<seed>\d+)$")
#: The table's columns: score key, header, decimals.
TABLE = (("rate_cc", "rate CC", 3), ("count_cc", "count CC", 3), ("mmd2", "MMD²", 4),
         ("mmd2_cell", "MMD² per cell", 4), ("ff_abs_diff", "\\|ΔFF\\|", 3), ("ff_corr", "FF r", 3),
         ("noise_corr_r", "noise-corr. r", 3), ("peak_ratio", "peak ratio", 3),
         ("peak_max_ratio", "peak max ratio", 3))
N_TOP_CELLS, N_IMAGES = 2, 2


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fold", type=int, default=0, help="the split's held-out fold (default 0)")
    p.add_argument("--seed", type=int, default=0, help="the split's seed (default 0)")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                   help="models to draw and tabulate, where the folder has their runs (default: all)")
    p.add_argument("--cells", type=int, nargs="+", default=None,
                   help="cells to draw (default: the 2 with the highest recorded peak and a typical one)")
    p.add_argument("--images", type=int, nargs="+", default=None,
                   help="test images (stimulus indices of the recording) to draw (default: the 2 where the "
                        "drawn cells respond most)")
    p.add_argument("--fig-dir", type=Path, default=None, help="where the figures and tables go (default OUT/figures)")
    add_common_arguments(p, out="results/retina_fit_comparison",
                         data_help="recording file (neurocode HDF5 or .nwb) the runs must have been fitted on "
                                   "(default: the runs' own recording)")
    a = p.parse_args(argv)
    check_common_arguments(p, a)
    if a.fig_dir is None:
        a.fig_dir = a.out / "figures"
    return a


# --------------------------------------------------------------------------- the runs
def find_runs(out: Path, models) -> dict[tuple[str, int, int], Path]:
    """The finished runs (``metrics.json``) of ``models`` in ``out/runs``, by (model, fold, seed)."""
    runs_dir = out / "runs"
    if not runs_dir.is_dir():
        raise SystemExit(f"error: --out {out}: no runs/ folder in it (expected the output folder of "
                         "analyses/retina_fit_comparison.py)")
    runs, unfinished = {}, []
    for d in sorted(runs_dir.iterdir()):
        m = RUN_NAME.match(d.name)
        if not d.is_dir() or m is None or m["model"] not in models:
            continue
        if (d / "metrics.json").is_file():
            runs[(m["model"], int(m["fold"]), int(m["seed"]))] = d
        else:
            unfinished.append(d.name)
    if unfinished:
        print(f"[note] left out, not finished: {', '.join(unfinished)}", flush=True)
    if not runs:
        raise SystemExit(f"error: --out {out}: no finished run of {', '.join(models)} in {runs_dir} "
                         "(folders {model}-fold{k}-seed{s} with a metrics.json)")
    return runs


def check_recording(runs: dict, args) -> tuple[str, str | None]:
    """The one recording every run was fitted on (and --data/--recording, if given)."""
    keys = {d: run_key(d) for d in runs.values()}
    first, key = next(iter(keys.items()))
    for d, k in keys.items():
        if k != key:
            raise SystemExit(f"error: {first} was fitted on {describe(key)}, but {d} on {describe(k)}; "
                             "a figure and table come from one recording: use a comparison folder per recording")
    if (args.data is not None or args.recording is not None) and key != recording_key(args.data, args.recording):
        raise SystemExit(f"error: the runs in {args.out} were fitted on {describe(key)}, not on "
                         f"{describe(recording_key(args.data, args.recording))} (--data/--recording); drop "
                         "--data/--recording (the runs' own recording is used)")
    return key


@dataclass(frozen=True)
class SplitTrials:
    """One split's recorded and model single trials on its test images.

    Attributes
    ----------
    recorded : ``[n_test, T, R, cells]`` recorded counts per bin
    trials : model -> ``[n_test, T, K, cells]`` its single trials (``model_single_trials``)
    metrics : model -> its ``metrics.json``
    test_stimuli : ``[n_test]`` the test images' stimulus indices in the recording
    bin_size, t_start : seconds
    """

    recorded: np.ndarray
    trials: dict
    metrics: dict
    test_stimuli: np.ndarray
    bin_size: float
    t_start: float


def load_split(run_dirs: dict[str, Path]) -> SplitTrials:
    """The recorded test counts and each model's single trials, sampled as its scores were."""
    from neurocode.analysis.distribution import model_single_trials
    from neurocode.fitting import FitConfig, prepare_data
    from neurocode.pipeline import check_provenance
    from neurocode.runs import RunFolder

    recorded = test = None
    trials, metrics = {}, {}
    for model, d in run_dirs.items():
        folder = RunFolder(d)
        try:
            config = folder.read_config(FitConfig)
            check_provenance(folder, config)
            m = folder.read_metrics()
            data = prepare_data(config)
            preds, _, stimuli = folder.read_predictions(config, data.n_steps)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"error: {exc}") from None
        sampling = m.get("distribution_sampling")
        if sampling is None:
            raise SystemExit(f"error: {folder.metrics}: no single-trial distribution scores (scored by an older "
                             f"neurocode); score it again with `neurocode evaluate {d}`")
        counts = data.test_counts()
        if recorded is None:
            recorded, test, dt, t0 = counts, stimuli, float(config.bin_size), float(data.recording.window[0])
        elif not np.array_equal(stimuli, test) or counts.shape != recorded.shape or float(config.bin_size) != dt:
            raise SystemExit(f"error: {d} has other test images or bins than {next(iter(run_dirs.values()))} "
                             f"({stimuli.tolist()} vs {test.tolist()}): not runs of one split")
        trials[model] = model_single_trials(preds, sampling, n_trials=config.eval_trials, seed=config.seed)
        metrics[model] = m
    return SplitTrials(recorded, trials, metrics, np.asarray(test), dt, t0)


# --------------------------------------------------------------------------- what is drawn
def choose_cells(recorded: np.ndarray, cells=None) -> tuple[list[int], str]:
    """The cells to draw and the rule that chose them.

    Default: the :data:`N_TOP_CELLS` cells with the highest recorded PSTH peak (trial mean per
    bin, maximum over test images and bins), then the remaining cell whose peak is nearest the
    median peak over all cells (a typical cell).
    """
    n_cells = recorded.shape[3]
    if cells is not None:
        bad = [c for c in cells if not 0 <= c < n_cells]
        if bad:
            raise SystemExit(f"error: --cells {bad}: the recording has cells 0 to {n_cells - 1}")
        return [int(c) for c in cells], "chosen with --cells"
    peak = recorded.mean(axis=2).max(axis=(0, 1))  # [cells], spikes per bin
    top = [int(c) for c in np.argsort(-peak, kind="stable")[:N_TOP_CELLS]]
    rest = np.setdiff1d(np.arange(n_cells), top)
    typical = int(rest[np.argmin(np.abs(peak[rest] - np.median(peak)))]) if rest.size else None
    rule = (f"the {len(top)} cells with the highest recorded PSTH peak on the test images and the cell with the "
            "peak nearest the median over cells (typical)")
    return top + ([typical] if typical is not None else []), rule


def choose_images(recorded: np.ndarray, test_stimuli: np.ndarray, cells, images=None) -> tuple[list[int], str]:
    """Rows of ``recorded`` to draw and the rule: default the :data:`N_IMAGES` test images with
    the largest recorded mean count summed over ``cells``, each cell's counts divided by its
    largest over the test images (so that every drawn cell weighs alike)."""
    if images is not None:
        rows = {int(s): i for i, s in enumerate(test_stimuli)}
        bad = [s for s in images if s not in rows]
        if bad:
            raise SystemExit(f"error: --images {bad}: not test images of this split (they are "
                             f"{sorted(rows)})")
        return [rows[s] for s in images], "chosen with --images"
    count = recorded[..., cells].sum(axis=1).mean(axis=1)  # [n_test, drawn cells], spikes per window
    relative = count / np.maximum(count.max(axis=0, keepdims=True), 1e-12)
    rows = np.argsort(-relative.sum(axis=1), kind="stable")[:N_IMAGES]
    return [int(r) for r in rows], (f"the {len(rows)} test images with the largest recorded count of the drawn "
                                     "cells (each relative to its largest)")


def fano_per_model(split: SplitTrials) -> dict[str, dict]:
    """:func:`neurocode.analysis.distribution.fano_scores` of every model on the whole-window
    counts, as :func:`~neurocode.analysis.distribution.distribution_scores` calls it."""
    from neurocode.analysis.distribution import fano_scores

    out = {}
    for model, trials in split.trials.items():
        rule = split.metrics[model].get("ff_min_mean_count", 0.5)
        out[model] = fano_scores(split.recorded.sum(axis=1), trials.sum(axis=1), rule)
        stored = split.metrics[model].get("per_cell", {}).get("model_ff_active")
        if stored is not None and not np.allclose(np.asarray(stored, dtype=float), out[model]["model_ff_active"],
                                                  equal_nan=True):
            print(f"[warning] {model}: the per-cell Fano factors of its metrics.json differ from those of its "
                  "predictions.h5 (scored by another neurocode version?); drawing the latter", flush=True)
    return out


# --------------------------------------------------------------------------- the table
def distance_rows(runs: dict) -> list[dict]:
    """Per model mean/SD over the folder's splits, and the recording's split-half row: the
    comparison's own summary (``retina_fit_comparison.summarise``) of the runs' metrics."""
    metrics = [json.loads((d / "metrics.json").read_text()) for d in runs.values()]
    return [r for r in summarise(metrics) if r["model"] != "baseline"]


def format_markdown(rows: list[dict], title: str) -> str:
    """The table as markdown: ``mean ± SD`` per model (the mean alone over one split); the recording
    row holds the split-half values' means."""
    labels = {m.upper(): LABELS[m] for m in MODELS}

    def cell(r, key, digits):
        m, s = r.get(f"{key}_mean"), r.get(f"{key}_sd")
        if m is None or not math.isfinite(m):
            return "–"
        one = r["model"] == "ceiling" or r["n_runs"] == 1
        return f"{m:.{digits}f}" if one else f"{m:.{digits}f} ± {s:.{digits}f}"

    head = ["model", "splits", *(h for _, h, _ in TABLE)]
    lines = [title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        name = "recording, split half" if r["model"] == "ceiling" else labels.get(r["model"], r["model"])
        lines.append("| " + " | ".join([name, str(r["n_runs"]), *(cell(r, k, d) for k, _, d in TABLE)]) + " |")
    lines += ["", "Mean ± SD over splits (fold × seed) of each run's held-out scores. MMD²: Gaussian kernel on PSP "
              "traces, model trials vs recorded trials per test image, lower is better. |ΔFF|, FF r: per-cell Fano "
              "factors of the window count over (image, cell) pairs with a recorded mean count ≥ 0.5. Peak ratios: "
              "model/recorded PSTH in the recorded bins above 0.5 spikes/bin, and of the maxima. The recording row: "
              "its odd vs even trials (mean over splits), the MMD² floors (expectation 0), the rate-CC ceiling and "
              "the noise-correlation pattern's split-half r."]
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.4g}"


def ff_csv(scores: dict[str, dict]) -> str:
    """The drawn Fano factors, every digit (empty: the cell has no counted pair)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "cell", "recorded_ff", "model_ff"])
    for model, s in scores.items():
        for c, (x, y) in enumerate(zip(s["recorded_ff_active"], s["model_ff_active"])):
            w.writerow([model, c, *("" if not math.isfinite(v) else repr(float(v)) for v in (x, y))])
    return buf.getvalue()


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from neurocode._io import write_json, write_text
    from neurocode.plotting import plot_ff_panels, plot_trial_comparison, save_figure

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    runs = find_runs(args.out, args.models)
    key = check_recording(runs, args)
    split_runs = {m: runs[(m, args.fold, args.seed)] for m in MODELS if (m, args.fold, args.seed) in runs}
    if not split_runs:
        found = sorted({(f, s) for _, f, s in runs})
        raise SystemExit(f"error: --fold {args.fold} --seed {args.seed}: no finished run of that split in "
                         f"{args.out / 'runs'} (splits there: {', '.join(f'fold {f} seed {s}' for f, s in found)})")
    split = load_split(split_runs)
    cells, cell_rule = choose_cells(split.recorded, args.cells)
    rows, image_rule = choose_images(split.recorded, split.test_stimuli, cells, args.images)
    first = next(iter(split.metrics.values()))
    rec_name = key[1] if key[1] is not None else first.get("recording")
    R = split.recorded.shape[2]
    tag = f"fold{args.fold}_seed{args.seed}"
    where = (f"{rec_name}, {first.get('preset')} preset, fold {args.fold}, seed {args.seed}, "
             f"{'/'.join(sorted({str(m.get('epochs')) for m in split.metrics.values()}))} epochs")
    names = {m: LABELS[m] for m in split.trials}

    fig = plot_trial_comparison(
        split.recorded, {names[m]: t for m, t in split.trials.items()}, cells, rows, split.bin_size,
        t_start=split.t_start, stimulus_labels=[f"image {split.test_stimuli[r]}" for r in rows],
        colors={names[m]: COLORS[m] for m in split.trials},
        title=f"{where}: recorded ({R} trials) vs model single trials (up to {R} drawn; PSTH over all)")
    figures = [save_figure(fig, args.fig_dir / f"generative_rasters_{tag}.png", dpi=110)]
    ff = fano_per_model(split)
    T = split.recorded.shape[1]
    fig = plot_ff_panels({names[m]: s for m, s in ff.items()}, colors={names[m]: COLORS[m] for m in ff},
                         title=f"{where}: per-cell Fano factor of the {T * split.bin_size:g}-s count")
    figures.append(save_figure(fig, args.fig_dir / f"generative_ff_{tag}.png", dpi=110))
    write_text(args.fig_dir / f"generative_ff_{tag}.csv", ff_csv(ff))

    table_rows = distance_rows(runs)
    splits = sorted({(f, s) for _, f, s in runs})
    table = format_markdown(table_rows, f"Single-trial distribution distances on {rec_name} ({key[0]}), "
                                        f"{first.get('preset')} preset, {len(splits)} split(s)")
    write_text(args.fig_dir / "distribution_distances.md", table)
    summary = {"data": key[0], "recording": rec_name, "fold": args.fold, "seed": args.seed,
               "runs": {m: str(d) for m, d in split_runs.items()},
               "cells": cells, "cell_rule": cell_rule,
               "images": [int(split.test_stimuli[r]) for r in rows], "image_rule": image_rule,
               "recorded_trials": int(R),
               "models": {m: {"sampling": split.metrics[m]["distribution_sampling"],
                              "trials": int(split.trials[m].shape[2]),
                              **{k: ff[m][k] for k in ("ff_recorded", "ff_model", "ff_abs_diff", "ff_corr",
                                                       "ff_n_cells", "ff_n_pairs")}}
                          for m in split.trials},
               "table_splits": [list(s) for s in splits], "table": table_rows}
    write_json(args.fig_dir / f"generative_{tag}.json", summary)

    print(f"\nSplit fold {args.fold}, seed {args.seed} on {rec_name} ({key[0]}): {', '.join(names.values())}")
    print(f"cells {cells}: {cell_rule}")
    print(f"images {summary['images']}: {image_rule}")
    for m, s in ff.items():
        print(f"  {names[m]:<22} sampling {split.metrics[m]['distribution_sampling']:<13} FF recorded "
              f"{_fmt(s['ff_recorded']):>6}, model {_fmt(s['ff_model']):>6}, |ΔFF| {_fmt(s['ff_abs_diff']):>6}, "
              f"r {_fmt(s['ff_corr'])} ({s['ff_n_cells']} cells)")
    print()
    print(table)
    print(f"written to {args.fig_dir}/ ({', '.join(p.name for p in figures)}, generative_ff_{tag}.csv, "
          f"generative_{tag}.json, distribution_distances.md) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
