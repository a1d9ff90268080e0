"""Tests for neurocode.neurons: LIF / NoisyLIF, the fused time loop and its NDL backward.

Note on reproducibility: torch's CPU Gaussian sampler works in blocks of 16 values, so
drawing a [T, B, ...] tensor at once equals T draws of [B, ...] only when the per-step
size is a multiple of 16 (other noise families sample through ``icdf(rand)`` and agree
for any size). Tests that compare one multi-step call with several smaller draws use
per-step sizes that are multiples of 16.
"""

from __future__ import annotations

import contextlib
import math
import os

import pytest
import torch
from torch import Tensor, nn

from neurocode.neurons import LIF, NoisyLIF, lif_sequence, lif_step
from neurocode.noise import ERF, Gaussian, NoiseModel, check_noise_model, Logistic, Rectangular, Sigmoid, Triangular, TriangularSurrogate, Uniform

DT = torch.float64
NOISES = [Gaussian(0.2), Logistic(0.15), Uniform(0.4), Triangular(0.5)]
NOISE_IDS = ["gauss", "logistic", "uniform", "triangular"]
PLACEMENTS = ["escape", "membrane"]
RESETS = ["zero", "subtract"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------
# firing probability and NDL gradient (paper Eqs. 7-9, 19)
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("noise", NOISES, ids=NOISE_IDS)
def test_firing_probability_is_noise_cdf(noise, placement):
    """T = 1, constant ubar = x: the spike rate is F(ubar - v_th) within a binomial CI."""
    n = 20_000
    sd = math.sqrt(noise.variance())
    ubar = torch.tensor([1 - 2 * sd, 1 - 0.7 * sd, 1.0, 1 + 0.3 * sd, 1 + 1.2 * sd, 1 + 3 * sd], dtype=DT)
    x = ubar.expand(1, n, -1)
    neuron = NoisyLIF(noise, placement=placement)
    spikes = neuron(x, generator=gen(0))
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    p_hat = spikes[0].mean(0)
    p = noise.cdf(ubar - 1.0)
    tol = 4 * torch.sqrt(p * (1 - p) / n) + 1.0 / n
    assert torch.all((p_hat - p).abs() <= tol), (p_hat, p)


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("noise", NOISES, ids=NOISE_IDS)
def test_firing_probability_per_step_given_ubar(noise, placement, reset):
    """T > 1: given the realised pre-noise potential, each step fires with F(ubar - v_th),
    whichever the reset."""
    T, n = 6, 20_000
    x = torch.full((T, n), 0.9, dtype=DT)
    spikes, ubar = NoisyLIF(noise, placement=placement, reset=reset)(x, generator=gen(1), return_potential=True)
    # pool all steps: E[o - F(ubar - v_th)] = 0 and the sum of Bernoulli variances gives the CI
    p = noise.cdf(ubar - 1.0)
    resid = (spikes - p).sum().item()
    assert abs(resid) <= 4 * math.sqrt((p * (1 - p)).sum().item()) + 1


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("noise", NOISES, ids=NOISE_IDS)
def test_ndl_gradient_T1_is_upstream_times_density(noise, placement):
    x = (1 + 2 * math.sqrt(noise.variance()) * torch.randn(1, 64, 5, generator=gen(2), dtype=DT)).requires_grad_()
    up = torch.randn(1, 64, 5, generator=gen(3), dtype=DT)
    spikes = NoisyLIF(noise, placement=placement)(x, generator=gen(4))
    spikes.backward(up)
    torch.testing.assert_close(x.grad, up * noise.pdf(x.detach() - 1.0), rtol=1e-14, atol=0)


def _hand_backward(up, ubar, spikes, g, tau, w=None, reset="zero"):
    """dL/dx by the recurrence c[t] = g up[t] + tau c[t+1] d u[t]/d ubar[t].

    With ``w`` None the reset is detached (d u / d ubar = 1 - o; after reset by subtraction 1);
    else it is (1 - o) - w g with w the potential that is reset (subtraction, v_th = 1: 1 - g).
    """
    T = up.shape[0]
    c = torch.zeros_like(up)
    nxt = torch.zeros_like(up[0])
    for t in range(T - 1, -1, -1):
        if reset == "subtract":
            dres = torch.ones_like(g[t]) if w is None else 1 - g[t]
        else:
            dres = 1 - spikes[t] if w is None else (1 - spikes[t]) - w[t] * g[t]
        c[t] = g[t] * up[t] + (tau * nxt * dres if t + 1 < T else 0)
        nxt = c[t]
    return c


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("noise", NOISES, ids=NOISE_IDS)
def test_ndl_gradient_detached_reset_recurrence(noise, placement, reset):
    T, tau = 7, 0.6
    x = (0.7 + 0.5 * torch.rand(T, 32, 3, generator=gen(5), dtype=DT)).requires_grad_()
    up = torch.randn(T, 32, 3, generator=gen(6), dtype=DT)
    neuron = NoisyLIF(noise, tau=tau, placement=placement, detach_reset=True, reset=reset)
    spikes, ubar = neuron(x, generator=gen(7), return_potential=True)
    assert 0.1 < spikes.mean() < 0.9
    spikes.backward(up)
    g = noise.pdf(ubar.detach() - 1.0)
    torch.testing.assert_close(x.grad, _hand_backward(up, ubar.detach(), spikes, g, tau, reset=reset),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("noise", NOISES, ids=NOISE_IDS)
def test_ndl_gradient_attached_reset_recurrence_escape(noise, reset):
    """Escape noise, reset differentiated: d u / d ubar = (1 - o) - ubar F'(ubar - v_th), or
    1 - v_th F'(ubar - v_th) after reset by subtraction."""
    T, tau = 7, 0.5
    x = (0.7 + 0.5 * torch.rand(T, 32, 3, generator=gen(8), dtype=DT)).requires_grad_()
    up = torch.randn(T, 32, 3, generator=gen(9), dtype=DT)
    spikes, ubar = NoisyLIF(noise, tau=tau, reset=reset)(x, generator=gen(10), return_potential=True)
    spikes.backward(up)
    ub = ubar.detach()
    g = noise.pdf(ub - 1.0)
    torch.testing.assert_close(x.grad, _hand_backward(up, ub, spikes, g, tau, w=ub, reset=reset),
                               rtol=1e-12, atol=1e-12)


SURROGATES = [ERF(), Sigmoid(4.0), Rectangular(1.0), TriangularSurrogate(1.0)]


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("sg", SURROGATES, ids=["erf", "sigmoid", "rect", "tri"])
@pytest.mark.parametrize("detach_reset", [True, False])
def test_lif_backward_is_upstream_times_surrogate(sg, detach_reset, reset):
    x1 = (0.2 + 1.6 * torch.rand(1, 50, 4, generator=gen(11), dtype=DT)).requires_grad_()
    up = torch.randn(1, 50, 4, generator=gen(12), dtype=DT)
    lif = LIF(sg, detach_reset=detach_reset)
    s = lif(x1)
    torch.testing.assert_close(s, (x1.detach() >= 1.0).to(DT))
    s.backward(up)
    torch.testing.assert_close(x1.grad, up * sg.grad(x1.detach() - 1.0), rtol=1e-14, atol=0)
    # T > 1 against the hand recurrence
    T, tau = 6, 0.5
    x = (0.3 + 0.9 * torch.rand(T, 50, 4, generator=gen(13), dtype=DT)).requires_grad_()
    up = torch.randn(T, 50, 4, generator=gen(14), dtype=DT)
    s, ubar = LIF(sg, tau=tau, detach_reset=detach_reset, reset=reset)(x, return_potential=True)
    s.backward(up)
    ub = ubar.detach()
    g = sg.grad(ub - 1.0)
    expect = _hand_backward(up, ub, s, g, tau, w=None if detach_reset else ub, reset=reset)
    torch.testing.assert_close(x.grad, expect, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------
# deterministic limit
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_sigma_to_zero_converges_to_lif(placement):
    T = 8
    x = 1.2 * torch.rand(T, 512, 8, generator=gen(15), dtype=DT)
    lif_s, lif_u = LIF()(x, return_potential=True)
    # neurons whose whole deterministic trajectory stays 1e-4 away from threshold
    clear = ((lif_u - 1.0).abs() > 1e-4).all(0)
    assert clear.float().mean() > 0.9
    fractions = []
    for sigma in [0.5, 0.2, 0.05, 0.01, 1e-3, 1e-6]:
        s = NoisyLIF(Gaussian(sigma), placement=placement)(x, generator=gen(16))
        fractions.append((s != lif_s)[:, clear].double().mean().item())
    assert all(a >= b for a, b in zip(fractions, fractions[1:])), fractions
    assert fractions[0] > 5 * fractions[3] > 0
    assert fractions[-1] == 0.0, fractions
    for noise in [Logistic(1e-6), Uniform(1e-6), Triangular(1e-6)]:
        s = NoisyLIF(noise, placement=placement)(x, generator=gen(17))
        assert torch.equal(s[:, clear], lif_s[:, clear])


@pytest.mark.parametrize("detach_reset", [True, False])
def test_gaussian_inv_sqrt2_ndl_equals_erf_surrogate(detach_reset):
    noise = Gaussian(1 / math.sqrt(2))
    xs = torch.linspace(-5, 7, 1001, dtype=DT)
    torch.testing.assert_close(noise.pdf(xs), ERF().grad(xs), rtol=1e-12, atol=0)
    # full backward, T = 1 (the gradient does not depend on the sampled spike)
    x = (1 + torch.randn(1, 200, generator=gen(18), dtype=DT)).requires_grad_()
    up = torch.randn(1, 200, generator=gen(19), dtype=DT)
    NoisyLIF(noise, detach_reset=detach_reset)(x, generator=gen(20)).backward(up)
    x2 = x.detach().clone().requires_grad_()
    LIF(ERF(), detach_reset=detach_reset)(x2).backward(up)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-12, atol=0)
    # T > 1 with the spikes forced equal: the same fused loop, the LIF spike pattern
    T = 5
    x = (1.3 * torch.rand(T, 100, generator=gen(21), dtype=DT)).requires_grad_()
    x3 = x.detach().clone().requires_grad_()
    s1, *_ = lif_sequence(x, tau=0.5, v_th=1.0, spike_grad=noise.pdf, detach_reset=detach_reset,
                          eps=torch.zeros_like(x.detach()))
    s2 = LIF(ERF(), detach_reset=detach_reset)(x3)
    assert torch.equal(s1, s2)
    up = torch.randn(T, 100, generator=gen(22), dtype=DT)
    s1.backward(up)
    s2.backward(up)
    torch.testing.assert_close(x.grad, x3.grad, rtol=1e-13, atol=1e-13)


# ----------------------------------------------------------------------------------------
# numerical safety
# ----------------------------------------------------------------------------------------

ALL_NOISES_TINY = [cls(s) for cls in (Gaussian, Logistic, Uniform, Triangular) for s in (1e-6, 0.3)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("noise", ALL_NOISES_TINY, ids=[repr(n) for n in ALL_NOISES_TINY])
def test_no_nan_extreme_inputs(noise, placement, dtype):
    T = 6
    scales = torch.tensor([1e-3, 1.0, 1e2, 1e4], dtype=dtype).repeat_interleave(16)
    x = (torch.randn(T, 8, 64, generator=gen(23), dtype=dtype) * scales).clamp(-1e4, 1e4)
    x[:, 0, :4] = torch.tensor([1e4, -1e4, 0.0, 1.0], dtype=dtype)
    for detach_reset in (False, True):
        for neuron in (NoisyLIF(noise, placement=placement, detach_reset=detach_reset),
                       LIF(noise.surrogate(), detach_reset=detach_reset)):
            xx = x.clone().requires_grad_()
            s, ubar, u = neuron(xx, return_potential=True, return_state=True)
            assert torch.isfinite(s).all() and torch.isfinite(ubar).all() and torch.isfinite(u).all()
            (s.sum() + 1e-4 * ubar.sum() + 1e-4 * u.sum()).backward()
            assert torch.isfinite(xx.grad).all(), neuron


# ----------------------------------------------------------------------------------------
# fused loop == reference per-step loop
# ----------------------------------------------------------------------------------------


def _reference_loop(x, u0, tau, v_th, spike_grad, eps, placement, detach_reset, reset="zero"):
    spikes, ubars, u = [], [], u0
    for t in range(x.shape[0]):
        s, u, ub = lif_step(x[t], u, tau=tau, v_th=v_th, spike_grad=spike_grad,
                            eps=None if eps is None else eps[t], placement=placement, detach_reset=detach_reset,
                            reset=reset)
        spikes.append(s)
        ubars.append(ub)
    return torch.stack(spikes), torch.stack(ubars), u


def _grads(out, inputs, weights):
    loss = sum((o * w).sum() for o, w in zip(out, weights))
    return torch.autograd.grad(loss, inputs, retain_graph=True)


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("expanded", [False, True])
@pytest.mark.parametrize("with_u0", [False, True])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("placement", ["none", "escape", "membrane"])
def test_fused_equals_reference_loop(placement, detach_reset, with_u0, expanded, reset):
    T, B, F = 9, 16, 5
    tau, v_th = 0.6, 1.0
    noise = Gaussian(0.3)
    if expanded:
        x0 = (0.2 + torch.rand(B, F, generator=gen(24), dtype=DT)).requires_grad_()
        x = x0.expand(T, B, F)
        leaf = x0
    else:
        leaf = (1.4 * torch.rand(T, B, F, generator=gen(24), dtype=DT)).requires_grad_()
        x = leaf
    u0 = (0.5 * torch.rand(B, F, generator=gen(25), dtype=DT)).requires_grad_() if with_u0 else None
    eps = None if placement == "none" else noise.sample((T, B, F), gen(26), dtype=DT)
    pl = "escape" if placement == "none" else placement
    weights = [torch.randn(T, B, F, generator=gen(27), dtype=DT), torch.randn(T, B, F, generator=gen(28), dtype=DT),
               torch.randn(B, F, generator=gen(29), dtype=DT)]
    inputs = [leaf] + ([u0] if with_u0 else [])
    fused = lif_sequence(x, tau=tau, v_th=v_th, spike_grad=noise.pdf, eps=eps, placement=pl,
                         detach_reset=detach_reset, u0=u0, reset=reset)
    ref = _reference_loop(x, u0, tau, v_th, noise.pdf, eps, pl, detach_reset, reset)
    assert torch.equal(fused[0], ref[0])
    assert 0.05 < fused[0].mean() < 0.95
    torch.testing.assert_close(fused[1], ref[1], rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(fused[2], ref[2], rtol=1e-14, atol=1e-14)
    for gf, gr in zip(_grads(fused, inputs, weights), _grads(ref, inputs, weights)):
        torch.testing.assert_close(gf, gr, rtol=1e-12, atol=1e-12)
    # spikes-only and potential-only losses (None upstream gradients in the fused backward)
    for w in ([weights[0], 0 * weights[1], 0 * weights[2]], [0 * weights[0], weights[1], 0 * weights[2]]):
        only = [i for i, wi in enumerate(w) if wi.abs().sum() > 0][0]
        gf = torch.autograd.grad((fused[only] * w[only]).sum(), inputs, retain_graph=True)
        gr = torch.autograd.grad((ref[only] * w[only]).sum(), inputs, retain_graph=True)
        for a, b in zip(gf, gr):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("noise", NOISES, ids=NOISE_IDS)
def test_noisylif_equals_reference_loop_same_noise(noise, placement, detach_reset):
    """NoisyLIF vs a lif_step loop fed the noise drawn from the same seeded generator."""
    T, B, F = 8, 16, 4
    x = (1.4 * torch.rand(T, B, F, generator=gen(30), dtype=DT)).requires_grad_()
    neuron = NoisyLIF(noise, placement=placement, detach_reset=detach_reset)
    s, ubar = neuron(x, generator=gen(31), return_potential=True)
    seeded = neuron._seeded(T, gen(31), 1.0)  # Gaussian: the counter-based stream
    if seeded is not None:
        thr = seeded.materialize((T, B, F), DT)
        eps = 1.0 - thr if placement == "escape" else thr - 1.0
    elif placement == "escape":  # forward draws thresholds v_th + eps' in one pass
        eps = 1.0 - noise.sample((T, B, F), gen(31), loc=1.0, dtype=DT)
    else:
        eps = noise.sample((T, B, F), gen(31), dtype=DT)
    x2 = x.detach().clone().requires_grad_()
    s2, ubar2, _ = _reference_loop(x2, None, 0.5, 1.0, noise.pdf, eps, placement, detach_reset)
    assert torch.equal(s, s2)
    torch.testing.assert_close(ubar, ubar2)
    w1, w2 = torch.randn(T, B, F, generator=gen(32), dtype=DT), torch.randn(T, B, F, generator=gen(33), dtype=DT)
    ((s * w1).sum() + (ubar * w2).sum()).backward()
    ((s2 * w1).sum() + (ubar2 * w2).sum()).backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------
# API: seeds, dtype, layers, state, step, errors
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_seeded_reproducibility(placement):
    x = torch.rand(10, 8, 16) * 1.5
    n = NoisyLIF(Gaussian(0.3), placement=placement)
    assert torch.equal(n(x, generator=gen(1)), n(x, generator=gen(1)))
    assert not torch.equal(n(x, generator=gen(1)), n(x, generator=gen(2)))
    # module-level generator
    a = NoisyLIF(Gaussian(0.3), placement=placement, generator=gen(3))(x)
    b = NoisyLIF(Gaussian(0.3), placement=placement, generator=gen(3))(x)
    assert torch.equal(a, b)
    torch.manual_seed(4)
    c = n(x)
    torch.manual_seed(4)
    assert torch.equal(c, n(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("neuron", [LIF(), NoisyLIF(), NoisyLIF(Logistic(0.2), placement="membrane")],
                         ids=["lif", "noisy-escape", "noisy-membrane"])
def test_dtype_device_preserved(neuron, dtype):
    x = torch.rand(4, 3, 5, dtype=dtype, requires_grad=True)
    s, ubar, u = neuron(x, return_potential=True, return_state=True)
    for t in (s, ubar, u):
        assert t.dtype == dtype and t.device == x.device
    assert s.shape == x.shape and ubar.shape == x.shape and u.shape == x.shape[1:]
    s.sum().backward()
    assert x.grad.dtype == dtype


@pytest.mark.parametrize("make", [lambda: LIF(), lambda: NoisyLIF(Gaussian(0.3)),
                                  lambda: NoisyLIF(Gaussian(0.3), placement="membrane")],
                         ids=["lif", "noisy-escape", "noisy-membrane"])
def test_after_linear_and_conv(make):
    torch.manual_seed(0)
    T, B = 5, 4
    # Linear acts on the last dim of [T, B, F] directly
    lin = nn.Linear(6, 7)
    x = torch.randn(T, B, 6)
    s = make()(lin(x) + 1.0)
    assert s.shape == (T, B, 7)
    s.sum().backward()
    assert lin.weight.grad is not None and torch.isfinite(lin.weight.grad).all()
    assert lin.weight.grad.abs().sum() > 0
    # Conv2d: flatten time into batch and back
    conv = nn.Conv2d(2, 3, 3, padding=1)
    img = torch.randn(T, B, 2, 8, 8)
    cur = conv(img.flatten(0, 1)).unflatten(0, (T, B))
    s = make()(cur + 1.0)
    assert s.shape == (T, B, 3, 8, 8)
    s.mean().backward()
    assert conv.weight.grad.abs().sum() > 0
    # static image: compute the convolution once and expand it over time
    conv.zero_grad()
    cur0 = conv(img[0])
    s = make()(cur0.expand(T, *cur0.shape) + 1.0)
    s.mean().backward()
    assert conv.weight.grad.abs().sum() > 0


def test_nsnn_is_drop_in_module_swap():
    net = nn.Sequential(nn.Linear(4, 8), LIF())
    x = torch.randn(3, 2, 4)
    net(x)
    net[1] = NoisyLIF()
    assert net(x).shape == (3, 2, 8)


@pytest.mark.parametrize("make", [lambda: LIF(stateful=True), lambda: NoisyLIF(Logistic(0.2), stateful=True),
                                  lambda: NoisyLIF(Gaussian(0.2), placement="membrane", stateful=True)],
                         ids=["lif", "noisy-escape", "noisy-membrane"])
def test_stateful_continues_and_reset_state(make):
    x = 1.5 * torch.rand(10, 4, 8, generator=gen(40), dtype=DT)
    full = make()
    full.stateful = False
    ref, u_ref = full(x, generator=gen(41), return_state=True) if isinstance(full, NoisyLIF) else full(x, return_state=True)
    n = make()
    kw = lambda g: {"generator": g} if isinstance(n, NoisyLIF) else {}  # noqa: E731
    g = gen(41)
    a = n(x[:4], **kw(g))
    b, u = n(x[4:], return_state=True, **kw(g))
    assert torch.equal(torch.cat([a, b]), ref)
    torch.testing.assert_close(u, u_ref)
    assert not n.state.requires_grad
    # reset_state: back to rest
    n.reset_state()
    assert n.state is None
    c = n(x[:4], **kw(gen(41)))
    assert torch.equal(c, a)
    # non-stateful ignores the previous call
    full2 = make()
    full2.stateful = False
    assert torch.equal(full2(x[4:], **kw(gen(5))), full2(x[4:], **kw(gen(5))))


@pytest.mark.parametrize("make", [lambda: LIF(), lambda: NoisyLIF(Logistic(0.2)),
                                  lambda: NoisyLIF(Gaussian(0.2), placement="membrane")],
                         ids=["lif", "noisy-escape", "noisy-membrane"])
def test_state_argument(make):
    x = 1.5 * torch.rand(10, 4, 8, generator=gen(42), dtype=DT)
    n = make()
    kw = (lambda s: {"generator": gen(s)}) if isinstance(n, NoisyLIF) else (lambda s: {})
    g = gen(43)
    a, u = n(x[:5], return_state=True, **({"generator": g} if isinstance(n, NoisyLIF) else {}))
    b = n(x[5:], u, **({"generator": g} if isinstance(n, NoisyLIF) else {}))
    assert torch.equal(torch.cat([a, b]), n(x, **kw(43)))
    # gradient flows into the state
    st = torch.full((4, 8), 0.5, dtype=DT, requires_grad=True)
    n(x, st, **kw(1)).sum().backward()
    assert st.grad is not None and torch.isfinite(st.grad).all()


@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("make", [lambda d, r: LIF(detach_reset=d, reset=r),
                                  lambda d, r: NoisyLIF(Gaussian(0.3), detach_reset=d, reset=r),
                                  lambda d, r: NoisyLIF(Gaussian(0.3), placement="membrane", detach_reset=d, reset=r),
                                  lambda d, r: NoisyLIF(Uniform(0.4), detach_reset=d, reset=r),
                                  lambda d, r: NoisyLIF(Triangular(0.4), placement="membrane", detach_reset=d, reset=r)],
                         ids=["lif", "gauss-escape", "gauss-membrane", "uniform-escape", "tri-membrane"])
def test_step_api_equals_multistep(make, detach_reset, reset):
    T = 7
    n = make(detach_reset, reset)
    noisy = isinstance(n, NoisyLIF)
    x = (1.4 * torch.rand(T, 4, 8, generator=gen(44), dtype=DT)).requires_grad_()
    w = torch.randn(T, 4, 8, generator=gen(45), dtype=DT)
    multi = n(x, **({"generator": gen(46)} if noisy else {}))
    g, u, outs = gen(46), None, []
    x2 = x.detach().clone().requires_grad_()
    for t in range(T):
        s, u = n.step(x2[t], u, **({"generator": g} if noisy else {}))
        outs.append(s)
    steps = torch.stack(outs)
    assert torch.equal(multi, steps)
    (multi * w).sum().backward()
    (steps * w).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-12, atol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="tau"):
        LIF(tau=0.0)
    with pytest.raises(ValueError, match="tau"):
        NoisyLIF(tau=1.5)
    with pytest.raises(ValueError, match="v_th"):
        LIF(v_th=-1.0)
    with pytest.raises(ValueError, match="placement"):
        NoisyLIF(placement="dendrite")
    with pytest.raises(ValueError, match="placement"):
        lif_sequence(torch.rand(3, 2), tau=0.5, v_th=1.0, spike_grad=ERF().grad, placement="x")
    for n in (LIF(), NoisyLIF()):
        with pytest.raises(ValueError, match="time-major"):
            n(torch.rand(5))
        with pytest.raises(ValueError, match="state shape"):
            n(torch.rand(5, 2, 3), torch.zeros(2, 4))
        with pytest.raises(TypeError):
            n(torch.ones(5, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="positive"):
        NoisyLIF(Gaussian(0.0))
    with pytest.raises(ValueError, match="positive"):
        Gaussian(-0.2)
    with pytest.raises(TypeError, match="NoiseModel"):
        NoisyLIF(ERF())
    with pytest.raises(TypeError, match="Surrogate"):
        LIF(Gaussian(0.2))
    with pytest.raises(ValueError, match="eps shape"):
        lif_sequence(torch.rand(3, 2), tau=0.5, v_th=1.0, spike_grad=ERF().grad, eps=torch.rand(3, 3))
    for make in (lambda: LIF(reset="soft"), lambda: NoisyLIF(reset="soft"),
                 lambda: lif_sequence(torch.rand(3, 2), tau=0.5, v_th=1.0, spike_grad=ERF().grad, reset="soft"),
                 lambda: lif_step(torch.rand(2), None, tau=0.5, v_th=1.0, spike_grad=ERF().grad, reset="soft")):
        with pytest.raises(ValueError, match="reset must be one of"):
            make()


class Laplace(NoiseModel):
    """The user-defined noise of noise.py's module docstring."""

    surrogate_name = "exponential"

    def __init__(self, scale):
        self.scale = float(scale)

    def cdf(self, x):
        z = x / self.scale
        return torch.where(z < 0, 0.5 * torch.exp(z.clamp(max=0)), 1 - 0.5 * torch.exp(-z.clamp(min=0)))

    def pdf(self, x):
        return torch.exp(-(x / self.scale).abs()) / (2 * self.scale)

    def icdf(self, p):
        return -self.scale * torch.sign(p - 0.5) * torch.log1p(-2 * (p - 0.5).abs())

    def variance(self):
        return 2 * self.scale**2


def test_user_defined_noise_in_noisylif():
    noise = Laplace(0.2)
    check_noise_model(noise)
    n = 20_000
    ubar = torch.tensor([0.7, 1.0, 1.25], dtype=DT)
    for placement in PLACEMENTS:
        x = ubar.expand(1, n, 3).clone().requires_grad_()
        s = NoisyLIF(noise, placement=placement)(x, generator=gen(50))
        p = noise.cdf(ubar - 1)
        assert torch.all((s[0].mean(0) - p).abs() <= 4 * torch.sqrt(p * (1 - p) / n) + 1 / n)
        s.sum().backward()
        torch.testing.assert_close(x.grad[0, 0], noise.pdf(ubar - 1))


def test_repr():
    assert "Gaussian" in repr(NoisyLIF()) and "escape" in repr(NoisyLIF())
    assert "ERF" in repr(LIF())


# ----------------------------------------------------------------------------------------
# fused C++ kernel vs the pure-torch loop
# ----------------------------------------------------------------------------------------

from neurocode._io import sha256_file  # noqa: E402
from neurocode.neurons import _kernels  # noqa: E402
from neurocode.neurons.counter_rng import SeededGaussian, counter_normal, draw_seeds  # noqa: E402

needs_kernel = pytest.mark.skipif(_kernels.get_library() is None, reason=f"no kernel: {_kernels.failure()}")
SPIKE_GRADS = [n.pdf for n in NOISES] + [s.grad for s in SURROGATES]


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("placement", ["none", "escape", "membrane", "seeded"])
@pytest.mark.parametrize("sg", SPIKE_GRADS, ids=NOISE_IDS + ["erf", "sigmoid", "rect", "tri"])
def test_kernel_equals_torch_path(sg, placement, detach_reset, dtype):
    T, shape = 7, (3, 2, 1500)  # N = 9000 neurons: several threads and blocks, a ragged tail
    x = (1.4 * torch.rand(T, *shape, generator=gen(60), dtype=dtype)).requires_grad_()
    u0 = (0.5 * torch.rand(*shape, generator=gen(61), dtype=dtype)).requires_grad_()
    kw = {}
    if placement == "escape":
        kw["threshold"] = 1.0 + 0.3 * torch.randn(T, *shape, generator=gen(62), dtype=dtype)
    elif placement == "membrane":
        kw.update(eps=0.3 * torch.randn(T, *shape, generator=gen(62), dtype=dtype), placement="membrane")
    elif placement == "seeded":
        kw["threshold"] = SeededGaussian(torch.randint(-2**63, 2**63 - 1, (T,), generator=gen(62)), 1.0, 0.3)
    weights = [torch.randn(T, *shape, generator=gen(63 + i), dtype=dtype) for i in range(2)]
    weights.append(torch.randn(*shape, generator=gen(65), dtype=dtype))
    res = {}
    for backend in ("kernel", "torch"):
        out = lif_sequence(x, tau=0.6, v_th=1.0, spike_grad=sg, u0=u0, detach_reset=detach_reset,
                           backend=backend, **kw)
        res[backend] = out, _grads(out, [x, u0], weights)
        if backend == "kernel":
            assert "neurocode_lif_forward" in out[0].grad_fn.name()
    (ok, gk), (ot, gt) = res["kernel"], res["torch"]
    for a, b in zip(ok, ot):  # same spikes, potentials and final state, bit for bit
        assert torch.equal(a, b)
    assert 0.05 < ok[0].mean() < 0.95
    tol = dict(rtol=1e-11, atol=1e-11) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    for a, b in zip(gk, gt):  # gradients equal up to the density's float rounding
        torch.testing.assert_close(a, b, **tol)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_gaussian_density_far_from_threshold(dtype):
    # One step, so dL/dx is the density at x - v_th: the torch path's value wherever the exponent
    # -z^2/2 is above log(min normal) + 1, and exactly 0 below it (where the vector exp would
    # leave its fast path; the value there is < 3e-38 of the peak, or 1e-307 in float64).
    sg = Gaussian(0.2).pdf
    d = torch.linspace(-30, 30, 24001, dtype=dtype)  # up to 150 sigma from threshold
    x = (1.0 + d).reshape(1, -1).requires_grad_()
    lif_sequence(x, tau=0.5, v_th=1.0, spike_grad=sg, backend="kernel")[0].sum().backward()
    z = d / 0.2
    edge = math.sqrt(2 * (-1 - math.log(torch.finfo(dtype).tiny)))
    inside = z.abs() <= edge * (1 - 1e-6)
    ref = sg(d)
    # (float32: exp(e) carries |e| ulps of the exponent, up to ~90 here)
    tol = dict(rtol=1e-12, atol=0) if dtype == torch.float64 else dict(rtol=3e-5, atol=0)
    torch.testing.assert_close(x.grad[0][inside], ref[inside], **tol)
    assert (ref[inside] > 0).all() and torch.equal(x.grad[0][z.abs() > edge * (1 + 1e-6)],
                                                    torch.zeros((z.abs() > edge * (1 + 1e-6)).sum(), dtype=dtype))


@needs_kernel
def test_kernel_expanded_input_broadcast_grads_and_fallbacks():
    T, B, F = 6, 16, 300
    x0 = (0.3 + torch.rand(B, F, generator=gen(70))).requires_grad_()
    grads = []
    for backend in ("kernel", "torch"):
        x0.grad = None
        s, ubar = lif_sequence(x0.expand(T, B, F), tau=0.5, v_th=1.0, spike_grad=ERF().grad, backend=backend)[:2]
        (s.sum() + 0.5 * ubar.sum()).backward()  # stride-0 upstream gradients
        grads.append(x0.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-5)
    # user-defined densities and other dtypes take the torch path; backend="kernel" refuses them
    x = torch.rand(4, 8, 16, requires_grad=True)
    s = lif_sequence(x, tau=0.5, v_th=1.0, spike_grad=Laplace(0.2).pdf)
    assert s[0].grad_fn.name() == "_LIFSequenceBackward"
    with pytest.raises(RuntimeError, match="built-in"):
        lif_sequence(x, tau=0.5, v_th=1.0, spike_grad=lambda d: d.abs(), backend="kernel")
    with pytest.raises(RuntimeError, match="dtype"):
        lif_sequence(x.detach().half(), tau=0.5, v_th=1.0, spike_grad=ERF().grad, backend="kernel")

    class MyGaussian(Gaussian):  # overrides the density: must not use the built-in formula
        def pdf(self, x):
            return 2 * super().pdf(x)

    assert lif_sequence(x, tau=0.5, v_th=1.0, spike_grad=MyGaussian(0.2).pdf)[0].grad_fn.name() == "_LIFSequenceBackward"
    with pytest.raises(ValueError, match="backend"):
        lif_sequence(x, tau=0.5, v_th=1.0, spike_grad=ERF().grad, backend="fast")


_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix64_t(z: Tensor) -> Tensor:
    """SplitMix64 finaliser on int64 tensors (two's-complement wrap-around = uint64 arithmetic)."""
    def srl(v, k):  # logical shift right
        return (v >> k) & ((1 << (64 - k)) - 1)
    z = (z ^ srl(z, 30)) * _signed(0xBF58476D1CE4E5B9)
    z = (z ^ srl(z, 27)) * _signed(0x94D049BB133111EB)
    return z ^ srl(z, 31)


def _signed(v: int) -> int:
    v &= _M64
    return v - (1 << 64) if v >> 63 else v


def _ref_kernel_normal(seed: int, idx: Tensor, dtype) -> Tensor:
    """Python reference of the kernel's counter-based normal z[i] for step seed ``seed``:
    pair m = i // 2 draws (u1, u2) from SplitMix64 outputs of the stream seeded with ``seed``
    (output m+1 in float32: 24-bit u1 from bits 40..63, u2 from bits 8..31; outputs 2m+1,
    2m+2 in float64: 53-bit), then z[2m] = r cos(2 pi u2), z[2m+1] = r sin(2 pi u2),
    r = sqrt(-2 log u1). Returned in float64 (the kernel rounds each operation to dtype)."""
    m = idx // 2
    def out(k):  # k-th SplitMix64 output
        return _mix64_t(_signed(seed) + k * _signed(_GOLDEN))
    if dtype == torch.float32:
        h = out(m + 1)
        u1 = (((h >> 40) & 0xFFFFFF) + 1).double() * 2.0**-24
        u2 = ((h >> 8) & 0xFFFFFF).double() * 2.0**-24
    else:
        u1 = (((out(2 * m + 1) >> 11) & ((1 << 53) - 1)) + 1).double() * 2.0**-53
        u2 = ((out(2 * m + 2) >> 11) & ((1 << 53) - 1)).double() * 2.0**-53
    r = torch.sqrt(-2 * torch.log(u1))
    a = 2 * math.pi * u2
    return torch.where(idx % 2 == 0, r * torch.cos(a), r * torch.sin(a))


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_seeded_gaussian_matches_python_reference(dtype):
    """materialize and the fused escape loop draw exactly the documented generator (SplitMix64
    pairs + two-branch Box-Muller), at any offset, block or thread split."""
    T, N = 3, 2 * 4096 + 1037  # odd N: the last pair's sine branch is unused
    seeds = torch.randint(-2**63, 2**63 - 1, (T,), generator=gen(81))
    z = SeededGaussian(seeds, 0.0, 1.0).materialize((T, N), dtype).double()
    idx = torch.arange(N, dtype=torch.int64)
    tol = dict(rtol=2e-6, atol=2e-6) if dtype == torch.float32 else dict(rtol=1e-13, atol=1e-13)
    for t in range(T):
        torch.testing.assert_close(z[t], _ref_kernel_normal(int(seeds[t]), idx, dtype), **tol)
    # the fused escape loop (blocks of 512 neurons, 2 threads with N > 4096) fires on the same
    # thresholds: x on an exact threshold value fires (every step: the reset leaves ubar = x),
    # just below it does not (step 0)
    thr = SeededGaussian(seeds, 1.0, 0.5).materialize((T, N), dtype)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        s_on = lif_sequence(thr, tau=0.5, v_th=1.0, spike_grad=ERF().grad, threshold=SeededGaussian(seeds, 1.0, 0.5))[0]
        below = torch.nextafter(thr, torch.full_like(thr, -math.inf))
        s_below = lif_sequence(below, tau=0.5, v_th=1.0, spike_grad=ERF().grad,
                               threshold=SeededGaussian(seeds, 1.0, 0.5))[0]
    finally:
        torch.set_num_threads(old)
    assert torch.all(s_on == 1) and torch.all(s_below[0] == 0)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_seeded_gaussian_noise_is_standard_normal(dtype):
    """The kernel's counter-based Gaussian: moments, tails, independence across steps/neurons."""
    T, N = 4, 250_000
    seeds = torch.randint(-2**63, 2**63 - 1, (T,), generator=gen(80))
    z = SeededGaussian(seeds, 0.0, 1.0).materialize((T, N), dtype).double()
    assert torch.isfinite(z).all()
    n = z.numel()
    assert abs(z.mean().item()) < 5 / math.sqrt(n)
    assert abs(z.var().item() - 1) < 5 * math.sqrt(2 / n)
    assert abs((z**3).mean().item()) < 5 * math.sqrt(15 / n)
    assert abs((z**4).mean().item() - 3) < 5 * math.sqrt(96 / n)
    for k in (1.0, 2.0, 3.0):  # two-sided tail mass vs the normal law
        p = math.erfc(k / math.sqrt(2))
        assert abs((z.abs() > k).double().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)
    c_time = torch.corrcoef(z[:2])[0, 1].item()
    c_nbr = torch.corrcoef(torch.stack([z[0, :-1], z[0, 1:]]))[0, 1].item()
    assert abs(c_time) < 5 / math.sqrt(N) and abs(c_nbr) < 5 / math.sqrt(N)
    # elements 2m, 2m+1 share one (u1, u2) (cosine and sine branch of Box-Muller): still
    # independent normals -- uncorrelated (also in squares), z_e^2 + z_o^2 ~ Exp(mean 2)
    ze, zo = z[:, 0::2].reshape(-1), z[:, 1::2].reshape(-1)
    npair = ze.numel()
    for a, b in ((ze, zo), (ze**2, zo**2), (ze.abs(), zo.abs())):
        assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item()) < 5 / math.sqrt(npair)
    r2 = ze**2 + zo**2
    assert abs(r2.mean().item() - 2) < 5 * 2 / math.sqrt(npair)
    for k in (0.5, 2.0, 6.0, 12.0):
        p = math.exp(-k / 2)
        assert abs((r2 > k).double().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / npair)
    # the angle is uniform: the sign pattern of (z_e, z_o) is uniform over the 4 quadrants
    q = ((ze > 0).long() * 2 + (zo > 0).long()).bincount(minlength=4).double() / npair
    assert torch.all((q - 0.25).abs() < 5 * math.sqrt(0.25 * 0.75 / npair))
    # the fused escape loop and materialize draw the same numbers; the thread count does not matter
    x = torch.full((T, N), 1.0, dtype=dtype)
    s_fused = lif_sequence(x, tau=0.5, v_th=1.0, spike_grad=ERF().grad, threshold=SeededGaussian(seeds, 1.0, 1.0))[0]
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        thr = SeededGaussian(seeds, 1.0, 1.0).materialize((T, N), dtype)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(s_fused[0], (x[0] >= thr[0]).to(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_counter_normal_is_the_documented_stream(dtype):
    """The torch implementation of the stream (the path without the kernel, and CUDA's) draws
    the generator documented in counter_rng, at odd sizes and across chunk boundaries."""
    T, N = 3, 2 * 4096 + 1037
    seeds = torch.randint(-2**63, 2**63 - 1, (T,), generator=gen(82))
    z = counter_normal(seeds, N, dtype=dtype).double()
    idx = torch.arange(N, dtype=torch.int64)
    tol = dict(rtol=2e-6, atol=2e-6) if dtype == torch.float32 else dict(rtol=1e-13, atol=1e-13)
    for t in range(T):
        torch.testing.assert_close(z[t], _ref_kernel_normal(int(seeds[t]), idx, dtype), **tol)
    z2 = counter_normal(seeds, N, 1.0, 0.5, dtype=dtype)
    torch.testing.assert_close(z2.double(), 1.0 + 0.5 * z, **tol)
    assert counter_normal(seeds, N, dtype=torch.float16).dtype == torch.float16
    with pytest.raises(ValueError, match="seeds"):
        counter_normal(seeds.float(), N)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_and_torch_draw_the_same_numbers(dtype):
    """gauss_fill (C++) and counter_normal (torch) agree to the last ulps of log/cos/sin."""
    T, N = 5, 100_003
    seeds = torch.randint(-2**63, 2**63 - 1, (T,), generator=gen(83))
    k = SeededGaussian(seeds, 0.3, 0.7).materialize((T, N), dtype)
    t = counter_normal(seeds, N, 0.3, 0.7, dtype=dtype)
    eps = torch.finfo(dtype).eps
    assert (k - t).abs().max() <= 8 * eps * (1 + k.abs().max())
    assert (k == t).double().mean() > 0.5  # mostly bit-identical, not merely close


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_same_seed_same_spikes_with_and_without_kernel(placement, dtype):
    """One random stream: the fused kernel and the pure-torch loop give the same spikes for
    the same seed. A neuron may differ only from a step where its potential sat within
    float rounding of its noisy threshold (the two libm's last ulp), and then only on
    trajectories that follow from that step."""
    T, B, F = 20, 16, 2000
    x = 1.2 * torch.rand(T, B, F, generator=gen(91), dtype=dtype)
    neuron = NoisyLIF(Gaussian(0.2), placement=placement)
    s_kernel, ubar_kernel = neuron(x, generator=gen(92), return_potential=True)
    with _kernels.pure_torch("disabled for this test"):
        s_torch, ubar_torch = neuron(x, generator=gen(92), return_potential=True)
    assert 0.1 < s_kernel.mean() < 0.6
    same = (s_kernel == s_torch).double().mean().item()
    assert same >= 0.999
    differs = (s_kernel != s_torch).reshape(T, -1)
    if differs.any():
        first = differs.double().argmax(0)
        cells = differs.any(0).nonzero().squeeze(1)
        noise = SeededGaussian(draw_seeds(T, gen(92)), 1.0 if placement == "escape" else 0.0, 0.2)
        z = noise.materialize((T, B, F), dtype).reshape(T, -1)
        u = ubar_kernel.reshape(T, -1)
        gap = (u - z if placement == "escape" else u + z - 1.0)[first[cells], cells]
        assert gap.abs().max() <= 16 * torch.finfo(dtype).eps
    else:  # membrane noise carries each sample's last-ulp difference in the potential
        torch.testing.assert_close(ubar_kernel, ubar_torch)
    # stepping one step at a time draws what forward() draws, on either path
    with _kernels.pure_torch("disabled for this test"):
        g, u, steps = gen(92), None, []
        for t in range(T):
            o, u = neuron.step(x[t], u, generator=g) if t else neuron.step(x[t], generator=g)
            steps.append(o)
    assert (torch.stack(steps) == s_torch).double().mean() >= 0.999


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_draws_the_cpu_stream():
    """On CUDA the counter-based stream is the same torch code: same seed, same spikes."""
    T, B, F = 20, 16, 2000
    x = 1.2 * torch.rand(T, B, F, generator=gen(93))
    neuron = NoisyLIF(Gaussian(0.2))
    s_cpu = neuron(x, generator=gen(94))
    s_gpu = neuron(x.cuda(), generator=gen(94)).cpu()
    assert (s_cpu == s_gpu).double().mean() >= 0.999


@needs_kernel
def test_kernel_operators_pass_opcheck():
    """Schema, autograd registration, fake-tensor shapes and AOT dispatch of the C++ operators."""
    ops = _kernels.get_library()
    T, B, F = 5, 3, 7
    x = (1.4 * torch.rand(T, B, F, generator=gen(100))).requires_grad_()
    u0 = (0.5 * torch.rand(B, F, generator=gen(101))).requires_grad_()
    thr = 1.0 + 0.3 * torch.randn(T, B, F, generator=gen(102))
    seeds = draw_seeds(T, gen(103))
    spec = (0, 0.2, 12.5, 1.99)  # gauss family
    calls = [(x, None, None, None, None, 0.5, 1.0, 0.0, *spec, False, True, True),
             (x, u0, thr, None, None, 0.5, 1.0, 0.0, *spec, False, False, True),
             (x, u0, None, thr - 1, None, 0.5, 1.0, 0.0, 1, 0.2, 0.0, 0.0, True, True, False),
             (x, u0, None, None, seeds, 0.5, 1.0, 0.3, 2, 4.0, 0.0, 0.0, False, False, False)]
    for args in calls:
        torch.library.opcheck(ops.lif_forward.default, args)
    bits = ops.lif_forward(x.detach(), None, thr, None, None, 0.5, 1.0, 0.0, *spec, False, False, False)[3]
    torch.library.opcheck(ops.lif_backward.default, (x.detach(), None, None, bits, torch.randn(T, B, F), None,
                                                      torch.randn(B, F), 0.5, 1.0, *spec, False))
    torch.library.opcheck(ops.gauss_fill.default, (seeds, 11, 0.0, 1.0, torch.float32))


@needs_kernel
def test_kernel_operators_check_their_inputs():
    """TORCH_CHECK names the operator, the argument and what was expected."""
    ops = _kernels.get_library()
    x = torch.rand(4, 2, 3)
    spec = (0, 0.2, 12.5, 1.99)
    bad = [((x[0, 0, 0:0], None, None, None, None), "time-major"),
           ((x.half(), None, None, None, None), "float32 or float64"),
           ((x, torch.rand(5), None, None, None), "u0 must have 6 elements"),
           ((x, None, torch.rand(4, 2, 3).double(), None, None), "threshold has dtype"),
           ((x, None, torch.rand(4, 2, 2), None, None), "threshold has shape"),
           ((x, None, x, x, None), "at most one"),
           ((x, None, None, None, torch.zeros(3, dtype=torch.int64)), r"seeds must be a CPU int64 tensor of shape \[4\]")]
    for args, message in bad:
        with pytest.raises(RuntimeError, match=message):
            ops.lif_forward(*args, 0.5, 1.0, 0.0, *spec, False, True, True)
    with pytest.raises(RuntimeError, match="family must be one of"):
        ops.lif_forward(x, None, None, None, None, 0.5, 1.0, 0.0, 7, 0.2, 12.5, 1.99, False, True, True)
    with pytest.raises(RuntimeError, match=r"keep_bits must be a CPU uint8 tensor of shape \[4, 1\]"):
        ops.lif_backward(x, None, None, torch.zeros(4, 2, dtype=torch.uint8), x, None, None, 0.5, 1.0, *spec, False)
    with pytest.raises(RuntimeError, match="n must be >= 0"):
        ops.gauss_fill(torch.zeros(2, dtype=torch.int64), -1, 0.0, 1.0, torch.float32)


@needs_kernel
@pytest.mark.slow
def test_corrupt_kernel_build_is_rebuilt_not_loaded(tmp_path):
    """A truncated library in the build directory is detected by its SHA-256 and rebuilt;
    the process that finds it neither crashes nor loads it."""
    build, copy, library, load = _cache_copy(tmp_path, "*.lock")
    library.write_bytes(library.read_bytes()[:4096])  # truncated: mapping it would SIGBUS
    proc = load("assert kernel_library() is not None, kernel_failure(); "
                "from neurocode.neurons._kernels import build_directory; print(build_directory())")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(copy)
    assert library.stat().st_size > 4096
    assert (copy / f"{build.name}.so.sha256").read_text().strip() == sha256_file(library)


def _cache_copy(tmp_path, *ignore):
    """A copy of this machine's kernel build directory under a fresh extension root, and a
    function running Python code in a process that uses that root."""
    import shutil
    import subprocess
    import sys
    build = _kernels.build_directory()
    root = tmp_path / "ext"
    copy = root / build.relative_to(build.parent.parent)
    # "lock": torch's build baton, present while any process loads the build; copied, it would
    # make the copy's loader wait forever
    shutil.copytree(build, copy, ignore=shutil.ignore_patterns("lock", *ignore))
    env = dict(os.environ, TORCH_EXTENSIONS_DIR=str(root), OMP_NUM_THREADS="1")

    def load(code: str):
        code = ("import warnings, torch; warnings.simplefilter('always'); "
                "from neurocode.neurons import kernel_library, kernel_failure; " + code)
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    return build, copy, copy / f"{build.name}.so", load


@pytest.mark.parametrize("neuron", [LIF(), NoisyLIF(Gaussian(0.2)), NoisyLIF(Gaussian(0.2), placement="membrane"),
                                    NoisyLIF(Logistic(0.2))], ids=["lif", "noisy-escape", "noisy-membrane", "logistic"])
@pytest.mark.parametrize("path", ["kernel", "torch"])
def test_nan_input_propagates_and_never_fires(neuron, path):
    """A NaN input gives NaN spikes for that neuron from that step on (never a spike), leaves
    the other neurons alone, and forward() and step() agree, on the kernel and torch paths."""
    T, B, N = 6, 2, 5
    x = 1.2 * torch.rand(T, B, N, generator=gen(110))
    x[2, 1, 3] = float("nan")
    x[1, 0, 0] = float("-inf")
    context = _kernels.pure_torch("test") if path == "torch" else contextlib.nullcontext()
    noisy = isinstance(neuron, NoisyLIF)

    def run(inp):
        return neuron(inp, generator=gen(111)) if noisy else neuron(inp)

    with context:
        s = run(x)
        g, u, steps = gen(111), None, []
        for t in range(T):
            o, u = neuron.step(x[t], u, generator=g) if noisy else neuron.step(x[t], u)
            steps.append(o)
    steps = torch.stack(steps)
    bad = torch.zeros(T, B, N, dtype=torch.bool)
    bad[2:, 1, 3] = True
    assert torch.isnan(s[bad]).all() and not torch.isnan(s[~bad]).any()
    assert torch.equal(s[~bad], steps[~bad]) and torch.isnan(steps[bad]).all()
    assert s[1, 0, 0] == 0  # -inf never fires
    clean = x.clone()
    clean[2, 1, 3] = 0.5
    s_clean = run(clean)
    keep = torch.ones(B, N, dtype=torch.bool)
    keep[1, 3] = False
    assert torch.equal(s[:, keep], s_clean[:, keep])


@needs_kernel
def test_planted_kernel_library_is_not_loaded(tmp_path):
    """A library planted at the cache path (no recorded hash, or a directory others can write
    to) is never loaded: it is rebuilt, or the kernel is refused with a warning."""
    build, copy, library, load = _cache_copy(tmp_path, "*.lock", "*.sha256")
    library.write_bytes(b"\x7fELF planted")  # would crash or run foreign code if loaded
    code = "print(kernel_library() is not None, kernel_failure())"
    proc = load(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("True")  # rebuilt, not loaded
    assert library.read_bytes()[:4] == b"\x7fELF" and library.stat().st_size > 4096
    assert (copy.stat().st_mode & 0o777) == 0o700
    copy.chmod(0o777)  # another user could plant a library and its hash here
    proc = load(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("False") and "writable by others" in proc.stdout
    assert "could not be built" in proc.stderr


@needs_kernel
@pytest.mark.parametrize("placement", ["none", "escape", "membrane", "seeded"])
def test_kernel_without_potentials_recomputes_them_exactly(placement):
    """potential=False: the kernel keeps only its inputs and the escape decisions as bits, and its
    backward pass, recomputing the potentials, gives bit for bit the gradients it gives when
    it keeps them."""
    T, shape = 9, (4, 1031)  # a ragged last byte of bits
    x = (1.4 * torch.rand(T, *shape, generator=gen(120), dtype=torch.float64)).requires_grad_()
    u0 = (0.5 * torch.rand(*shape, generator=gen(121), dtype=torch.float64)).requires_grad_()
    kw = {}
    if placement == "escape":
        kw["threshold"] = 1.0 + 0.3 * torch.randn(T, *shape, generator=gen(122), dtype=torch.float64)
    elif placement == "membrane":
        kw.update(eps=0.3 * torch.randn(T, *shape, generator=gen(122), dtype=torch.float64), placement="membrane")
    elif placement == "seeded":
        kw["threshold"] = SeededGaussian(draw_seeds(T, gen(122)), 1.0, 0.3)
    w = torch.randn(T, *shape, generator=gen(123), dtype=torch.float64)
    wl = torch.randn(*shape, generator=gen(124), dtype=torch.float64)
    results = []
    for potential in (True, False):
        s, ubar, u_last = lif_sequence(x, tau=0.6, v_th=1.0, spike_grad=Gaussian(0.3).pdf, u0=u0, potential=potential,
                                       backend="kernel", **kw)
        assert (ubar is None) != potential
        results.append((s, u_last, torch.autograd.grad((s * w).sum() + (u_last * wl).sum(), [x, u0])))
    (s1, l1, g1), (s2, l2, g2) = results
    assert torch.equal(s1, s2) and torch.equal(l1, l2)
    assert torch.equal(g1[0], g2[0]) and torch.equal(g1[1], g2[1])


def test_the_kernel_builds_where_a_compiler_is_present():
    """The kernel tests above skip when the kernel is unavailable; this one turns a broken build
    on a machine with a C++ compiler into a failure instead of a row of silent skips."""
    import shutil
    if os.environ.get("NEUROCODE_NO_KERNEL", "") not in ("", "0"):
        pytest.skip("the kernel is disabled by NEUROCODE_NO_KERNEL")
    if shutil.which(os.environ.get("CXX") or "c++") is None:
        pytest.skip("no C++ compiler on this machine")
    assert _kernels.get_library() is not None, _kernels.failure()


# ----------------------------------------------------------------------------------------
# reset by subtraction
# ----------------------------------------------------------------------------------------


def test_subtract_reset_keeps_the_charge_above_the_threshold():
    """A deterministic LIF with tau = 1 and reset by subtraction is a sigma-delta integrator: after
    t steps of a constant current c it has fired floor(t c / v_th) times and holds the remainder;
    the hard reset forgets the excess (one spike every ceil(v_th / c) steps)."""
    T, v_th = 40, 1.0
    c = torch.tensor([0.13, 0.37, 0.61, 0.99], dtype=DT)
    x = c.expand(T, 1, -1)
    s, ubar, u = LIF(tau=1.0, v_th=v_th, reset="subtract")(x, return_potential=True, return_state=True)
    t = torch.arange(1, T + 1, dtype=DT)[:, None, None]
    fired = torch.floor(t * c / v_th + 1e-9)
    torch.testing.assert_close(s.cumsum(0), fired, rtol=0, atol=0)
    torch.testing.assert_close(u[0], T * c - v_th * fired[-1, 0], rtol=0, atol=1e-12)
    torch.testing.assert_close(ubar[1:], x[1:] + ubar[:-1] - v_th * s[:-1], rtol=0, atol=1e-12)
    hard = LIF(tau=1.0, v_th=v_th)(x)
    torch.testing.assert_close(hard.sum(0)[0], torch.floor(T / torch.ceil(v_th / c - 1e-9)), rtol=0, atol=0)


def _rate_matched_count_fano(reset, tau, sigma, T=30, n=4000, rate=0.3):
    """Fano factor of the T-step spike count at a constant input bisected to ``rate`` spikes per step."""
    neuron = NoisyLIF(Gaussian(sigma), tau=tau, reset=reset)
    lo, hi = 0.0, 2.0
    for _ in range(25):
        mid = (lo + hi) / 2
        s = neuron(torch.full((T, n, 1), mid, dtype=DT), generator=gen(120))
        lo, hi = (mid, hi) if s.mean() < rate else (lo, mid)
    counts = s.sum(0)
    assert abs(s.mean().item() - rate) < 0.01
    return (counts.var() / counts.mean()).item(), n


@pytest.mark.parametrize("tau", [0.8, 1.0])
def test_subtract_reset_makes_the_count_more_regular(tau):
    """At the same rate and noise, the count of a neuron that keeps its excess charge varies less
    across trials than the hard reset's (the point of the option); the gap beyond 6 SEs of the
    Fano factor's sampling error (~FF sqrt(2 / n))."""
    ff_zero, n = _rate_matched_count_fano("zero", tau, 0.35)
    ff_sub, _ = _rate_matched_count_fano("subtract", tau, 0.35)
    assert ff_sub < ff_zero - 6 * ff_zero * math.sqrt(2 / n), (ff_sub, ff_zero)


def test_subtract_reset_runs_the_torch_loop_and_the_kernel_refuses_it():
    x = (1.4 * torch.rand(5, 16, 3, generator=gen(121))).requires_grad_()
    with pytest.raises(RuntimeError, match="reset"):
        lif_sequence(x, tau=0.5, v_th=1.0, spike_grad=ERF().grad, reset="subtract", backend="kernel")
    auto = lif_sequence(x, tau=0.5, v_th=1.0, spike_grad=ERF().grad, reset="subtract")
    torch_path = lif_sequence(x, tau=0.5, v_th=1.0, spike_grad=ERF().grad, reset="subtract", backend="torch")
    assert auto[0].grad_fn.name() == "_LIFSequenceBackward"
    for a, b in zip(auto, torch_path):
        assert torch.equal(a, b)
    assert not torch.equal(auto[0], lif_sequence(x, tau=0.5, v_th=1.0, spike_grad=ERF().grad)[0])
