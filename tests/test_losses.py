"""Tests for neurocode.losses (paper Eq. 27, set-level MMD², Poisson NLL)."""

from __future__ import annotations

import math

import pytest
import torch

from neurocode.losses import (
    poisson_nll,
    psp_features,
    psp_mmd_loss,
    psp_trace,
    set_mmd_loss,
)

DT = torch.float64


def naive_psp(y: torch.Tensor, tau_s: float) -> torch.Tensor:
    """Reference: the recurrence as written in the paper, one step at a time."""
    out, state = [], torch.zeros_like(y[0])
    for t in range(y.shape[0]):
        state = (1 - 1 / tau_s) * state + y[t] / tau_s
        out.append(state)
    return torch.stack(out)


def naive_eq27(pred: torch.Tensor, target: torch.Tensor, tau_s: float) -> torch.Tensor:
    """Reference Eq. 27 with the explicit double sum over t and τ ≤ t. [T, B, N] -> [B]."""
    d = naive_psp(pred, tau_s) - naive_psp(target, tau_s)
    T = d.shape[0]
    total = torch.zeros(d.shape[1], dtype=d.dtype)
    for t in range(T):
        for tau in range(t + 1):
            total = total + d[tau].square().sum(-1)
    return total / T


def naive_mmd_u(x: torch.Tensor, y: torch.Tensor, k) -> torch.Tensor:
    """Reference unbiased MMD² with explicit pair loops. x [K, D], y [R, D]."""
    K, R = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(K) for j in range(K) if i != j) / (K * (K - 1))
    kyy = sum(k(y[i], y[j]) for i in range(R) for j in range(R) if i != j) / (R * (R - 1))
    kxy = sum(k(x[i], y[j]) for i in range(K) for j in range(R)) / (K * R)
    return kxx + kyy - 2 * kxy


