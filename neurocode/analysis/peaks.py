"""Why a model falls short of the recorded PSTH peaks: timing, width, amplitude and selection.

The peak fidelity of :func:`neurocode.analysis.distribution.peak_fidelity` is the mean of
model / recorded PSTH over the bins where the *recorded* PSTH exceeds a threshold. Those bins
are chosen on a noisy quantity (a PSTH of R trials), so even the cell's true rate would score
below 1 there (the bins whose noise pushed them over the threshold are over-represented, and
the ratio has the noisy value in its denominator); and a model that predicts the images'
responses imperfectly but without bias regresses toward its mean exactly where the recording is
highest. The functions here separate these from a model's own shortfall:

- :func:`peak_windows`: the ratio of model to recorded spike sums over each peak bin and its
  +-w neighbours (a late, early or too wide model peak recovers in the window; a too low one
  does not), and the lag of the model's largest bin near each recorded local maximum;
- :func:`selection_ceiling`: the peak ratio that a model equal to the recording's own rate
  scores against an R-trial PSTH (bootstrap over trials): the ceiling the threshold rule sets;
- :func:`calibration`: the same ratio with the bins chosen on the *model's* PSTH (recorded /
  model, no selection on the recorded noise), and the least-squares slopes of each PSTH on the
  other (a calibrated model has a slope of the recorded PSTH on the model's of 1; then the slope
  of the model on the recording is the share of the recorded variance the model explains);
- :func:`image_profile`: the across-image mean PSTH per cell (the temporal profile shared by all
  images) and the across-image spread at each cell's peak time, model against recorded (the
  recorded spread corrected for its trial noise).

Shapes: recorded trials ``[n_stimuli, T, R, cells]``, PSTHs ``[n_stimuli, T, cells]``, spikes per bin.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["peak_windows", "selection_ceiling", "calibration", "image_profile", "peak_diagnosis"]


def _psths(recorded_psth, model_psth) -> tuple[np.ndarray, np.ndarray]:
    rec = np.asarray(recorded_psth, float)
    mod = np.asarray(model_psth, float)
    if rec.ndim != 3 or rec.shape != mod.shape:
        raise ValueError(f"recorded_psth and model_psth must be [n_stimuli, T, cells] of one shape, got "
                         f"{rec.shape} and {mod.shape}")
    return rec, mod


def _window_sum(x: np.ndarray, w: int) -> np.ndarray:
    """``sum_{|d| <= w} x[:, t + d]`` along time (axis 1), the window cut at the ends."""
    if w == 0:
        return x
    c = np.concatenate([np.zeros_like(x[:, :1]), np.cumsum(x, axis=1)], axis=1)  # [n, T + 1, N]
    T = x.shape[1]
    lo = np.clip(np.arange(T) - w, 0, T)
    hi = np.clip(np.arange(T) + w + 1, 0, T)
    return c[:, hi] - c[:, lo]


def peak_windows(recorded_psth, model_psth, threshold: float = 0.5, half_widths=(0, 1, 2),
                 max_lag: int = 3) -> dict[str, Any]:
    """Timing against amplitude at the recorded peaks.

    Parameters
    ----------
    recorded_psth, model_psth : ``[n_stimuli, T, cells]``
        Spikes per bin.
    threshold : float
        The recorded bins above it are the peaks (as :func:`~neurocode.analysis.distribution.peak_fidelity`).
    half_widths : sequence of int
        Window half widths w in bins.
    max_lag : int
        How far (bins) from a recorded maximum the model's largest bin is looked for; a maximum is a
        peak bin that is the largest within that distance.

    Returns
    -------
    dict
        ``window_ratio_w{w}``: the mean over peak bins of (model sum / recorded sum over the bin
        and its +-w neighbours) (w = 0: ``peak_fidelity``'s ``peak_ratio``);
        ``window_sum_ratio_w{w}``: the ratio of those sums totalled over all peak bins;
        ``n_maxima``: recorded peak bins that are the largest within +-``max_lag`` bins; ``lag_mean``, ``lag_counts``
        (``{lag: n}``, lag > 0: the model's largest bin within +-``max_lag`` comes later);
        ``max_ratio_at_peak`` and ``max_ratio_near_peak``: mean of model / recorded at the
        recorded maximum, and of the model's largest bin within +-``max_lag`` over it;
        ``flank_ratio``: mean of model / recorded in the bins beside each maximum (a blurred model
        peak is low at the maximum and high on its flanks), ``flank_sum_ratio``: their sums' ratio.
    """
    rec, mod = _psths(recorded_psth, model_psth)
    peaks = rec > threshold
    out: dict[str, Any] = {"n_peak_bins": int(peaks.sum())}
    for w in half_widths:
        rs, ms = _window_sum(rec, int(w)), _window_sum(mod, int(w))
        out[f"window_ratio_w{w}"] = float((ms[peaks] / rs[peaks]).mean()) if peaks.any() else None
        out[f"window_sum_ratio_w{w}"] = float(ms[peaks].sum() / rs[peaks].sum()) if peaks.any() else None
    T = rec.shape[1]
    pad = np.pad(rec, ((0, 0), (max_lag, max_lag), (0, 0)), constant_values=-np.inf)
    # a peak's model counterpart is sought within +-max_lag, so a maximum is one over that window
    window_max = np.max([pad[:, d: d + T] for d in range(2 * max_lag + 1)], axis=0)
    maxima = peaks & (rec >= window_max)
    s, t, c = np.nonzero(maxima)
    out["n_maxima"] = int(s.size)
    if s.size:
        lags = np.arange(-max_lag, max_lag + 1)
        idx = np.clip(t[:, None] + lags[None], 0, T - 1)
        near = mod[s[:, None], idx, c[:, None]]  # [n_max, 2 L + 1]
        valid = (t[:, None] + lags[None] >= 0) & (t[:, None] + lags[None] < T)
        near = np.where(valid, near, -np.inf)
        best = lags[near.argmax(axis=1)]
        out["lag_mean"] = float(best.mean())
        out["lag_counts"] = {int(k): int((best == k).sum()) for k in lags}
        out["max_ratio_at_peak"] = float((mod[s, t, c] / rec[s, t, c]).mean())
        out["max_ratio_near_peak"] = float((near.max(axis=1) / rec[s, t, c]).mean())
        flank_m, flank_r = [], []
        for d in (-1, 1):
            ok = (t + d >= 0) & (t + d < T)
            flank_m.append(mod[s[ok], t[ok] + d, c[ok]])
            flank_r.append(rec[s[ok], t[ok] + d, c[ok]])
        fm, fr = np.concatenate(flank_m), np.concatenate(flank_r)
        pos = fr > 0
        out["flank_ratio"] = float((fm[pos] / fr[pos]).mean()) if pos.any() else None
        out["flank_sum_ratio"] = float(fm.sum() / fr.sum()) if fr.sum() > 0 else None
    return out


def selection_ceiling(recorded, threshold: float = 0.5, n_boot: int = 100, seed: int = 0) -> dict[str, Any]:
    """What a model equal to the recording's own rate scores at the recorded peaks.

    Each bootstrap sample draws R of the R recorded trials with replacement per stimulus; its PSTH
    plays the recording, the PSTH of all R trials the model (the rate estimate nearest the truth),
    and :func:`peak_windows` is taken with the bins chosen on the resampled PSTH, as the score
    chooses them on the recorded one.

    Parameters
    ----------
    recorded : ``[n_stimuli, T, R, cells]``
        Recorded counts per bin.
    threshold : float
        Spikes per bin.
    n_boot : int
        Bootstrap samples.
    seed : int

    Returns
    -------
    dict
        ``ceiling`` (the peak ratio, mean over samples) and ``ceiling_sd`` (its SD over samples);
        ``ceiling_{key}`` for the other ratios of :func:`peak_windows` (``window_ratio_w1``,
        ``max_ratio_at_peak``, ``flank_ratio``, ...) and ``ceiling_max_ratio`` (the ratio of
        the PSTH maxima), means over samples; ``n_boot``.
    """
    rec = np.asarray(recorded, float)
    if rec.ndim != 4 or rec.shape[2] < 2:
        raise ValueError(f"recorded must be [n_stimuli, T, R >= 2, cells], got {rec.shape}")
    n, T, R, N = rec.shape
    truth = rec.mean(axis=2)
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {}
    for _ in range(int(n_boot)):
        pick = rng.integers(0, R, size=(n, R))
        boot = np.take_along_axis(rec, pick[:, None, :, None], axis=2).mean(axis=2)
        stats = peak_windows(boot, truth, threshold)
        stats["max_ratio"] = truth.max() / boot.max() if boot.max() > 0 else None
        for k, v in stats.items():
            if isinstance(v, float):
                samples.setdefault(k, []).append(v)
    out: dict[str, Any] = {f"ceiling_{k}": float(np.mean(v)) for k, v in samples.items()
                           if k.endswith("ratio") or "_ratio_" in k}
    peak = samples.get("window_ratio_w0", [])
    out["ceiling"] = float(np.mean(peak)) if peak else None
    out["ceiling_sd"] = float(np.std(peak)) if peak else None
    out["n_boot"] = int(n_boot)
    return out


def calibration(recorded_psth, model_psth, threshold: float = 0.5) -> dict[str, Any]:
    """The model's peaks judged on its own: bins chosen on the model's PSTH, and the two slopes.

    Returns
    -------
    dict
        ``model_peak_ratio``: mean of recorded / model over the bins where the model's PSTH
        exceeds ``threshold`` (1 for a model calibrated at its peaks; < 1: it over-predicts
        there), ``model_peak_n_bins``; ``slope_recorded_on_model`` and ``slope_model_on_recorded``:
        the least-squares slopes over all bins (stimuli, bins and cells pooled, each centred);
        ``regression_peak_ratio``: the peak ratio the straight line of the model on the
        recording predicts, the mean over the recorded peak bins of
        ``(mean_model + slope_model_on_recorded (rec - mean_rec)) / rec`` (equal to the
        measured one when the shortfall at the peaks is the model's regression toward its mean,
        nothing peculiar to the peaks).
    """
    rec, mod = _psths(recorded_psth, model_psth)
    peaks = mod > threshold
    r, m = rec.ravel() - rec.mean(), mod.ravel() - mod.mean()
    slope = float((r @ m) / (r @ r)) if r @ r > 0 else None
    rec_peaks = rec > threshold
    line = None
    if slope is not None and rec_peaks.any():
        line = float(((mod.mean() + slope * (rec[rec_peaks] - rec.mean())) / rec[rec_peaks]).mean())
    return {"model_peak_ratio": float((rec[peaks] / mod[peaks]).mean()) if peaks.any() else None,
            "model_peak_n_bins": int(peaks.sum()),
            "slope_recorded_on_model": float((r @ m) / (m @ m)) if m @ m > 0 else None,
            "slope_model_on_recorded": slope, "regression_peak_ratio": line}


def image_profile(recorded, model_psth) -> dict[str, Any]:
    """The shared temporal profile and the spread across images at each cell's peak time.

    Parameters
    ----------
    recorded : ``[n_stimuli, T, R, cells]``
    model_psth : ``[n_stimuli, T, cells]``

    Returns
    -------
    dict
        ``profile_peak_ratio``: mean over cells of the model's across-image mean PSTH over the
        recording's, at the bin where the recording's is largest (the temporal profile all images
        share); ``profile_peak_lag``: mean over cells of (model's argmax - recorded argmax) of
        those profiles, bins; ``spread_ratio``: mean over cells of the model's SD across images
        over the recording's (its trial-noise variance, var / R per image, subtracted), at that
        bin; ``n_cells`` (cells with a positive recorded profile and spread); ``time_ratio``
        (``[T]``, None where the recording is silent): the model's spikes over the recorded ones per bin,
        pooled over stimuli and cells (the population's time course, no bin chosen on the recording).
    """
    rec = np.asarray(recorded, float)
    mod = np.asarray(model_psth, float)
    if rec.ndim != 4 or mod.shape != (rec.shape[0], rec.shape[1], rec.shape[3]):
        raise ValueError(f"recorded must be [n, T, R, cells] and model_psth [n, T, cells], got {rec.shape} and "
                         f"{mod.shape}")
    R = rec.shape[2]
    psth = rec.mean(axis=2)
    noise = (rec.var(axis=2, ddof=1) / R).mean(axis=0)  # [T, N]: the trial noise of a PSTH's variance
    prof_r, prof_m = psth.mean(axis=0), mod.mean(axis=0)  # [T, N]
    t = prof_r.argmax(axis=0)
    cells = np.arange(prof_r.shape[1])
    var_r = psth.var(axis=0, ddof=1)[t, cells] - noise[t, cells]
    sd_m = mod.std(axis=0, ddof=1)[t, cells]
    ok = (prof_r[t, cells] > 0) & (var_r > 0)
    pooled_r, pooled_m = psth.sum(axis=(0, 2)), mod.sum(axis=(0, 2))
    time_ratio = [float(m / r) if r > 0 else None for m, r in zip(pooled_m, pooled_r)]
    return {"time_ratio": time_ratio,
            "profile_peak_ratio": float((prof_m[t, cells] / prof_r[t, cells])[ok].mean()) if ok.any() else None,
            "profile_peak_lag": float((prof_m.argmax(axis=0) - t)[ok].mean()) if ok.any() else None,
            "spread_ratio": float((sd_m[ok] / np.sqrt(var_r[ok])).mean()) if ok.any() else None,
            "n_cells": int(ok.sum())}


def peak_diagnosis(recorded, model_psth, threshold: float = 0.5, n_boot: int = 100, seed: int = 0) -> dict[str, Any]:
    """:func:`peak_windows`, :func:`selection_ceiling`, :func:`calibration` and :func:`image_profile` in one
    flat dict, with ``peak_ratio`` (as ``peak_fidelity``) and ``peak_ratio_over_ceiling``."""
    rec = np.asarray(recorded, float)
    psth = rec.mean(axis=2)
    out = peak_windows(psth, model_psth, threshold)
    out["peak_ratio"] = out["window_ratio_w0"]
    out.update(selection_ceiling(rec, threshold, n_boot, seed))
    out.update(calibration(psth, model_psth, threshold))
    out.update(image_profile(rec, model_psth))
    if out["peak_ratio"] is not None and out["ceiling"]:
        out["peak_ratio_over_ceiling"] = out["peak_ratio"] / out["ceiling"]
    return out
