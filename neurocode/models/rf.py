"""The configuration of the receptive-field-aware retina models, and the parts it composes.

:class:`RFRateConfig` configures the RF-aware rate models (CNN, LN) and :class:`RFConfig` adds the
neurons of the spiking ones; :func:`rf_model_spec` turns either into the
:class:`~neurocode.models.retina.ModelSpec` of a family (NSNN, DSNN: a spiking core and output;
CNN: a ReLU core and a softplus-Poisson output; LN: no core), for flashed images or clips
(:mod:`neurocode.models.parts` has the parts; ``README.md`` the measured scores). Every model
reads each cell out at its RF: RF features (flash) or a separable space-time filter (clips) as
the LN pathway, plus a Gaussian readout of the core placed at the RF.

The DSNN reads each cell out as the mean of ``readout_units`` deterministic units that
share the cell's current and differ by fixed offsets at the quantiles of the NSNN's noise
distribution: the NSNN's noise frozen across a population, so that a deterministic network
can express rates below one spike per bin (a population rate code).
"""

from __future__ import annotations

from dataclasses import dataclass

import dataclasses
from typing import TYPE_CHECKING

from neurocode.models._spiking import check_neuron_options
from neurocode.neurons import NeuronSpec
from neurocode.noise import NOISE_FAMILIES

if TYPE_CHECKING:
    from neurocode.models.parts import OUTPUTS
    from neurocode.models.retina import ModelSpec

__all__ = ["RFRateConfig", "RFConfig", "rf_model_spec"]


