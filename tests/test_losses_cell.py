"""The per-cell Gaussian-kernel set MMD² (``set_mmd_loss(per_cell=True)``, issue 31) and its loss name."""

from __future__ import annotations

import math

import pytest
import torch

from neurocode.losses import psp_features, set_mmd_loss

DT = torch.float64


def one_cell_by_loops(x: torch.Tensor, y: torch.Tensor, h: float) -> float:
    """Unbiased Gaussian MMD² by explicit pair loops. x: [K, D], y: [R, D] features of one cell."""
    def k(a, b):
        return math.exp(-float((a - b).square().sum()) / (2 * h * h))
    K, R = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(K) for j in range(K) if i != j) / (K * (K - 1))
    kyy = sum(k(y[i], y[j]) for i in range(R) for j in range(R) if i != j) / (R * (R - 1))
    kxy = sum(k(x[i], y[j]) for i in range(K) for j in range(R)) / (K * R)
    return kxx + kyy - 2 * kxy


def test_per_cell_is_the_mean_of_one_cell_calls_and_of_pair_loops():
    g = torch.Generator().manual_seed(1)
    T, K, R, B, N = 5, 3, 4, 2, 3
    a = torch.bernoulli(torch.full((T, K, B, N), 0.4, dtype=DT), generator=g)
    b = torch.bernoulli(torch.full((T, R, B, N), 0.4, dtype=DT), generator=g)
    got = set_mmd_loss(a, b, kernel="gaussian", per_cell=True, reduction="none")  # [B]
    one = torch.stack([set_mmd_loss(a[..., n:n + 1], b[..., n:n + 1], kernel="gaussian", reduction="none")
                       for n in range(N)], dim=1)  # [B, N], median bandwidth per (stimulus, cell)
    torch.testing.assert_close(got, one.mean(1))
    # an explicit bandwidth per (stimulus, cell) against pair loops on that cell's own PSP features
    h = torch.tensor([[0.5, 0.8, 1.1], [0.7, 0.9, 1.3]], dtype=DT)
    got_h = set_mmd_loss(a, b, kernel="gaussian", per_cell=True, bandwidth=h, reduction="none")
    fx, fy = psp_features(a), psp_features(b)  # [B, K, T*N], cell-minor
    want = [[one_cell_by_loops(fx[s].reshape(K, T, N)[..., n], fy[s].reshape(R, T, N)[..., n], float(h[s, n]))
             for n in range(N)] for s in range(B)]
    torch.testing.assert_close(got_h, torch.tensor(want, dtype=DT).mean(1))


def _two_sets(model_trials, recorded_trials):
    """Per-(stimulus, cell) MMD² values of the linear and per-cell Gaussian kernels, flattened."""
    T, K, B, N = model_trials.shape
    R = recorded_trials.shape[1]
    flat_m, flat_r = model_trials.reshape(T, K, B * N, 1), recorded_trials.reshape(T, R, B * N, 1)
    lin = set_mmd_loss(flat_m, flat_r, kernel="linear", reduction="none")
    gau = set_mmd_loss(flat_m, flat_r, kernel="gaussian", reduction="none")
    return lin, gau


def test_per_cell_gaussian_sees_a_variance_the_linear_kernel_misses():
    g = torch.Generator().manual_seed(2)
    T, K, R, B, N = 10, 8, 30, 40, 5
    # same distribution: independent Bernoulli(0.5) bins in both sets
    x = torch.bernoulli(torch.full((T, K, B, N), 0.5, dtype=DT), generator=g)
    y = torch.bernoulli(torch.full((T, R, B, N), 0.5, dtype=DT), generator=g)
    lin, gau = _two_sets(x, y)
    se = gau.std() / math.sqrt(gau.numel())  # B*N independent (stimulus, cell) problems
    assert abs(float(gau.mean())) < 4 * float(se)
    per_cell = set_mmd_loss(x, y, kernel="gaussian", per_cell=True)
    torch.testing.assert_close(per_cell, gau.mean())
    # same mean per bin (0.5), different variance: each recorded trial is all on or all off
    on = torch.bernoulli(torch.full((1, R, B, N), 0.5, dtype=DT), generator=g).expand(T, -1, -1, -1)
    lin, gau = _two_sets(x, on)
    se_lin = lin.std() / math.sqrt(lin.numel())
    se_gau = gau.std() / math.sqrt(gau.numel())
    assert abs(float(lin.mean())) < 4 * float(se_lin), "the linear kernel sees the mean only"
    assert float(gau.mean()) > 10 * float(se_gau), "the per-cell Gaussian kernel sees the variance"


def test_gradient_flows_to_the_model_trials():
    g = torch.Generator().manual_seed(3)
    p = torch.full((6, 4, 2, 3), 0.3, dtype=DT, requires_grad=True)
    y = torch.bernoulli(torch.full((6, 5, 2, 3), 0.6, dtype=DT), generator=g)
    set_mmd_loss(p, y, kernel="gaussian", per_cell=True).backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_bad_per_cell_arguments_are_named():
    a = torch.zeros(4, 3, 2, 5)
    with pytest.raises(ValueError, match="per-cell bandwidth"):
        set_mmd_loss(a, a, kernel="gaussian", per_cell=True, bandwidth=torch.ones(2))
    with pytest.raises(ValueError, match="recorded_mask"):
        set_mmd_loss(a, a, per_cell=True, recorded_mask=torch.ones(3, 2, dtype=torch.bool))


def test_loss_names_and_weight_in_the_config():
    from neurocode.fitting import make_config

    c = make_config("nsnn", "quick", loss="mmd_linear+gaussian_cell", loss_options={"cell_mmd_weight": 10.0})
    assert c.loss == "mmd_linear+gaussian_cell" and c.loss_options["cell_mmd_weight"] == 10.0
    assert make_config("nsnn", "quick", loss="mmd_gaussian_cell").loss == "mmd_gaussian_cell"
    with pytest.raises(ValueError, match="cell_mmd_weight"):
        make_config("nsnn", "quick", loss_options={"cell_mmd_weight": 10.0})
    with pytest.raises(ValueError, match="cell_mmd_weight"):
        make_config("nsnn", "quick", loss="mmd_linear+gaussian_cell", loss_options={"cell_mmd_weight": -1.0})
    with pytest.raises(ValueError, match="does not apply"):
        make_config("cnn", "quick", loss="mmd_gaussian_cell")
