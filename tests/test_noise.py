"""Tests for neurocode.noise: noise models, matching surrogates, check_noise_model."""

from __future__ import annotations

import math

import pytest
import torch

from neurocode.noise import (
    ERF,
    Gaussian,
    Logistic,
    NoiseModel,
    Rectangular,
    Sigmoid,
    Surrogate,
    Triangular,
    TriangularSurrogate,
    Uniform,
    check_noise_model,
)

DT = torch.float64


class Laplace(NoiseModel):
    """The user-defined noise of noise.py's module docstring, verbatim."""

    surrogate_name = "exponential"

    def __init__(self, scale):
        from neurocode.noise import _positive

        self.scale = _positive(scale, "scale")

    def cdf(self, x):
        z = x / self.scale
        return torch.where(z < 0, 0.5 * torch.exp(z.clamp(max=0)), 1 - 0.5 * torch.exp(-z.clamp(min=0)))

    def pdf(self, x):
        return torch.exp(-(x / self.scale).abs()) / (2 * self.scale)

    def icdf(self, p):
        return -self.scale * torch.sign(p - 0.5) * torch.log1p(-2 * (p - 0.5).abs())

    def variance(self):
        return 2 * self.scale**2


NOISES = [Gaussian(0.2), Gaussian(1.0), Logistic(0.2), Logistic(0.7), Uniform(0.5), Uniform(0.1),
          Triangular(0.5), Triangular(2.0)]
BUILTIN_IDS = [repr(n) for n in NOISES]


@pytest.mark.parametrize("noise", NOISES + [Laplace(0.3)], ids=BUILTIN_IDS + ["Laplace"])
def test_check_noise_model_passes(noise):
    check_noise_model(noise)


class _BrokenPdf(Gaussian):
    def pdf(self, x):
        return 2 * super().pdf(x)


class _BrokenIcdf(Gaussian):
    def icdf(self, p):
        return super().icdf(p) * 1.1


class _Asymmetric(Gaussian):
    def cdf(self, x):
        return super().cdf(x - 0.1)


@pytest.mark.parametrize("bad, what", [(_BrokenPdf(0.3), "derivative"), (_BrokenIcdf(0.3), "inverse"),
                                       (_Asymmetric(0.3), "symmetric")])
def test_check_noise_model_catches_inconsistency(bad, what):
    with pytest.raises(AssertionError, match=what):
        check_noise_model(bad)


@pytest.mark.parametrize("noise", NOISES, ids=BUILTIN_IDS)
def test_cdf_limits_and_monotone(noise):
    x = torch.linspace(-50, 50, 10001, dtype=DT)
    F = noise.cdf(x)
    assert torch.all(F[1:] >= F[:-1])
    assert F[0].item() == pytest.approx(0.0, abs=1e-12)
    assert F[-1].item() == pytest.approx(1.0, abs=1e-12)
    assert noise.cdf(torch.zeros((), dtype=DT)).item() == pytest.approx(0.5)
    assert torch.all(noise.pdf(x) >= 0)
    # the density integrates to one
    # (trapezoid error at a jump of the density is at most h * max pdf)
    h = (x[1] - x[0]).item()
    assert torch.trapezoid(noise.pdf(x), x).item() == pytest.approx(1.0, abs=1e-3 + h * noise.pdf(x).max().item())


@pytest.mark.parametrize("noise", NOISES, ids=BUILTIN_IDS)
def test_surrogate_grad_is_noise_pdf(noise):
    sg = noise.surrogate()
    assert isinstance(sg, Surrogate)
    assert sg.noise().__class__ is noise.__class__
    assert noise.surrogate_name in type(sg).__name__.lower()
    x = torch.linspace(-8, 8, 4001, dtype=DT) * math.sqrt(noise.variance())
    x = torch.cat([x, torch.tensor([-1e4, -1e3, 1e3, 1e4], dtype=DT)])
    torch.testing.assert_close(sg.grad(x), noise.pdf(x), rtol=1e-12, atol=1e-12)
    # and the round trip gives back the same noise
    torch.testing.assert_close(sg.noise().pdf(x), noise.pdf(x), rtol=1e-12, atol=1e-12)


SURROGATES = [ERF(), ERF(0.3), Sigmoid(), Sigmoid(10.0), Rectangular(), Rectangular(0.4),
              TriangularSurrogate(), TriangularSurrogate(0.25)]


