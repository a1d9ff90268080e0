"""The count output of the NSNN (``output_substeps`` m noisy steps per bin) against the exact
expected count of a bin, enumerated over the 2**m spike patterns of its substeps.

Why the noise scale matters there (docs/nsnn_vs_cnn.md, "Toward a generative NSNN"): with the
hard reset, the count's rate curve E[count](I) is a staircase when the per-substep noise is
narrow against the reset's jumps (sigma 0.2 at v_th 1), and NDL's gradient of the count,
exact for one step, is then off by 13 % on average over the working range; with the noise
scaled as sigma * sqrt(m) the curve is smooth and the gradient within a few per cent.
"""

from __future__ import annotations

import itertools
import math

import torch

from neurocode.neurons import NeuronSpec, make_neuron

V_TH = 1.0
CURRENTS = [0.4 + 0.1 * k for k in range(10)]  # per substep: the working range up to near saturation


def expected_count(current: float, m: int, tau: float, sigma: float) -> float:
    """E[spikes in one bin] of a Gaussian escape-noise LIF from rest, constant current, m substeps."""
    total = 0.0
    for pattern in itertools.product((0, 1), repeat=m):
        u, prob = 0.0, 1.0
        for spike in pattern:
            ubar = tau * u + current
            p = 0.5 * (1 + math.erf((ubar - V_TH) / (sigma * math.sqrt(2))))
            prob *= p if spike else 1 - p
            u = ubar * (1 - spike)
        total += prob * sum(pattern)
    return total


def ndl_gradient(current: float, m: int, tau: float, sigma: float, n: int = 50_000) -> tuple[float, float]:
    """The mean count over n sampled bins and NDL's mean gradient of the count wrt the current."""
    neuron = make_neuron(NeuronSpec(tau=tau, sigma=sigma), torch.Generator().manual_seed(3))
    x = torch.full((1,), current, dtype=torch.float64, requires_grad=True)
    spikes = neuron(x.expand(m, n).contiguous()[:, :, None])
    spikes.sum().backward()
    return float(spikes.detach().sum()) / n, float(x.grad) / n


def relative_gradient_errors(m: int, sigma: float, tau: float = 0.5) -> list[float]:
    errors = []
    for current in CURRENTS:
        h = 1e-5
        exact = (expected_count(current + h, m, tau, sigma) - expected_count(current - h, m, tau, sigma)) / (2 * h)
        count, grad = ndl_gradient(current, m, tau, sigma)
        # the sampled count is the enumerated expectation (Bernoulli substeps: variance <= m / 4 per bin)
        assert abs(count - expected_count(current, m, tau, sigma)) <= 4 * math.sqrt(m / 4 / 50_000)
        errors.append(abs(grad - exact) / exact)
    return errors


def test_one_step_ndl_gradient_is_the_exact_derivative():
    errors = relative_gradient_errors(m=1, sigma=0.2)
    assert max(errors) < 0.03


def test_substep_count_gradient_with_the_noise_scaled_by_sqrt_m():
    for m in (3, 5):
        narrow = relative_gradient_errors(m, sigma=0.2)
        scaled = relative_gradient_errors(m, sigma=0.2 * math.sqrt(m))
        assert sum(narrow) / len(narrow) > 0.09, (m, narrow)
        assert sum(scaled) / len(scaled) < 0.05, (m, scaled)
