"""Output parts: what turns each cell's input current into its response.

A registered output takes the current the readout gives, ``[T, K, B, n_cells]`` for a spiking
output (K trials) and ``[T, B, n_cells]`` for a rate output, and returns the response. Adding an output neuron is one class here and its line
in :data:`OUTPUTS`.

``noisy_lif``
    One noisy LIF neuron per cell (NSNN), run ``substeps`` neuron steps per bin; its spikes
    are counted per bin. It can report each trial's firing probability given its own history.
``lif_population``
    ``units`` deterministic LIF neurons per cell (DSNN), their currents offset by fixed amounts
    at the quantiles of the noise; a cell's response is the fraction of its units that fire.
``softplus_poisson``
    A parameterised softplus rate (``|alpha| softplus(beta x)`` per cell), for the Poisson loss.
``softplus`` / ``rectified``
    The LN references' fixed nonlinearities, ``softplus(x)`` and ``max(x, 0)``.
``cmp`` / ``poisson_counts``
    A count distribution per bin (:mod:`neurocode.models.outputs`: Conway-Maxwell-Poisson with a
    learnt dispersion, or Poisson) over a ``softplus_poisson`` intensity: the response is the
    expected count; the model's ``log_prob`` and ``sample`` give its likelihood and its own trials.
``noisy_lif_fano`` / ``noisy_lif_fano_frozen`` / ``noisy_lif_fano_narrow`` / ``noisy_lif_fano_again``
    ``noisy_lif`` with a noise scale per cell set at the start so that each cell's Fano factor
    matches its recorded one (:class:`FanoStart`), then learnt (or frozen) in training; ``narrow``:
    within a factor 1.5 of the spec's scale instead of 2; ``again``: set again after epochs 6 and 18,
    once the core readout carries the core's noise and the drive has grown.
``noisy_lif_fano_end`` / ``noisy_lif_fano_end_wide`` / ``noisy_lif_fano_end_gain`` / ``noisy_lif_fano_end_gain_wide``
    ``noisy_lif`` with a learnt noise scale per cell, set once training ends so that each cell's
    Fano factor on the training images matches its recorded one, its mean rate kept (:class:`FanoEnd`);
    ``wide``: within a factor 4 of the trained scale instead of 2; ``gain``: with a drive gain per
    cell chosen to keep the cell's PSTH.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurocode.models.outputs import OUTPUTS as COUNT_DISTRIBUTIONS
from neurocode.neurons import NeuronSpec, make_neuron
from neurocode.noise import make_noise

__all__ = ["PSoftplus", "FanoCalibration", "FanoStart", "FanoEnd", "SpikingOutput", "FanoStartOutput",
           "FrozenFanoStartOutput", "NarrowFanoStartOutput", "AgainFanoStartOutput", "FanoEndOutput", "WideFanoEndOutput",
           "GainFanoEndOutput", "WideGainFanoEndOutput", "SoftplusPoisson", "CountOutput", "FixedRate", "OUTPUTS"]


class PSoftplus(nn.Module):
    """Parameterised softplus ``α·softplus(β·x)`` with learnable per-unit α, β.

    ``softplus(z) = log(1 + exp(z))``. β sets the sharpness of the rectifier
    and α the output gain. α is applied as ``|α|`` so the output is always a
    valid (non-negative) rate even if training drives α through zero; at
    α > 0 (including the init α = 1) this is exactly ``α·softplus(β·x)``.

    Parameters
    ----------
    num_features : int
        Number of output units U (last axis of the input).

    Shapes
    ------
    input : [..., U]; output : [..., U], ≥ 0.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        self.alpha = nn.Parameter(torch.ones(num_features))
        self.beta = nn.Parameter(torch.ones(num_features))

    def forward(self, x: Tensor) -> Tensor:
        # F.softplus switches to the identity for large β·x, so no overflow
        return self.alpha.abs() * F.softplus(self.beta * x)

    def extra_repr(self) -> str:
        return f"num_features={self.alpha.numel()}"


