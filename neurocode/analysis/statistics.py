"""Spike-train statistics with vectorised fast paths tested equal to elephant.

Every function accepts numpy arrays or torch tensors (counts, time-major) and, where it
makes sense, neo objects (lists of :class:`neo.SpikeTrain`, times in seconds).
"""

from __future__ import annotations

import warnings

import numpy as np
import quantities as pq

import neo

from neurocode.analysis.conversion import (
    check_step,
    spike_counts,
    spikes_to_spiketrains,
    to_numpy,
)

__all__ = [
    "fano_factor",
    "prediction_cosine_similarity",
    "pearson",
    "rate_cc_per_cell",
    "count_cc_per_cell",
    "psth",
    "instantaneous_rate",
    "split_half_reliability",
    "MIN_CORRELATION_POINTS",
]

#: Fewest points (cells, stimuli) a correlation *across* them is computed from by the scores and
#: analyses (``fano_corr``, Fig. 4B, :func:`~neurocode.analysis.variability_reproduction`): below
#: it the correlation is n/a (NaN; ``null`` in JSON), since r over 2 points is always ±1 and over
#: 3-4 is hardly less extreme.
MIN_CORRELATION_POINTS = 5


def _numeric(data, name: str) -> np.ndarray:
    """``data`` as a float64 array; ValueError naming ``name`` if it is empty or not numeric."""
    x = to_numpy(data)
    if x.dtype == object or np.iscomplexobj(x) or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise ValueError(f"{name} must be a real numeric array (or tensor), got dtype {x.dtype}")
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    return x.astype(np.float64)


def _counts(data, name: str) -> np.ndarray:
    """``data`` as float64 spike counts; ValueError naming ``name`` for a negative or non-finite value."""
    x = _numeric(data, name)
    bad = ~np.isfinite(x) | (x < 0)
    if bad.any():
        where = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), x.shape))
        raise ValueError(f"{name} must be spike counts (finite, >= 0), got {float(x[where])!r} at index {where}")
    return x


def _check_not_empty(data, name: str) -> None:
    if isinstance(data, (list, tuple)) and len(data) == 0:
        raise ValueError(f"{name} is empty")


def _is_neo(x) -> bool:
    if isinstance(x, (neo.SpikeTrain, neo.Block, neo.Segment)):
        return True
    if isinstance(x, (list, tuple)) and len(x):
        return _is_neo(x[0])
    return False


# --------------------------------------------------------------------------- Fano factor
def fano_factor(data, axis_trials: int = -2, ddof: int = 0, time_axis: int | None = None):
    """Fano factor ``Var[n] / mean[n]`` of spike counts across repeated trials.

    Semantics follow :func:`elephant.statistics.fanofactor` (elephant 1.2): the variance
    is the population variance (``ddof=0``, the default here too) and the result is NaN
    when the mean count is 0 (all trials silent); no warning is emitted for that NaN.

    One difference, on purpose: with a single trial (generally: fewer than ``ddof + 2``
    trials) the variance *across trials* is undefined. elephant returns 0 for one spike
    train, which would claim a perfectly reliable cell; this function returns NaN and
    issues a :class:`RuntimeWarning` naming the trial count. No trials at all (empty input)
    is a ValueError.

    Parameters
    ----------
    data : array-like / torch.Tensor of counts, or neo input
        * counts ``[..., trials, cells]`` (``axis_trials=-2``): FF per remaining index,
          e.g. ``[trials, cells] -> [cells]``, ``[n_stimuli, trials, cells] -> [n_stimuli, cells]``;
        * a list of :class:`neo.SpikeTrain` (the trials of one neuron) -> float, exactly
          as elephant;
        * a nested list ``trains[trial][cell]`` -> ``[cells]``.
    axis_trials : int
        Axis of the repeated trials (counts input; for nested neo lists the first level).
    ddof : int
        Delta degrees of freedom of the variance (0 = elephant).
    time_axis : int, optional
        If given, counts are first summed over this axis (e.g. ``0`` for ``[T, trials, cells]``,
        the window being the whole array). Axis numbers refer to the input array.

    Returns
    -------
    float or np.ndarray of float

    Raises
    ------
    ValueError
        Empty or non-numeric ``data``, a negative or non-finite count, a negative ``ddof``, or
        an axis out of range.
    """
    if isinstance(ddof, bool) or not isinstance(ddof, (int, np.integer)) or ddof < 0:
        raise ValueError(f"ddof must be a non-negative integer, got {ddof!r}")
    _check_not_empty(data, "data")
    if _is_neo(data):
        if isinstance(data, (list, tuple)) and isinstance(data[0], neo.SpikeTrain):
            counts = spike_counts(data)  # [trials]
            return float(_ff(counts[:, None].astype(float), 0, ddof)[0])
        counts = spike_counts(data)  # [trial, cell] (nesting order)
        if counts.size == 0:
            raise ValueError(f"data is empty (nesting {counts.shape})")
        return _ff(counts.astype(float), 0, ddof)
    x = _counts(data, "data")
    if x.ndim < 2 and time_axis is None:
        raise ValueError(f"data must be counts [..., trials, cells] with axis_trials={axis_trials}, got shape {x.shape}")
    if time_axis is not None:
        ta = _axis(time_axis, x.ndim, "time_axis")
        at = _axis(axis_trials, x.ndim, "axis_trials")
        if ta == at:
            raise ValueError(f"time_axis and axis_trials must differ, both are axis {ta}")
        x = x.sum(axis=ta)
        axis_trials = at - (1 if ta < at else 0)
    return _ff(x, _axis(axis_trials, x.ndim, "axis_trials"), ddof)


