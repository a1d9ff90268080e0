"""Held-out scores of the single-trial response *distribution*, the same for every model.

A model is scored on trials sampled from its own likelihood (:func:`model_single_trials`: an
NSNN's sampled spikes, a DSNN's deterministic trials (its spikes, or its population-mean rate in
every trial), Poisson draws from a CNN's or LN's rates)
against the recorded trials of the same test stimuli. Arrays are ``[n_stimuli, T, trials,
cells]`` counts per bin (the layout of :meth:`neurocode.data.FitData.test_counts` and of
``predictions.h5``); model and recording may have different trial numbers.

Scores (:func:`distribution_scores`)
------------------------------------
``mmd2``, ``mmd2_cell``
    Unbiased Gaussian-kernel MMD² between the model's and the recorded single trials of each
    test stimulus on PSP traces (τ_s = 2 bins, the time-weighted features of
    :func:`neurocode.losses.psp_features`, whose squared distance is paper Eq. 27): jointly
    over cells (one [T·N] vector per trial) and per cell (one [T] vector per trial), averaged
    over the stimuli. The bandwidth is the median heuristic of the *recorded* trials only,
    fixed per stimulus (joint) or per (stimulus, cell), so every model on a split is measured
    with the same kernel. The estimator is unbiased: its expectation is 0 for a model whose
    trials are distributed like the recorded ones, and it can be negative.
``mmd2_floor``, ``mmd2_cell_floor``
    The same MMD² between the recording's odd and even trials, with the same bandwidths: the
    value of a perfect model up to sampling noise (expectation 0; its SEM over stimuli says
    how far from 0 a model must be to be told apart from the recording).
``ff_abs_diff``, ``ff_corr``
    Per-cell Fano factors of the whole-window spike count (elephant's ``fanofactor``
    semantics: population variance over trials / mean), computed per (stimulus, cell) and
    averaged over the *counted* pairs: those where the recorded mean count is at least
    ``min_mean_count`` (0.5) and the model's FF is defined (its mean count > 0). A cell counts
    if it has at least one such pair. ``ff_abs_diff`` = mean over counted cells of
    ``|FF_model − FF_recorded|``; ``ff_corr`` = Pearson r across counted cells.
``noise_corr_r``
    Per cell pair, the Pearson correlation over all (stimulus, trial) of the count residuals
    (count minus the stimulus's trial mean): recorded and model pair values, and the
    correlation between the two across pairs. Its sampling error: ``noise_corr_null_sd``, the
    SD of recorded pair values under a trial-shuffle null (trials permuted per cell within
    each stimulus), i.e. the noise of one recorded pair value; ``noise_corr_n_resolvable``,
    the recorded pairs beyond 2 null SDs (``noise_corr_n_chance`` expected by chance); and
    ``noise_corr_split_half_r``, the correlation across pairs of the values of odd and even
    recorded trials: the reliability of the recorded pattern, the ceiling of ``noise_corr_r``.
``peak_ratio``, ``peak_max_ratio``
    Mean over the bins (stimulus, time, cell) where the recorded PSTH exceeds
    ``peak_threshold`` (0.5 spikes/bin) of model PSTH / recorded PSTH; and the model PSTH's
    maximum over the recorded PSTH's maximum (over all stimuli, bins and cells). The model
    PSTH is the mean of its sampled trials.

Correlations over fewer than :data:`MIN_CORRELATION_POINTS` points are ``None``; every
average is reported with the number of stimuli, cells, pairs or bins it is over.

Only :func:`gaussian_mmd2` needs torch (the kernel code of :mod:`neurocode.losses`); it is
imported on first use, so ``import neurocode.analysis`` stays torch-free.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from neurocode.analysis.conversion import to_numpy
from neurocode.analysis.statistics import MIN_CORRELATION_POINTS, fano_factor, pearson

__all__ = [
    "model_single_trials",
    "SAMPLINGS",
    "recorded_bandwidth",
    "gaussian_mmd2",
    "split_half_mmd2",
    "fano_scores",
    "noise_correlations",
    "noise_correlation_scores",
    "peak_fidelity",
    "distribution_scores",
    "format_distribution",
]

#: Correlations over fewer points than this are reported as ``None`` (n/a).


def _counts(x, name: str) -> np.ndarray:
    a = to_numpy(x).astype(np.float64)
    if a.ndim != 4:
        raise ValueError(f"{name} must be [n_stimuli, T, trials, cells], got shape {a.shape}")
    if not np.all(np.isfinite(a)) or (a < 0).any():
        raise ValueError(f"{name} must hold finite non-negative counts")
    return a


def _correlation(x, y) -> tuple[float | None, int]:
    """Pearson r over the finite pairs and their number; ``None`` under the minimum-point rule."""
    a, b = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    r, _ = pearson(a, b, MIN_CORRELATION_POINTS)
    return (None if not math.isfinite(r) else float(r)), int((np.isfinite(a) & np.isfinite(b)).sum())


def _mean_sem(x) -> tuple[float | None, float | None, int]:
    v = np.asarray(x, float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None, None, 0
    return float(v.mean()), (float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else None), int(v.size)


# --------------------------------------------------------------------------- single trials
#: How :func:`model_single_trials` turns predictions into trials.
SAMPLINGS = ("trials", "deterministic", "poisson")


def model_single_trials(preds, sampling: str, n_trials: int, seed: int = 0) -> np.ndarray:
    """A run's held-out predictions as single trials, each model sampled from its own likelihood.

    Parameters
    ----------
    preds : ``[n_test, T, K, cells]`` spikes (``"trials"``) or ``[n_test, T, cells]`` rates
        What ``predictions.h5`` holds: a spiking model's sampled trials (an NSNN's noise, a
        DSNN's identical trials) or a model's expected spikes per bin.
    sampling : {"trials", "deterministic", "poisson"}
        ``"trials"``: the stored trials as they are. ``"deterministic"``: a deterministic
        model's rates (a DSNN's population-mean readout: the fraction of its units firing) are
        its every trial, ``n_trials`` identical copies. ``"poisson"``: a rate model's (CNN,
        LN) ``n_trials`` independent Poisson draws per bin and cell, mean its rate.
    n_trials : int
        Trials K made from rates (ignored for ``"trials"``).
    seed : int
        Seed of the Poisson draws (the run's seed: ``evaluate`` redraws the same trials).

    Returns
    -------
    np.ndarray, ``[n_test, T, K, cells]``
        Spikes (or the deterministic fraction of units) per bin, float64.
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    p = to_numpy(preds).astype(np.float64)
    if sampling == "trials":
        if p.ndim != 4:
            raise ValueError(f"sampled trials must be [n_test, T, K, cells], got shape {p.shape}")
        return p
    if p.ndim != 3:
        raise ValueError(f"rate predictions must be [n_test, T, cells], got shape {p.shape}")
    if not np.all(np.isfinite(p)) or (p < 0).any():
        raise ValueError("rate predictions must be finite and non-negative (expected spikes per bin)")
    if int(n_trials) < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials!r}")
    n, T, N = p.shape
    shape = (n, T, int(n_trials), N)
    if sampling == "deterministic":
        return np.broadcast_to(p[:, :, None, :], shape).copy()
    return np.random.default_rng(seed).poisson(np.broadcast_to(p[:, :, None, :], shape)).astype(np.float64)


