"""Spiking retina model: NSNN (noisy LIF + NDL) or DSNN (LIF + surrogate), paper 16C25-32C11-FC64-FC64-FC64-FC49.

Adaptation to flashed images
----------------------------
The paper drove the network with movie frames. A flashed image is a static input, and the
recorded response to a flash is silent for ~100 ms, peaks near 150 ms and decays: a
time course that LIF layers with tau = 0.5 (a memory of one or two 10-ms steps) cannot
produce from a constant current. The first layer is therefore *space-time separable*, as
in retina CNNs: its current at step t is ``gain[t, c] * conv1(image)[c] + offset[t, c]``
with a learnable temporal profile per channel (``temporal_profile=True``), initialised
flat. The last layer gets a learnable per-cell bias over time (``time_bias=True``): each
cell's stimulus-independent drive since the flash. The image enters once: conv1 is
computed once per image and broadcast over time and over the model's trials; every later
layer runs over all time steps and trials in one batched call.

:func:`calibrate_rates` sets each layer's bias so that every layer fires at a realistic
rate from the first training step (data-driven, on a batch of training images).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from neurocode.models._spiking import SpikingLayers
from neurocode.models.event_conv import SpikeConv2d
from neurocode.neurons import NeuronSpec
from neurocode.models.utils import bisect_shift, conv_output_size
from neurocode.noise import NOISE_FAMILIES

if TYPE_CHECKING:
    from neurocode.models.retina import ModelSpec

__all__ = ["SNNConfig", "RetinaSNN", "calibrate_rates"]


@dataclass(frozen=True)
class SNNConfig:
    """Architecture of :class:`RetinaSNN`; defaults are the paper's (16C25-32C11-FC64x3-FC49).

    Attributes
    ----------
    noisy : bool
        True: NoisyLIF with Gaussian(noise_sigma) noise and NDL (NSNN); False: LIF with the
        ERF surrogate (DSNN).
    input_size : int
        Image side in pixels (input ``[B, 1, input_size, input_size]``).
    channels, kernel_sizes, strides : tuple[int, int]
        The two conv layers.
    pool : int
        Average-pool window after each conv's spiking layer (1 = none).
    hidden : tuple[int, ...]
        Widths of the hidden fully connected layers.
    n_cells, n_steps : int
        Output cells and time steps T.
    noise : str
        NSNN: the noise family (a name in :data:`neurocode.noise.NOISE_FAMILIES`).
    noise_sigma, tau, v_th : float
        Neuron parameters (SPEC §2: sigma = 0.2 for the retina); ``noise_sigma`` is the noise's scale.
    temporal_profile, time_bias : bool
        The flashed-stimulus adaptations described in the module docstring.
    readout_units : int
        Output neurons per recorded cell (1 = the paper's one spiking neuron per cell).
    readout : {"sum", "mean"}
        How a cell's units make its response: "sum", the cell's spike count in a bin is
        the sum of its units' spikes; "mean", the cell's rate is the fraction of its units
        that fire (a population rate code: a deterministic network cannot sample, so it
        needs one to express rates below one spike per bin).
    """

    noisy: bool = True
    input_size: int = 64
    channels: tuple[int, int] = (16, 32)
    kernel_sizes: tuple[int, int] = (25, 11)
    strides: tuple[int, int] = (1, 1)
    pool: int = 1
    hidden: tuple[int, ...] = (64, 64, 64)
    n_cells: int = 49
    n_steps: int = 30
    noise: str = "gaussian"
    noise_sigma: float = 0.2
    tau: float = 0.5
    v_th: float = 1.0
    temporal_profile: bool = True
    time_bias: bool = True
    readout_units: int = 1
    readout: str = "sum"

    def __post_init__(self) -> None:
        for name in ("input_size", "pool", "n_cells", "n_steps", "readout_units"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"SNNConfig.{name} must be a positive integer, got {val!r}")
        for name in ("channels", "kernel_sizes", "strides"):
            val = tuple(getattr(self, name))
            if len(val) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in val):
                raise ValueError(f"SNNConfig.{name} must be two positive integers, got {val!r}")
            object.__setattr__(self, name, val)  # accept lists, store tuples (frozen dataclass)
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"SNNConfig.hidden must be positive widths, got {self.hidden!r}")
        if self.readout not in ("sum", "mean"):
            raise ValueError(f"SNNConfig.readout must be 'sum' or 'mean', got {self.readout!r}")
        if self.noise not in NOISE_FAMILIES:
            raise ValueError(f"SNNConfig.noise must be one of {sorted(NOISE_FAMILIES)}, got {self.noise!r}")
        if self.noise_sigma <= 0:
            raise ValueError(f"SNNConfig.noise_sigma must be > 0, got {self.noise_sigma!r}")

    def feature_sizes(self) -> tuple[int, int]:
        s1 = conv_output_size(self.input_size, self.kernel_sizes[0], self.strides[0], self.pool, name="conv1")
        s2 = conv_output_size(s1, self.kernel_sizes[1], self.strides[1], self.pool, name="conv2")
        return s1, s2


class RetinaSNN(SpikingLayers, nn.Module):
    """Spiking retina model mapping a flashed image to spike trains of the recorded cells.

    Parameters
    ----------
    config : SNNConfig, optional
        Architecture and neuron model (default: the paper's NSNN).
    generator : torch.Generator, optional
        Noise source of all noisy layers (NSNN), for reproducible sampling.

    Shape
    -----
    images : Tensor [B, 1, H, W], normalised grey levels
    output : Tensor [T, K, B, n_cells] of {0, 1} -- K sampled trials per image
    """

    def __init__(self, config: SNNConfig | None = None, generator: torch.Generator | None = None):
        super().__init__()
        self.config = cfg = config if config is not None else SNNConfig()
        s1, s2 = cfg.feature_sizes()
        c1, c2 = cfg.channels
        self.conv1 = nn.Conv2d(1, c1, cfg.kernel_sizes[0], stride=cfg.strides[0])
        self.conv2 = SpikeConv2d(c1, c2, cfg.kernel_sizes[1], stride=cfg.strides[1])  # its input is spikes
        self.pool = nn.AvgPool2d(cfg.pool) if cfg.pool > 1 else nn.Identity()
        T = cfg.n_steps
        self.gain = nn.Parameter(torch.ones(T, c1), requires_grad=cfg.temporal_profile)
        self.offset = nn.Parameter(torch.zeros(T, c1), requires_grad=cfg.temporal_profile)
        widths = (c2 * s2 * s2,) + cfg.hidden + (cfg.n_cells * cfg.readout_units,)
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out_time_bias = nn.Parameter(torch.zeros(T, cfg.n_cells * cfg.readout_units), requires_grad=cfg.time_bias)
        self.neurons = nn.ModuleList(self._neuron(generator) for _ in range(2 + len(self.fcs)))

    def layer_currents(self, images: Tensor) -> Tensor:
        """First layer's current, computed once per image: ``[T, B, c1, s1, s1]``."""
        cfg = self.config
        if images.dim() != 4 or images.shape[1] != 1 or images.shape[2:] != (cfg.input_size,) * 2:
            raise ValueError(f"images must be [B, 1, {cfg.input_size}, {cfg.input_size}], got {tuple(images.shape)}")
        drive = self.conv1(images)  # [B, c1, s, s]
        return torch.addcmul(self.offset[:, None, :, None, None], self.gain[:, None, :, None, None], drive[None])

    def forward(self, images: Tensor, n_trials: int = 1, *, return_all: bool = False):
        """Sample ``n_trials`` spiking responses per image.

        Parameters
        ----------
        images : Tensor [B, 1, H, W]
        n_trials : int
            Trials K to sample per image (a DSNN's trials are identical).
        return_all : bool
            Also return every layer's spikes (list of ``[T, K*B, ...]``), e.g. for firing
            rates or coding analyses.

        Returns
        -------
        spikes : Tensor [T, K, B, n_cells]
            Spike counts per bin, in {0, ..., readout_units} ({0, 1} by default); with
            ``readout="mean"`` the fraction of each cell's units that fire.
        """
        layers = list(self._layers(images, n_trials))
        cfg = self.config
        units = layers[-1].view(cfg.n_steps, n_trials, images.shape[0], cfg.n_cells, cfg.readout_units)
        out = units.mean(-1) if cfg.readout == "mean" else units.sum(-1)
        return (out, layers) if return_all else out

    def _layers(self, images: Tensor, n_trials: int):
        """Yield each spiking layer's output ``[T, K*B, ...]`` in order."""
        x = images
        for i, neuron in enumerate(self.neurons):
            x = neuron(self._current(i, x, n_trials))
            yield x

    def _current(self, i: int, x: Tensor, n_trials: int) -> Tensor:
        """Input current of spiking layer ``i`` given the images (i = 0) or the spikes of
        layer ``i - 1``; time-major ``[T, K*B, ...]``. Each layer's bias enters additively."""
        T = self.config.n_steps
        if i == 0:
            current = self.layer_currents(x)  # [T, B, c1, s, s]
            if n_trials < 1:
                raise ValueError(f"n_trials must be >= 1, got {n_trials}")
            # The K trials share the (deterministic) current; only the noise differs.
            return current.unsqueeze(1).expand(T, n_trials, *current.shape[1:]).reshape(T, -1, *current.shape[2:])
        if i == 1:
            y = self.pool(self.conv2(self.pool(x.flatten(0, 1))))  # all steps and trials in one call
            return y.view(T, -1, *y.shape[1:])
        y = self.fcs[i - 2](x.flatten(2))
        if i == len(self.neurons) - 1:
            y = y + self.out_time_bias[:, None, :]
        return y

    @torch.no_grad()
    def firing_rates(self, images: Tensor, n_trials: int = 1) -> list[float]:
        """Mean firing probability per time step of every spiking layer (conv1 ... output)."""
        _, layers = self.forward(images, n_trials, return_all=True)
        return [float(s.mean()) for s in layers]


@torch.no_grad()
def calibrate_rates(model: RetinaSNN, images: Tensor, hidden_rate: float = 0.1,
                    output_rate: float | Tensor = 0.07, n_trials: int = 2, iterations: int = 16) -> list[float]:
    """Set each layer's bias so that it fires at a target rate (spikes per neuron per step).

    Layer by layer from the input, the layer's input current on ``images`` is computed once
    and the layer's bias (for conv1: the temporal offset) is shifted by bisection until its
    mean firing probability is the target; the next layer is calibrated on the calibrated
    layer's spikes. Weights keep their default initialisation. The output layer's time bias
    is bisected per (step, unit) when ``output_rate`` is a ``[T, n_cells]`` target such as
    the recorded mean PSTH of the training images, so that the model starts from the
    stimulus-independent time course and learns the stimulus dependence on top of it.

    Parameters
    ----------
    images : Tensor [B, 1, H, W]
        A batch of training images.
    hidden_rate : float
        Target rate of the hidden layers.
    output_rate : float or Tensor [T, n_cells]
        Target rate of the output cells (the recorded mean is ~0.07 per 10-ms bin).
    n_trials : int
        Sampled trials per image while calibrating.

    Returns
    -------
    list of float
        The achieved mean rate of every spiking layer, conv1 first.
    """
    cfg = model.config
    biases = [model.offset, model.conv2.bias] + [fc.bias for fc in model.fcs]
    last = len(model.neurons) - 1
    x, rates = images, []
    for i, neuron in enumerate(model.neurons):
        current = model._current(i, x, n_trials)
        per_unit = i == last and isinstance(output_rate, Tensor)
        if per_unit:
            # bisect element-wise on the time bias, [T, n_cells * readout_units]
            bias = model.out_time_bias
            target = output_rate.to(current).repeat_interleave(cfg.readout_units, dim=1)
            if cfg.readout == "sum":
                target = target / cfg.readout_units
        else:
            bias = biases[i]
            target = torch.tensor(output_rate if i == last else hidden_rate, device=current.device)

        def shifted(shift):
            if per_unit:
                return current + shift[:, None, :]
            return current + shift

        def rate_of(shift):
            spikes = neuron(shifted(shift))
            return spikes.mean(1) if per_unit else spikes.mean()

        shift = bisect_shift(rate_of, target, like=bias if per_unit else None, iterations=iterations)
        # every bias enters the current additively (conv1's offset[t, c] directly, conv2's
        # unchanged through the average pooling), so shifting it shifts the current
        bias += shift
        x = neuron(shifted(shift))
        rates.append(float(x.mean()))
    return rates


def paper_snn_spec(config: SNNConfig) -> "ModelSpec":
    """The :class:`~neurocode.models.retina.ModelSpec` of the paper's spiking network configured by ``config``.

    The grey-level flash through a 'valid' conv1 with its temporal profile, a spiking core (conv
    layers, average pooling, the ``hidden`` fully connected layers), the dense readout with its
    time bias, and ``readout_units`` output neurons per cell (noisy LIF or a deterministic population,
    summed or averaged as ``readout`` says).
    """
    from neurocode.models.retina import ModelSpec

    _, s2 = config.feature_sizes()  # checks the geometry
    c2 = config.channels[1]
    neuron = NeuronSpec(family="noisy_lif" if config.noisy else "lif", noise=config.noise, sigma=config.noise_sigma,
                        tau=config.tau, v_th=config.v_th)
    flat = c2 * s2 * s2
    return ModelSpec(
        front_end="flash", core="spiking", readout="dense", output="noisy_lif" if config.noisy else "lif_population",
        n_cells=config.n_cells, n_steps=config.n_steps, input_size=config.input_size, core_pool=1,
        channels=config.channels, kernel_sizes=config.kernel_sizes,
        front_end_options=dict(on_off=False, rf_features=False, stride=config.strides[0], same_padding=False,
                               learn_profile=config.temporal_profile),
        core_options=dict(neuron=neuron, pool=config.pool, stride=config.strides[1], same_padding=False,
                          hidden=config.hidden, features=flat),
        readout_options=dict(features=config.hidden[-1] if config.hidden else flat, units=config.readout_units,
                             learn_time_bias=config.time_bias),
        output_options=dict(neuron=neuron, units=config.readout_units, offsets=False,
                            unit_sum=config.readout == "sum"))