def _axis(axis: int, ndim: int, name: str) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis!r} is out of range for an array of {ndim} dimensions")
    return int(axis) % ndim


def _ff(x: np.ndarray, axis: int, ddof: int) -> np.ndarray:
    n = x.shape[axis]
    if n < ddof + 2:
        warnings.warn(f"fano_factor: {n} trial(s) along the trial axis (ddof={ddof}): the variance across trials "
                      f"needs at least {ddof + 2}, so the Fano factor is NaN", RuntimeWarning, stacklevel=3)
        return np.full(np.delete(np.array(x.shape), axis), np.nan)
    mean = x.mean(axis=axis)
    var = x.var(axis=axis, ddof=ddof)
    with np.errstate(divide="ignore", invalid="ignore"):
        ff = var / mean
    return np.where(mean > 0, ff, np.nan)


def prediction_cosine_similarity(predictions, axis_trials: int = -2) -> np.ndarray | float:
    """Mean pairwise cosine similarity between repeated trials' prediction vectors.

    Parameters
    ----------
    predictions : array-like / torch.Tensor, ``[..., trials, features]``
        Feature axis is last; e.g. ``[trials, features] -> float``,
        ``[n_stimuli, trials, features] -> [n_stimuli]`` (population spike-count vectors,
        class scores, ...).
    axis_trials : int
        Trial axis (must not be the last axis).

    Returns
    -------
    float or np.ndarray
        Mean over all pairs ``i < j`` of ``cos(p_i, p_j)``. Trials whose vector is all
        zeros (cosine undefined) are excluded; NaN if fewer than 2 non-zero trials remain.
        Identical non-zero trials give exactly 1.

    Raises
    ------
    ValueError
        Empty or non-numeric input, fewer than 2 dimensions, ``axis_trials`` the feature
        axis, or NaN / infinite values (they would silently remove a trial).

    Notes
    -----
    Vectorised as ``(||sum_i u_i||^2 - m) / (m (m - 1))`` with ``u_i`` the unit vectors of
    the ``m`` non-zero trials; tested equal to ``1 - scipy.spatial.distance.pdist(., 'cosine')``.
    """
    x = _numeric(predictions, "predictions")
    if x.ndim < 2:
        raise ValueError(f"predictions must be [..., trials, features], got shape {x.shape}")
    at = _axis(axis_trials, x.ndim, "axis_trials")
    if at == x.ndim - 1:
        raise ValueError(f"axis_trials={axis_trials} is the feature axis (the last one); the trials need their own axis")
    if not np.isfinite(x).all():
        raise ValueError("predictions contains NaN or infinite values")
    x = np.moveaxis(x, at, -2)
    # scale each vector to max |x| = 1 first: the norms of very small (large) vectors would
    # underflow (overflow) and the unit vectors would not be unit
    scale = np.abs(x).max(axis=-1, keepdims=True)
    x = x / np.where(scale > 0, scale, 1.0)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    nz = norm[..., 0] > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(norm > 0, x / np.where(norm > 0, norm, 1.0), 0.0)
    s = u.sum(axis=-2)
    m = nz.sum(axis=-1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = ((s * s).sum(-1) - m) / (m * (m - 1))
    cos = np.where(m >= 2, cos, np.nan)
    cos = np.clip(cos, -1.0, 1.0)
    return float(cos) if np.ndim(cos) == 0 else cos


# --------------------------------------------------------------------------- correlations
def pearson(x, y, min_points: int = 2) -> tuple[float, float]:
    """Pearson correlation ``(r, p)`` with :func:`scipy.stats.pearsonr` semantics.

    NaN entries (in either input) are dropped pairwise first. Returns ``(nan, nan)`` when
    fewer than ``min_points`` (at least 2) finite pairs remain or either input is constant
    (scipy would warn). The scores and analyses that correlate across cells or stimuli pass
    :data:`MIN_CORRELATION_POINTS`.
    """
    if isinstance(min_points, bool) or not isinstance(min_points, (int, np.integer)) or min_points < 2:
        raise ValueError(f"min_points must be an integer >= 2, got {min_points!r}")
    a = to_numpy(x).astype(float).ravel()
    b = to_numpy(y).astype(float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"x and y must have the same size, got {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < min_points or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan"), float("nan")
    da, db = a - a.mean(), b - b.mean()
    r = float(np.clip((da @ db) / np.sqrt((da @ da) * (db @ db)), -1.0, 1.0))
    n = a.size
    if n == 2:
        return r, 1.0
    # scipy.special, not scipy.stats: the latter's import costs ~0.6 s of every CLI call. Under
    # H0, (r + 1)/2 ~ Beta(n/2 - 1, n/2 - 1), so the two-sided p is I_{1-r^2}((n-2)/2, 1/2).
    from scipy.special import betainc

    return r, float(betainc((n - 2) / 2, 0.5, 1.0 - r * r))


def _columns(a) -> np.ndarray:
    a = to_numpy(a).astype(float)
    return a[:, None] if a.ndim == 1 else a.reshape(a.shape[0], -1)


def _scaled(a: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        scale = np.abs(a).max(0)
    return a / np.where((scale > 0) & np.isfinite(scale), scale, 1.0)


def _cc_columns(a, b, constant_model_r: float = float("nan")) -> np.ndarray:
    a, b = to_numpy(a).astype(float), to_numpy(b).astype(float)
    if a.shape != b.shape:
        raise ValueError(f"inputs must have the same shape, got {a.shape} and {b.shape}")
    a, b = _scaled(_columns(a)), _scaled(_columns(b))
    tol = 1e-12 * np.sqrt(a.shape[0])
    da, db = a - a.mean(0), b - b.mean(0)
    sa, sb = np.sqrt((da * da).sum(0)), np.sqrt((db * db).sum(0))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.clip((da * db).sum(0) / (sa * sb), -1.0, 1.0)
    r = np.where((sa <= tol) | (sb <= tol), np.nan, r)
    unpredicted = (sb <= tol) | ~np.isfinite(b).all(0)
    return np.where(unpredicted & (sa > tol) & np.isfinite(a).all(0), constant_model_r, r)


def rate_cc_per_cell(recorded_psth, model_psth, constant_model_r: float = float("nan")) -> np.ndarray:
    """Pearson r per cell between recorded and model PSTHs.

    Parameters
    ----------
    recorded_psth, model_psth : ``[n_time_total, cells]``
        Test stimuli's PSTHs concatenated along time (any rate unit). r is scale-free, and so
        is the test for a constant column, as in :func:`scipy.stats.pearsonr`: each column is
        divided by its largest magnitude first (rates of 1e-13 spikes/bin vary as rates of 1
        spike/bin do), and a column is constant when its spread is within rounding
        (``1e-12·sqrt(n)``) of that scale.
    constant_model_r : float
        r given to a cell the model does not predict -- its prediction is constant (e.g. a
        silent model cell) or not finite -- while its recorded PSTH varies. NaN (default):
        undefined, as Pearson r; the held-out scores pass 0 (such a cell counts against the
        model instead of dropping out of the mean: :func:`neurocode.analysis.scores.compute_metrics`).

    Returns
    -------
    np.ndarray ``[cells]``; NaN where the recorded PSTH is constant, and where the model's is
    (unless ``constant_model_r`` says otherwise).
    """
    return _cc_columns(recorded_psth, model_psth, constant_model_r)


def count_cc_per_cell(recorded_counts, model_counts, constant_model_r: float = float("nan")) -> np.ndarray:
    """Pearson r per cell between trial-averaged spike counts ``[n_images, cells]``.

    NaN where a cell has zero variance across images in the recording; where the model's
    counts do not vary (or are not finite), ``constant_model_r`` (see :func:`rate_cc_per_cell`).
    """
    return _cc_columns(recorded_counts, model_counts, constant_model_r)


# --------------------------------------------------------------------------- PSTH / rates
def psth(data, dt: float | None = None, axis_trials: int = -2, bin_size: float | None = None,
         t_start=None, t_stop=None) -> np.ndarray:
    """Peri-stimulus time histogram (trial-averaged rate, Hz).

    Parameters
    ----------
    data : counts ``[..., T, trials, cells]`` (array / tensor) with ``dt`` in seconds, or
        a list of :class:`neo.SpikeTrain` (trials of one cell) / nested ``trains[trial][cell]``.
    dt : float
        Bin width of the counts, seconds (required for arrays).
    axis_trials : int
        Trial axis of a counts array; time is the axis just before it.
    bin_size : float, optional
        For arrays: re-bin to this width (an integer multiple of ``dt``; a trailing
        incomplete bin is dropped). For neo input: histogram bin width (required).
    t_start, t_stop : optional (neo input only), seconds.

    Returns
    -------
    np.ndarray
        Arrays: ``[..., T', cells]`` in Hz. Neo: ``[n_bins]`` for a list of trains,
        ``[n_bins, cells]`` for a nested list — equal to
        ``elephant.statistics.time_histogram(..., output='rate')``.

    Raises
    ------
    ValueError
        Empty input; negative or non-finite counts; ``dt`` or ``bin_size`` not positive or
        longer than the window; spike
        trains of different ``t_start`` / ``t_stop`` without explicit ones (as elephant);
        NaN spike times.
    """
    _check_not_empty(data, "data")
    if _is_neo(data):
        if bin_size is None:
            raise ValueError("bin_size is required for neo input")
        bin_size = check_step(bin_size, "bin_size")  # seconds, also for a Quantity in ms
        from neurocode.analysis.conversion import spiketrains_to_counts

        if isinstance(data[0], neo.SpikeTrain):
            counts = spiketrains_to_counts(data, bin_size, t_start, t_stop)  # [T, trials]
            return counts.mean(axis=1) / float(bin_size)
        counts = spiketrains_to_counts(data, bin_size, t_start, t_stop)  # [T, trials, cells]
        return counts.mean(axis=1) / float(bin_size)
    if dt is None:
        raise ValueError("dt (seconds) is required for count arrays")
    dt = check_step(dt, "dt")
    x = _counts(data, "data")
    if x.ndim < 3:
        raise ValueError(f"data must be counts [..., T, trials, cells], got shape {x.shape}")
    at = _axis(axis_trials, x.ndim, "axis_trials")
    if at == 0:
        raise ValueError(f"axis_trials={axis_trials} leaves no time axis before it ([..., T, trials, cells])")
    x = np.moveaxis(x, at, -1)  # [..., T, cells, trials]
    rate = x.mean(axis=-1) / dt  # [..., T, cells]
    if bin_size is not None:
        bin_size = check_step(bin_size, "bin_size", rate.shape[-2] * dt)
        f = int(round(bin_size / dt))
        if f < 1 or abs(f * dt - bin_size) > 1e-9 * max(bin_size, 1.0):
            raise ValueError(f"bin_size={bin_size:g} s must be an integer multiple of dt={dt:g} s")
        T = rate.shape[-2] // f
        rate = rate[..., : T * f, :]
        rate = rate.reshape(rate.shape[:-2] + (T, f, rate.shape[-1])).mean(axis=-2)
    return rate


def instantaneous_rate(data, sampling_period: float, kernel="gaussian", sigma: float = 0.01,
                       dt: float | None = None, t_start=None, t_stop=None, **kwargs) -> np.ndarray:
    """Kernel rate estimate via :func:`elephant.statistics.instantaneous_rate`, averaged over trials.

    Parameters
    ----------
    data : list of SpikeTrain (trials of one cell), nested ``trains[trial][cell]``, or
        counts ``[T, trials, cells]`` with ``dt`` (converted to spike trains at bin centres).
    sampling_period : float
        Output resolution, seconds.
    kernel : "gaussian" | "exponential" | "alpha" | "rectangular" | "triangular" |
        "laplacian" | elephant.kernels.Kernel
    sigma : float
        Kernel standard deviation, seconds (for named kernels).
    **kwargs : passed to elephant (``cutoff``, ``border_correction``, ``center_kernel``...).

    Returns
    -------
    np.ndarray in Hz: ``[n_samples]`` for one cell, ``[n_samples, cells]`` otherwise.
    """
    from elephant import kernels as ek
    from elephant.statistics import instantaneous_rate as _ir

    sampling_period = check_step(sampling_period, "sampling_period")
    if isinstance(kernel, str):
        check_step(sigma, "sigma")
        names = {"gaussian": ek.GaussianKernel, "exponential": ek.ExponentialKernel,
                 "alpha": ek.AlphaKernel, "rectangular": ek.RectangularKernel,
                 "triangular": ek.TriangularKernel, "laplacian": ek.LaplacianKernel}
        kernel = names[kernel.lower()](sigma=sigma * pq.s)
    if not _is_neo(data):
        if dt is None:
            raise ValueError("dt (seconds) is required for count arrays")
        data = spikes_to_spiketrains(data, dt, 0.0 if t_start is None else t_start)
    q = lambda v: None if v is None else (v if isinstance(v, pq.Quantity) else v * pq.s)  # noqa: E731
    sp = q(sampling_period)
    single = isinstance(data[0], neo.SpikeTrain)
    rows = [[st] for st in data] if single else data
    n_cells = len(rows[0])
    out = []
    for c in range(n_cells):
        trains = [row[c] for row in rows]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = _ir(trains, sampling_period=sp, kernel=kernel, t_start=q(t_start), t_stop=q(t_stop),
                    pool_spike_trains=True, **kwargs)
        out.append(r.rescale("Hz").magnitude[:, 0])  # pooled = mean over trials
    res = np.stack(out, axis=1)
    return res[:, 0] if single else res


# --------------------------------------------------------------------------- reliability
def split_half_reliability(counts, axis_trials: int = -2, spearman_brown: bool = False) -> np.ndarray:
    """Split-half reliability per cell (the "ceiling" of rate correlation).

    Parameters
    ----------
    counts : ``[n_stimuli, T, trials, cells]`` (or ``[T, trials, cells]``)
    axis_trials : int
    spearman_brown : bool
        Apply the Spearman–Brown correction ``2r / (1 + r)`` (full-data reliability).

    Returns
    -------
    np.ndarray ``[cells]``
        Pearson r between the trial-averaged PSTHs of even trials (0, 2, 4, ...) and odd
        trials (1, 3, 5, ...), concatenated over stimuli; NaN for zero-variance cells.

    Raises
    ------
    ValueError
        Negative or non-finite counts, or ``axis_trials`` out of range.
    """
    x = _counts(counts, "counts")
    x = np.moveaxis(x, _axis(axis_trials, x.ndim, "axis_trials"), -2)  # [..., trials, cells]
    even = x[..., 0::2, :].mean(axis=-2)
    odd = x[..., 1::2, :].mean(axis=-2)
    n_cells = x.shape[-1]
    r = _cc_columns(even.reshape(-1, n_cells), odd.reshape(-1, n_cells))
    if spearman_brown:
        r = 2 * r / (1 + r)
    return r
