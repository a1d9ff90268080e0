"""Losses for fitting spike trains and firing rates (paper Eq. 27 and friends).

All tensors are **time-major**: the first axis is the time step ``t = 1..T``
(one simulation bin), followed by trial / batch / cell axes as documented per
function.

Functions
---------
psp_trace
    First-order post-synaptic-potential (PSP) filter of a spike train.
psp_mmd_loss
    Paper Eq. 27: PSP-kernel distance between *paired* predicted and recorded
    trains.
psp_features
    The feature map φ(y) for which ``‖φ(ŷ) − φ(y)‖²`` equals Eq. 27.
set_mmd_loss
    Kernel two-sample MMD² between the *set* of model-sampled trials and the
    set of recorded trials of the same stimulus (unbiased estimator).
poisson_nll
    Poisson negative log-likelihood of spike counts given predicted rates.

Paired Eq. 27 vs. set-level MMD² (README paragraph)
---------------------------------------------------
Eq. 27 of the paper compares *one* model trial ŷ with *one* recorded trial y
through their PSP traces. Written with the PSP feature map φ (see
``psp_features``), it is ``‖φ(ŷ) − φ(y)‖²``, and for independent ŷ and y its
expectation decomposes as ``E‖φ(ŷ) − φ(y)‖² = ‖E φ(ŷ) − E φ(y)‖² +
tr Cov φ(ŷ) + tr Cov φ(y)``. The last term is a constant of the data, but the
middle one is the model's own trial-to-trial variance: minimising the paired
loss therefore pushes a noisy (stochastic) model toward determinism, even when
its response distribution already matches the recorded one. The set-level
MMD² (``set_mmd_loss``) instead compares the set of K model-sampled trials
with the set of R recorded trials of the same stimulus. With the linear PSP
kernel its unbiased estimator has expectation exactly ``‖μ_model − μ_data‖²``
(the squared distance between mean embeddings, i.e. between the PSP traces of
the trial-averaged rates), so a model whose trials scatter as much as the
data's pays nothing for that scatter; with the Gaussian kernel on PSP traces
the population MMD² is zero if and only if the two trial distributions are
equal, so it also constrains the variability and correlations, not only the
mean. Use ``psp_mmd_loss`` to reproduce the paper; use ``set_mmd_loss`` to
fit a stochastic model's response *distribution*.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "psp_trace",
    "psp_mmd_loss",
    "psp_features",
    "set_mmd_loss",
    "poisson_nll",
]

Reduction = Literal["mean", "sum", "none"]


# ---------------------------------------------------------------------------
# PSP trace
# ---------------------------------------------------------------------------


def _check_tau_s(tau_s: float) -> float:
    try:
        tau = float(tau_s)
    except (TypeError, ValueError):
        raise ValueError(f"tau_s must be a real number >= 1, got {tau_s!r}") from None
    # tau_s < 1 would make the decay factor (1 - 1/tau_s) negative, i.e. an
    # oscillating, not a decaying, trace.
    if not math.isfinite(tau) or tau < 1.0:
        raise ValueError(f"tau_s must be a finite number >= 1, got {tau_s!r}")
    return tau


@lru_cache(maxsize=32)
def _psp_matrix(T: int, tau_s: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Lower-triangular [T, T] matrix L with PSP = L @ y (cached per key).

    ``L[t, s] = (1/τ_s)·(1 − 1/τ_s)^(t−s)`` for ``s ≤ t`` and 0 otherwise; it
    is the impulse response of the recurrence unrolled, so one GEMM replaces
    T sequential steps (and T autograd nodes). Built in float64 for accuracy
    and then cast.
    """
    decay = 1.0 - 1.0 / tau_s
    idx = torch.arange(T, dtype=torch.float64)
    lag = idx[:, None] - idx[None, :]
    # clamp negative lags to 0 before pow (avoids inf for decay=0), then mask.
    mat = torch.pow(torch.tensor(decay, dtype=torch.float64), lag.clamp_min(0.0)) / tau_s
    mat = torch.tril(mat)
    return mat.to(dtype=dtype, device=device)