@dataclass(frozen=True)
class FanoCalibration:
    """How each output cell's noise scale is set to the cell's recorded variability
    (:func:`neurocode.models.retina.calibrate_output_fano`): the search, its bounds and its sample.

    Attributes
    ----------
    iterations : int
        Bisection steps on each cell's ``log sigma``.
    bound : float
        ``log sigma`` is searched within ``+- bound`` of its value before the calibration (ln 2:
        between half and twice it). A cell whose recorded FF lies beyond what the output can reach
        stays at the edge.
    n_trials : int
        Model trials per training image in the calibration.
    min_mean_count : float
        Recorded mean window count (spikes) for an (image, cell) pair to count.
    """

    iterations: int = 8
    bound: float = math.log(2.0)
    n_trials: int = 16
    min_mean_count: float = 0.5

    def __post_init__(self) -> None:
        for name in ("iterations", "n_trials"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (2 if name == "n_trials" else 1):
                raise ValueError(f"{type(self).__name__}.{name} must be an integer >= "
                                 f"{2 if name == 'n_trials' else 1}, got {value!r}")
        for name in ("bound", "min_mean_count"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{type(self).__name__}.{name} must be a finite positive number, got {value!r}")


@dataclass(frozen=True)
class FanoStart(FanoCalibration):
    """Each output cell's noise scale set at the start of a fit to the cell's recorded variability.

    After the biases' rate calibration, ``log sigma`` of every cell is bisected (jointly over
    cells) so that the model's Fano factor of the window count on the training images matches the
    recorded one, the cell's bias re-calibrated to its rate at every step (escape noise moves the
    rate too). The Fano factor is that of :mod:`neurocode.analysis.distribution`: per (image,
    cell) pair with a recorded mean count of at least ``min_mean_count``, averaged per cell. With
    ``bound = 2`` (sigma 0.05-2.5 around 0.35) the edge cells ended with a near-deterministic
    threshold or a drive drowned in noise, and validation rate CC fell from 0.81 to 0.61
    (docs/nsnn_vs_cnn.md).

    Attributes
    ----------
    learnt : bool
        The calibrated noise scale stays a trained parameter (False: frozen at its start value).
    again : tuple of int
        Epochs after which the calibration is repeated on the model trained so far (each cell's
        ``log sigma`` searched again within ``+- bound`` of the spec's, the output bias re-set to the
        rate): at the start the core readout's weights are 0, so the core's noise does not reach the
        output, and training strengthens the drive, which lowers the count's Fano factor.
    (and those of :class:`FanoCalibration`)
    """

    learnt: bool = True
    again: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.again, tuple) or any(isinstance(e, bool) or not isinstance(e, int) or e < 1
                                                    for e in self.again):
            raise ValueError(f"FanoStart.again must be a tuple of epochs (integers >= 1), got {self.again!r}")


@dataclass(frozen=True)
class FanoEnd(FanoCalibration):
    """Each output cell's noise scale set once training ends (on the weights the fit keeps, the best
    validation epoch's) to the cell's recorded variability on the training images, each cell's
    output bias re-set per bin so that its mean rate over the training images stays the trained
    model's: only the spread of the trials moves, not their mean over images.

    Since nothing is trained after it, a noise scale below the smooth count curve of
    ``0.2 * sqrt(substeps)`` cannot bend NDL's gradient (the Fano start's problem); it still makes
    the count's rate curve a staircase, which costs the PSTH some of its fit (docs/nsnn_vs_cnn.md,
    "The noise scale set after training"). ``iterations`` defaults to 10 here.

    Attributes
    ----------
    gains : tuple of float
        Drive gains tried per cell (empty: none): the output scales each cell's input current by a
        gain of its own (a buffer, ``drive_gain``), and each cell keeps the gain, with its sigma and
        bias, that best keeps its PSTH on the training images
        (:func:`neurocode.models.retina.calibrate_output_fano`).
    (and those of :class:`FanoCalibration`)
    """

    iterations: int = 10
    gains: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.gains, tuple) or any(isinstance(g, bool) or not isinstance(g, (int, float))
                                                    or not (math.isfinite(g) and g > 0) for g in self.gains):
            raise ValueError(f"FanoEnd.gains must be a tuple of positive numbers, got {self.gains!r}")