@pytest.mark.parametrize("sg", SURROGATES, ids=[repr(s) for s in SURROGATES])
def test_surrogate_noise_pdf_is_grad(sg):
    noise = sg.noise()
    assert isinstance(noise, NoiseModel)
    x = torch.linspace(-5, 5, 4001, dtype=DT)
    torch.testing.assert_close(noise.pdf(x), sg.grad(x), rtol=1e-12, atol=1e-12)
    # surrogate is a density: integrates to one
    h = (x[1] - x[0]).item()
    assert torch.trapezoid(sg.grad(x), x).item() == pytest.approx(1.0, abs=1e-3 + h * sg.grad(x).max().item())
    assert noise.surrogate() == sg


def test_default_erf_is_gaussian_sigma_inv_sqrt2():
    """SPEC §2: SG(x) = exp(-x^2)/sqrt(pi) is the N(0, 1/2) density."""
    x = torch.linspace(-4, 4, 801, dtype=DT)
    torch.testing.assert_close(ERF().grad(x), torch.exp(-x * x) / math.sqrt(math.pi))
    torch.testing.assert_close(ERF().grad(x), Gaussian(1 / math.sqrt(2)).pdf(x))
    assert ERF().noise().sigma == pytest.approx(1 / math.sqrt(2))


@pytest.mark.parametrize("noise", NOISES + [Laplace(0.3)], ids=BUILTIN_IDS + ["Laplace"])
def test_sample_moments(noise):
    n = 200_000
    g = torch.Generator().manual_seed(0)
    s = noise.sample((n,), g, dtype=DT)
    assert s.shape == (n,) and s.dtype == DT
    var = noise.variance()
    sd = math.sqrt(var)
    assert abs(s.mean().item()) <= 5 * sd / math.sqrt(n)
    # variance of the sample variance: (mu4 - var^2) / n; bound mu4 <= 9 var^2 (all ours: <= 6)
    assert abs(s.var().item() - var) <= 5 * math.sqrt(8 * var**2 / n)
    # the empirical CDF at a few points matches cdf
    for q in (-1.0, -0.3, 0.2, 0.8):
        x = q * sd
        p = noise.cdf(torch.tensor(x, dtype=DT)).item()
        assert abs((s <= x).double().mean().item() - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-9


@pytest.mark.parametrize("noise", NOISES, ids=BUILTIN_IDS)
def test_sample_loc_seed_dtype(noise):
    a = noise.sample((64, 3), torch.Generator().manual_seed(5), loc=1.0)
    b = noise.sample((64, 3), torch.Generator().manual_seed(5), loc=0.0)
    c = noise.sample((64, 3), torch.Generator().manual_seed(6), loc=0.0)
    torch.testing.assert_close(a, b + 1.0)
    assert not torch.equal(b, c)
    assert a.dtype == torch.float32
    assert noise.sample((4,), dtype=torch.float64).dtype == torch.float64
    assert torch.isfinite(noise.sample((100_000,), torch.Generator().manual_seed(1))).all()


@pytest.mark.parametrize("noise", NOISES + [Gaussian(1e-6), Logistic(1e-6), Uniform(1e-6), Triangular(1e-6)],
                         ids=BUILTIN_IDS + ["G-tiny", "L-tiny", "U-tiny", "T-tiny"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_functions_finite_and_grad_safe(noise, dtype):
    x = torch.tensor([-1e30, -1e4, -3.0, -1e-7, 0.0, 1e-7, 3.0, 1e4, 1e30], dtype=dtype, requires_grad=True)
    F, f = noise.cdf(x), noise.pdf(x)
    assert torch.isfinite(F).all() and torch.isfinite(f).all()
    assert F.dtype == dtype and f.dtype == dtype
    (F.sum() + f.sum()).backward()
    assert torch.isfinite(x.grad).all()
    sg = noise.surrogate().grad(x.detach())
    assert torch.isfinite(sg).all()
    p = torch.tensor([torch.finfo(dtype).tiny, 1e-7, 0.5, 1 - 1e-7], dtype=dtype)
    assert torch.isfinite(noise.icdf(p)).all()


@pytest.mark.parametrize("cls", [Gaussian, Logistic, Uniform, Triangular])
@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan"), float("inf")])
def test_non_positive_scale_rejected(cls, bad):
    with pytest.raises(ValueError, match="positive"):
        cls(bad)
