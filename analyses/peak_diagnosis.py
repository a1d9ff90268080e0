"""Where and why a model falls short of the recorded PSTH peaks, on validation images (issue 31).

Reads the validation trials that ``analyses/validation_ablation.py --save-trials`` writes
(``OUT/val-trials-ROW-foldF-seedS.npz``: the recorded counts, the model's sampled trials and its
PSTH) and fits nothing. Per fit: where the peak bins are (bin after the flash, ON or OFF cell,
height), and :func:`neurocode.analysis.peaks.peak_diagnosis` (timing against amplitude in +-w
windows and the lag of the model's peak, the ceiling the threshold rule sets for the recording's
own rate, the model's calibration and the slope of its PSTH on the recorded one, the shared
temporal profile and the spread across images). Writes ``OUT/peak-diagnosis.json`` and prints a
table of the means over folds (docs/nsnn_vs_cnn.md, "Peak fidelity").

    python analyses/validation_ablation.py --row nsnn --row cnn --folds 0 1 --save-trials --out results/ablation
    python analyses/peak_diagnosis.py --out results/ablation
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_common_arguments, check_common_arguments  # noqa: E402

FILE = re.compile(r"^val-trials-(?P<row>.+)-fold(?P<fold>\d+)-seed(?P<seed>\d+)\.npz$")
#: Heights of the recorded peak bins, spikes per bin: the ratio per band shows whether the
#: shortfall grows with the height (regression toward the mean) or is the same (a gain).
BANDS = ((0.5, 1.0), (1.0, 1.5), (1.5, np.inf))


def where(recorded_psth: np.ndarray, model_psth: np.ndarray, polarity, threshold: float) -> dict:
    """The peak bins' place in time and cells, and the peak ratio per cell polarity and per height band.

    Parameters
    ----------
    recorded_psth, model_psth : ``[n, T, cells]``
        Spikes per bin.
    polarity : ``[cells]`` of +1 (ON) / -1 (OFF), or None
    threshold : float
    """
    peaks = recorded_psth > threshold
    ratio = np.where(peaks, model_psth / np.where(peaks, recorded_psth, 1.0), np.nan)
    out = {"peak_bins_per_time": peaks.sum(axis=(0, 2)).tolist(),
           "peak_cells": int(peaks.any(axis=(0, 1)).sum())}
    t = np.nonzero(peaks)[1]
    out["peak_time_median"] = float(np.median(t)) if t.size else None
    # the onset transient: the bins holding >= 10 % of the peak bins each; there, the model's spikes over
    # the recorded ones pooled over all stimuli and cells (its population time course, no bin chosen
    # by its own recorded height)
    per_time = peaks.sum(axis=(0, 2))
    transient = np.nonzero(per_time >= 0.1 * max(per_time.sum(), 1))[0]
    out["transient_bins"] = transient.tolist()
    out["transient_ratio"] = (float(model_psth[:, transient].sum() / recorded_psth[:, transient].sum())
                              if transient.size and recorded_psth[:, transient].sum() > 0 else None)
    for lo, hi in BANDS:
        band = peaks & (recorded_psth > lo) & (recorded_psth <= hi)
        out[f"peak_ratio_{lo:g}-{hi:g}"] = float(np.nanmean(ratio[band])) if band.any() else None
        out[f"n_bins_{lo:g}-{hi:g}"] = int(band.sum())
    if polarity is not None:
        pol = np.asarray(polarity)
        for name, sign in (("on", 1), ("off", -1)):
            cells = pol == sign
            sel = peaks[:, :, cells]
            out[f"n_peak_bins_{name}"] = int(sel.sum())
            out[f"peak_ratio_{name}"] = float(np.nanmean(ratio[:, :, cells][sel])) if sel.any() else None
    return out


def expanded(recorded_psth: np.ndarray, model_psth: np.ndarray, gains, threshold: float) -> dict:
    """What widening the model's PSTH about its mean does: ``mean + g (model - mean)`` (floored at 0).

    Rate CC (per cell) is blind to such a gain; the peak ratio rises with it, and so does the
    model's excess at its own peaks. Per gain: ``peak_ratio``, ``model_peak_ratio`` (recorded /
    model where the model exceeds ``threshold``) and ``mse_ratio`` (mean squared error against
    the recorded PSTH over that of gain 1).
    """
    from neurocode.analysis.peaks import calibration

    mean = model_psth.mean()
    peaks = recorded_psth > threshold
    base = ((model_psth - recorded_psth) ** 2).mean()
    out = {}
    for g in gains:
        m = np.maximum(mean + g * (model_psth - mean), 0.0)
        out[f"{g:g}"] = {"peak_ratio": float((m[peaks] / recorded_psth[peaks]).mean()),
                         "model_peak_ratio": calibration(recorded_psth, m, threshold)["model_peak_ratio"],
                         "mse_ratio": float(((m - recorded_psth) ** 2).mean() / base)}
    return out


def polarity_of(fold: int, seed: int, data_path, recording) -> np.ndarray | None:
    """The cells' RF polarity (+1 ON, -1 OFF) from the fold's training images, as the fits saw it."""
    from neurocode.fitting import make_config, prepare_data

    data = prepare_data(make_config("nsnn", "quick", fold=fold, seed=seed, device="cpu", data=data_path,
                                    recording=recording))
    return None if data.rfs is None or data.rfs.polarity is None else np.asarray(data.rfs.polarity)


def main(argv=None) -> int:
    from neurocode._io import write_json
    from neurocode.analysis.peaks import peak_diagnosis

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threshold", type=float, default=0.5,
                   help="recorded PSTH (spikes/bin) above which a bin is a peak")
    p.add_argument("--boot", type=int, default=100, help="bootstrap samples of the recording's own ceiling")
    p.add_argument("--gains", type=float, nargs="+", default=[1.0, 1.2, 1.4],
                   help="gains on the model PSTH's deviations from its mean to score (rate CC is blind to them)")
    add_common_arguments(p, out="results/ablation")
    a = p.parse_args(argv)
    check_common_arguments(p, a)
    files = sorted(f for f in a.out.glob("val-trials-*.npz") if FILE.match(f.name))
    if not files:
        p.error(f"--out {a.out}: no val-trials-ROW-foldF-seedS.npz (run analyses/validation_ablation.py "
                "with --save-trials first)")
    polarity: dict[tuple[int, int], np.ndarray | None] = {}
    results = []
    for f in files:
        m = FILE.match(f.name)
        row, fold, seed = m["row"], int(m["fold"]), int(m["seed"])
        if (fold, seed) not in polarity:
            polarity[fold, seed] = polarity_of(fold, seed, a.data, a.recording)
        with np.load(f) as z:
            recorded, model_psth = z["recorded"].astype(float), z["model_psth"].astype(float)
        d = peak_diagnosis(recorded, model_psth, a.threshold, a.boot, seed)
        d.update(where(recorded.mean(axis=2), model_psth, polarity[fold, seed], a.threshold))
        d["gains"] = expanded(recorded.mean(axis=2), model_psth, a.gains, a.threshold)
        results.append({"row": row, "fold": fold, "seed": seed, **d})
        print(f"{row} fold {fold}: peak ratio {d['peak_ratio']:.3f} (ceiling {d['ceiling']:.3f}), "
              f"regression line {d['regression_peak_ratio']:.3f}, +-1 bin {d['window_ratio_w1']:.3f}", flush=True)
    write_json(a.out / "peak-diagnosis.json", results)
    print(table(results))
    print(gain_table(results))
    return 0


#: Columns of the printed table: header -> key of :func:`peak_diagnosis` / :func:`where`.
COLUMNS = {"peak ratio": "peak_ratio", "ceiling": "ceiling", "regression line": "regression_peak_ratio",
           "+-1 bin": "window_ratio_w1", "+-2 bins": "window_ratio_w2", "at max": "max_ratio_at_peak",
           "ceil. at max": "ceiling_max_ratio_at_peak", "near max": "max_ratio_near_peak",
           "lag": "lag_mean", "transient": "transient_ratio", "profile": "profile_peak_ratio", "spread": "spread_ratio",
           "rec/model at model peaks": "model_peak_ratio", "slope rec on model": "slope_recorded_on_model",
           "slope model on rec": "slope_model_on_recorded", "ON": "peak_ratio_on", "OFF": "peak_ratio_off",
           "0.5-1": "peak_ratio_0.5-1", "1-1.5": "peak_ratio_1-1.5", ">1.5": "peak_ratio_1.5-inf"}


def table(results: list[dict]) -> str:
    """Markdown: one line per row, each column the mean over its folds."""
    rows = list(dict.fromkeys(r["row"] for r in results))
    lines = ["| row | folds | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for name in rows:
        mine = [r for r in results if r["row"] == name]

        def mean(key):
            v = [r[key] for r in mine if r.get(key) is not None]
            return f"{np.mean(v):.3f}" if v else "n/a"

        lines.append(f"| {name} | {len(mine)} | " + " | ".join(mean(k) for k in COLUMNS.values()) + " |")
    return "\n".join(lines)


def gain_table(results: list[dict]) -> str:
    """Markdown: per row and gain, the peak ratio, recorded / model at the model's peaks and the MSE ratio."""
    lines = ["| row | gain | peak ratio | rec/model at model peaks | MSE / MSE at gain 1 |", "|---|---|---|---|---|"]
    for name in dict.fromkeys(r["row"] for r in results):
        mine = [r["gains"] for r in results if r["row"] == name]
        for g in mine[0]:
            vals = [np.mean([m[g][k] for m in mine if m[g][k] is not None])
                    for k in ("peak_ratio", "model_peak_ratio", "mse_ratio")]
            lines.append(f"| {name} | {g} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