def _as_float(x: Tensor) -> Tensor:
    # spike trains often come as bool / int; the filter needs a float dtype
    return x if x.is_floating_point() else x.to(torch.get_default_dtype())


def psp_trace(spikes: Tensor, tau_s: float = 2.0) -> Tensor:
    """First-order PSP trace of spike trains (paper Eq. 27).

    ``PSP_t = (1 − 1/τ_s)·PSP_{t−1} + (1/τ_s)·y_t`` with ``PSP_0 = 0``.

    The recurrence is linear, so it is evaluated exactly as a single matrix
    product ``PSP = L @ y.reshape(T, -1)`` with the lower-triangular decay
    matrix ``L[t, s] = (1/τ_s)(1 − 1/τ_s)^(t−s)`` (cached per
    ``(T, tau_s, dtype, device)``). This is differentiable and avoids a
    per-step Python loop; its cost is O(T²·M), which for the trial lengths
    used here (T ≈ 30) is far cheaper than T sequential kernels.

    Parameters
    ----------
    spikes : Tensor, shape [T, ...]
        Spike trains (0/1) or rates per bin, time-major. Non-float inputs are
        cast to the default float dtype.
    tau_s : float, default 2.0
        Synaptic time constant in time steps; must be ≥ 1 (τ_s = 1 gives the
        identity, PSP_t = y_t).

    Returns
    -------
    Tensor, shape [T, ...]
        PSP trace, same shape, dtype and device as ``spikes`` (float).

    Raises
    ------
    ValueError
        If ``tau_s < 1`` or ``spikes`` is a 0-d tensor.
    """
    tau = _check_tau_s(tau_s)
    if spikes.dim() == 0:
        raise ValueError("spikes must have a leading time axis, got a 0-d tensor")
    y = _as_float(spikes)
    T = y.shape[0]
    L = _psp_matrix(T, tau, y.dtype, y.device)
    return (L @ y.reshape(T, -1)).reshape(y.shape)


