"""Held-out scores of a fitted model: what ``metrics.json`` holds (numpy only).

``rate_cc`` (PSTH correlation per cell), ``count_cc`` (trial-averaged count across stimuli),
the stimulus-independent baseline, the split-half ceiling and the Fano-factor correlation, from
recorded counts ``[n_test, T, trials, cells]`` and the model's spikes or rates. The definitions
are in :mod:`neurocode.pipeline`'s docstring and README.md.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from neurocode.analysis.coding import per_cell_fano
from neurocode.analysis.distribution import format_distribution
from neurocode.analysis.statistics import (
    count_cc_per_cell,
    pearson,
    psth,
    rate_cc_per_cell,
    split_half_reliability,
)

__all__ = ["compute_metrics", "format_metrics", "nanmean", "nansem"]


def compute_metrics(recorded: np.ndarray, model: np.ndarray, train_recorded: np.ndarray, spiking: bool,
                    bin_size: float = 0.01, model_rates: np.ndarray | None = None) -> dict:
    """The held-out scores from arrays (no files).

    Parameters
    ----------
    recorded : ``[n_test, T, trials, cells]``
        Recorded spike counts of the test images.
    model : ``[n_test, T, K, cells]`` spikes (``spiking``) or ``[n_test, T, cells]`` rates
        (expected spikes per bin).
    train_recorded : ``[n_train, T, trials, cells]`` or ``[n_train, T, cells]``
        Recorded counts of the training stimuli, or their trial-averaged counts (for the
        baseline: their mean PSTH, the same for every test stimulus).
    spiking : bool
    bin_size : float
        Bin width (s); rates are reported in Hz.
    model_rates : ``[n_test, T, cells]``, optional
        The model's PSTH in expected spikes per bin, used for ``rate_cc`` and ``count_cc``
        instead of the spike average (e.g. the Rao-Blackwellised rates of an NSNN).

    Returns
    -------
    dict with the mean scores, ``sem`` and ``per_cell`` sub-dicts (NaN where undefined).
    """
    rec = np.asarray(recorded, dtype=float)
    mod = np.asarray(model, dtype=float)
    n, T, _, N = rec.shape
    rec_psth = psth(rec, bin_size)  # [n, T, N] Hz
    if model_rates is not None:
        mod_rates = np.asarray(model_rates, dtype=float)
    else:
        mod_rates = mod.mean(axis=2) if spiking else mod
    mod_psth = mod_rates / bin_size
    train = np.asarray(train_recorded, dtype=float)
    base = (train.mean(axis=2) if train.ndim == 4 else train).mean(axis=0) / bin_size  # [T, N] Hz
    base_psth = np.broadcast_to(base, (n, T, N))

    rate_cc = rate_cc_per_cell(rec_psth.reshape(n * T, N), mod_psth.reshape(n * T, N))
    baseline = rate_cc_per_cell(rec_psth.reshape(n * T, N), base_psth.reshape(n * T, N))
    ceiling = split_half_reliability(rec)
    rec_counts = rec.sum(axis=1)  # [n, trials, N]
    mod_counts = mod.sum(axis=1)  # [n, K, N] or [n, N]
    count_cc = count_cc_per_cell(rec_counts.mean(axis=1), mod_rates.sum(axis=1))
    ff_rec = per_cell_fano(rec_counts)
    if spiking and mod.shape[2] >= 2:
        ff_mod = per_cell_fano(mod_counts)
    else:
        ff_mod = np.full(N, np.nan)
    r, _ = pearson(ff_rec, ff_mod)  # NaN when undefined or constant (DSNN: FF = 0 everywhere)

    per_cell = {"rate_cc": rate_cc, "count_cc": count_cc, "baseline_rate_cc": baseline,
                "ceiling_rate_cc": ceiling, "recorded_ff": ff_rec, "model_ff": ff_mod}
    out: dict[str, Any] = {k: nanmean(per_cell[k]) for k in ("rate_cc", "count_cc", "baseline_rate_cc",
                                                              "ceiling_rate_cc")}
    out["fano_corr"] = None if not math.isfinite(r) else float(r)
    out["sem"] = {k: nansem(per_cell[k]) for k in ("rate_cc", "count_cc", "baseline_rate_cc", "ceiling_rate_cc")}
    out["recorded_ff"] = nanmean(ff_rec)
    out["model_ff"] = nanmean(ff_mod)
    out["n_cells_scored"] = int(np.isfinite(rate_cc).sum())
    out["recorded_rate_hz"] = float(rec.mean() / bin_size)
    out["model_rate_hz"] = float(mod.mean() / bin_size)
    out["per_cell"] = {k: np.asarray(v, dtype=float) for k, v in per_cell.items()}
    return out


def nanmean(x) -> float | None:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def nansem(x) -> float | None:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(x.std(ddof=1) / np.sqrt(x.size)) if x.size >= 2 else None


def format_metrics(metrics: dict) -> str:
    """A run's scores (``metrics.json``) as a short text table: model, LN, baseline and ceiling
    side by side (what ``neurocode fit`` / ``evaluate`` print, and ``print(result)`` shows)."""

    def f(v, fmt="{:.3f}"):
        return "n/a" if v is None else fmt.format(v)

    def pm(key):
        sem = (metrics.get("sem") or {}).get(key)
        return f(metrics.get(key)) + ("" if sem is None else f" ± {sem:.3f}")

    lines = [
        f"{str(metrics.get('model', '?')).upper()} ({metrics.get('preset')} preset), fold {metrics.get('fold')}, "
        f"seed {metrics.get('seed')}: {metrics.get('n_test_images')} held-out "
        f"{'clips' if metrics.get('stimulus') == 'clips' else 'images'}, {metrics.get('n_cells')} cells, "
        f"{metrics.get('parameter_count')} parameters",
        "  score (mean ± sem over cells)      model              LN       baseline           ceiling",
        f"  {'rate CC (PSTH, ' + format(1000 * metrics.get('bin_size', 0.01), 'g') + '-ms bins)':<35}{pm('rate_cc'):<18} {f(metrics.get('ln_rate_cc')):<8} "
        f"{pm('baseline_rate_cc'):<18} {pm('ceiling_rate_cc')}",
        f"  count CC (across images)           {pm('count_cc'):<18} {f(metrics.get('ln_count_cc')):<8}",
        f"  Fano factor corr. (across cells)   {f(metrics.get('fano_corr'))}"
        f"   (mean FF: recorded {f(metrics.get('recorded_ff'), '{:.2f}')}, model {f(metrics.get('model_ff'), '{:.2f}')})",
        f"  mean firing rate                   model {f(metrics.get('model_rate_hz'), '{:.2f}')} Hz, "
        f"recorded {f(metrics.get('recorded_rate_hz'), '{:.2f}')} Hz",
    ]
    lines += format_distribution(metrics)
    if metrics.get("initial_rates"):
        rates = ", ".join(f"{r:.3f}" for r in metrics["initial_rates"])
        lines.append(f"  initial firing rates per layer     {rates} (spikes/neuron/step)")
    if metrics.get("best_epoch") is not None:
        lines.append(f"  validation rate CC                 {f(metrics.get('val_rate_cc'))} (best epoch "
                     f"{metrics['best_epoch']} of {metrics.get('epochs')}, {metrics.get('n_validation_images')} "
                     "validation images)")
    elif metrics.get("model") == "ln" and metrics.get("ln_ridge") is not None:
        lines.append(f"  validation rate CC                 {f(metrics.get('val_rate_cc'))} (ridge "
                     f"{metrics['ln_ridge']:g} chosen on {metrics.get('n_validation_images')} validation images)")
    if metrics.get("rf_source"):
        lines.append(f"  receptive fields                   {metrics['rf_source']}")
    if metrics.get("final_loss") is not None:
        lines.append(f"  final training loss                {metrics['final_loss']:.4g} after {metrics.get('epochs')} epochs")
    return "\n".join(lines)
