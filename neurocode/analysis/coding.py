"""Neural-coding analyses of the paper (Fig. 4B) and variability reproduction.

* :func:`coding_analysis` — per stimulus, mean Fano factor of a population's spike counts
  across K repeated trials vs. the cosine similarity of the trials' prediction vectors;
  Pearson correlation of the two across stimuli (paper: significantly negative in NSNNs).
* :func:`model_coding_analysis` — runs any spiking ``nn.Module`` K times per input.
* :func:`recorded_coding_analysis` — the same relation on the real retina recording, with
  the population spike-count vector of each trial as its "prediction".
* :func:`variability_reproduction` — recorded vs. model Fano factor per cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from neurocode.analysis.conversion import to_numpy
from neurocode.analysis.statistics import MIN_CORRELATION_POINTS, fano_factor, pearson, prediction_cosine_similarity

__all__ = [
    "CodingResult",
    "VariabilityResult",
    "coding_analysis",
    "model_coding_analysis",
    "recorded_coding_analysis",
    "variability_reproduction",
    "per_cell_fano",
]


@dataclass
class CodingResult:
    """Result of the Fig. 4B analysis.

    Attributes
    ----------
    mean_fano : np.ndarray ``[n_stimuli]``
        Mean Fano factor over units (units silent in all trials are ignored; NaN if all are).
    cosine : np.ndarray ``[n_stimuli]``
        Mean pairwise cosine similarity between trials' prediction vectors.
    r, p : float
        Pearson correlation of ``mean_fano`` and ``cosine`` across stimuli (finite pairs); NaN
        over fewer than :data:`~neurocode.analysis.statistics.MIN_CORRELATION_POINTS` of them.
    slope, intercept : float
        Least-squares fit ``cosine ~ slope * mean_fano + intercept`` (the dotted line).
    """

    mean_fano: np.ndarray
    cosine: np.ndarray
    r: float
    p: float
    slope: float = float("nan")
    intercept: float = float("nan")

    @property
    def n_valid(self) -> int:
        return int(np.sum(np.isfinite(self.mean_fano) & np.isfinite(self.cosine)))


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return float("nan"), float("nan")
    s, i = np.polyfit(x[ok], y[ok], 1)
    return float(s), float(i)


def coding_analysis(counts_per_stimulus, predictions=None, ddof: int = 0) -> CodingResult:
    """Fig. 4B: mean Fano factor vs prediction cosine similarity across stimuli.

    Parameters
    ----------
    counts_per_stimulus : ``[n_stimuli, trials, units]``
        Spike counts (summed over time) of the neural code (final spiking layer / cells).
    predictions : ``[n_stimuli, trials, features]``, optional
        Prediction vectors per trial (e.g. class scores). Default: the population
        spike-count vectors themselves.
    ddof : int
        Passed to :func:`fano_factor` (0 = elephant).
    """
    counts = to_numpy(counts_per_stimulus).astype(float)
    if counts.ndim != 3:
        raise ValueError(f"counts must be [n_stimuli, trials, units], got {counts.shape}")
    if counts.size == 0:
        raise ValueError(f"counts is empty (shape {counts.shape})")
    ff = fano_factor(counts, axis_trials=1, ddof=ddof)  # [n_stimuli, units]
    with np.errstate(all="ignore"):
        valid = np.isfinite(ff)
        mean_ff = np.where(valid.any(1), np.nansum(ff, 1) / np.maximum(valid.sum(1), 1), np.nan)
    preds = counts if predictions is None else to_numpy(predictions).astype(float)
    preds = preds.reshape(preds.shape[0], preds.shape[1], -1)
    cos = prediction_cosine_similarity(preds, axis_trials=1)
    r, p = pearson(mean_ff, cos, MIN_CORRELATION_POINTS)
    slope, intercept = _fit(mean_ff, cos)
    return CodingResult(mean_ff, np.asarray(cos, float), r, p, slope, intercept)


def _first(out):
    if isinstance(out, (tuple, list)):
        return out[0]
    if isinstance(out, dict):
        return out.get("spikes", next(iter(out.values())))
    return out


def model_coding_analysis(model, inputs, n_trials: int = 10, *, code_layer=None,
                          spikes_fn: Callable | None = None, prediction_fn: Callable | None = None,
                          batch_size: int = 64, batch_axis: int = 0, time_axis: int = 0,
                          seed: int | None = None, progress: bool = False) -> CodingResult:
    """Run ``model`` K times on each input and apply :func:`coding_analysis`.

    Parameters
    ----------
    model : nn.Module
        Stochastic spiking model; its output (or ``spikes_fn(output)``) is time-major spikes
        ``[T, B, ...]``. The model's train/eval mode is left untouched (make sure its noise
        is active in the mode you use).
    inputs : torch.Tensor
        Stimuli stacked along ``batch_axis`` (``[n, C, H, W]`` -> ``batch_axis=0``;
        ``[T, n, ...]`` -> ``batch_axis=1``).
    n_trials : int
        Repetitions K per stimulus (each a separate forward pass with fresh noise).
    code_layer : nn.Module, optional
        Layer whose (first) output is the neural code (paper: the final spiking layer),
        captured with a forward hook. Default: the model's spike output.
    spikes_fn : callable, optional
        Extracts spikes from the model output (default: the output, or its first element).
    prediction_fn : callable, optional
        Maps the model output to prediction vectors ``[B, features]`` (e.g.
        ``lambda out: out.mean(0)`` for time-averaged class scores). Default: the spike
        counts of the model output, flattened per sample.
    time_axis : int
        Time axis of the spike tensors (0 = time-major).
    seed : int, optional
        ``torch.manual_seed`` before the first pass.
    """
    import torch

    for arg, value in (("n_trials", n_trials), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{arg} must be a positive integer, got {value!r}")
    if seed is not None:
        torch.manual_seed(seed)
    x_all = inputs if torch.is_tensor(inputs) else torch.as_tensor(np.asarray(inputs))
    device = next((p.device for p in model.parameters()), x_all.device)  # the inputs go where the model is
    n = x_all.shape[batch_axis]
    captured = {}
    handle = None
    if code_layer is not None:
        def _hook(mod, inp, out):
            captured["code"] = _first(out)
        handle = code_layer.register_forward_hook(_hook)
    spikes_fn = spikes_fn or _first
    counts_all, preds_all = [], []
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc="coding analysis")
    try:
        with torch.no_grad():
            for s in starts:
                xb = x_all.narrow(batch_axis, s, min(batch_size, n - s)).to(device)
                cs, ps = [], []
                for _ in range(n_trials):
                    out = model(xb)
                    code = captured["code"] if code_layer is not None else spikes_fn(out)
                    code = code.sum(dim=time_axis)  # [B, ...]
                    cs.append(code.reshape(code.shape[0], -1).float().cpu().numpy())
                    if prediction_fn is None:
                        sp = spikes_fn(out).sum(dim=time_axis)
                        pr = sp.reshape(sp.shape[0], -1)
                    else:
                        pr = prediction_fn(out)
                        pr = pr.reshape(pr.shape[0], -1)
                    ps.append(pr.float().cpu().numpy())
                counts_all.append(np.stack(cs, axis=1))  # [B, K, units]
                preds_all.append(np.stack(ps, axis=1))
    finally:
        if handle is not None:
            handle.remove()
    return coding_analysis(np.concatenate(counts_all), np.concatenate(preds_all))


def _recording_counts(recording, bin_size=None):
    if hasattr(recording, "binned"):
        if bin_size is None:
            w = recording.window
            bin_size = float(w[1] - w[0])
        return np.asarray(recording.binned(bin_size=bin_size))
    return to_numpy(recording)


def recorded_coding_analysis(recording, time_axis: int = 1) -> CodingResult:
    """Fig. 4B relation on recorded data.

    Parameters
    ----------
    recording : ``neurocode.data.Recording`` or counts ``[n_stimuli, T, trials, cells]``
        (or already summed ``[n_stimuli, trials, cells]``). Counts are summed over the
        response window; each trial's population spike-count vector is its "prediction".
        A recording whose stimuli have different trial counts gives each stimulus's Fano
        factor and cosine similarity from its own trials (a stimulus with fewer than 2: NaN).
    """
    if hasattr(recording, "binned") and not recording.equal_trials:
        return _coding_own_trials(recording)
    counts = _recording_counts(recording)
    if counts.ndim == 4:
        counts = counts.sum(axis=time_axis)
    return coding_analysis(counts)


def _coding_own_trials(recording) -> CodingResult:
    counts = recording.binned(float(recording.window[1] - recording.window[0]), padded=True).sum(axis=1)  # [n, R, N]
    ff = np.full(recording.n_stimuli, np.nan)
    cos = np.full(recording.n_stimuli, np.nan)
    for s, n in enumerate(recording.trial_counts):
        if n >= 2:  # an absent trial is no trial of 0 spikes: only the stimulus's own
            one = coding_analysis(counts[s : s + 1, : int(n)])
            ff[s], cos[s] = one.mean_fano[0], one.cosine[0]
    r, p = pearson(ff, cos, MIN_CORRELATION_POINTS)
    slope, intercept = _fit(ff, cos)
    return CodingResult(ff, cos, r, p, slope, intercept)


@dataclass
class VariabilityResult:
    """Recorded vs model Fano factor per cell.

    ``ff_recorded``/``ff_model`` are ``[cells]`` (mean over windows/stimuli with a defined
    FF); ``r, p`` is their Pearson correlation over cells with both finite, NaN over fewer
    than :data:`~neurocode.analysis.statistics.MIN_CORRELATION_POINTS` cells.
    """

    ff_recorded: np.ndarray
    ff_model: np.ndarray
    r: float
    p: float
    extra: dict = field(default_factory=dict)

    @property
    def n_valid(self) -> int:
        """Cells the correlation is over (both Fano factors finite)."""
        return int(np.sum(np.isfinite(self.ff_recorded) & np.isfinite(self.ff_model)))


def per_cell_fano(counts, axis_trials: int = -2, ddof: int = 0) -> np.ndarray:
    """FF per (window, cell) of counts ``[..., trials, cells]``, averaged over windows -> ``[cells]``.

    Windows/stimuli where a cell is silent in all trials are skipped (NaN if always silent).
    """
    x = to_numpy(counts).astype(float)
    x = np.moveaxis(x, axis_trials % x.ndim, -2)
    ff = fano_factor(x, axis_trials=-2, ddof=ddof)  # [..., cells]
    ff = ff.reshape(-1, ff.shape[-1])
    valid = np.isfinite(ff)
    with np.errstate(all="ignore"):
        return np.where(valid.any(0), np.nansum(ff, 0) / np.maximum(valid.sum(0), 1), np.nan)


def variability_reproduction(recorded_counts, model_counts, axis_trials: int = -2,
                             ddof: int = 0) -> VariabilityResult:
    """Compare per-cell Fano factors of recorded and model responses.

    Parameters
    ----------
    recorded_counts, model_counts : ``[..., trials, cells]``
        Counts per window: e.g. ``[n_stimuli, trials, cells]`` for natural-image responses
        (summed over the 0.3 s window), or ``[n_windows, trials, cells]`` for the movie
        recordings binned into windows. FF is computed per (window, cell) across trials and
        averaged over windows. Trial numbers may differ between the two inputs.
    """
    ffr = per_cell_fano(recorded_counts, axis_trials, ddof)
    ffm = per_cell_fano(model_counts, axis_trials, ddof)
    r, p = pearson(ffr, ffm, MIN_CORRELATION_POINTS)
    return VariabilityResult(ffr, ffm, r, p)