# --------------------------------------------------------------------------- MMD²
def _features(trials: np.ndarray, tau_s: float, per_cell: bool):
    """``[n, T, K, N]`` -> torch PSP features ``[B, K, D]``: B = n (D = T·N) or n·N (D = T)."""
    import torch

    from neurocode.losses import psp_features

    t = torch.as_tensor(trials, dtype=torch.float64).permute(1, 2, 0, 3)  # [T, K, n, N]
    if per_cell:
        T, K, n, N = t.shape
        t = t.reshape(T, K, n * N, 1)
    return psp_features(t, tau_s)


def recorded_bandwidth(recorded_trials, tau_s: float = 2.0, per_cell: bool = False) -> np.ndarray:
    """Gaussian-kernel bandwidth by the median heuristic on the recorded trials alone.

    The median of the pairwise Euclidean distances between the PSP features
    (:func:`neurocode.losses.psp_features`) of the recorded trials of one stimulus (jointly
    over cells, or of one cell); 1 where that median is 0 (most trials identical, e.g.
    silent), the rule of :func:`neurocode.losses.set_mmd_loss`.

    Parameters
    ----------
    recorded_trials : ``[n_stimuli, T, R, cells]``
        Recorded counts per bin, R ≥ 2.
    tau_s : float
        PSP time constant in bins.
    per_cell : bool
        One bandwidth per (stimulus, cell) instead of per stimulus.

    Returns
    -------
    np.ndarray, ``[n_stimuli]`` or ``[n_stimuli, cells]``
        Bandwidths in feature units (spikes per bin, time-weighted as Eq. 27).
    """
    from neurocode.losses import _median_bandwidth  # the loss's own rule, on the recorded set

    rec = _counts(recorded_trials, "recorded_trials")
    if rec.shape[2] < 2:
        raise ValueError(f"recorded_trials needs at least 2 trials per stimulus, got {rec.shape[2]}")
    h = _median_bandwidth(_features(rec, tau_s, per_cell)).numpy()
    return h.reshape(rec.shape[0], rec.shape[3]) if per_cell else h