class SpikingOutput(nn.Module):
    """Spiking output neurons, ``units`` per cell, each bin ``substeps`` neuron steps long.

    Parameters
    ----------
    n_cells : int
    neuron : NeuronSpec
        The output neurons (noisy or deterministic LIF).
    generator : torch.Generator, optional
        Noise source of noisy neurons.
    units : int
        Neurons per cell; above 1 their currents differ by offsets at ``units`` quantiles of
        the neuron's noise family at its sigma (the noise frozen across a population).
    substeps : int
        Neuron steps per bin (a 33-ms movie bin holds bursts a single step cannot).
    offsets : bool
        The population's units differ by the noise quantiles (False: by their own readout weights only).
    unit_sum : bool
        A cell's response is the sum of its units' spikes (False: their mean).
    fano_start : FanoStart, optional
        A noisy output (one unit per cell): its noise scale is one per cell
        (``learnable="neuron"``, Gaussian escape noise), set at the start to the cell's recorded
        Fano factor; frozen there unless ``fano_start.learnt``.
    fano_end : FanoEnd, optional
        The same (one noise scale per cell), set to the cell's recorded Fano factor once training ends.
    """

    spiking = True

    def __init__(self, n_cells: int, neuron: NeuronSpec, generator: torch.Generator | None = None, *,
                 units: int = 1, substeps: int = 1, offsets: bool = True, unit_sum: bool = False,
                 fano_start: FanoStart | None = None, fano_end: FanoEnd | None = None):
        super().__init__()
        self.n_cells, self.units, self.substeps = int(n_cells), int(units), int(substeps)
        self.fano_start, self.fano_end = fano_start, fano_end
        for name, fano in (("fano_start", fano_start), ("fano_end", fano_end)):
            if fano is not None and (not neuron.noisy or self.units != 1):
                raise ValueError(f"{name} applies to a noisy output with one unit per cell, got "
                                 f"family={neuron.family!r}, units={self.units}")
        if fano_start is not None or fano_end is not None:
            neuron = dataclasses.replace(neuron, learnable="neuron")
        self.noisy, self.unit_sum = neuron.noisy, bool(unit_sum)
        self.neuron = make_neuron(neuron, generator, self.n_cells * self.units)
        self.offsets = bool(offsets) and self.units > 1
        if self.offsets:
            # derived from the spec, so not part of the weights
            self.register_buffer("unit_offsets", make_noise(neuron.noise, neuron.sigma).quantiles(self.units)
                                 .repeat(self.n_cells), persistent=False)
        if fano_start is not None and not fano_start.learnt:
            self.neuron.log_sigma.requires_grad_(False)
        # each cell's drive gain, set by a Fano end with gains (not trained); None (not saved) otherwise
        self.register_buffer("drive_gain", torch.ones(self.n_cells) if fano_end is not None and fano_end.gains
                             else None)

    @property
    def reports_rates(self) -> bool:
        """A population's response is a rate (the fraction of its units that fire), not spikes."""
        return self.units > 1 and not self.unit_sum

    def unit_currents(self, current: Tensor) -> Tensor:
        """Each unit's current: ``[..., N]`` (a cell's current, shared by its units) or ``[..., N * units]``
        (a readout that gives every unit its own) -> ``[..., N * units]``."""
        if self.units > 1 and current.shape[-1] == self.n_cells:
            current = current.repeat_interleave(self.units, dim=-1)
        return current + self.unit_offsets if self.offsets else current

    def run(self, current: Tensor, return_potential: bool = False, noise: Tensor | None = None):
        """The neurons over ``current [T, ..., N * units]``: spike counts per bin ``[T, ...]`` and,
        with ``return_potential``, the pre-noise potential of every substep ``[T * substeps, ...]``.
        ``noise [T * substeps, ..., N * units]``: the standard normal draws of a neuron that takes them
        (:meth:`~neurocode.neurons.LearnableNoisyLIF.draw_noise`), instead of its generator's."""
        m, T = self.substeps, current.shape[0]
        if self.drive_gain is not None:
            current = current * self.drive_gain
        if m > 1:
            current = current.repeat_interleave(m, dim=0)
        given = {} if noise is None else {"noise": noise}
        x, ubar = (self.neuron(current, return_potential=True, **given) if return_potential
                   else (self.neuron(current, **given), None))
        return (x.view(T, m, *x.shape[1:]).sum(1) if m > 1 else x), ubar

    def forward(self, current: Tensor, return_probability: bool = False):
        """``current [T, K, B, N]`` -> spikes ``[T, K, B, N]`` (a population: its units' mean), the
        last layer's spikes ``[T, K*B, N * units]`` and, with ``return_probability``, each trial's
        expected count per bin given its own history, ``F(ubar - v_th)`` summed over substeps."""
        if return_probability and (not self.noisy or self.units > 1):
            raise ValueError("return_probability applies to a noisy model with one unit per cell")
        T, K, B = current.shape[:3]
        x, ubar = self.run(self.unit_currents(current).reshape(T, K * B, -1), return_probability)
        units = x.view(T, K, B, self.n_cells, self.units)
        out = units.sum(-1) if self.unit_sum else units.mean(-1) if self.units > 1 else units[..., 0]
        prob = None
        if return_probability:
            prob = self.neuron.firing_probability(ubar).view(T, self.substeps, K, B, self.n_cells).sum(1)
        return out, x, prob


