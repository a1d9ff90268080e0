#!/usr/bin/env python
"""Fig. 4B: mean Fano factor vs prediction cosine similarity, on the recorded retina and fitted models.

For each stimulus (flashed image), the spike count of every cell (output unit) in the 0-300 ms
window is taken on each of the repeated trials: the Fano factor (Var/mean across trials)
averaged over cells measures the variability of the code, and the mean pairwise cosine
similarity between the trials' population count vectors ("prediction vectors") measures
how consistent the code is. The paper reports a significantly negative Pearson correlation
across stimuli in NSNNs; we test it on the recorded retina (all its trials) and on fitted models
(K sampled trials per image, all images).

The models come from ``--run DIR`` (repeatable; any NSNN/DSNN run folder with a
``checkpoint.pt``), or an NSNN is fitted here into ``OUT/runs/nsnn-fold0-seed0`` (reused
when run again) on ``--data FILE`` / ``--recording NAME`` (default: the bundled retina-2
recording). The "recorded" row always comes from the recording the models were fitted on,
as they saw it (same stimuli, window and clips): runs fitted on different recordings, or on
another one than ``--data``/``--recording``, are refused.

Writes into ``OUT`` (default ``results/coding_analysis``):

    coding.csv/.json           source, n_stimuli, trials, r, p, slope, mean FF, mean cosine
                               (the JSON also names the recording: ``data`` file, ``recording``)
    coding_per_stimulus.csv    per image: mean FF and cosine similarity of every source
    coding_recorded.png, coding_<run>.png   the Fig. 4B scatters

Examples::

    python analyses/coding_analysis.py --quick
    python analyses/coding_analysis.py --run results/retina_fit_comparison/runs/nsnn-fold0-seed0
    python analyses/coding_analysis.py --data my_retina.h5 --recording flashes   # fits an NSNN on it
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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny run for CI: a 2-epoch NSNN fit, 10 trials")
    p.add_argument("--run", type=Path, action="append", default=None,
                   help="a fitted NSNN/DSNN run folder (repeatable); default: fit an NSNN here")
    p.add_argument("--trials", type=int, default=None,
                   help="model trials per image (default: the recording's trials per stimulus, 30 for the bundled one)")
    from neurocode.fitting import PRESETS

    p.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="preset of the fit made here (default: quick; movie for a continuous recording)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of the fit made here")
    add_common_arguments(p, out="results/coding_analysis",
                         data_help="recording file (neurocode HDF5 or .nwb) of the fit made here, or that the "
                                   "--run folders must have been fitted on; default: the bundled retina-2 file")
    a = p.parse_args(argv)
    check_common_arguments(p, a)
    if a.quick:
        a.epochs = a.epochs or 2
        a.trials = a.trials or 10
    if a.trials is not None and a.trials < 2:
        p.error("--trials must be >= 2 (a Fano factor needs repeated trials)")
    return a


def _check_spiking(run_dir: Path) -> None:
    from neurocode.fitting import FitConfig, predicts_rates
    from neurocode.runs import RunFolder

    cfg = json.loads((run_dir / "config.json").read_text())
    model = cfg.get("model")
    if model not in ("nsnn", "dsnn"):
        raise SystemExit(f"error: --run {run_dir}: a {model} run; the coding analysis needs a spiking model")
    try:
        config = RunFolder(run_dir).read_config(FitConfig)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: --run {run_dir}: invalid config.json ({exc})") from None
    if predicts_rates(config):
        raise SystemExit(f"error: --run {run_dir}: its population-mean readout predicts rates, not trials; "
                         "the coding analysis needs sampled spike trials")


def model_runs(args) -> tuple[list[Path], tuple[str, str | None]]:
    """The run folders to analyse and the one recording they were all fitted on.

    Refuses runs fitted on different recordings, or on another recording than an explicit
    ``--data``/``--recording`` (the "recorded" row would belong to another recording).
    """

    wanted = recording_key(args.data, args.recording)
    explicit = args.data is not None or args.recording is not None
    if args.run:
        keys = []
        for r in args.run:
            if not (r / "checkpoint.pt").exists() or not (r / "config.json").exists():
                raise SystemExit(f"error: --run {r}: not a finished run folder (config.json and checkpoint.pt needed)")
            _check_spiking(r)
            keys.append(run_key(r))
        for r, k in zip(args.run, keys):
            if k != keys[0]:
                raise SystemExit(f"error: --run {args.run[0]} was fitted on {describe(keys[0])}, but --run {r} on "
                                 f"{describe(k)}; the recorded row and the model rows must come from one recording: "
                                 "analyse runs of different recordings separately (each with its own --out)")
        if explicit and keys[0] != wanted:
            raise SystemExit(f"error: --run {args.run[0]} was fitted on {describe(keys[0])}, not on {describe(wanted)} "
                             "(--data/--recording); drop --data/--recording (the runs' own recording is used) or "
                             "pass runs fitted on it")
        return list(args.run), keys[0]
    run_dir = args.out / "runs" / "nsnn-fold0-seed0"
    o = {"eval_trials": 16}
    if args.epochs:
        o["epochs"] = args.epochs
    if args.threads:
        o["threads"] = args.threads
    ensure_run(run_dir, "nsnn", args, wanted, **o)
    return [run_dir], wanted


def model_counts(config, net, data, trials: int) -> np.ndarray:
    """Output-layer spike counts ``[all stimuli, K, cells]`` of a run's model."""
    from neurocode.fitting import predict

    all_images = np.arange(data.images.shape[0])
    spikes = predict(config, net, data, all_images, n_trials=trials, seed=12345)  # [n, T, K, N]
    return spikes.sum(axis=1)


