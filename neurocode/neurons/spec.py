"""One description of a spiking layer's neuron, and the one factory that builds it.

Every spiking layer of a retina model and of a recognition classifier is built here from a
:class:`NeuronSpec`: which neuron (noisy LIF with noise-driven learning, or deterministic LIF
with a surrogate gradient), which noise family at which scale (a name registered in
:data:`neurocode.noise.NOISE_FAMILIES`), whether the scale is learnt, where the noise enters,
and which surrogate. Nothing above ``neurons/`` names a noise family or a surrogate class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from neurocode.neurons.functional import PLACEMENTS, RESETS
from neurocode.neurons.learnable_noise_lif import LearnableNoisyLIF
from neurocode.neurons.lif import LIF
from neurocode.neurons.noisy_lif import NoisyLIF
from neurocode.noise import NOISE_FAMILIES, SURROGATES, make_noise, make_surrogate

__all__ = ["NeuronSpec", "make_neuron", "FAMILIES", "LEARNABLE", "is_noisy"]

#: Neuron families: "noisy_lif" (NSNN: noise-driven learning) and "lif" (DSNN: surrogate gradient).
FAMILIES = ("noisy_lif", "lif")
#: A noisy layer's noise scale: fixed (None), one parameter for the layer, or one per neuron.
LEARNABLE = (None, "layer", "neuron")


@dataclass(frozen=True)
class NeuronSpec:
    """A spiking layer's neuron (module docstring).

    Attributes
    ----------
    family : {"noisy_lif", "lif"}
    noise : str
        Noise family of a noisy layer, a name in :data:`neurocode.noise.NOISE_FAMILIES`
        ("gaussian", "logistic", "uniform", "triangular", or one a user registered).
    sigma : float
        The noise's scale (its one constructor argument; the SD of Gaussian noise), in units of
        the potential.
    learnable : {None, "layer", "neuron"}
        Noisy layer: the noise scale is a trained parameter, one for the layer or one per neuron
        of the input's last dimension (Gaussian escape noise only,
        :class:`~neurocode.neurons.LearnableNoisyLIF`).
    placement : {"escape", "membrane"}
        Where a noisy layer's sample enters (:class:`~neurocode.neurons.NoisyLIF`).
    surrogate : str
        Deterministic layer: surrogate gradient, a name in :data:`neurocode.noise.SURROGATES`.
    surrogate_width : float
        Its width (its one constructor argument; the ERF's w, paper: 1).
    tau, v_th : float
        Leak factor per step, in (0, 1], and threshold.
    reset : {"zero", "subtract"}
        After a spike the potential goes to 0 (the paper's hard reset) or loses ``v_th``: the
        charge above the threshold is kept, a more regular integrator (lower count variability at
        the same rate and noise; no fused kernel, the pure-torch loop runs it).
    """

    family: str = "noisy_lif"
    noise: str = "gaussian"
    sigma: float = 0.2
    learnable: str | None = None
    placement: str = "escape"
    surrogate: str = "erf"
    surrogate_width: float = 1.0
    tau: float = 0.5
    v_th: float = 1.0
    reset: str = "zero"

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"NeuronSpec.family must be one of {FAMILIES}, got {self.family!r}")
        if self.noise not in NOISE_FAMILIES:
            raise ValueError(f"NeuronSpec.noise must be one of {sorted(NOISE_FAMILIES)} (a registered "
                             f"neurocode.noise.NoiseModel family), got {self.noise!r}")
        if self.surrogate not in SURROGATES:
            raise ValueError(f"NeuronSpec.surrogate must be one of {sorted(SURROGATES)}, got {self.surrogate!r}")
        if self.learnable not in LEARNABLE:
            raise ValueError(f"NeuronSpec.learnable must be one of {LEARNABLE}, got {self.learnable!r}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"NeuronSpec.placement must be one of {PLACEMENTS}, got {self.placement!r}")
        if self.reset not in RESETS:
            raise ValueError(f"NeuronSpec.reset must be one of {RESETS}, got {self.reset!r}")
        for name in ("sigma", "surrogate_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                raise ValueError(f"NeuronSpec.{name} must be a finite positive number, got {value!r}")
        if self.learnable is not None and self.family == "noisy_lif" and (
                self.noise != "gaussian" or self.placement != "escape"):
            raise ValueError("NeuronSpec.learnable applies to Gaussian escape noise "
                             f"(noise='gaussian', placement='escape'), got noise={self.noise!r}, "
                             f"placement={self.placement!r}")

    @property
    def noisy(self) -> bool:
        return self.family == "noisy_lif"


def is_noisy(neuron: nn.Module) -> bool:
    """Whether a layer built by :func:`make_neuron` draws noise (and so holds a generator)."""
    return isinstance(neuron, (NoisyLIF, LearnableNoisyLIF))


def make_neuron(spec: NeuronSpec, generator: torch.Generator | None = None, n_neurons: int | None = None) -> nn.Module:
    """The spiking layer ``spec`` describes (input and output ``[T, B, ...]``).

    Parameters
    ----------
    spec : NeuronSpec
    generator : torch.Generator, optional
        Noise source of a noisy layer (ignored by a deterministic one).
    n_neurons : int, optional
        Size of the input's last dimension: needed for ``learnable="neuron"``.
    """
    if not spec.noisy:
        return LIF(make_surrogate(spec.surrogate, spec.surrogate_width), tau=spec.tau, v_th=spec.v_th,
                   reset=spec.reset)
    if spec.learnable is not None:
        if spec.learnable == "neuron" and n_neurons is None:
            raise ValueError("make_neuron: learnable='neuron' needs n_neurons (the layer's width)")
        return LearnableNoisyLIF(n_neurons if spec.learnable == "neuron" else None, spec.sigma, tau=spec.tau,
                                 v_th=spec.v_th, generator=generator, reset=spec.reset)
    return NoisyLIF(make_noise(spec.noise, spec.sigma), tau=spec.tau, v_th=spec.v_th, placement=spec.placement,
                    generator=generator, reset=spec.reset)