def gaussian_mmd2(model_trials, recorded_trials, bandwidth=None, tau_s: float = 2.0,
                  per_cell: bool = False) -> np.ndarray:
    """Unbiased Gaussian-kernel MMD² between model and recorded single trials, per stimulus.

    ``MMD²_u = mean_{i≠i'} k(x_i, x_i') + mean_{j≠j'} k(y_j, y_j') − 2 mean_{i,j} k(x_i, y_j)``
    with ``k(a, b) = exp(−‖a − b‖² / 2h²)`` on PSP features (the kernel code of
    :func:`neurocode.losses.set_mmd_loss` with ``kernel="gaussian"``).

    Parameters
    ----------
    model_trials : ``[n_stimuli, T, K, cells]``
        Model single trials (spike counts per bin), K ≥ 2.
    recorded_trials : ``[n_stimuli, T, R, cells]``
        Recorded single trials of the same stimuli, R ≥ 2.
    bandwidth : array, optional
        ``[n_stimuli]`` (joint) or ``[n_stimuli, cells]`` (``per_cell``); default
        :func:`recorded_bandwidth` of ``recorded_trials``.
    tau_s : float
        PSP time constant in bins (SPEC section 5: 2).
    per_cell : bool
        Each cell's trials on their own (features ``[T]``) instead of jointly (``[T·cells]``).

    Returns
    -------
    np.ndarray, ``[n_stimuli]`` or ``[n_stimuli, cells]``
        MMD² (dimensionless, in [−2, 2]; expectation 0 for equal distributions).
    """
    import torch

    from neurocode.losses import set_mmd_loss

    mod = _counts(model_trials, "model_trials")
    rec = _counts(recorded_trials, "recorded_trials")
    if (mod.shape[0], mod.shape[1], mod.shape[3]) != (rec.shape[0], rec.shape[1], rec.shape[3]):
        raise ValueError(f"model_trials {mod.shape} and recorded_trials {rec.shape} must agree in stimuli, T and cells")
    if bandwidth is None:
        bandwidth = recorded_bandwidth(rec, tau_s, per_cell)
    h = np.asarray(bandwidth, dtype=np.float64)
    want = (rec.shape[0], rec.shape[3]) if per_cell else (rec.shape[0],)
    if h.shape != want:
        raise ValueError(f"bandwidth must have shape {want}, got {h.shape}")

    def trials(a):  # [n, T, K, N] -> [T, K, B, N'] as set_mmd_loss takes it
        t = torch.as_tensor(a, dtype=torch.float64).permute(1, 2, 0, 3)
        return t.reshape(t.shape[0], t.shape[1], -1, 1) if per_cell else t

    out = set_mmd_loss(trials(mod), trials(rec), kernel="gaussian", tau_s=tau_s,
                       bandwidth=torch.as_tensor(h.ravel()), reduction="none")
    return out.numpy().reshape(want)