def _same_stimuli(a, b) -> bool:
    """Whether two prepared recordings hold the same stimuli, cells, trials and window."""
    return (a.shape == b.shape and tuple(a.window) == tuple(b.window)
            and np.array_equal(a.trial_counts, b.trial_counts)
            and (a.stimuli is None) == (b.stimuli is None)
            and (a.stimuli is None or a.stimuli.shape == b.stimuli.shape))


def _fmt(v):
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    return str(v)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from neurocode._io import write_json, write_text
    from neurocode.analysis import coding_analysis, recorded_coding_analysis
    from neurocode.pipeline import load_run
    from neurocode.plotting import plot_coding_scatter, save_figure

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    runs, key = model_runs(args)
    results, rec, first = {}, None, None
    for run_dir in runs:
        config, net, data = load_run(run_dir)
        if rec is None:
            # the recorded row: the runs' own recording, as fitted (window, clips), all its stimuli
            rec, first = data.recording, run_dir
            if args.trials is None:
                args.trials = max(2, int(rec.n_trials))
            # with different trial counts per stimulus, each stimulus uses its own trials
            results["recorded"] = (recorded_coding_analysis(rec), int(rec.n_trials))
        elif not _same_stimuli(rec, data.recording):
            raise SystemExit(f"error: --run {first} and --run {run_dir} were fitted on {describe(key)} with different "
                             f"stimuli or response windows ({rec!r} vs {data.recording!r}); analyse them separately")
        counts = model_counts(config, net, data, args.trials)
        name = f"{config.model.upper()} ({run_dir.name})"
        results[name] = (coding_analysis(counts), args.trials)
        del net

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
    rec_name = key[1] if key[1] is not None else rec.name
    write_json(args.out / "coding.json", {"data": key[0], "recording": rec_name,
                                          "runs": [str(r) for r in runs], "trials": args.trials, "table": rows,
                                          "per_stimulus": {n: {"mean_fano": r.mean_fano, "cosine": r.cosine}
                                                           for n, r in per_stim.items()}})
    figures = []
    for name, res in per_stim.items():
        fname = "coding_recorded.png" if name == "recorded" else \
            f"coding_{name.split(' (')[1].rstrip(')') if ' (' in name else name}.png"
        fig = plot_coding_scatter(res, title=f"{name}, {rec_name}\nr = {res.r:.3f}, p = {res.p:.2g}")
        save_figure(fig, args.out / fname, dpi=120)
        figures.append(fname)

    print(f"\nFig. 4B on recording {rec_name!r} ({key[0]}): Pearson r across stimuli between mean Fano factor "
          "and prediction cosine similarity")
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