def _eq27_time_weights(T: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """w_τ = (T − τ + 1)/T for τ = 1..T, shape [T].

    Σ_{t=1}^T Σ_{τ≤t} a_τ = Σ_τ (T − τ + 1) a_τ: step τ is counted once for
    every t ≥ τ; the 1/T is Eq. 27's prefactor.
    """
    tau = torch.arange(1, T + 1, dtype=dtype, device=device)
    return (T - tau + 1) / T


def _reduce(x: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


# ---------------------------------------------------------------------------
# Paired loss, Eq. 27
# ---------------------------------------------------------------------------


def psp_mmd_loss(
    pred: Tensor, target: Tensor, tau_s: float = 2.0, reduction: Reduction = "mean"
) -> Tensor:
    """Paired PSP-kernel loss, paper Eq. 27.

    ``L = (1/T) Σ_{t=1}^T Σ_{τ=1}^t ‖PSP(ŷ)_τ − PSP(y)_τ‖²``, the squared
    norm summed over cells, computed as the equivalent weighted sum
    ``Σ_τ w_τ ‖·‖²`` with ``w_τ = (T − τ + 1)/T`` (1-based τ). By linearity of
    the PSP filter the difference of traces is the trace of ``ŷ − y``.

    Note that this compares one model trial to one recorded trial; for a
    stochastic model it also penalises the model's own trial-to-trial
    variance (see the module docstring and :func:`set_mmd_loss`).

    Parameters
    ----------
    pred, target : Tensor, shape [T, B, N]
        Predicted and recorded spike trains (or rates per bin); T time steps,
        B stimuli / pairs, N cells.
    tau_s : float, default 2.0
        PSP time constant in time steps (≥ 1).
    reduction : {"mean", "sum", "none"}, default "mean"
        Reduction over the batch axis B ("mean" is the paper's loss).

    Returns
    -------
    Tensor
        Scalar, or shape [B] for ``reduction="none"``.

    Raises
    ------
    ValueError
        If the shapes differ or are not 3-d.
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got pred {tuple(pred.shape)} "
            f"and target {tuple(target.shape)}"
        )
    if pred.dim() != 3:
        raise ValueError(f"pred and target must be [T, B, N], got shape {tuple(pred.shape)}")
    diff = psp_trace(_as_float(pred) - _as_float(target), tau_s)  # [T, B, N]
    T = diff.shape[0]
    w = _eq27_time_weights(T, diff.dtype, diff.device)
    per_pair = torch.einsum("t,tbn->b", w, diff.square())  # [B]
    return _reduce(per_pair, reduction)


def psp_features(trials: Tensor, tau_s: float = 2.0) -> Tensor:
    """PSP feature map φ used by :func:`set_mmd_loss`.

    ``φ(y)[τ, n] = sqrt(w_τ) · PSP(y)_{τ, n}`` with ``w_τ = (T − τ + 1)/T``,
    flattened over (T, N). With this weighting ``‖φ(ŷ) − φ(y)‖²`` is exactly
    Eq. 27 for the pair (ŷ, y), so the linear kernel ``⟨φ(a), φ(b)⟩`` is the
    paper's PSP kernel.

    Parameters
    ----------
    trials : Tensor, shape [T, K, B, N]
        K trials for each of B stimuli, N cells, T time steps.
    tau_s : float, default 2.0
        PSP time constant in time steps (≥ 1).

    Returns
    -------
    Tensor, shape [B, K, T·N]
        Feature vectors, stimulus-major (ready for batched kernels), index
        ``τ·N + n`` along the last axis.
    """
    if trials.dim() != 4:
        raise ValueError(f"trials must be [T, K, B, N], got shape {tuple(trials.shape)}")
    psp = psp_trace(trials, tau_s)
    T, K, B, N = psp.shape
    w = _eq27_time_weights(T, psp.dtype, psp.device).sqrt()
    feats = psp * w[:, None, None, None]
    return feats.permute(2, 1, 0, 3).reshape(B, K, T * N)


# ---------------------------------------------------------------------------
# Set-level MMD²
# ---------------------------------------------------------------------------


def _median_bandwidth(z: Tensor) -> Tensor:
    """Median heuristic: per stimulus, median pairwise distance of the pooled set.

    z: [B, M, D] -> [B]. Computed without gradient (the bandwidth is treated
    as a hyper-parameter, not something to optimise through). Falls back to
    1 where the median is 0 (e.g. every trial silent), where any bandwidth
    gives the same kernel values on the tied points.
    """
    with torch.no_grad():
        d = torch.cdist(z, z)  # [B, M, M]
        M = z.shape[1]
        iu = torch.triu_indices(M, M, offset=1, device=z.device)
        med = d[:, iu[0], iu[1]].median(dim=1).values
        return torch.where(med > 0, med, torch.ones_like(med))


def set_mmd_loss(
    model_trials: Tensor,
    recorded_trials: Tensor,
    kernel: Literal["linear", "gaussian"] = "linear",
    tau_s: float = 2.0,
    bandwidth: float | Tensor | None = None,
    estimator: Literal["unbiased", "biased"] = "unbiased",
    reduction: Reduction = "mean",
    recorded_mask: Tensor | None = None,
    per_cell: bool = False,
) -> Tensor:
    """Kernel two-sample MMD² between model and recorded trial sets.

    For each stimulus b, with features ``x_i = φ(ŷ_i)`` (K model trials) and
    ``y_j = φ(y_j)`` (R recorded trials) from :func:`psp_features`, the
    unbiased estimator (Gretton et al. 2012, MMD²_u) is

        MMD²_u = 1/(K(K−1)) Σ_{i≠i'} k(x_i, x_i')
               + 1/(R(R−1)) Σ_{j≠j'} k(y_j, y_j')
               − 2/(KR) Σ_{i,j} k(x_i, y_j),

    averaged over stimuli. It can be negative; its expectation is the
    population MMD². ``estimator="biased"`` gives the V-statistic (diagonal
    terms included, normalised by K² and R²), whose expectation exceeds the
    population MMD² by ``(E k(x,x) − E k(x,x'))/K + (E k(y,y) − E k(y,y'))/R``
    (for the linear kernel: ``tr Cov x / K + tr Cov y / R``).

    Kernels
    -------
    ``"linear"``: ``k(a, b) = ⟨a, b⟩`` (the PSP kernel). The population MMD²
    is ``‖μ_model − μ_data‖²``, the squared distance of the mean embeddings
    (the PSP traces of the trial-averaged rates, time-weighted as Eq. 27).
    Computed in O((K+R)·D) with ``Σ_i Σ_{j≠i} ⟨x_i, x_j⟩ = ‖Σ x‖² − Σ ‖x_i‖²``.
    For K = R = 1 the biased estimator equals ``‖φ(ŷ) − φ(y)‖²``, i.e.
    Eq. 27 (:func:`psp_mmd_loss`).

    ``"gaussian"``: ``k(a, b) = exp(−‖a − b‖² / (2·bandwidth²))``, a
    characteristic kernel: the population MMD² is zero iff the two trial
    distributions are equal. Pairwise distances via ``torch.cdist`` on the
    pooled [B, K+R, D] features, O((K+R)²·D).

    Parameters
    ----------
    model_trials : Tensor, shape [T, K, B, N]
        K trials sampled from the model for each of B stimuli (spikes or
        rates per bin), N cells. Gradients flow through it.
    recorded_trials : Tensor, shape [T, R, B, N]
        R recorded repetitions of the same B stimuli.
    kernel : {"linear", "gaussian"}, default "linear"
    tau_s : float, default 2.0
        PSP time constant in time steps (≥ 1).
    bandwidth : float or Tensor or None, default None
        Gaussian kernel bandwidth in feature units (scalar, or [B] per
        stimulus). ``None``: median heuristic — per stimulus, the median of
        the pairwise feature distances over the pooled K+R trials, computed
        without gradient (1 if that median is 0). Ignored for "linear".
    estimator : {"unbiased", "biased"}, default "unbiased"
        "unbiased" needs K ≥ 2 and R ≥ 2; "biased" (V-statistic) needs ≥ 1.
    reduction : {"mean", "sum", "none"}, default "mean"
        Reduction over stimuli B.
    recorded_mask : Tensor, shape [R, B] of bool, optional
        Which recorded trials exist, for stimuli with different trial counts R_b (linear
        kernel only). Stimulus b's sums run over its R_b trials; where R_b = 1 (e.g. a clip
        of a continuous recording, seen once) the recorded term is the biased ``‖y‖²``, a
        constant that does not change the gradient (so K = R_b = 1 is Eq. 27 again).
    per_cell : bool, default False
        Each cell's own set MMD² (features: that cell's time-weighted [T] PSP trace; for the
        Gaussian kernel the median-rule bandwidth per (stimulus, cell)), averaged over the N
        cells: the mean of N one-cell calls. With the Gaussian kernel this sees each cell's
        trial-to-trial variability, which the linear kernel (mean embedding only) cannot.
        A given ``bandwidth`` is a scalar or [B, N].

    Returns
    -------
    Tensor
        Scalar, or shape [B] for ``reduction="none"`` (the mean over cells where ``per_cell``).

    Raises
    ------
    ValueError
        On wrong dimensionality, mismatched (T, B, N), too few trials,
        unknown kernel / estimator, or a non-positive bandwidth.
    """
    if model_trials.dim() != 4 or recorded_trials.dim() != 4:
        raise ValueError(
            "model_trials and recorded_trials must be [T, K, B, N] and [T, R, B, N], got "
            f"{tuple(model_trials.shape)} and {tuple(recorded_trials.shape)}"
        )
    Tm, K, Bm, Nm = model_trials.shape
    Tr, R, Br, Nr = recorded_trials.shape
    if (Tm, Bm, Nm) != (Tr, Br, Nr):
        raise ValueError(
            "model_trials [T, K, B, N] and recorded_trials [T, R, B, N] must agree in T, B, N, "
            f"got {tuple(model_trials.shape)} and {tuple(recorded_trials.shape)}"
        )
    if estimator not in ("unbiased", "biased"):
        raise ValueError(f"estimator must be 'unbiased' or 'biased', got {estimator!r}")
    min_trials = 2 if estimator == "unbiased" else 1
    if recorded_mask is not None:
        if kernel != "linear" or per_cell:
            raise ValueError("recorded_mask is supported for the linear kernel over all cells only (per_cell=False)")
        if recorded_mask.shape != (R, Br):
            raise ValueError(f"recorded_mask must be [R, B] = [{R}, {Br}], got {tuple(recorded_mask.shape)}")
        n_rec = recorded_mask.sum(0)
        if bool((n_rec < 1).any()) or K < min_trials:
            raise ValueError(f"every stimulus needs at least 1 recorded trial and K >= {min_trials}, got "
                             f"K={K}, recorded trials {n_rec.tolist()}")
        return _reduce(_masked_linear_mmd(model_trials, recorded_trials, recorded_mask, tau_s, estimator), reduction)
    if K < min_trials or R < min_trials:
        raise ValueError(
            f"the {estimator} MMD² estimator needs at least {min_trials} model trials (K) and "
            f"{min_trials} recorded trials (R), got K={K}, R={R}"
        )
    if kernel not in ("linear", "gaussian"):
        raise ValueError(f"kernel must be 'linear' or 'gaussian', got {kernel!r}")
    if per_cell:
        # N one-cell problems side by side: the cells join the stimulus axis, [T, K, B*N, 1]
        if bandwidth is not None:
            h = torch.as_tensor(bandwidth, dtype=model_trials.dtype, device=model_trials.device)
            if h.dim() not in (0, 2) or (h.dim() == 2 and tuple(h.shape) != (Bm, Nm)):
                raise ValueError(f"a per-cell bandwidth must be a scalar or [B, N] = [{Bm}, {Nm}], "
                                 f"got shape {tuple(h.shape)}")
            bandwidth = h.reshape(-1) if h.dim() == 2 else h
        per = set_mmd_loss(model_trials.reshape(Tm, K, Bm * Nm, 1), recorded_trials.reshape(Tr, R, Br * Nr, 1),
                           kernel=kernel, tau_s=tau_s, bandwidth=bandwidth, estimator=estimator, reduction="none")
        return _reduce(per.reshape(Bm, Nm).mean(dim=1), reduction)

    x = psp_features(model_trials, tau_s)  # [B, K, D]
    y = psp_features(recorded_trials, tau_s).to(x.dtype)  # [B, R, D]
    unbiased = estimator == "unbiased"

    if kernel == "linear":
        sx, sy = x.sum(dim=1), y.sum(dim=1)  # [B, D]
        sxx = sx.square().sum(-1)  # ‖Σx‖² = Σ_i Σ_j ⟨x_i, x_j⟩
        syy = sy.square().sum(-1)
        sxy = (sx * sy).sum(-1)
        if unbiased:
            kxx = (sxx - x.square().sum(dim=(1, 2))) / (K * (K - 1))
            kyy = (syy - y.square().sum(dim=(1, 2))) / (R * (R - 1))
        else:
            kxx, kyy = sxx / K**2, syy / R**2
        mmd2 = kxx + kyy - 2.0 * sxy / (K * R)
        return _reduce(mmd2, reduction)

    z = torch.cat([x, y], dim=1)  # [B, K+R, D]
    if bandwidth is None:
        h = _median_bandwidth(z)
    else:
        h = torch.as_tensor(bandwidth, dtype=z.dtype, device=z.device)
        if (h <= 0).any() or not torch.isfinite(h).all():
            raise ValueError(f"bandwidth must be positive and finite, got {bandwidth!r}")
    h = h.expand(z.shape[0]) if h.dim() == 0 else h
    d2 = torch.cdist(z, z).square()  # [B, M, M]
    kmat = torch.exp(-d2 / (2.0 * h.square())[:, None, None])
    kxx_full = kmat[:, :K, :K].sum(dim=(1, 2))
    kyy_full = kmat[:, K:, K:].sum(dim=(1, 2))
    kxy = kmat[:, :K, K:].sum(dim=(1, 2))
    if unbiased:
        # k(a, a) = 1 for the Gaussian kernel: drop the K (resp. R) diagonal terms
        kxx = (kxx_full - kmat[:, :K, :K].diagonal(dim1=1, dim2=2).sum(-1)) / (K * (K - 1))
        kyy = (kyy_full - kmat[:, K:, K:].diagonal(dim1=1, dim2=2).sum(-1)) / (R * (R - 1))
    else:
        kxx, kyy = kxx_full / K**2, kyy_full / R**2
    mmd2 = kxx + kyy - 2.0 * kxy / (K * R)
    return _reduce(mmd2, reduction)


def _masked_linear_mmd(model_trials: Tensor, recorded_trials: Tensor, mask: Tensor, tau_s: float,
                       estimator: str) -> Tensor:
    """Linear-kernel MMD² per stimulus with R_b recorded trials (``mask [R, B]``): ``[B]``."""
    K = model_trials.shape[1]
    x = psp_features(model_trials, tau_s)  # [B, K, D]
    m = mask.T.to(x.dtype)  # [B, R]
    y = psp_features(recorded_trials, tau_s).to(x.dtype) * m[..., None]  # [B, R, D], absent trials zero
    n = m.sum(1)  # [B]
    sx, sy = x.sum(dim=1), y.sum(dim=1)
    sxx, syy, sxy = sx.square().sum(-1), sy.square().sum(-1), (sx * sy).sum(-1)
    if estimator == "unbiased":
        kxx = (sxx - x.square().sum(dim=(1, 2))) / (K * (K - 1))
        kyy_u = (syy - y.square().sum(dim=(1, 2))) / (n * (n - 1)).clamp(min=1)
        kyy = torch.where(n > 1, kyy_u, syy)  # one trial: the biased term (a constant)
    else:
        kxx, kyy = sxx / K**2, syy / n.square()
    return kxx + kyy - 2.0 * sxy / (K * n)


# ---------------------------------------------------------------------------
# Poisson likelihood (CNN baseline)
# ---------------------------------------------------------------------------


def poisson_nll(rate: Tensor, counts: Tensor, eps: float = 1e-8) -> Tensor:
    """Poisson negative log-likelihood of spike counts, mean over all entries.

    ``mean(rate − counts · log(rate + eps))``: the negative log of
    ``Poisson(counts; rate)`` without the ``log(counts!)`` term, which does
    not depend on the model and is dropped (so the value is not a normalised
    NLL and can be negative). Identical to
    ``torch.nn.functional.poisson_nll_loss(rate, counts, log_input=False,
    full=False, eps=eps)``.

    Parameters
    ----------
    rate : Tensor, shape [T, B, N]
        Predicted firing rate in expected spikes per bin (≥ 0).
    counts : Tensor, shape [T, B, N]
        Observed spike counts per bin (e.g. trial-averaged or single trial).
    eps : float, default 1e-8
        Added inside the log so a zero rate gives a finite loss.

    Returns
    -------
    Tensor
        Scalar.

    Raises
    ------
    ValueError
        If the shapes differ.
    """
    if rate.shape != counts.shape:
        raise ValueError(
            f"rate and counts must have the same shape, got rate {tuple(rate.shape)} "
            f"and counts {tuple(counts.shape)}"
        )
    counts = counts.to(rate.dtype) if rate.is_floating_point() else _as_float(counts)
    rate = _as_float(rate)
    return (rate - counts * torch.log(rate + eps)).mean()