def split_half_mmd2(recorded_trials, bandwidth=None, tau_s: float = 2.0, per_cell: bool = False) -> np.ndarray:
    """The recording's own MMD²: its even trials (0, 2, ...) against its odd trials (1, 3, ...).

    The floor beside :func:`gaussian_mmd2`: same kernel and bandwidth (default: the median
    rule on *all* recorded trials, as the model is scored), expectation 0. Needs R ≥ 4.

    Returns
    -------
    np.ndarray, ``[n_stimuli]`` or ``[n_stimuli, cells]``
    """
    rec = _counts(recorded_trials, "recorded_trials")
    if rec.shape[2] < 4:
        raise ValueError(f"the split-half MMD² needs at least 4 recorded trials, got {rec.shape[2]}")
    if bandwidth is None:
        bandwidth = recorded_bandwidth(rec, tau_s, per_cell)
    return gaussian_mmd2(rec[:, :, 0::2], rec[:, :, 1::2], bandwidth, tau_s, per_cell)


# --------------------------------------------------------------------------- Fano factors
def fano_scores(recorded_counts, model_counts, min_mean_count: float = 0.5) -> dict[str, Any]:
    """Per-cell Fano factors of window counts, model vs recorded, over the counted pairs.

    Parameters
    ----------
    recorded_counts : ``[n_stimuli, R, cells]``
        Recorded spike counts in the window (e.g. the 0.3-s response), per trial.
    model_counts : ``[n_stimuli, K, cells]``
        Model spike counts in the same window.
    min_mean_count : float
        A (stimulus, cell) pair counts where the recorded mean count is at least this
        (spikes per window) and the model's FF is defined (its mean count > 0).

    Returns
    -------
    dict
        ``recorded_ff_active``, ``model_ff_active`` (``[cells]``, NaN for a cell without a
        counted pair); ``ff_recorded``, ``ff_model``, ``ff_abs_diff`` (means over counted
        cells), ``ff_corr`` (r across counted cells, ``None`` under the minimum-point rule),
        ``ff_n_cells``, ``ff_n_pairs`` (counted pairs), ``ff_n_active_pairs`` (pairs passing
        the recorded-count rule, model FF defined or not).
    """
    rec = np.asarray(to_numpy(recorded_counts), float)
    mod = np.asarray(to_numpy(model_counts), float)
    if rec.ndim != 3 or mod.ndim != 3 or rec.shape[0] != mod.shape[0] or rec.shape[2] != mod.shape[2]:
        raise ValueError(f"recorded_counts [n, R, cells] and model_counts [n, K, cells] must agree in n and "
                         f"cells, got {rec.shape} and {mod.shape}")
    def ff(counts):  # [n, N]; NaN for a single trial (no variance across trials), without the warning
        return fano_factor(counts, axis_trials=1) if counts.shape[1] >= 2 else np.full((n, N), np.nan)

    n, N = rec.shape[0], rec.shape[2]
    ff_rec, ff_mod = ff(rec), ff(mod)
    active = rec.mean(axis=1) >= min_mean_count
    counted = active & np.isfinite(ff_rec) & np.isfinite(ff_mod)
    n_per_cell = counted.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cell_rec = np.where(n_per_cell > 0, np.where(counted, ff_rec, 0).sum(0) / n_per_cell, np.nan)
        cell_mod = np.where(n_per_cell > 0, np.where(counted, ff_mod, 0).sum(0) / n_per_cell, np.nan)
    ok = np.isfinite(cell_rec) & np.isfinite(cell_mod)
    r, _ = _correlation(cell_rec[ok], cell_mod[ok])
    return {
        "recorded_ff_active": cell_rec, "model_ff_active": cell_mod,
        "ff_recorded": float(cell_rec[ok].mean()) if ok.any() else None,
        "ff_model": float(cell_mod[ok].mean()) if ok.any() else None,
        "ff_abs_diff": float(np.abs(cell_mod[ok] - cell_rec[ok]).mean()) if ok.any() else None,
        "ff_corr": r, "ff_n_cells": int(ok.sum()), "ff_n_pairs": int(counted.sum()),
        "ff_n_active_pairs": int(active.sum()), "ff_min_mean_count": float(min_mean_count),
    }