class FanoStartOutput(SpikingOutput):
    """``noisy_lif`` whose noise scale per cell starts at the cell's recorded Fano factor and is learnt
    (:class:`FanoStart`)."""

    start = FanoStart()

    def __init__(self, n_cells: int, neuron: NeuronSpec, generator: torch.Generator | None = None, **options):
        super().__init__(n_cells, neuron, generator, fano_start=self.start, **options)


class FrozenFanoStartOutput(FanoStartOutput):
    """:class:`FanoStartOutput` with the calibrated noise scale frozen (not trained)."""

    start = FanoStart(learnt=False)


class NarrowFanoStartOutput(FanoStartOutput):
    """:class:`FanoStartOutput` with sigma searched within a factor 1.5 of the spec's (a smaller departure
    from the smooth count curve of ``0.2 * sqrt(substeps)``, less of each cell's variability)."""

    start = FanoStart(bound=math.log(1.5))


class AgainFanoStartOutput(FanoStartOutput):
    """:class:`FanoStartOutput` calibrated again after epochs 6 and 18 (:attr:`FanoStart.again`)."""

    start = FanoStart(again=(6, 18))


class FanoEndOutput(SpikingOutput):
    """``noisy_lif`` with one learnt noise scale per cell, set to the cell's recorded Fano factor once
    training ends (:class:`FanoEnd`)."""

    end = FanoEnd()

    def __init__(self, n_cells: int, neuron: NeuronSpec, generator: torch.Generator | None = None, **options):
        super().__init__(n_cells, neuron, generator, fano_end=self.end, **options)


class WideFanoEndOutput(FanoEndOutput):
    """:class:`FanoEndOutput` with sigma searched within a factor 4 of the trained one (more cells reach their
    recorded Fano factor; the count's rate curve further from smooth)."""

    end = FanoEnd(bound=math.log(4.0))


class GainFanoEndOutput(FanoEndOutput):
    """:class:`FanoEndOutput` with a drive gain per cell (:attr:`FanoEnd.gains`) that keeps the cell's PSTH."""

    end = FanoEnd(gains=(0.5, 0.6, 0.7, 0.85, 1.0, 1.2, 1.5))


class WideGainFanoEndOutput(FanoEndOutput):
    """:class:`GainFanoEndOutput` with sigma searched within a factor 4 of the trained one."""

    end = FanoEnd(bound=math.log(4.0), gains=(0.4, 0.5, 0.6, 0.7, 0.85, 1.0, 1.2))


