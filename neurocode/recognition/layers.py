"""Building blocks of the recognition networks: time-major wrappers, tdBN, the neuron switch.

Every tensor between layers is time-major ``[T, B, ...]``. Stateless layers (convolutions,
pooling, linear maps, batch norm) see all ``T * B`` samples in one call
(:class:`SeqToANN`); the spiking layers (:class:`~neurocode.neurons.NoisyLIF` for an NSNN,
:class:`~neurocode.neurons.LIF` for a DSNN) take the whole sequence.

Normalisation
-------------
``norm="bn"``
    Batch norm with statistics over time and batch, ``(T, B, H, W)`` per channel, as every
    SNN code base applies it to the flattened sequence (TET, SpikingJelly's ``SeqToANNContainer``).
``norm="tdbn"``
    Threshold-dependent batch norm (Zheng et al. 2021, AAAI, Eqs. 6-7): the same statistics, and
    the normalised value is scaled to the threshold,
    ``y = lambda * (alpha * v_th * (x - E[x]) / sqrt(Var[x] + eps)) + beta``, with ``alpha = 1``
    except ``1/sqrt(2)`` on the two branches that a residual block adds before its neuron.
``norm="none"``
    No normalisation (convolutions then carry a bias).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurocode.neurons import LIF, NoisyLIF, make_neuron
from neurocode.neurons import NeuronSpec as LayerNeuron

__all__ = ["NeuronSpec", "SeqToANN", "TdBN", "make_norm", "InputNormalization", "spiking_layers", "NORMS",
           "MODELS", "noise_source"]

NORMS = ("bn", "tdbn", "none")
MODELS = ("nsnn", "dsnn")


def _choice(value, allowed, name):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


@dataclass(frozen=True)
class NeuronSpec:
    """The one switch between an NSNN and a DSNN, and the neuron parameters of every layer.

    Attributes
    ----------
    model : {"nsnn", "dsnn"}
        ``"nsnn"``: :class:`~neurocode.neurons.NoisyLIF` with Gaussian membrane noise N(0, noise_sigma^2),
        trained by noise-driven learning; ``"dsnn"``: :class:`~neurocode.neurons.LIF` with the ERF
        surrogate SG(x) = exp(-(x/w)^2) / (w sqrt(pi)) (paper: w = 1).
    noise_sigma : float
        NSNN noise SD (paper: 0.3 for CIFAR and DVS-Gesture, 0.2 for DVS-CIFAR).
    tau, v_th : float
        Leak factor per step and threshold (paper: 0.5 and 1).
    surrogate_width : float
        ERF width w of the DSNN.
    """

    model: str = "nsnn"
    noise_sigma: float = 0.3
    tau: float = 0.5
    v_th: float = 1.0
    surrogate_width: float = 1.0

    def __post_init__(self) -> None:
        _choice(self.model, MODELS, "model")
        for name in ("noise_sigma", "surrogate_width", "v_th"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a finite positive number, got {v!r}")
        if not 0 < self.tau <= 1:
            raise ValueError(f"tau must be in (0, 1], got {self.tau!r}")

    @property
    def noisy(self) -> bool:
        return self.model == "nsnn"

    def make(self, generator: torch.Generator | None = None) -> nn.Module:
        """A new spiking layer (input and output ``[T, B, ...]``)."""
        return make_neuron(self.layer_neuron(), generator)

    def layer_neuron(self) -> LayerNeuron:
        """Every spiking layer's :class:`neurocode.neurons.NeuronSpec`: Gaussian noise (NSNN) or the ERF (DSNN)."""
        return LayerNeuron(family="noisy_lif" if self.noisy else "lif", sigma=self.noise_sigma,
                           surrogate_width=self.surrogate_width, tau=self.tau, v_th=self.v_th)