# --------------------------------------------------------------------------- noise correlations
def noise_correlations(counts) -> np.ndarray:
    """Noise correlation per cell pair: r of the count residuals over (stimulus, trial).

    Parameters
    ----------
    counts : ``[n_stimuli, trials, cells]``
        Window spike counts.

    Returns
    -------
    np.ndarray, ``[cells·(cells−1)/2]``
        Pearson r of the residuals (count − the stimulus's trial mean) of cells i < j, in
        ``np.triu_indices(cells, 1)`` order; NaN where a cell's residuals are all 0.
    """
    c = np.asarray(to_numpy(counts), float)
    if c.ndim != 3:
        raise ValueError(f"counts must be [n_stimuli, trials, cells], got shape {c.shape}")
    res = (c - c.mean(axis=1, keepdims=True)).reshape(-1, c.shape[2])
    ss = np.sqrt((res * res).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(ss > 0, res / ss, np.nan)
    iu = np.triu_indices(c.shape[2], 1)
    return (z.T @ z)[iu]


def noise_correlation_scores(recorded_counts, model_counts, n_shuffles: int = 20, seed: int = 0) -> dict[str, Any]:
    """Model vs recorded noise correlations, with the sampling error of the recorded values.

    Parameters
    ----------
    recorded_counts : ``[n_stimuli, R, cells]``
    model_counts : ``[n_stimuli, K, cells]``
    n_shuffles : int
        Trial shuffles for the null SD (trials permuted independently per cell and stimulus).
    seed : int
        Seed of the shuffles.

    Returns
    -------
    dict
        ``noise_corr_recorded_mean/_sd``, ``noise_corr_model_mean/_sd`` (over pairs),
        ``noise_corr_r`` (model vs recorded across pairs) and ``noise_corr_n_pairs`` (pairs
        where both are defined), ``noise_corr_null_sd``, ``noise_corr_n_resolvable`` (recorded
        |r| > 2 null SD), ``noise_corr_n_chance`` (the number expected under the null),
        ``noise_corr_split_half_r`` (odd vs even recorded trials across pairs; ``None`` under
        the minimum-point rule or with fewer than 4 trials).
    """
    rec = np.asarray(to_numpy(recorded_counts), float)
    rec_nc = noise_correlations(rec)
    mod_nc = noise_correlations(model_counts)
    r, n_pairs = _correlation(rec_nc, mod_nc)
    rng = np.random.default_rng(seed)
    n, R, N = rec.shape
    null = []
    for _ in range(n_shuffles):
        order = rng.permuted(np.broadcast_to(np.arange(R)[None, :, None], rec.shape), axis=1)
        null.append(noise_correlations(np.take_along_axis(rec, order, axis=1)))
    null = np.concatenate(null)
    null_sd = float(np.nanstd(null)) if np.isfinite(null).any() else None
    split = _correlation(noise_correlations(rec[:, 0::2]), noise_correlations(rec[:, 1::2]))[0] if R >= 4 else None
    defined = np.isfinite(rec_nc)
    resolvable = int((np.abs(rec_nc[defined]) > 2 * null_sd).sum()) if null_sd else 0
    chance = float(np.mean(np.abs(null[np.isfinite(null)]) > 2 * null_sd) * defined.sum()) if null_sd else None

    def ms(v):
        v = v[np.isfinite(v)]
        return (float(v.mean()), float(v.std())) if v.size else (None, None)

    out = {"noise_corr_r": r, "noise_corr_n_pairs": n_pairs, "noise_corr_null_sd": null_sd,
           "noise_corr_n_resolvable": resolvable, "noise_corr_n_chance": chance,
           "noise_corr_n_recorded_pairs": int(defined.sum()), "noise_corr_split_half_r": split}
    out["noise_corr_recorded_mean"], out["noise_corr_recorded_sd"] = ms(rec_nc)
    out["noise_corr_model_mean"], out["noise_corr_model_sd"] = ms(mod_nc)
    return out


# --------------------------------------------------------------------------- peaks
def peak_fidelity(recorded_psth, model_psth, threshold: float = 0.5) -> dict[str, Any]:
    """How well the model reaches the recorded PSTH peaks.

    Parameters
    ----------
    recorded_psth, model_psth : ``[n_stimuli, T, cells]``
        Trial-averaged counts, spikes per bin.
    threshold : float
        Spikes per bin: the recorded bins above it are the peaks.

    Returns
    -------
    dict
        ``peak_ratio`` (mean of model/recorded over the peak bins, ``None`` if there are
        none), ``peak_n_bins``, ``peak_max_ratio`` (model max / recorded max over all bins),
        ``model_psth_max`` and ``recorded_psth_max`` (spikes per bin), ``peak_threshold``.
    """
    rec = np.asarray(to_numpy(recorded_psth), float)
    mod = np.asarray(to_numpy(model_psth), float)
    if rec.shape != mod.shape:
        raise ValueError(f"recorded_psth and model_psth must have the same shape, got {rec.shape} and {mod.shape}")
    peaks = rec > threshold
    rmax, mmax = float(rec.max()), float(mod.max())
    return {"peak_ratio": float((mod[peaks] / rec[peaks]).mean()) if peaks.any() else None,
            "peak_n_bins": int(peaks.sum()), "peak_max_ratio": mmax / rmax if rmax > 0 else None,
            "model_psth_max": mmax, "recorded_psth_max": rmax, "peak_threshold": float(threshold)}


# --------------------------------------------------------------------------- all together
def distribution_scores(recorded, model_trials, tau_s: float = 2.0, min_mean_count: float = 0.5,
                        peak_threshold: float = 0.5, seed: int = 0) -> dict[str, Any]:
    """Every distribution score of the module docstring for one run.

    Parameters
    ----------
    recorded : ``[n_stimuli, T, R, cells]``
        Recorded counts per bin of the test stimuli.
    model_trials : ``[n_stimuli, T, K, cells]``
        The model's single trials (:func:`model_single_trials`).
    tau_s : float
        PSP time constant in bins.
    min_mean_count : float
        Recorded mean window count for a (stimulus, cell) pair to enter the Fano scores.
    peak_threshold : float
        Recorded PSTH (spikes per bin) above which a bin is a peak.
    seed : int
        Seed of the noise-correlation null.

    Returns
    -------
    dict
        The flat scores (``None`` where undefined) and ``per_cell``: ``{name: [cells]}`` for
        ``mmd2``, ``mmd2_floor`` (per-cell MMD² and floor, averaged over stimuli),
        ``recorded_ff_active`` and ``model_ff_active`` (the Fano factors over counted pairs).
    """
    rec = _counts(recorded, "recorded")
    mod = _counts(model_trials, "model_trials")
    n, T, R, N = rec.shape
    K = mod.shape[2]
    out: dict[str, Any] = {"distribution_model_trials": int(K), "distribution_recorded_trials": int(R)}
    per_cell: dict[str, np.ndarray] = {}
    if K >= 2 and R >= 2:
        h_joint = recorded_bandwidth(rec, tau_s)
        h_cell = recorded_bandwidth(rec, tau_s, per_cell=True)
        joint = gaussian_mmd2(mod, rec, h_joint, tau_s)
        cell = gaussian_mmd2(mod, rec, h_cell, tau_s, per_cell=True).mean(axis=0)  # [N]
        out["mmd2"], out["mmd2_sem"], out["mmd2_n_stimuli"] = _mean_sem(joint)
        out["mmd2_cell"], out["mmd2_cell_sem"], out["mmd2_n_cells"] = _mean_sem(cell)
        per_cell["mmd2"] = cell
        if R >= 4:
            floor = split_half_mmd2(rec, h_joint, tau_s)
            floor_cell = split_half_mmd2(rec, h_cell, tau_s, per_cell=True).mean(axis=0)
            out["mmd2_floor"], out["mmd2_floor_sem"], _ = _mean_sem(floor)
            out["mmd2_cell_floor"], out["mmd2_cell_floor_sem"], _ = _mean_sem(floor_cell)
            per_cell["mmd2_floor"] = floor_cell
    per_cell.setdefault("mmd2", np.full(N, np.nan))
    per_cell.setdefault("mmd2_floor", np.full(N, np.nan))
    ff = fano_scores(rec.sum(axis=1), mod.sum(axis=1), min_mean_count)
    per_cell["recorded_ff_active"] = ff.pop("recorded_ff_active")
    per_cell["model_ff_active"] = ff.pop("model_ff_active")
    out.update(ff)
    out.update(noise_correlation_scores(rec.sum(axis=1), mod.sum(axis=1), seed=seed))
    out.update(peak_fidelity(rec.mean(axis=2), mod.mean(axis=2), peak_threshold))
    out["per_cell"] = per_cell
    return out


def format_distribution(metrics: dict) -> list[str]:
    """The distribution scores of ``metrics.json`` as lines of the run's printout ([] if absent)."""
    if "ff_n_pairs" not in metrics:
        return []

    def f(v, fmt="{:.3f}"):
        return "n/a" if v is None else fmt.format(v)

    def pm(key):
        sem = metrics.get(key + "_sem")
        return f(metrics.get(key), "{:.4f}") + ("" if sem is None else f" ± {sem:.4f}")

    def row(label, text):
        return f"  {label:<35}{text}"

    lines = [f"  single-trial distribution ({metrics.get('distribution_model_trials')} model trials vs "
             f"{metrics.get('distribution_recorded_trials')} recorded per stimulus; lower MMD² is better)"]
    if metrics.get("mmd2") is not None:
        lines += [
            row("MMD² (Gaussian, PSP), joint", f"{pm('mmd2'):<18} floor (split half) {pm('mmd2_floor')} "
                f"({metrics.get('mmd2_n_stimuli')} stimuli)"),
            row("MMD² per cell", f"{pm('mmd2_cell'):<18} floor (split half) {pm('mmd2_cell_floor')} "
                f"({metrics.get('mmd2_n_cells')} cells)"),
        ]
    lines += [
        row(f"Fano factor (mean count >= {metrics.get('ff_min_mean_count', 0.5):g})",
            f"|ΔFF| {f(metrics.get('ff_abs_diff'))}, r {f(metrics.get('ff_corr'))} (recorded "
            f"{f(metrics.get('ff_recorded'), '{:.2f}')}, model {f(metrics.get('ff_model'), '{:.2f}')}; "
            f"{metrics.get('ff_n_cells')} cells, {metrics.get('ff_n_pairs')} of {metrics.get('ff_n_active_pairs')} "
            "active image/cell pairs)"),
        row("noise correlations (count resid.)",
            f"r {f(metrics.get('noise_corr_r'))} over {metrics.get('noise_corr_n_pairs')} pairs (recorded "
            f"{f(metrics.get('noise_corr_recorded_mean'))} ± {f(metrics.get('noise_corr_recorded_sd'))}, model "
            f"{f(metrics.get('noise_corr_model_mean'))} ± {f(metrics.get('noise_corr_model_sd'))})"),
        row("  resolvable",
            f"null SD {f(metrics.get('noise_corr_null_sd'))}: {metrics.get('noise_corr_n_resolvable')} recorded pairs "
            f"beyond 2 SD ({f(metrics.get('noise_corr_n_chance'), '{:.0f}')} by chance); split-half r "
            f"{f(metrics.get('noise_corr_split_half_r'))}"),
        row(f"PSTH peaks (recorded > {metrics.get('peak_threshold', 0.5):g}/bin)",
            f"model/recorded {f(metrics.get('peak_ratio'), '{:.2f}')} over {metrics.get('peak_n_bins')} bins; max "
            f"{f(metrics.get('model_psth_max'), '{:.2f}')} / {f(metrics.get('recorded_psth_max'), '{:.2f}')} = "
            f"{f(metrics.get('peak_max_ratio'), '{:.2f}')} spikes/bin"),
    ]
    return lines
