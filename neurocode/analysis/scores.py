"""Held-out scores of a fitted model: what ``metrics.json`` holds (numpy only).

``rate_cc`` (PSTH correlation per cell), ``count_cc`` (trial-averaged count across stimuli),
the stimulus-independent baseline, the split-half ceiling and the Fano-factor correlation, from
recorded counts ``[n_test, T, trials, cells]`` and the model's spikes or rates. The definitions
are in :mod:`neurocode.pipeline`'s docstring and README.md.

No cell drops out of a mean because the model cannot score it: a cell whose prediction is
constant (or not finite) while its recorded response varies scores r = 0 (``rate_cc``,
``count_cc``, ``baseline_rate_cc``). Only a cell whose *recording* does not vary on the test
stimuli is left out (its r is undefined for every model), and every mean is stored with how
many cells it is over (``n_averaged``). ``fano_corr`` over fewer than
:data:`~neurocode.analysis.statistics.MIN_CORRELATION_POINTS` cells is ``None``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from neurocode.analysis.coding import per_cell_fano
from neurocode.analysis.distribution import format_distribution
from neurocode.analysis.statistics import (
    MIN_CORRELATION_POINTS,
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
    dict
        The mean scores over cells; ``sem``; ``n_averaged``: per score the number of cells its
        mean is over (for ``fano_corr``: the cells it correlates); ``per_cell`` (NaN where
        undefined). A cell the model does not predict (constant or non-finite prediction,
        varying recording) has r = 0, not NaN; ``fano_corr`` is ``None`` over fewer than
        :data:`~neurocode.analysis.statistics.MIN_CORRELATION_POINTS` cells or when either
        Fano factor is constant across cells.
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

    rate_cc = rate_cc_per_cell(rec_psth.reshape(n * T, N), mod_psth.reshape(n * T, N), constant_model_r=0.0)
    baseline = rate_cc_per_cell(rec_psth.reshape(n * T, N), base_psth.reshape(n * T, N), constant_model_r=0.0)
    ceiling = split_half_reliability(rec)
    rec_counts = rec.sum(axis=1)  # [n, trials, N]
    mod_counts = mod.sum(axis=1)  # [n, K, N] or [n, N]
    count_cc = count_cc_per_cell(rec_counts.mean(axis=1), mod_rates.sum(axis=1), constant_model_r=0.0)
    ff_rec = per_cell_fano(rec_counts)
    if spiking and mod.shape[2] >= 2:
        ff_mod = per_cell_fano(mod_counts)
    else:
        ff_mod = np.full(N, np.nan)
    # NaN when undefined, constant (DSNN: FF = 0 everywhere) or over too few cells
    r, _ = pearson(ff_rec, ff_mod, MIN_CORRELATION_POINTS)

    per_cell = {"rate_cc": rate_cc, "count_cc": count_cc, "baseline_rate_cc": baseline,
                "ceiling_rate_cc": ceiling, "recorded_ff": ff_rec, "model_ff": ff_mod}
    out: dict[str, Any] = {k: nanmean(per_cell[k]) for k in ("rate_cc", "count_cc", "baseline_rate_cc",
                                                              "ceiling_rate_cc")}
    out["fano_corr"] = None if not math.isfinite(r) else float(r)
    out["sem"] = {k: nansem(per_cell[k]) for k in ("rate_cc", "count_cc", "baseline_rate_cc", "ceiling_rate_cc")}
    out["recorded_ff"] = nanmean(ff_rec)
    out["model_ff"] = nanmean(ff_mod)
    out["n_averaged"] = {k: int(np.isfinite(v).sum()) for k, v in per_cell.items()}
    out["n_averaged"]["fano_corr"] = int((np.isfinite(ff_rec) & np.isfinite(ff_mod)).sum())
    out["n_cells_scored"] = out["n_averaged"]["rate_cc"]
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

    n_averaged = metrics.get("n_averaged") or {}
    # metrics.json keeps its "images" keys; what they count is said as what it is
    noun = "clips" if metrics.get("stimulus") == "clips" else "images"
    n_val = metrics.get("n_validation_images")
    val = f"{n_val} validation {noun[:-1] if n_val == 1 else noun}"

    def pm(key):  # mean ± sem (n cells)
        sem = (metrics.get("sem") or {}).get(key)
        n = n_averaged.get(key)
        return (f(metrics.get(key)) + ("" if sem is None else f" ± {sem:.3f}")
                + ("" if n is None else f" ({n})"))

    def count(key):  # " (n cells)" where a mean is over some cells
        n = n_averaged.get(key)
        return "" if not n else f" ({n})"

    ln_n = n_averaged.get("ln_rate_cc")
    ln = f(metrics.get("ln_rate_cc")) + ("" if ln_n is None else f" ({ln_n})")
    fano_n = n_averaged.get("fano_corr")
    fano = f(metrics.get("fano_corr"))
    if fano_n is not None and metrics.get("fano_corr") is not None:
        fano += f" over {fano_n} cells"
    elif fano_n is not None and 0 < fano_n < MIN_CORRELATION_POINTS:
        fano += f" ({fano_n} cells with a Fano factor; a correlation needs {MIN_CORRELATION_POINTS})"
    lines = [
        f"{str(metrics.get('model', '?')).upper()} ({metrics.get('preset')} preset), fold {metrics.get('fold')}, "
        f"seed {metrics.get('seed')}: {metrics.get('n_test_images')} held-out "
        f"{noun}, {metrics.get('n_cells')} cells, "
        f"{metrics.get('parameter_count')} parameters",
        "  score (mean ± sem over (n) cells)  model                    LN           baseline"
        "                 ceiling",
        f"  {'rate CC (PSTH, ' + format(1000 * metrics.get('bin_size', 0.01), 'g') + '-ms bins)':<35}"
        f"{pm('rate_cc'):<24} {ln:<12} {pm('baseline_rate_cc'):<24} {pm('ceiling_rate_cc')}",
        f"  {'count CC (across ' + noun + ')':<35}{pm('count_cc'):<24} {f(metrics.get('ln_count_cc'))}"
        f"{count('ln_count_cc')}",
        f"  Fano factor corr. (across cells)   {fano}"
        f"   (mean FF: recorded {f(metrics.get('recorded_ff'), '{:.2f}')}{count('recorded_ff')}, "
        f"model {f(metrics.get('model_ff'), '{:.2f}')}{count('model_ff')})",
        f"  mean firing rate                   model {f(metrics.get('model_rate_hz'), '{:.2f}')} Hz, "
        f"recorded {f(metrics.get('recorded_rate_hz'), '{:.2f}')} Hz",
    ]
    n_cells, n_rate = metrics.get("n_cells"), n_averaged.get("rate_cc")
    if n_cells is not None and n_rate is not None and n_rate < n_cells:
        lines.append(f"  {n_cells - n_rate} of {n_cells} cells have a constant recorded response on the held-out "
                     "stimuli: no model can be scored on them (a cell the model does not predict scores 0)")
    lines += format_distribution(metrics)
    if metrics.get("initial_rates"):
        rates = ", ".join(f"{r:.3f}" for r in metrics["initial_rates"])
        lines.append(f"  initial firing rates per layer     {rates} (spikes/neuron/step)")
    noise = metrics.get("output_noise_set")
    if noise:  # a Fano end: each output cell's sigma set to its recorded Fano factor after training
        gain = f", drive gain {noise['gain_min']:.2f}-{noise['gain_max']:.2f}" if "gain_min" in noise else ""
        lines.append(f"  output noise set after training    sigma {noise['sigma_min']:.2f}-{noise['sigma_max']:.2f}{gain}; "
                     f"r with the recorded FF {f(noise.get('r_sigma_recorded_ff'), '{:.2f}')}, training-image "
                     f"|ΔFF| {f(noise.get('train_ff_abs_diff'), '{:.3f}')} ({noise['cells']} cells)")
    if metrics.get("best_epoch") is not None:
        lines.append(f"  validation rate CC                 {f(metrics.get('val_rate_cc'))} (best epoch "
                     f"{metrics['best_epoch']} of {metrics.get('epochs')}, {val})")
    elif metrics.get("model") == "ln" and metrics.get("ln_ridge") is not None:
        lines.append(f"  validation rate CC                 {f(metrics.get('val_rate_cc'))} (ridge "
                     f"{metrics['ln_ridge']:g} chosen on {val})")
    if metrics.get("rf_source"):
        lines.append(f"  receptive fields                   {metrics['rf_source']}")
    if metrics.get("final_loss") is not None:
        lines.append(f"  final training loss                {metrics['final_loss']:.4g} after {metrics.get('epochs')} epochs")
    return "\n".join(lines)
