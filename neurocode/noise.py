"""Membrane-noise models and their deterministic surrogate gradients.

A noisy LIF neuron fires when its pre-noise potential plus a zero-mean, symmetric noise
sample crosses the threshold, so its firing probability is the noise CDF,
``P[o = 1] = F(u - v_th)`` (paper Eq. 7-9), and noise-driven learning (NDL, Eq. 19)
replaces the undefined derivative of the spike by the noise density ``F'(u - v_th)``.

Every noise model names its matching surrogate gradient (Gaussian <-> ERF,
Logistic <-> sigmoid, Uniform <-> rectangular, Triangular <-> triangular): a surrogate
gradient of a deterministic SNN is the density of the noise whose NSNN it is the
noise-free limit of.

Adding a noise model
--------------------
Subclass :class:`NoiseModel` and implement ``cdf``, ``pdf``, ``icdf`` (the quantile
function, used by the default :meth:`NoiseModel.sample`) and ``variance``, and give the class a
``family`` name: it is then registered (``NOISE_FAMILIES``) and a fit selects it by that name
(``noise="laplace"`` in its neuron settings, :class:`neurocode.neurons.NeuronSpec`), its scale
the one constructor argument. Override ``sample`` when a
faster exact sampler exists. The built-in models and surrogates also define ``_kernel_spec()``
(the family and parameters of their ``pdf`` / ``grad``) so that the fused C++ LIF loop can
evaluate the density in-register; a user-defined model without it (or a subclass that
overrides ``pdf`` / ``grad``) runs the pure-torch loop, with identical results. The distribution must be symmetric and zero-mean; call
:func:`check_noise_model` in a test to verify the three functions agree::

    class Laplace(NoiseModel):
        family = "laplace"
        surrogate_name = "exponential"
        def __init__(self, scale):
            self.scale = _positive(scale, "scale")
        def cdf(self, x):
            z = x / self.scale
            return torch.where(z < 0, 0.5 * torch.exp(z.clamp(max=0)),
                               1 - 0.5 * torch.exp(-z.clamp(min=0)))
        def pdf(self, x):
            return torch.exp(-(x / self.scale).abs()) / (2 * self.scale)
        def icdf(self, p):
            return -self.scale * torch.sign(p - 0.5) * torch.log1p(-2 * (p - 0.5).abs())
        def variance(self):
            return 2 * self.scale**2

All functions take and return tensors of any shape; ``x`` is a potential difference in the
same (dimensionless) units as the threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "NoiseModel",
    "Gaussian",
    "Logistic",
    "Uniform",
    "Triangular",
    "Surrogate",
    "ERF",
    "Sigmoid",
    "Rectangular",
    "TriangularSurrogate",
    "check_noise_model",
    "NOISE_FAMILIES",
    "SURROGATES",
    "make_noise",
    "make_surrogate",
]

#: Noise families by name: every :class:`NoiseModel` subclass that names its ``family``.
NOISE_FAMILIES: dict[str, type["NoiseModel"]] = {}
#: Surrogate gradients by name: every :class:`Surrogate` subclass that names itself (``name``).
SURROGATES: dict[str, type["Surrogate"]] = {}

# |z| beyond this is deep in every tail we use: clamping keeps z**2 finite in float16/32
# without changing any density or CDF value at float precision.
_Z_MAX = 1e4


def _positive(value: float, name: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return value


def _standardise(x: Tensor, scale: float) -> Tensor:
    return (x / scale).clamp(-_Z_MAX, _Z_MAX)


class NoiseModel:
    """Base class of zero-mean symmetric membrane-noise distributions.

    Subclasses provide ``cdf``, ``pdf`` (= F'), ``icdf`` and a ``surrogate()`` matching
    deterministic surrogate gradient. ``scale`` is the distribution's scale parameter.
    """

    surrogate_name: str = ""
    #: The name a fit selects this family by (registered in ``NOISE_FAMILIES``); "" for none.
    family: str = ""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "family" in cls.__dict__ and cls.family:
            NOISE_FAMILIES[cls.family] = cls

    def cdf(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def pdf(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def icdf(self, p: Tensor) -> Tensor:
        raise NotImplementedError

    def surrogate(self) -> "Surrogate":
        """The deterministic surrogate gradient whose derivative equals this ``pdf``."""
        raise NotImplementedError

    def sample(
        self,
        shape,
        generator: torch.Generator | None = None,
        *,
        loc: float = 0.0,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw independent samples ``loc + eps`` of shape ``shape``.

        Parameters
        ----------
        shape : tuple of int
        generator : torch.Generator, optional
            Source of randomness; the same generator state gives the same samples.
        loc : float
            Offset added to every sample (lets a neuron draw its noisy threshold
            ``v_th + eps`` in one pass).
        """
        u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
        # rand is in [0, 1): keep the quantile finite at 0.
        u.clamp_(min=torch.finfo(u.dtype).tiny)
        return self.icdf(u).add_(loc)

    def variance(self) -> float:
        raise NotImplementedError

    def quantiles(self, n: int) -> Tensor:
        """float32 ``[n]``: the noise's quantiles at ``(i + 0.5) / n`` (computed in float64), e.g. the
        fixed offsets of a deterministic population that freezes this noise."""
        q = (torch.arange(n, dtype=torch.float64) + 0.5) / n
        return self.icdf(q).float()

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class Gaussian(NoiseModel):
    """Gaussian membrane noise N(0, sigma^2); matching surrogate: :class:`ERF`."""

    family = "gaussian"
    surrogate_name = "erf"

    def __init__(self, sigma: float = 0.2):
        self.sigma = _positive(sigma, "sigma")

    def cdf(self, x: Tensor) -> Tensor:
        return torch.special.ndtr(_standardise(x, self.sigma))

    def pdf(self, x: Tensor) -> Tensor:
        z = _standardise(x, self.sigma)
        return torch.exp(-0.5 * z * z) * (1.0 / (self.sigma * math.sqrt(2 * math.pi)))

    def icdf(self, p: Tensor) -> Tensor:
        return torch.special.ndtri(p) * self.sigma

    def quantiles(self, n: int) -> Tensor:
        # as torch.distributions.Normal(0, sigma) computes them (erfinv, sigma held in float32), so
        # that the DSNN populations fitted before keep their offsets bit for bit (ndtri differs in
        # the last float32 bit)
        q = (torch.arange(n, dtype=torch.float64) + 0.5) / n
        sigma = torch.tensor(self.sigma, dtype=torch.float32)
        return (sigma * torch.erfinv(2 * q - 1) * math.sqrt(2)).float()

    def sample(self, shape, generator=None, *, loc=0.0, dtype=None, device=None) -> Tensor:
        return torch.normal(
            float(loc), self.sigma, size=tuple(shape), generator=generator, dtype=dtype, device=device
        )

    def surrogate(self) -> "ERF":
        return ERF(width=self.sigma * math.sqrt(2.0))

    def _kernel_spec(self):
        return "gauss", (self.sigma, 0.5, 1.0 / (self.sigma * math.sqrt(2 * math.pi)))

    def variance(self) -> float:
        return self.sigma**2


class Logistic(NoiseModel):
    """Logistic membrane noise with scale ``s``; matching surrogate: :class:`Sigmoid`."""

    family = "logistic"
    surrogate_name = "sigmoid"

    def __init__(self, scale: float = 0.2):
        self.scale = _positive(scale, "scale")

    def cdf(self, x: Tensor) -> Tensor:
        return torch.sigmoid(_standardise(x, self.scale))

    def pdf(self, x: Tensor) -> Tensor:
        z = _standardise(x, self.scale)
        # sigmoid(z) * sigmoid(-z) never overflows, unlike exp(-z) / (1 + exp(-z))**2.
        return torch.sigmoid(z) * torch.sigmoid(-z) / self.scale

    def icdf(self, p: Tensor) -> Tensor:
        return torch.logit(p) * self.scale

    def surrogate(self) -> "Sigmoid":
        return Sigmoid(alpha=1.0 / self.scale)

    def _kernel_spec(self):
        return "logistic", (self.scale, 0.0, 0.0)

    def variance(self) -> float:
        return (math.pi * self.scale) ** 2 / 3


class Uniform(NoiseModel):
    """Uniform membrane noise on [-a, a]; matching surrogate: :class:`Rectangular`."""

    family = "uniform"
    surrogate_name = "rectangular"

    def __init__(self, half_width: float = 0.5):
        self.half_width = _positive(half_width, "half_width")

    def cdf(self, x: Tensor) -> Tensor:
        return ((x + self.half_width) / (2 * self.half_width)).clamp(0.0, 1.0)

    def pdf(self, x: Tensor) -> Tensor:
        return (x.abs() <= self.half_width).to(x.dtype) / (2 * self.half_width)

    def icdf(self, p: Tensor) -> Tensor:
        return (2 * p - 1) * self.half_width

    def surrogate(self) -> "Rectangular":
        return Rectangular(width=2 * self.half_width)

    def _kernel_spec(self):
        return "box", (self.half_width, 2 * self.half_width, 0.0)

    def variance(self) -> float:
        return self.half_width**2 / 3


class Triangular(NoiseModel):
    """Symmetric triangular membrane noise on [-a, a]; surrogate :class:`TriangularSurrogate`."""

    family = "triangular"
    surrogate_name = "triangular"

    def __init__(self, half_width: float = 0.5):
        self.half_width = _positive(half_width, "half_width")

    def cdf(self, x: Tensor) -> Tensor:
        a = self.half_width
        r = (1 - x.abs() / a).clamp(min=0.0)
        tail = 0.5 * r * r  # probability mass beyond |x| on one side
        return torch.where(x < 0, tail, 1 - tail)

    def pdf(self, x: Tensor) -> Tensor:
        a = self.half_width
        return (1 - x.abs() / a).clamp(min=0.0) / a

    def icdf(self, p: Tensor) -> Tensor:
        a = self.half_width
        q = torch.minimum(p, 1 - p)
        return torch.sign(p - 0.5) * a * (1 - torch.sqrt(2 * q))

    def surrogate(self) -> "TriangularSurrogate":
        return TriangularSurrogate(width=self.half_width)

    def _kernel_spec(self):
        return "triangle", (self.half_width, 0.0, 0.0)

    def variance(self) -> float:
        return self.half_width**2 / 6


@dataclass(frozen=True)
class Surrogate:
    """A surrogate gradient SG(x) for the Heaviside spike, x = u - v_th.

    ``grad(x)`` is the value used in place of dH/dx in the backward pass. A subclass with a
    ``name`` is registered in ``SURROGATES`` (a deterministic neuron selects it by that name,
    its width the one constructor argument).
    """

    name = ""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and cls.name:
            SURROGATES[cls.name] = cls

    def grad(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def noise(self) -> NoiseModel:
        """The noise model whose density this surrogate is (its NSNN counterpart)."""
        raise NotImplementedError


@dataclass(frozen=True)
class ERF(Surrogate):
    """ERF surrogate SG(x) = exp(-(x/w)^2) / (w sqrt(pi)); w = 1 is the paper's default.

    It is the density of N(0, w^2 / 2): the DSNN limit of a Gaussian NSNN.
    """

    name = "erf"

    width: float = 1.0

    def grad(self, x: Tensor) -> Tensor:
        z = _standardise(x, self.width)
        return torch.exp(-z * z) * (1.0 / (self.width * math.sqrt(math.pi)))

    def noise(self) -> Gaussian:
        return Gaussian(self.width / math.sqrt(2.0))

    def _kernel_spec(self):
        return "gauss", (self.width, 1.0, 1.0 / (self.width * math.sqrt(math.pi)))


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    """Sigmoid surrogate SG(x) = alpha * s(alpha x) * s(-alpha x), s the logistic function."""

    name = "sigmoid"

    alpha: float = 4.0

    def grad(self, x: Tensor) -> Tensor:
        z = (x * self.alpha).clamp(-_Z_MAX, _Z_MAX)
        return self.alpha * torch.sigmoid(z) * torch.sigmoid(-z)

    def noise(self) -> Logistic:
        return Logistic(1.0 / self.alpha)

    def _kernel_spec(self):
        return "sigmoid", (self.alpha, 0.0, 0.0)


@dataclass(frozen=True)
class Rectangular(Surrogate):
    """Rectangular surrogate SG(x) = 1[|x| <= width / 2] / width."""

    name = "rectangular"

    width: float = 1.0

    def grad(self, x: Tensor) -> Tensor:
        return (x.abs() <= self.width / 2).to(x.dtype) / self.width

    def noise(self) -> Uniform:
        return Uniform(self.width / 2)

    def _kernel_spec(self):
        return "box", (self.width / 2, self.width, 0.0)


@dataclass(frozen=True)
class TriangularSurrogate(Surrogate):
    """Triangular surrogate SG(x) = max(0, 1 - |x| / width) / width."""

    name = "triangular"

    width: float = 1.0

    def grad(self, x: Tensor) -> Tensor:
        return (1 - x.abs() / self.width).clamp(min=0.0) / self.width

    def noise(self) -> Triangular:
        return Triangular(self.width)

    def _kernel_spec(self):
        return "triangle", (self.width, 0.0, 0.0)


def make_noise(family: str, scale: float) -> NoiseModel:
    """The registered noise ``family`` (``NOISE_FAMILIES``) at ``scale`` (its one constructor argument)."""
    if family not in NOISE_FAMILIES:
        raise ValueError(f"noise must be one of {sorted(NOISE_FAMILIES)} (a NoiseModel subclass with that "
                         f"family name), got {family!r}")
    return NOISE_FAMILIES[family](scale)


def make_surrogate(name: str, width: float) -> Surrogate:
    """The registered surrogate gradient ``name`` (``SURROGATES``) at ``width`` (its one constructor argument)."""
    if name not in SURROGATES:
        raise ValueError(f"surrogate must be one of {sorted(SURROGATES)}, got {name!r}")
    return SURROGATES[name](width)


def check_noise_model(noise: NoiseModel, n_grid: int = 2001, rtol: float = 1e-3) -> None:
    """Check that a noise model's ``cdf``, ``pdf`` and ``icdf`` are consistent.

    Verifies symmetry F(-x) = 1 - F(x), F' = pdf (central differences on a grid) and
    F(icdf(p)) = p, raising ``AssertionError`` naming the failed property.
    """
    scale = math.sqrt(noise.variance())
    x = torch.linspace(-6 * scale, 6 * scale, n_grid, dtype=torch.float64)
    F = noise.cdf(x)
    if not torch.allclose(noise.cdf(-x), 1 - F, atol=1e-9):
        raise AssertionError(f"{noise!r}: cdf is not symmetric (F(-x) != 1 - F(x))")
    h = x[1] - x[0]
    dF = (F[2:] - F[:-2]) / (2 * h)
    f = noise.pdf(x)
    pdf = f[1:-1]
    # The central difference misses pdf by ~h^2 f''/6; where the density has a jump
    # (Uniform) or a cusp (Triangular, Laplace) it misses by up to the local second
    # difference |f(x+h) - 2 f(x) + f(x-h)|, which is what the tolerance allows there.
    kink = (f[2:] - 2 * pdf + f[:-2]).abs()
    if not bool(((dF - pdf).abs() <= rtol * (pdf.abs() + float(pdf.max())) + kink).all()):
        raise AssertionError(f"{noise!r}: pdf is not the derivative of cdf")
    p = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    if not torch.allclose(noise.cdf(noise.icdf(p)), p, atol=1e-6):
        raise AssertionError(f"{noise!r}: icdf is not the inverse of cdf")