class SoftplusPoisson(PSoftplus):
    """Parameterised softplus rates ``|alpha| softplus(beta x)`` per cell (``per_bin``: per cell and bin, the
    paper CNN's): ``[T, B, N] -> [T, B, N]``."""

    spiking = False
    reports_rates = True

    def __init__(self, n_cells: int, neuron: NeuronSpec | None = None, generator: torch.Generator | None = None, *,
                 per_bin: int | None = None):
        super().__init__(n_cells * (per_bin or 1))
        self.per_bin = per_bin

    def forward(self, current: Tensor) -> Tensor:
        x = current
        if not self.per_bin:
            return super().forward(x)
        # per (bin, cell): on the [B, T * N] layout the dense readout computed, so that the gradients'
        # sums run in the order the paper CNN's always did
        T, B, N = x.shape
        return super().forward(x.transpose(0, 1).reshape(B, T * N)).view(B, T, N).transpose(0, 1)


class CountOutput(SoftplusPoisson):
    """A count distribution over a softplus intensity (module docstring): ``[T, B, N] -> E[k] [T, B, N]``.

    Parameters
    ----------
    n_cells : int
    distribution : str
        A name in :data:`neurocode.models.outputs.OUTPUTS` ("cmp", "poisson").
    generator : torch.Generator, optional
        Source of :meth:`sample`'s draws (set per prediction, as a noisy neuron's is).
    """

    samples = True

    def __init__(self, n_cells: int, neuron: NeuronSpec | None = None, generator: torch.Generator | None = None, *,
                 distribution: str, per_bin: int | None = None):
        super().__init__(n_cells, per_bin=per_bin)
        self.distribution = COUNT_DISTRIBUTIONS[distribution](n_cells)
        self.generator = generator

    def intensity(self, current: Tensor) -> Tensor:
        """``lam [T, B, N]``: the softplus of the current."""
        return super().forward(current)

    def forward(self, current: Tensor) -> Tensor:
        return self.distribution.mean(self.intensity(current))

    def log_prob(self, current: Tensor, counts: Tensor) -> Tensor:
        """``log P(counts)`` for counts ``[T, R, B, N]`` (R trials of each stimulus), elementwise."""
        return self.distribution.log_prob(self.intensity(current)[:, None], counts)

    def sample(self, current: Tensor, n_trials: int) -> tuple[Tensor, Tensor]:
        """``(counts [T, K, B, N], E[k] [T, B, N])``: K trials drawn from the output's own likelihood."""
        lam = self.intensity(current)
        return self.distribution.sample(lam, n_trials, self.generator).transpose(0, 1), self.distribution.mean(lam)


class FixedRate(nn.Module):
    """A fixed rate nonlinearity (the LN references'): ``softplus`` or ``rectified`` (max(x, 0))."""

    spiking = False
    reports_rates = True

    def __init__(self, nonlinearity: str):
        super().__init__()
        self.nonlinearity = nonlinearity

    def forward(self, current: Tensor) -> Tensor:
        return F.softplus(current) if self.nonlinearity == "softplus" else current.clamp(min=0)

    def extra_repr(self) -> str:
        return self.nonlinearity


#: Output parts by name: ``OUTPUTS[name](n_cells, neuron, generator, **options)``.
OUTPUTS = {
    "noisy_lif": SpikingOutput,
    "noisy_lif_fano": FanoStartOutput,
    "noisy_lif_fano_frozen": FrozenFanoStartOutput,
    "noisy_lif_fano_narrow": NarrowFanoStartOutput,
    "noisy_lif_fano_again": AgainFanoStartOutput,
    "noisy_lif_fano_end": FanoEndOutput,
    "noisy_lif_fano_end_wide": WideFanoEndOutput,
    "noisy_lif_fano_end_gain": GainFanoEndOutput,
    "noisy_lif_fano_end_gain_wide": WideGainFanoEndOutput,
    "lif_population": SpikingOutput,
    "softplus_poisson": SoftplusPoisson,
    "softplus": lambda n_cells, neuron=None, generator=None: FixedRate("softplus"),
    "rectified": lambda n_cells, neuron=None, generator=None: FixedRate("rectified"),
    "cmp": lambda n_cells, neuron=None, generator=None, **options: CountOutput(n_cells, generator=generator,
                                                                               distribution="cmp", **options),
    "poisson_counts": lambda n_cells, neuron=None, generator=None, **options: CountOutput(
        n_cells, generator=generator, distribution="poisson", **options),
}
