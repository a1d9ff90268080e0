"""Noisy LIF neuron trained with noise-driven learning (the NSNN neuron)."""

from __future__ import annotations

import torch
from torch import Tensor

from neurocode.neurons._base import LIFBase, check_sequence
from neurocode.neurons._kernels import caching_scope
from neurocode.neurons.counter_rng import SeededGaussian, draw_seeds
from neurocode.neurons.functional import PLACEMENTS, lif_sequence, lif_step
from neurocode.noise import Gaussian, NoiseModel


class NoisyLIF(LIFBase):
    """Noisy leaky integrate-and-fire neuron with noise-driven learning (paper Eqs. 6-9, 19).

    ``ubar[t] = tau * u[t-1] + x[t]``; ``o[t] ~ Bernoulli(F(ubar[t] - v_th))`` realised
    as ``o[t] = 1[ubar[t] + eps[t] >= v_th]`` with exactly one noise draw ``eps`` per
    neuron per step; hard reset to 0 (or reset by subtraction). Backward (NDL): ``d o / d ubar`` is replaced by the
    noise density at the pre-noise potential, ``F'(ubar - v_th)``.

    Parameters
    ----------
    noise : NoiseModel
        Membrane noise; default ``Gaussian(0.2)`` (the paper's retina setting).
    tau : float
        Leak factor per time step, in (0, 1].
    v_th : float
        Firing threshold.
    placement : {"escape", "membrane"}
        ``"escape"`` (default): a fresh sample decides each firing and is forgotten.
        ``"membrane"``: the sample is added to the potential and carried to the next step
        through ``tau`` (Euler-Maruyama reading of Eq. 5-6). Both fire with probability
        ``F(ubar - v_th)`` given ``ubar``; they differ in how noise accumulates over time.
    detach_reset : bool
        Exclude the reset from the gradient.
    reset : {"zero", "subtract"}
        After a spike the potential goes to 0 (default, the paper's) or loses ``v_th``, keeping
        the charge above the threshold (a more regular spike count; pure-torch loop, no fused
        kernel).
    stateful : bool
        Continue from the last call's final potential instead of starting at rest.
    generator : torch.Generator, optional
        Default source of the noise (a call's ``generator=`` overrides it).

    Gaussian noise comes from one counter-based stream whatever the path: one 64-bit seed per
    step from the generator, then a SplitMix64 + Box-Muller normal per neuron
    (:mod:`neurocode.neurons.counter_rng`; 24-bit uniforms in float32, 53-bit in float64,
    like torch.normal). The fused CPU kernel draws it in-register, the pure-torch loop
    (CUDA, half precision, no compiler) materialises the same numbers, so a seed gives the
    same spikes on every path, and ``step()`` draws what ``forward()`` draws. The samples
    differ from ``torch.normal``'s (same law). Other noise models sample with
    ``noise.sample`` from the generator.

    Shape
    -----
    input : Tensor [T, B, ...] (time-major)
    output : Tensor [T, B, ...] of {0, 1}, same dtype and device
    """

    def __init__(self, noise: NoiseModel | None = None, tau: float = 0.5, v_th: float = 1.0,
                 placement: str = "escape", detach_reset: bool = False, stateful: bool = False,
                 generator: torch.Generator | None = None, reset: str = "zero"):
        super().__init__(tau, v_th, detach_reset, stateful, reset)
        self.noise = Gaussian(0.2) if noise is None else noise
        if not isinstance(self.noise, NoiseModel):
            raise TypeError(f"noise must be a neurocode.noise.NoiseModel, got {type(self.noise).__name__}")
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        self.placement = placement
        self.generator = generator

    def _draw(self, shape, like: Tensor, generator, loc: float) -> Tensor:
        g = generator if generator is not None else self.generator
        seeded = self._seeded(shape[0], g, loc)
        if seeded is not None:
            return seeded.materialize(shape, like.dtype, like.device)
        return self.noise.sample(shape, g, loc=loc, dtype=like.dtype, device=like.device)

    def _seeded(self, T: int, generator, loc: float) -> SeededGaussian | None:
        """Gaussian noise as the counter-based stream: one 64-bit seed per step from the
        generator (so T single steps draw what one T-step call draws); None for other
        noise models (and Gaussian subclasses with their own sampler)."""
        if not (isinstance(self.noise, Gaussian) and type(self.noise).sample is Gaussian.sample):
            return None
        return SeededGaussian(draw_seeds(T, generator), loc, self.noise.sigma)

    @caching_scope
    def forward(self, x: Tensor, state: Tensor | None = None, *, generator: torch.Generator | None = None,
                return_potential: bool = False, return_state: bool = False):
        """Run the whole sequence.

        Parameters
        ----------
        x : Tensor [T, B, ...]
            Input currents.
        state : Tensor [B, ...], optional
            Initial potential; default rest (0), or the kept state when ``stateful``.
        generator : torch.Generator, optional
            Noise source for this call; the same generator state gives the same spikes.
        return_potential : bool
            Also return the pre-noise, pre-reset potentials ``ubar`` [T, B, ...].
        return_state : bool
            Also return the potential after the last step [B, ...].
        """
        check_sequence(x)
        kwargs = dict(tau=self.tau, v_th=self.v_th, spike_grad=self.noise.pdf, detach_reset=self.detach_reset,
                      reset=self.reset,
                      u0=self._initial_state(x, state), potential=return_potential,
                      state=return_state or self.stateful)
        if self.placement == "escape":
            # v_th - eps and v_th + eps have the same law (symmetric noise): draw the
            # thresholds directly, one pass.
            g = generator if generator is not None else self.generator
            threshold = self._seeded(x.shape[0], g, self.v_th)  # drawn inside the kernel on CPU
            if threshold is None:
                threshold = self._draw(x.shape, x, generator, loc=self.v_th)
            out = lif_sequence(x, threshold=threshold, **kwargs)
        else:
            eps = self._draw(x.shape, x, generator, loc=0.0)
            out = lif_sequence(x, eps=eps, placement="membrane", **kwargs)
        return self._finish(*out, return_potential, return_state)

    def step(self, x: Tensor, state: Tensor | None = None, *,
             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """One time step for online use: ``(spikes [B, ...], state [B, ...])``."""
        eps = self._draw((1,) + tuple(x.shape), x, generator, loc=0.0)[0]
        if self.placement == "escape":
            # forward() draws thresholds v_th + eps'; fire at the same v_th + eps' here
            # (threshold v_th - eps with eps = -eps') so that step() over T steps
            # reproduces forward() with the same generator.
            eps = eps.neg_()
        spikes, u, _ = lif_step(x, state, tau=self.tau, v_th=self.v_th, spike_grad=self.noise.pdf, eps=eps,
                                placement=self.placement, detach_reset=self.detach_reset, reset=self.reset)
        return spikes, u

    def firing_probability(self, ubar: Tensor) -> Tensor:
        """``P[o = 1 | ubar] = F(ubar - v_th)`` for either noise placement."""
        return self.noise.cdf(ubar - self.v_th)

    def extra_repr(self) -> str:
        return f"noise={self.noise}, placement={self.placement!r}, " + super().extra_repr()