def bernoulli(p: torch.Tensor, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Independent Bernoulli spikes; p [T, N] broadcast to [T, *shape, N]."""
    T, N = p.shape
    pe = p.reshape(T, *([1] * len(shape)), N).expand(T, *shape, N)
    return torch.bernoulli(pe, generator=gen)


# ---------------------------------------------------------------------------
# psp_trace
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("tau_s", [1.0, 2.0, 7.5])
@pytest.mark.parametrize("shape", [(13,), (9, 2, 3), (4, 1, 2, 5)])
def test_psp_trace_matches_recurrence(tau_s, shape):
    gen = torch.Generator().manual_seed(1)
    y = (torch.rand(shape, generator=gen, dtype=DT) < 0.3).to(DT)
    torch.testing.assert_close(psp_trace(y, tau_s), naive_psp(y, tau_s), rtol=1e-12, atol=1e-12)


def test_psp_trace_hand_values_and_identity_at_tau1():
    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    # 0.5, 0.25, 0.125 + 0.5, 0.3125
    torch.testing.assert_close(psp_trace(y, 2.0), torch.tensor([0.5, 0.25, 0.625, 0.3125]))
    torch.testing.assert_close(psp_trace(y, 1.0), y)  # no memory at tau_s = 1


def test_psp_trace_dtype_device_and_int_input():
    y = torch.tensor([[1], [0], [1]], dtype=torch.int64)
    out = psp_trace(y)
    assert out.is_floating_point()
    torch.testing.assert_close(out[:, 0], torch.tensor([0.5, 0.25, 0.625]))
    y64 = torch.ones(5, 2, dtype=DT)
    assert psp_trace(y64).dtype == DT  # cache is keyed on dtype
    assert psp_trace(y64.float()).dtype == torch.float32


@pytest.mark.parametrize("bad", [0.5, 0.0, -2.0, float("nan"), float("inf")])
def test_psp_trace_rejects_bad_tau(bad):
    with pytest.raises(ValueError, match="tau_s"):
        psp_trace(torch.zeros(3, 2), tau_s=bad)


def test_psp_trace_gradcheck():
    y = torch.rand(6, 2, 3, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: psp_trace(v, 3.0), (y,))


# ---------------------------------------------------------------------------
# psp_mmd_loss (Eq. 27)
# ---------------------------------------------------------------------------


def test_eq27_hand_computed_T3():
    # [T=3, B=2, N=2], tau_s = 2.
    pred = torch.tensor(
        [[[1.0, 0.0], [1.0, 1.0]], [[0.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [1.0, 1.0]]]
    )
    target = torch.tensor(
        [[[0.0, 1.0], [1.0, 1.0]], [[0.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]]]
    )
    # Pair b=0, cell 0: ŷ = 1,0,1 vs y = 0,0,0 -> PSP diff 0.5, 0.25, 0.625
    #   squares 0.25, 0.0625, 0.390625
    #   Σ_t Σ_{τ≤t}: t=1: 0.25; t=2: 0.3125; t=3: 0.703125 -> 1.265625
    # Pair b=0, cell 1: ŷ = 0,1,0 vs y = 1,1,0 -> diff -1,0,0 -> PSP -0.5, -0.25, -0.125
    #   squares 0.25, 0.0625, 0.015625 -> 0.25 + 0.3125 + 0.328125 = 0.890625
    # b=0: (1.265625 + 0.890625) / T = 2.15625 / 3 = 0.71875
    # Pair b=1 identical -> 0.   Mean over B: 0.359375
    per_pair = psp_mmd_loss(pred, target, reduction="none")
    torch.testing.assert_close(per_pair, torch.tensor([0.71875, 0.0]))
    torch.testing.assert_close(psp_mmd_loss(pred, target), torch.tensor(0.359375))
    torch.testing.assert_close(psp_mmd_loss(pred, target, reduction="sum"), torch.tensor(0.71875))


def test_eq27_matches_explicit_double_sum():
    gen = torch.Generator().manual_seed(2)
    pred = torch.rand(11, 4, 5, generator=gen, dtype=DT)
    target = (torch.rand(11, 4, 5, generator=gen, dtype=DT) < 0.2).to(DT)
    for tau_s in (1.0, 2.0, 4.0):
        torch.testing.assert_close(
            psp_mmd_loss(pred, target, tau_s, reduction="none"), naive_eq27(pred, target, tau_s)
        )


def test_eq27_shape_errors_name_both_shapes():
    with pytest.raises(ValueError, match=r"\(3, 2, 4\).*\(3, 2, 5\)"):
        psp_mmd_loss(torch.zeros(3, 2, 4), torch.zeros(3, 2, 5))
    with pytest.raises(ValueError, match="T, B, N"):
        psp_mmd_loss(torch.zeros(3, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="reduction"):
        psp_mmd_loss(torch.zeros(3, 1, 1), torch.zeros(3, 1, 1), reduction="avg")


# ---------------------------------------------------------------------------
# set_mmd_loss
# ---------------------------------------------------------------------------


def test_features_give_eq27_for_a_single_pair():
    """K = R = 1: ‖φ(ŷ) − φ(y)‖² (the biased linear MMD²) is exactly Eq. 27."""
    gen = torch.Generator().manual_seed(3)
    yhat = torch.rand(10, 1, 3, 7, generator=gen, dtype=DT)
    y = (torch.rand(10, 1, 3, 7, generator=gen, dtype=DT) < 0.3).to(DT)
    eq27 = psp_mmd_loss(yhat[:, 0], y[:, 0], reduction="none")
    dist = (psp_features(yhat) - psp_features(y)).square().sum(-1)[:, 0]
    torch.testing.assert_close(dist, eq27)
    mmd_v = set_mmd_loss(yhat, y, estimator="biased", reduction="none")
    torch.testing.assert_close(mmd_v, eq27)


def test_psp_features_layout():
    trials = torch.rand(4, 2, 3, 5)  # [T, K, B, N]
    f = psp_features(trials)
    assert f.shape == (3, 2, 4 * 5)
    w = torch.tensor([4, 3, 2, 1]) / 4
    expected = psp_trace(trials)[2, 1, 1, 1] * w[2].sqrt()  # t=2, k=1, b=1, n=1
    torch.testing.assert_close(f[1, 1, 2 * 5 + 1], expected)


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_linear_closed_form_matches_pair_loops(estimator):
    gen = torch.Generator().manual_seed(4)
    a = torch.rand(6, 4, 2, 3, generator=gen, dtype=DT)
    b = torch.rand(6, 5, 2, 3, generator=gen, dtype=DT)
    fa, fb = psp_features(a), psp_features(b)
    got = set_mmd_loss(a, b, estimator=estimator, reduction="none")
    for i in range(2):
        if estimator == "unbiased":
            ref = naive_mmd_u(fa[i], fb[i], torch.dot)
        else:  # V-statistic: ‖mean x − mean y‖²
            ref = (fa[i].mean(0) - fb[i].mean(0)).square().sum()
        torch.testing.assert_close(got[i], ref)


def test_gaussian_matches_pair_loops_and_median_heuristic():
    gen = torch.Generator().manual_seed(5)
    a = torch.rand(6, 4, 2, 3, generator=gen, dtype=DT)
    b = torch.rand(6, 3, 2, 3, generator=gen, dtype=DT)
    fa, fb = psp_features(a), psp_features(b)
    h = 0.7

    def k(u, v):
        return torch.exp(-(u - v).square().sum() / (2 * h**2))

    got = set_mmd_loss(a, b, kernel="gaussian", bandwidth=h, reduction="none")
    for i in range(2):
        torch.testing.assert_close(got[i], naive_mmd_u(fa[i], fb[i], k))
    # default bandwidth = per-stimulus median of the pooled pairwise distances
    got_med = set_mmd_loss(a, b, kernel="gaussian", reduction="none")
    for i in range(2):
        z = torch.cat([fa[i], fb[i]])
        d = torch.pdist(z)
        hm = d.median()

        def km(u, v, hm=hm):
            return torch.exp(-(u - v).square().sum() / (2 * hm**2))

        torch.testing.assert_close(got_med[i], naive_mmd_u(fa[i], fb[i], km))


def _psp_matrix_ref(T: int, tau_s: float) -> torch.Tensor:
    return naive_psp(torch.eye(T, dtype=DT), tau_s)  # column s = impulse at s


def test_linear_mmd_unbiased_while_v_statistic_is_biased():
    """Bernoulli trains with known rates: E[MMD²_u] = ‖μ_p − μ_q‖² exactly.

    The mean embedding is analytic: E φ(y) = sqrt(w)·PSP(p). The V-statistic's
    expectation is larger by tr Cov φ(x)/K + tr Cov φ(y)/R with
    Var φ_{t,n} = w_t Σ_s L[t,s]² p_{s,n}(1 − p_{s,n}).
    """
    T, N, K, R, draws, tau_s = 8, 2, 3, 3, 20000, 2.0
    gen = torch.Generator().manual_seed(6)
    p = torch.rand(T, N, generator=gen, dtype=DT) * 0.5
    q = (p + 0.1 * torch.randn(T, N, generator=gen, dtype=DT)).clamp(0.01, 0.9)
    # draws play the role of independent stimuli b (same rates for every b)
    x = bernoulli(p, (K, draws), gen)
    y = bernoulli(q, (R, draws), gen)

    w = torch.arange(T, 0, -1, dtype=DT) / T  # (T − τ + 1)/T
    L = _psp_matrix_ref(T, tau_s)
    exact = (w[:, None] * (L @ (p - q)).square()).sum()
    tr_cov = lambda r: (w[:, None] * (L.square() @ (r * (1 - r)))).sum()  # noqa: E731
    bias = tr_cov(p) / K + tr_cov(q) / R

    u = set_mmd_loss(x, y, tau_s=tau_s, reduction="none")
    v = set_mmd_loss(x, y, tau_s=tau_s, estimator="biased", reduction="none")
    se_u = u.std() / math.sqrt(draws)
    se_v = v.std() / math.sqrt(draws)
    assert abs(u.mean() - exact) < 4 * se_u
    assert abs(v.mean() - (exact + bias)) < 4 * se_v
    # the bias is not a small effect at these trial counts: many standard errors
    assert v.mean() - exact > 20 * se_v
    assert bias > exact  # the V-statistic mostly measures noise here


@pytest.mark.parametrize("kernel", ["linear", "gaussian"])
def test_mmd_same_distribution_is_zero_in_expectation(kernel):
    """Two independent samples from one distribution: mean MMD²_u ≈ 0 (4 s.e.).

    With the median heuristic the bandwidth depends on the pooled sample, but
    symmetrically, so under exchangeability the estimator stays centred at 0.
    """
    T, N, K, R, draws = 10, 4, 5, 6, 3000
    gen = torch.Generator().manual_seed(7)
    p = torch.rand(T, N, generator=gen, dtype=DT) * 0.4
    x = bernoulli(p, (K, draws), gen)
    y = bernoulli(p, (R, draws), gen)
    u = set_mmd_loss(x, y, kernel=kernel, reduction="none")
    se = u.std() / math.sqrt(draws)
    assert se > 0
    assert abs(u.mean()) < 4 * se
    # the estimator is genuinely noisy per stimulus (can be negative): it is
    # the average that is unbiased, not every draw that is zero
    assert (u < 0).any() and (u > 0).any()


def test_gaussian_mmd_positive_for_different_distributions():
    T, N, K, R, stimuli = 10, 4, 10, 10, 40
    gen = torch.Generator().manual_seed(8)
    x = bernoulli(torch.full((T, N), 0.1, dtype=DT), (K, stimuli), gen)
    y = bernoulli(torch.full((T, N), 0.4, dtype=DT), (R, stimuli), gen)
    u = set_mmd_loss(x, y, kernel="gaussian", reduction="none")
    assert (u > 0).all()
    assert u.mean() > 10 * u.std() / math.sqrt(stimuli)


def test_gaussian_sees_correlations_linear_does_not():
    """Same mean embedding, different distributions (synchronous vs independent cells).

    Linear MMD² only compares means, so it is ~0; the Gaussian kernel is
    characteristic and detects the difference.
    """
    T, N, K, R, draws, rate = 8, 6, 8, 8, 2000, 0.3
    gen = torch.Generator().manual_seed(9)
    indep = bernoulli(torch.full((T, N), rate, dtype=DT), (K, draws), gen)
    sync = bernoulli(torch.full((T, 1), rate, dtype=DT), (R, draws), gen).expand(-1, -1, -1, N)
    lin = set_mmd_loss(indep, sync, kernel="linear", reduction="none")
    gau = set_mmd_loss(indep, sync, kernel="gaussian", reduction="none")
    assert abs(lin.mean()) < 4 * lin.std() / math.sqrt(draws)
    assert gau.mean() > 10 * gau.std() / math.sqrt(draws)


def test_paired_loss_penalises_variance_set_mmd_does_not():
    """Model distribution == data distribution (Bernoulli p, independent trials).

    Paired Eq. 27 has expectation tr Cov φ(ŷ) + tr Cov φ(y) > 0 (it would be
    reduced by making the model deterministic), the set MMD²_u has mean 0.
    """
    T, N, K, draws, tau_s = 8, 3, 4, 5000, 2.0
    gen = torch.Generator().manual_seed(10)
    p = torch.rand(T, N, generator=gen, dtype=DT) * 0.5
    model = bernoulli(p, (K, draws), gen)
    data = bernoulli(p, (K, draws), gen)
    w = torch.arange(T, 0, -1, dtype=DT) / T
    L = _psp_matrix_ref(T, tau_s)
    tr_cov = (w[:, None] * (L.square() @ (p * (1 - p)))).sum()

    paired = psp_mmd_loss(model[:, 0], data[:, 0], tau_s, reduction="none")
    assert abs(paired.mean() - 2 * tr_cov) < 4 * paired.std() / math.sqrt(draws)
    # a deterministic model predicting the mean rate does better on Eq. 27 ...
    det = p[:, None, :].expand(T, draws, N)
    paired_det = psp_mmd_loss(det, data[:, 0], tau_s, reduction="none")
    assert paired_det.mean() < paired.mean() - 10 * paired.std() / math.sqrt(draws)
    # ... while the set-level MMD² of the correct stochastic model is ~0
    u = set_mmd_loss(model, data, tau_s=tau_s, reduction="none")
    assert abs(u.mean()) < 4 * u.std() / math.sqrt(draws)


@pytest.mark.parametrize("kernel", ["linear", "gaussian"])
def test_set_mmd_gradients(kernel):
    gen = torch.Generator().manual_seed(11)
    model = torch.rand(5, 3, 2, 4, generator=gen, dtype=DT, requires_grad=True)
    data = (torch.rand(5, 4, 2, 4, generator=gen, dtype=DT) < 0.3).to(DT)
    loss = set_mmd_loss(model, data, kernel=kernel)
    loss.backward()
    assert torch.isfinite(model.grad).all() and model.grad.abs().sum() > 0
    bw = None if kernel == "linear" else 0.8
    assert torch.autograd.gradcheck(
        lambda m: set_mmd_loss(m, data, kernel=kernel, bandwidth=bw), (model.detach().requires_grad_(),)
    )


def test_set_mmd_gradient_points_toward_data_mean():
    """One gradient step on the model rates lowers the linear MMD²."""
    gen = torch.Generator().manual_seed(12)
    data = bernoulli(torch.full((6, 3), 0.4, dtype=DT), (10, 2), gen)
    rates = torch.full((6, 4, 2, 3), 0.05, dtype=DT, requires_grad=True)
    before = set_mmd_loss(rates, data)
    before.backward()
    with torch.no_grad():
        after = set_mmd_loss(rates - 0.5 * rates.grad, data)
    assert after < before
    assert (rates.grad < 0).all()  # rates too low: gradient says raise them


def test_set_mmd_errors():
    a = torch.zeros(5, 3, 2, 4)
    with pytest.raises(ValueError, match="K=1"):
        set_mmd_loss(a[:, :1], a)
    with pytest.raises(ValueError, match="R=1"):
        set_mmd_loss(a, a[:, :1])
    with pytest.raises(ValueError, match="agree in T, B, N"):
        set_mmd_loss(a, torch.zeros(5, 3, 3, 4))
    with pytest.raises(ValueError, match="T, K, B, N"):
        set_mmd_loss(a[0], a)
    with pytest.raises(ValueError, match="kernel"):
        set_mmd_loss(a, a, kernel="laplace")
    with pytest.raises(ValueError, match="bandwidth"):
        set_mmd_loss(a, a, kernel="gaussian", bandwidth=0.0)
    with pytest.raises(ValueError, match="tau_s"):
        set_mmd_loss(a, a, tau_s=0.5)


def test_gaussian_all_silent_trials_is_finite():
    a = torch.zeros(5, 3, 2, 4, requires_grad=True)
    loss = set_mmd_loss(a, torch.zeros(5, 3, 2, 4), kernel="gaussian")
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(a.grad).all()


# ---------------------------------------------------------------------------
# poisson_nll
# ---------------------------------------------------------------------------


def test_poisson_nll_matches_torch():
    gen = torch.Generator().manual_seed(13)
    rate = torch.rand(7, 3, 5, generator=gen) * 2
    rate[0, 0, 0] = 0.0  # exercises eps
    counts = torch.poisson(torch.rand(7, 3, 5, generator=gen) * 2, generator=gen)
    for eps in (1e-8, 1e-3):
        ref = torch.nn.functional.poisson_nll_loss(rate, counts, log_input=False, full=False, eps=eps)
        torch.testing.assert_close(poisson_nll(rate, counts, eps=eps), ref)


def test_poisson_nll_minimised_at_the_counts():
    counts = torch.tensor([0.0, 1.0, 3.0]).reshape(3, 1, 1)
    rate = torch.tensor([0.5, 0.5, 0.5]).reshape(3, 1, 1).requires_grad_()
    poisson_nll(rate, counts).backward()
    # d/dr (r − c log r) = 1 − c/r: positive where r > c, negative where r < c
    assert rate.grad[0] > 0 and rate.grad[1] < 0 and rate.grad[2] < 0
    best = poisson_nll(counts.clamp_min(1e-6), counts)
    assert best < poisson_nll(counts + 0.2, counts)


def test_poisson_nll_shape_error():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        poisson_nll(torch.ones(2, 3), torch.ones(3, 2))
