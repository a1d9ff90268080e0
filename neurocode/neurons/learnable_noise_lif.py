"""Noisy LIF neuron whose noise scale is learnt: noise as a trained resource (NDL for sigma too).

The dynamics are :class:`~neurocode.neurons.NoisyLIF`'s with Gaussian escape noise, but the
noise's standard deviation ``sigma`` is a parameter (one per neuron of the last dimension, or
one for the layer), trained by the same loss as the weights::

    ubar[t] = tau * u[t-1] + x[t]
    o[t]    = 1[ubar[t] >= v_th + sigma * z[t]],   z ~ N(0, 1)       P[o = 1] = Phi((ubar - v_th) / sigma)
    u[t]    = ubar[t] * (1 - o[t])          (reset="zero")   or   ubar[t] - v_th * o[t]   (reset="subtract")

Noise-driven learning differentiates the firing probability at the pre-noise potential, for
the potential (Eq. 19) and, in the same way, for the noise scale::

    d o / d ubar      := f_sigma(d)                        d = ubar - v_th, f_sigma the N(0, sigma^2) density
    d o / d log sigma := d Phi(d / sigma) / d log sigma = -d * f_sigma(d)

so both gradients are those of the expected spike given the potential. ``sigma = exp(log_sigma)``
is positive for every value of the parameter. ``z`` is the counter-based stream of
:mod:`neurocode.neurons.counter_rng` (one seed per step from the generator), so the same
generator state draws the same numbers as a :class:`NoisyLIF` would.

When a gradient is needed, the time loop runs in Python over whole steps, forward and backward
written out by hand (one autograd node for the sequence, not a graph of a dozen small operations
per step): this neuron is meant for small layers (a retina model's output cells), where it costs
little next to the convolutions; the large hidden layers keep the fused kernel of
:class:`NoisyLIF` with a fixed sigma. Without one (prediction, calibration) the thresholds
``v_th + sigma * z`` are formed once and the fused kernel runs the sequence: the same spikes bit
for bit, an order of magnitude faster than the Python loop.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from neurocode.neurons._base import LIFBase, check_sequence
from neurocode.neurons._kernels import caching_scope
from neurocode.neurons.counter_rng import SeededGaussian, draw_seeds
from neurocode.neurons.functional import lif_sequence
from neurocode.noise import Gaussian

__all__ = ["LearnableNoisyLIF"]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_NO_GRADIENT = Gaussian(1.0)


class _LearnableNoiseSequence(torch.autograd.Function):
    """The whole sequence of :class:`LearnableNoisyLIF`: spikes, potentials and the last state, with
    backpropagation through time and, at every step, the NDL gradients of the module docstring
    (those of the expected spike ``Phi((ubar - v_th) / sigma)`` given the potential)."""

    @staticmethod
    def forward(ctx, x, u0, z, log_sigma, tau, v_th, detach_reset, subtract):
        sigma = log_sigma.exp()
        spikes, ubar = torch.empty_like(x), torch.empty_like(x)
        u = u0
        for t in range(x.shape[0]):
            ub = x[t] if u is None else x[t] + tau * u
            threshold = v_th + sigma * z[t]
            above = ub >= threshold
            o = above.to(x.dtype)
            o.masked_fill_(~(above | (ub < threshold)), float("nan"))  # NaN is never a spike
            u = ub - v_th * o if subtract else ub * (1 - o)
            spikes[t], ubar[t] = o, ub
        ctx.save_for_backward(ubar, spikes, log_sigma)
        ctx.tau, ctx.v_th, ctx.detach_reset, ctx.has_u0 = tau, v_th, detach_reset, u0 is not None
        ctx.subtract = subtract
        return spikes, ubar, u

    @staticmethod
    def backward(ctx, grad_spikes, grad_ubar, grad_u_last):
        ubar, spikes, log_sigma = ctx.saved_tensors
        sigma = log_sigma.exp()
        d = ubar - ctx.v_th
        r = (d / sigma).clamp(-1e4, 1e4)
        density = torch.exp(-0.5 * r * r) * (_INV_SQRT_2PI / sigma)
        grad_x, grad_o = torch.empty_like(ubar), torch.empty_like(ubar)  # grad_o: at the spike, times the density
        gu = grad_u_last  # dL/du[t], from the steps after t
        for t in range(ubar.shape[0] - 1, -1, -1):
            # u = ubar (1 - o) or ubar - v_th o: the reset's path to the spike, unless the reset is detached
            if ctx.detach_reset:
                go = grad_spikes[t]
            else:
                go = grad_spikes[t] - gu * (ctx.v_th if ctx.subtract else ubar[t])
            grad_o[t] = go * density[t]
            grad_x[t] = grad_o[t] + (gu if ctx.subtract else gu * (1 - spikes[t])) + grad_ubar[t]
            gu = ctx.tau * grad_x[t]
        grad_u0 = gu if ctx.has_u0 and ctx.needs_input_grad[1] else None
        grad_log_sigma = None
        if ctx.needs_input_grad[3]:
            full = -(grad_o * d)
            lead = full.dim() - log_sigma.dim()  # sum over the dimensions log_sigma was broadcast along
            full = full.sum(tuple(range(lead))) if lead else full
            keep = tuple(i for i, s in enumerate(log_sigma.shape) if s == 1 and full.shape[i] != 1)
            grad_log_sigma = full.sum(keep, keepdim=True) if keep else full
        return grad_x, grad_u0, None, grad_log_sigma, None, None, None, None


class LearnableNoisyLIF(LIFBase):
    """Noisy LIF with Gaussian escape noise of learnable scale (module docstring).

    Parameters
    ----------
    n_neurons : int or None
        Size of the input's last dimension, one sigma per neuron; None: one sigma for the layer.
    sigma : float
        Initial noise standard deviation (> 0), in units of the potential.
    tau, v_th, detach_reset, stateful, generator, reset
        As :class:`~neurocode.neurons.NoisyLIF`.

    Attributes
    ----------
    log_sigma : nn.Parameter [n_neurons] or []

    Shape
    -----
    input : Tensor [T, B, ..., n_neurons] (time-major); output : same shape, spikes in {0, 1}
    """

    def __init__(self, n_neurons: int | None = None, sigma: float = 0.2, tau: float = 0.5, v_th: float = 1.0,
                 detach_reset: bool = False, stateful: bool = False, generator: torch.Generator | None = None,
                 reset: str = "zero"):
        super().__init__(tau, v_th, detach_reset, stateful, reset)
        if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a positive number, got {sigma!r}")
        if n_neurons is not None and (isinstance(n_neurons, bool) or not isinstance(n_neurons, int) or n_neurons < 1):
            raise ValueError(f"n_neurons must be a positive integer or None, got {n_neurons!r}")
        shape = () if n_neurons is None else (n_neurons,)
        self.log_sigma = nn.Parameter(torch.full(shape, math.log(sigma)))
        self.generator = generator

    @property
    def sigma(self) -> Tensor:
        """The noise standard deviation ``exp(log_sigma)`` (always > 0)."""
        return self.log_sigma.exp()

    def firing_probability(self, ubar: Tensor) -> Tensor:
        """``P[o = 1 | ubar] = Phi((ubar - v_th) / sigma)``, differentiable in ``ubar`` and sigma."""
        return torch.special.ndtr((ubar - self.v_th) / self.sigma)

    def draw_noise(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The standard normal draws ``z`` [T, B, ...] (shaped like ``x``) that :meth:`forward` would take
        from ``generator`` (default: the module's): one seed per step, then the counter-based stream."""
        g = generator if generator is not None else self.generator
        return SeededGaussian(draw_seeds(x.shape[0], g), 0.0, 1.0).materialize(x.shape, x.dtype, x.device)

    @caching_scope
    def forward(self, x: Tensor, state: Tensor | None = None, *, generator: torch.Generator | None = None,
                noise: Tensor | None = None, return_potential: bool = False, return_state: bool = False):
        """Run the sequence; arguments and returns as :meth:`NoisyLIF.forward`, and

        Parameters
        ----------
        noise : Tensor [T, B, ...], optional
            Standard normal draws ``z`` to use (e.g. :meth:`draw_noise`'s, kept for repeated runs on the
            same noise), instead of drawing from ``generator``.
        """
        check_sequence(x)
        if self.log_sigma.dim() and x.shape[-1] != self.log_sigma.shape[0]:
            raise ValueError(f"input's last dimension is {x.shape[-1]}, the layer has {self.log_sigma.shape[0]} "
                             "neurons (n_neurons)")
        if noise is not None and noise.shape != x.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} does not match the input's {tuple(x.shape)}")
        z = noise if noise is not None else self.draw_noise(x, generator)
        u0 = self._initial_state(x, state)
        differentiable = torch.is_grad_enabled() and (
            x.requires_grad or self.log_sigma.requires_grad or (u0 is not None and u0.requires_grad))
        if not differentiable:
            # the density is never evaluated without a backward pass; it only selects the kernel's family
            spikes, ubar, u = lif_sequence(x, tau=self.tau, v_th=self.v_th, spike_grad=_NO_GRADIENT.pdf,
                                           threshold=self.v_th + self.sigma * z, detach_reset=self.detach_reset,
                                           u0=u0, potential=return_potential, state=True, reset=self.reset)
        else:
            spikes, ubar, u = _LearnableNoiseSequence.apply(x, u0, z, self.log_sigma, self.tau, self.v_th,
                                                            self.detach_reset, self.reset == "subtract")
        return self._finish(spikes, ubar if return_potential else None, u, return_potential, return_state)

    def extra_repr(self) -> str:
        n = "layer" if self.log_sigma.dim() == 0 else self.log_sigma.shape[0]
        return f"learnable sigma per {n}, " + super().extra_repr()
