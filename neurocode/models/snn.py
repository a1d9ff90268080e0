"""The paper's spiking retina network: NSNN (noisy LIF + NDL) or DSNN (LIF + surrogate), 16C25-32C11-FC64-FC64-FC64-FC49.

:class:`SNNConfig` configures it and :func:`paper_snn_spec` composes it from parts
(:mod:`neurocode.models.parts`).

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

:func:`~neurocode.models.retina.calibrate_dense` sets each layer's bias so that every layer fires at a realistic
rate from the first training step (data-driven, on a batch of training images).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from neurocode.models.utils import conv_output_size
from neurocode.neurons import NeuronSpec
from neurocode.noise import NOISE_FAMILIES

if TYPE_CHECKING:
    from neurocode.models.retina import ModelSpec

__all__ = ["SNNConfig", "paper_snn_spec"]


@dataclass(frozen=True)
class SNNConfig:
    """Architecture of the paper's spiking network (:func:`paper_snn_spec`); defaults are the paper's (16C25-32C11-FC64x3-FC49).

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