@dataclass(frozen=True)
class RFRateConfig:
    """Architecture of the RF-aware models without neurons (:func:`rf_model_spec`): the rate models' (CNN, LN).

    Attributes
    ----------
    input_size : int
        Image side in pixels (input ``[B, 1, input_size, input_size]``).
    core_pool : int
        The core runs on ON/OFF maps area-averaged by this factor (64 px → 32 px).
    channels, kernel_sizes : tuple[int, int]
        The core's two conv layers ('same' padding, so maps stay aligned with the image
        and with the RFs).
    surround_scale : float
        Radius of the surround Gaussian in units of the RF's 1-σ radius.
    n_cells, n_steps : int
        Output cells and time bins T.
    core_norm : bool or None
        BatchNorm after each of the core's convolutions (a threshold-dependent normalisation in a
        spiking core: unit-variance currents against v_th = 1, biases calibrated after it). None:
        the family's own default (the CNN has it, the spiking core has not).
    """

    input_size: int = 64
    core_pool: int = 2
    channels: tuple[int, int] = (8, 16)
    kernel_sizes: tuple[int, int] = (9, 5)
    surround_scale: float = 2.0
    n_cells: int = 49
    n_steps: int = 30
    core_norm: bool | None = None

    def __post_init__(self) -> None:
        name = type(self).__name__
        for field in ("input_size", "core_pool", "n_cells", "n_steps"):
            val = getattr(self, field)
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name}.{field} must be a positive integer, got {val!r}")
        for field in ("channels", "kernel_sizes"):
            val = tuple(getattr(self, field))
            if len(val) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in val):
                raise ValueError(f"{name}.{field} must be two positive integers, got {val!r}")
            object.__setattr__(self, field, val)  # accept lists, store tuples (frozen dataclass)
        if any(k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"{name}.kernel_sizes must be odd ('same' padding), got {self.kernel_sizes}")
        if self.input_size % self.core_pool:
            raise ValueError(f"{name}.input_size {self.input_size} is not a multiple of core_pool {self.core_pool}")
        if not self.surround_scale > 1:
            raise ValueError(f"{name}.surround_scale must be > 1, got {self.surround_scale!r}")

    #: Fields of older records and what each became (none here; see RFConfig).
    LEGACY_FIELDS = {}

    @classmethod
    def from_dict(cls, d: dict) -> "RFRateConfig":
        """The config of a ``to_dict`` / config.json record (lists as tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    @property
    def core_size(self) -> int:
        return self.input_size // self.core_pool

    def has_core_norm(self, default: bool) -> bool:
        """Whether the core normalises its convolutions (``core_norm``, or the family's ``default``)."""
        return default if self.core_norm is None else bool(self.core_norm)


@dataclass(frozen=True)
class RFConfig(RFRateConfig):
    """Architecture of the RF-aware models with spiking parts (:func:`rf_model_spec`): :class:`RFRateConfig`
    and the neurons' settings (NSNN, DSNN, a mixed model with a spiking core).

    Attributes
    ----------
    readout_units : int
        Output units per cell (DSNN population code; 1 for the NSNN).
    output_substeps : int
        The output neurons run this many time steps per bin and their spikes are counted per
        bin, so a cell can fire up to that many spikes in one bin (33-ms bins of a movie hold
        bursts a single step cannot).
    noisy : bool
        Spiking model: NoisyLIF + NDL (NSNN) or LIF + ERF surrogate (DSNN).
    noise : str
        NSNN: the noise family (a name in :data:`neurocode.noise.NOISE_FAMILIES`); a DSNN
        population's unit offsets sit at its quantiles.
    noise_sigma, tau, v_th : float
        Neuron parameters (SPEC §2: σ = 0.2 for the retina); ``noise_sigma`` is the noise's scale.
    core_neuron, output_neuron : dict or None
        The core's and the output's own neuron options: fields of
        :class:`~neurocode.neurons.NeuronSpec` that differ from the model's neuron (the family's
        noise at ``noise_sigma``). E.g. ``core_neuron={"family": "lif"}``: an NSNN with a
        deterministic core (ERF surrogate), the noise in the output neurons only;
        ``core_neuron={"sigma": 0.4}``: another noise scale in the core;
        ``output_neuron={"learnable": "neuron"}``: the output neurons' noise scale a parameter per
        unit (:class:`~neurocode.neurons.LearnableNoisyLIF`), started at ``noise_sigma`` and
        trained by the fit's loss; ``core_neuron={"learnable": "layer"}``: one per core layer;
        ``output_neuron={"reset": "subtract"}``: the output neurons reset by subtraction (the charge
        above the threshold kept: a more regular count).
    readout : dict or None
        A spiking model's readout options (:class:`~neurocode.models.parts.readouts.RFReadout`):
        ``time_weights`` (True: each cell weighs its core readout with its own time course
        ``c_n(t)``, started at 1, as the CNN does) and ``synapse`` (the core readout reaches the
        output neurons through a current-based synapse ``y(t) = a y(t-1) + (1 - a) r(t)`` of this
        decay ``a`` in [0, 1)). None: neither.
    """

    readout_units: int = 1
    noisy: bool = True
    noise: str = "gaussian"
    noise_sigma: float = 0.2
    tau: float = 0.5
    v_th: float = 1.0
    output_substeps: int = 1
    core_neuron: dict | None = None
    output_neuron: dict | None = None
    readout: dict | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("readout_units", "output_substeps"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"RFConfig.{name} must be a positive integer, got {val!r}")
        if self.readout is not None and (not isinstance(self.readout, dict)
                                         or set(self.readout) - {"time_weights", "synapse"}):
            raise ValueError(f"RFConfig.readout must be a dict of 'time_weights' (bool) and 'synapse' (in [0, 1)) "
                             f"or None, got {self.readout!r}")
        if self.readout and not 0 <= self.readout.get("synapse", 0.0) < 1:
            raise ValueError(f"RFConfig.readout synapse must be in [0, 1), got {self.readout['synapse']!r}")
        for name in ("core_neuron", "output_neuron"):
            check_neuron_options(getattr(self, name), f"RFConfig.{name}")
        if self.noise not in NOISE_FAMILIES:
            raise ValueError(f"RFConfig.noise must be one of {sorted(NOISE_FAMILIES)}, got {self.noise!r}")
        if not self.noise_sigma > 0:
            raise ValueError(f"RFConfig.noise_sigma must be > 0, got {self.noise_sigma!r}")

    #: Fields of configs written before the parts' own options, and the option each became.
    LEGACY_FIELDS = {"core_noisy": ("core_neuron", "family", {False: "lif", True: None}),
                     "core_noise_sigma": ("core_neuron", "sigma", {}),
                     "learn_core_sigma": ("core_neuron", "learnable", {True: "layer", False: None}),
                     "learn_sigma": ("output_neuron", "learnable", {True: "neuron", False: None}),
                     "readout_time_weights": ("readout", "time_weights", {False: None}),
                     "readout_synapse": ("readout", "synapse", {0.0: None})}

    @classmethod
    def from_dict(cls, d: dict) -> "RFConfig":
        """The config of a ``to_dict`` / config.json record, also one written before the parts' own
        options (``core_noisy``, ``core_noise_sigma``, ``learn_sigma``, ``learn_core_sigma``,
        ``readout_time_weights``, ``readout_synapse``)."""
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        for old, (part, key, values) in cls.LEGACY_FIELDS.items():
            if old in d:
                value = d.pop(old)
                value = values.get(value, value)
                if value is not None:
                    d[part] = {**(d.get(part) or {}), key: value}
        return cls(**d)


def rf_model_spec(config: RFRateConfig, core: str | None, output: str, n_lags: int = 0) -> "ModelSpec":
    """The :class:`~neurocode.models.retina.ModelSpec` of an RF-aware model configured by ``config``.

    ``core`` is "spiking", "relu" or None (the LN reference); ``output`` a name in
    :data:`~neurocode.models.parts.OUTPUTS`; ``n_lags > 0``: clips of that many frame lags, else a flash.
    Each part's options are read from ``config``: a spiking core has the temporal profile and
    (``core_norm``) BatchNorm after conv1 and conv2; a ReLU core BatchNorm before each ReLU (unless
    ``core_norm=False``); a spiking output the neuron of ``output_neuron``.
    """
    from neurocode.models.parts import OUTPUTS
    from neurocode.models.retina import ModelSpec

    clips = n_lags > 0
    spiking_core = core == "spiking"
    if (spiking_core or output in ("noisy_lif", "lif_population")) and not isinstance(config, RFConfig):
        raise ValueError(f"a spiking part (core {core!r}, output {output!r}) needs the neurons' settings: an RFConfig, "
                         f"got {type(config).__name__}")
    front, core_opts, readout_opts, output_opts = {}, {}, {}, {}
    if clips:
        front = dict(n_lags=n_lags, filter_gain=config.noise_sigma if output in ("noisy_lif", "lif_population")
                     else 1.0)
    else:
        front = dict(surround_scale=config.surround_scale)
    if spiking_core:
        core_opts = dict(neuron=_neuron_spec(config, "core_neuron"), norm=not clips and config.has_core_norm(False))
        if not clips:
            front.update(conv_bias=True, norm=config.has_core_norm(False), temporal_profile=True)
        readout_opts = dict(config.readout or {})
    elif core == "relu":
        norm = config.has_core_norm(True)
        core_opts = dict(norm=norm or clips)
        if not clips:
            front.update(conv_bias=not norm, norm=False, temporal_profile=False)
        readout_opts = dict(time_weights=not clips)
    if getattr(OUTPUTS[output], "spiking", False):  # a spiking output's own neuron
        output_opts = dict(neuron=_neuron_spec(config, "output_neuron"), units=config.readout_units,
                           substeps=config.output_substeps)
    return ModelSpec(front_end="clips" if clips else "flash", core=core, readout="linear" if core is None else "rf",
                     output=output, n_cells=config.n_cells, n_steps=config.n_steps, input_size=config.input_size,
                     core_pool=config.core_pool, channels=config.channels, kernel_sizes=config.kernel_sizes,
                     front_end_options=front, core_options=core_opts, readout_options=readout_opts,
                     output_options=output_opts)


def _neuron_spec(config: RFConfig, part: str) -> NeuronSpec:
    """The neuron of a part: the config's noise family at ``noise_sigma`` (noisy) or a LIF, updated by the
    part's own options (``core_neuron`` / ``output_neuron``)."""
    spec = NeuronSpec(family="noisy_lif" if config.noisy else "lif", noise=config.noise, sigma=config.noise_sigma,
                      tau=config.tau, v_th=config.v_th)
    return dataclasses.replace(spec, **(getattr(config, part) or {}))