class SeqToANN(nn.Module):
    """Apply stateless modules to every time step in one call.

    Shape
    -----
    input : Tensor [T, B, ...]
    output : Tensor [T, B, ...'] -- ``modules(input.flatten(0, 1))`` reshaped back to time-major
    """

    def __init__(self, *modules: nn.Module):
        super().__init__()
        self.module = modules[0] if len(modules) == 1 else nn.Sequential(*modules)

    def forward(self, x: Tensor) -> Tensor:
        T, B = x.shape[:2]
        y = self.module(x.flatten(0, 1))
        return y.view(T, B, *y.shape[1:])


class TdBN(nn.BatchNorm2d):
    """Threshold-dependent batch norm (Zheng et al. 2021) on flattened ``[T * B, C, ...]`` input.

    ``y = weight * alpha * v_th * (x - mean) / sqrt(var + eps) + bias`` with the mean and
    variance over every axis but the channel's (time, batch and space when the input is a
    flattened sequence). With ``alpha * v_th = 1`` it is ordinary batch norm.

    Parameters
    ----------
    num_features : int
        Channels C.
    v_th : float
        Threshold of the neurons it feeds.
    alpha : float
        1, or ``1/sqrt(2)`` on each branch of a residual sum.

    Shape
    -----
    input : Tensor [N, C] or [N, C, H, W]
    output : same shape
    """

    def __init__(self, num_features: int, v_th: float = 1.0, alpha: float = 1.0, eps: float = 1e-5,
                 momentum: float = 0.1):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.v_th = float(v_th)
        self.alpha = float(alpha)

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() not in (2, 3, 4, 5):
            raise ValueError(f"TdBN expects [N, C, ...] input, got shape {tuple(input.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight * (self.alpha * self.v_th), self.bias,
                            self.training, self.momentum, self.eps)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", v_th={self.v_th}, alpha={self.alpha:.4g}"


class _BN1or2d(nn.Module):
    """Plain batch norm for ``[N, C]`` or ``[N, C, H, W]`` (one module, either shape)."""

    def __init__(self, num_features: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            return self.bn(x[:, :, None, None])[:, :, 0, 0]
        return self.bn(x)


def make_norm(norm: str, channels: int, v_th: float = 1.0, alpha: float = 1.0) -> nn.Module:
    """The normalisation layer of ``norm`` (module docstring) for flattened ``[T * B, C, ...]`` input."""
    _choice(norm, NORMS, "norm")
    if norm == "tdbn":
        return TdBN(channels, v_th=v_th, alpha=alpha)
    if norm == "bn":
        return _BN1or2d(channels)
    return nn.Identity()


class InputNormalization(nn.Module):
    """z-score each input channel with fixed (training-set) statistics: ``(x - mean) / std``.

    Inside the model, so that attacks (FGSM, DO) perturb the raw input (pixels in [0, 1]).

    Shape
    -----
    input : Tensor [..., C, H, W]
    """

    def __init__(self, mean, std):
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
        if (std <= 0).any():
            raise ValueError("InputNormalization: std must be positive")
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def spiking_layers(model: nn.Module) -> list[nn.Module]:
    """Every spiking layer (NoisyLIF / LIF) of ``model``, in registration order."""
    return [m for m in model.modules() if isinstance(m, (NoisyLIF, LIF))]


class noise_source:
    """Context manager: every NoisyLIF of ``model`` draws from ``generator`` inside the block.

    ``with noise_source(model, torch.Generator().manual_seed(0)): model(x)`` gives the same
    spikes every time (on CPU, for a given input), without touching the generator training
    uses. A DSNN is unaffected.
    """

    def __init__(self, model: nn.Module, generator: torch.Generator | None):
        self.layers = [m for m in model.modules() if isinstance(m, NoisyLIF)]
        self.generator = generator

    def __enter__(self):
        self.saved = [m.generator for m in self.layers]
        for m in self.layers:
            m.generator = self.generator
        return self

    def __exit__(self, *exc):
        for m, g in zip(self.layers, self.saved):
            m.generator = g
        return False
