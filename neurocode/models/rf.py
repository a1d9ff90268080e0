"""Receptive-field-aware retina models: a shared core and per-cell readouts placed at each RF.

Three models share one design, so that a comparison is about the model class, not the
plumbing (see ``README.md`` for the measured scores):

:class:`RetinaLN`
    The field's first reference. Per cell, the six RF features of
    :class:`~neurocode.models.readout.RFFeatures` with a temporal profile each, a time
    bias, and a rectifying output: ``rate_n(t) = max(0, a_n(t) + Σ_k b_nk(t) f_nk)``.
    Fitted in closed form (ridge regression on the trial-averaged PSTH = MSE loss), the
    ridge strength chosen on validation images.
:class:`RetinaRFSNN`
    NSNN (noisy LIF, noise-driven learning) or DSNN (LIF, surrogate gradient). A spiking
    core sees the image as ON and OFF contrast channels: conv1 with a learnable temporal
    profile per channel (space-time separable, as the flash has no time axis of its own),
    a spiking layer, conv2, a spiking layer. Each cell's output neuron receives
    ``I_n(t) = a_n(t) + Σ_k b_nk(t) f_nk + Σ_c w_nc (G_n * s2_c(t))``: its RF features
    with temporal profiles (the LN pathway) plus a Gaussian readout ``G_n`` of the core's
    spikes at the cell's RF. The output neurons are noisy LIF (NSNN) and the model is trained
    with the set-level PSP-kernel MMD, so it starts where LN is and can go beyond it.
:class:`RetinaRFCNN`
    The same core with ReLU units and BatchNorm, the same RF features and Gaussian readout,
    a parameterised softplus output, Poisson loss.

The DSNN reads each cell out as the mean of ``readout_units`` deterministic units that
share the cell's current and differ by fixed offsets at the quantiles of the NSNN's noise
distribution: the NSNN's noise frozen across a population, so that a deterministic network
can express rates below one spike per bin (a population rate code).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurocode.models._spiking import SpikingLayers, check_neuron_options
from neurocode.models.cnn import PSoftplus
from neurocode.models.event_conv import SpikeConv2d
from neurocode.models.readout import RF_FEATURE_NAMES, GaussianReadout, RFFeatures, on_off
from neurocode.models.utils import bisect_shift
from neurocode.noise import NOISE_FAMILIES

__all__ = ["RFConfig", "RetinaLN", "RetinaRFSNN", "RetinaRFCNN", "calibrate_rf_snn"]

N_FEATURES = len(RF_FEATURE_NAMES)


@dataclass(frozen=True)
class RFConfig:
    """Architecture of the RF-aware models (:class:`RetinaRFSNN`, :class:`RetinaRFCNN`, :class:`RetinaLN`).

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
    readout_units : int
        Output units per cell (DSNN population code; 1 for NSNN, CNN, LN).
    output_substeps : int
        Clip models (:mod:`neurocode.models.clip`): the output neurons run this many time
        steps per bin and their spikes are counted per bin, so a cell can fire up to that
        many spikes in one bin (33-ms bins of a movie hold bursts a single step cannot).
    noisy : bool
        Spiking model: NoisyLIF + NDL (NSNN) or LIF + ERF surrogate (DSNN).
    noise : str
        NSNN: the noise family (a name in :data:`neurocode.noise.NOISE_FAMILIES`); a DSNN
        population's unit offsets sit at its quantiles.
    noise_sigma, tau, v_th : float
        Neuron parameters (SPEC §2: σ = 0.2 for the retina); ``noise_sigma`` is the noise's scale.
    core_norm : bool or None
        BatchNorm after each of the core's convolutions (a threshold-dependent normalisation in a
        spiking core: unit-variance currents against v_th = 1, biases calibrated after it). None:
        the family's own default (the CNN has it, the spiking core has not).
    core_neuron, output_neuron : dict or None
        The core's and the output's own neuron options: fields of
        :class:`~neurocode.neurons.NeuronSpec` that differ from the model's neuron (the family's
        noise at ``noise_sigma``). E.g. ``core_neuron={"family": "lif"}``: an NSNN with a
        deterministic core (ERF surrogate), the noise in the output neurons only;
        ``core_neuron={"sigma": 0.4}``: another noise scale in the core;
        ``output_neuron={"learnable": "neuron"}``: the output neurons' noise scale a parameter per
        unit (:class:`~neurocode.neurons.LearnableNoisyLIF`), started at ``noise_sigma`` and
        trained by the fit's loss; ``core_neuron={"learnable": "layer"}``: one per core layer.
    readout_time_weights : bool
        Spiking models: each cell weighs its core readout with its own time course ``c_n(t)``
        (started at 1), as the CNN does; False: the core enters every bin with the same weights.
    readout_synapse : float
        Spiking models: the core readout reaches the output neurons through a current-based
        synapse, ``y(t) = a y(t-1) + (1 - a) r(t)`` with this decay ``a`` per step (in [0, 1);
        0: none), so that an output neuron integrates its core input over a few steps.
    n_cells, n_steps : int
        Output cells and time bins T.
    """

    input_size: int = 64
    core_pool: int = 2
    channels: tuple[int, int] = (8, 16)
    kernel_sizes: tuple[int, int] = (9, 5)
    surround_scale: float = 2.0
    readout_units: int = 1
    noisy: bool = True
    noise: str = "gaussian"
    noise_sigma: float = 0.2
    tau: float = 0.5
    v_th: float = 1.0
    n_cells: int = 49
    n_steps: int = 30
    output_substeps: int = 1
    core_norm: bool | None = None
    core_neuron: dict | None = None
    output_neuron: dict | None = None
    readout_time_weights: bool = False
    readout_synapse: float = 0.0

    def __post_init__(self) -> None:
        for name in ("input_size", "core_pool", "readout_units", "n_cells", "n_steps", "output_substeps"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"RFConfig.{name} must be a positive integer, got {val!r}")
        for name in ("channels", "kernel_sizes"):
            val = tuple(getattr(self, name))
            if len(val) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in val):
                raise ValueError(f"RFConfig.{name} must be two positive integers, got {val!r}")
            object.__setattr__(self, name, val)  # accept lists, store tuples (frozen dataclass)
        if any(k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"RFConfig.kernel_sizes must be odd ('same' padding), got {self.kernel_sizes}")
        if self.input_size % self.core_pool:
            raise ValueError(f"RFConfig.input_size {self.input_size} is not a multiple of core_pool {self.core_pool}")
        if not self.surround_scale > 1:
            raise ValueError(f"RFConfig.surround_scale must be > 1, got {self.surround_scale!r}")
        if not 0 <= self.readout_synapse < 1:
            raise ValueError(f"RFConfig.readout_synapse must be in [0, 1), got {self.readout_synapse!r}")
        for name in ("core_neuron", "output_neuron"):
            check_neuron_options(getattr(self, name), f"RFConfig.{name}")
        if self.noise not in NOISE_FAMILIES:
            raise ValueError(f"RFConfig.noise must be one of {sorted(NOISE_FAMILIES)}, got {self.noise!r}")
        if not self.noise_sigma > 0:
            raise ValueError(f"RFConfig.noise_sigma must be > 0, got {self.noise_sigma!r}")

    #: Fields of configs written before the parts' neuron options, and the option each became.
    LEGACY_NEURON_FIELDS = {"core_noisy": ("core_neuron", "family", {False: "lif", True: None}),
                            "core_noise_sigma": ("core_neuron", "sigma", {}),
                            "learn_core_sigma": ("core_neuron", "learnable", {True: "layer", False: None}),
                            "learn_sigma": ("output_neuron", "learnable", {True: "neuron", False: None})}

    @classmethod
    def from_dict(cls, d: dict) -> "RFConfig":
        """The config of a ``to_dict`` / config.json record, also one written before the parts'
        neuron options (``core_noisy``, ``core_noise_sigma``, ``learn_sigma``, ``learn_core_sigma``)."""
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        for old, (part, key, values) in cls.LEGACY_NEURON_FIELDS.items():
            if old in d:
                value = d.pop(old)
                value = values.get(value, value)
                if value is not None:
                    d[part] = {**(d.get(part) or {}), key: value}
        return cls(**d)

    @property
    def core_size(self) -> int:
        return self.input_size // self.core_pool

    def has_core_norm(self, default: bool) -> bool:
        """Whether the core normalises its convolutions (``core_norm``, or the family's ``default``)."""
        return default if self.core_norm is None else bool(self.core_norm)


def _rf_arrays(config: RFConfig, rfs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centre/surround masks on the input grid, centres/covariances on the core grid.

    ``rfs`` None gives placeholders (one broad window at the centre) for a model whose
    buffers and parameters are then loaded from a checkpoint.
    """
    S, s, n = config.input_size, config.core_size, config.n_cells
    if rfs is None:
        from neurocode.data.receptive_fields import ReceptiveFields

        rfs = ReceptiveFields(centres=np.full((n, 2), S / 2.0), covariances=np.tile(np.eye(2) * (S / 4.0) ** 2, (n, 1, 1)),
                              image_shape=(S, S), source="fallback", method="placeholder (weights from a checkpoint)")
    if rfs.n_cells != n:
        raise ValueError(f"receptive fields are given for {rfs.n_cells} cells, the model has n_cells={n}")
    core = rfs.scaled((s, s))
    return (rfs.masks((S, S)), rfs.masks((S, S), scale=config.surround_scale), core.centres, core.covariances)


class _RFBase(nn.Module):
    """RF features with temporal profiles: ``a[t, u] + Σ_k b[t, u, k] f[b, u, k]``."""

    def __init__(self, config: RFConfig, rfs):
        super().__init__()
        self.config = config
        centre, surround, core_centres, core_cov = _rf_arrays(config, rfs)
        self._core_geometry = (core_centres, core_cov)
        self.features = RFFeatures(centre, surround)
        self.time_bias = nn.Parameter(torch.zeros(config.n_steps, config.n_cells))
        self.feature_weights = nn.Parameter(torch.zeros(config.n_steps, config.n_cells, N_FEATURES))

    def check_images(self, images: Tensor) -> None:
        S = self.config.input_size
        if images.dim() != 4 or images.shape[1] != 1 or images.shape[2:] != (S, S):
            raise ValueError(f"images must be [B, 1, {S}, {S}], got {tuple(images.shape)}")

    def rf_drive(self, images: Tensor) -> Tensor:
        """The LN pathway: ``[T, B, n_cells]``."""
        f = self.features(images)  # [B, N, 6]
        return self.time_bias[:, None] + torch.einsum("tuk,buk->tbu", self.feature_weights, f)


class RetinaLN(_RFBase):
    """Linear-nonlinear model on RF features (see the module docstring).

    Its parameters (time bias and feature weights, ``T × n_cells × 7``) are set by
    :meth:`fit_ridge`; they are ordinary parameters, so the model can also be fine-tuned by
    gradient descent.

    Shape
    -----
    images : Tensor [B, 1, H, W]; output : Tensor [T, B, n_cells] rates in expected spikes per bin.
    """

    def __init__(self, config: RFConfig | None = None, rfs=None):
        super().__init__(config if config is not None else RFConfig(), rfs)

    def forward(self, images: Tensor) -> Tensor:
        self.check_images(images)
        return self.rf_drive(images).clamp(min=0)

    @torch.no_grad()
    def fit_ridge(self, images: Tensor, psth: Tensor, ridge: float) -> None:
        """Least squares with an L2 penalty on the feature weights (not the time bias).

        Parameters
        ----------
        images : Tensor [n, 1, H, W]
            Training images (also set the feature normalisation).
        psth : Tensor [n, T, n_cells]
            Trial-averaged spike counts per bin.
        ridge : float
            Penalty λ ≥ 0 on the z-scored features' weights.
        """
        if not ridge >= 0:
            raise ValueError(f"ridge must be >= 0, got {ridge!r}")
        self.features.fit_normalization(images)
        f = self.features(images).double()  # [n, N, 6]
        n = f.shape[0]
        X = torch.cat([torch.ones(f.shape[1], n, 1, dtype=f.dtype, device=f.device), f.transpose(0, 1)], dim=2)  # [N, n, 7]
        # the features are linearly dependent (ON - OFF = linear contrast): a tiny floor on the
        # penalty keeps the system solvable at ridge = 0 (minimum-norm-like solution)
        reg = torch.eye(N_FEATURES + 1, dtype=f.dtype, device=f.device) * max(ridge, 1e-8 * n)
        reg[0, 0] = 0
        A = X.transpose(1, 2) @ X + reg  # [N, 7, 7]
        Y = psth.to(f).permute(2, 0, 1)  # [N, n, T]
        W = torch.linalg.solve(A, X.transpose(1, 2) @ Y)  # [N, 7, T]
        self.time_bias.copy_(W[:, 0].T.float())
        self.feature_weights.copy_(W[:, 1:].permute(2, 0, 1).float())


class RetinaRFSNN(SpikingLayers, _RFBase):
    """Spiking retina model with a spiking core and RF-placed readouts (module docstring).

    Parameters
    ----------
    config : RFConfig
    rfs : ReceptiveFields, optional
        The cells' RFs in the coordinates of the recording's frames (scaled to the input
        here). None: placeholders, for loading a checkpoint.
    generator : torch.Generator, optional
        Noise source of the noisy layers (NSNN).

    Shape
    -----
    images : Tensor [B, 1, H, W], normalised grey levels
    output : Tensor [T, K, B, n_cells] -- spikes in {0, 1} (one unit per cell), or the
    fraction of a cell's units that fire (``readout_units > 1``)
    """

    def __init__(self, config: RFConfig | None = None, rfs=None, generator: torch.Generator | None = None):
        config = config if config is not None else RFConfig()
        super().__init__(config, rfs)
        cfg = config
        c1, c2 = cfg.channels
        k1, k2 = cfg.kernel_sizes
        s = cfg.core_size
        self.conv1 = nn.Conv2d(2, c1, k1, padding=k1 // 2)
        self.conv2 = SpikeConv2d(c1, c2, k2, padding=k2 // 2)  # its input is spikes
        norm = cfg.has_core_norm(False)
        self.norm1 = nn.BatchNorm2d(c1) if norm else nn.Identity()
        self.norm2 = nn.BatchNorm2d(c2) if norm else nn.Identity()
        self.gain = nn.Parameter(torch.ones(cfg.n_steps, c1))
        self.offset = nn.Parameter(torch.zeros(cfg.n_steps, c1))
        centres, cov = self._core_geometry
        self.readout = GaussianReadout(centres, cov, (s, s), c2)
        self.core_weights = nn.Parameter(torch.ones(cfg.n_steps, cfg.n_cells)) if cfg.readout_time_weights else None
        self.neurons = nn.ModuleList([self._neuron(generator, "core"), self._neuron(generator, "core"),
                                      self._neuron(generator, "output", cfg.n_cells * cfg.readout_units)])
        self._register_unit_offsets()

    def core_drive(self, images: Tensor) -> Tensor:
        """conv1 of the pooled ON/OFF maps, once per image: ``[B, c1, s, s]``."""
        return self.norm1(self.conv1(F.avg_pool2d(on_off(images), self.config.core_pool)))

    def core_bias(self, i: int) -> Tensor:
        """The bias that sets core layer ``i``'s firing rate (calibrated before training)."""
        if i == 0:
            return self.offset
        return self.norm2.bias if isinstance(self.norm2, nn.BatchNorm2d) else self.conv2.bias

    def layer_current(self, i: int, x: Tensor, n_trials: int, images: Tensor | None = None) -> Tensor:
        """Input current of spiking layer ``i`` (time-major ``[T, K*B, ...]``).

        ``x`` is the core drive (i = 0) or the previous layer's spikes; the output layer
        (i = 2) also needs the images for its RF pathway.
        """
        T = self.config.n_steps
        if i == 0:
            cur = torch.addcmul(self.offset[:, None, :, None, None], self.gain[:, None, :, None, None], x[None])
            return cur.unsqueeze(1).expand(T, n_trials, *cur.shape[1:]).reshape(T, -1, *cur.shape[2:])
        if i == 1:
            y = self.norm2(self.conv2(x.flatten(0, 1)))
            return y.view(T, -1, *y.shape[1:])
        cur = self._units(self.rf_drive(images)[:, None] + self.core_readout(x, n_trials, images.shape[0]))
        return cur.reshape(T, -1, cur.shape[-1])

    def core_readout(self, x: Tensor, n_trials: int, batch: int) -> Tensor:
        """Each cell's Gaussian readout of the core's spikes ``x [T, K*B, c2, s, s]``: ``[T, K, B, n_cells]``."""
        core = self.readout(x).view(x.shape[0], n_trials, batch, -1)
        a = self.config.readout_synapse
        if a > 0:
            steps, y = [], torch.zeros_like(core[0])
            for r in core.unbind(0):
                y = a * y + (1 - a) * r
                steps.append(y)
            core = torch.stack(steps)
        return core * self.core_weights[:, None, None] if self.core_weights is not None else core

    def forward(self, images: Tensor, n_trials: int = 1, *, return_all: bool = False,
                return_probability: bool = False):
        """Sample ``n_trials`` spiking responses per image.

        Returns
        -------
        spikes : Tensor [T, K, B, n_cells]
        layers : list of Tensor [T, K*B, ...], with ``return_all``: every spiking layer's output
        probability : Tensor [T, K, B, n_cells], with ``return_probability`` (NSNN): each
            trial's per-step firing probability given its own history, ``F(ubar - v_th)`` of
            the output neurons' pre-noise potential. Its mean over trials has the expectation
            of the spike average, with less variance (Rao-Blackwellisation); its gradient is
            the NDL gradient of the output layer.
        """
        self.check_images(images)
        return self._spiking_forward(self.core_drive(images), n_trials, images.shape[0], images, return_all,
                                     return_probability)

    @torch.no_grad()
    def firing_rates(self, images: Tensor, n_trials: int = 1) -> list[float]:
        """Mean firing probability per time step of every spiking layer (core 1, core 2, output)."""
        _, layers = self.forward(images, n_trials, return_all=True)
        return [float(s.mean()) for s in layers]


@torch.no_grad()
def calibrate_rf_snn(model: RetinaRFSNN, images: Tensor, hidden_rate: float = 0.1, output_rate: Tensor | None = None,
                     n_trials: int = 2, iterations: int = 16) -> list[float]:
    """Set biases so that every layer fires at a realistic rate before training.

    The core layers' biases (conv1's temporal offset, conv2's bias) are bisected to a mean
    rate ``hidden_rate``; the output time bias ``a[t, u]`` is bisected element-wise so that
    the output units fire at ``output_rate[t, n]`` (e.g. the recorded mean PSTH of the
    training images), with the RF pathway and core readout at their initial (zero) weights.

    Returns
    -------
    list of float
        The achieved mean rate of every spiking layer.
    """
    cfg = model.config
    x = model.core_drive(images)
    rates = []
    for i, (neuron, bias) in enumerate(zip(model.neurons[:2], (model.core_bias(0), model.core_bias(1)))):
        current = model.layer_current(i, x, n_trials)
        shift = bisect_shift(lambda s: neuron(current + s).mean(), hidden_rate, iterations=iterations)
        bias += shift
        x = neuron(current + shift)
        rates.append(float(x.mean()))
    # the output layer: bisect the per-cell time bias a[t, n] on the cell's mean over its units
    B = images.shape[0]
    base = model._units(model.core_readout(x, n_trials, B) + model.rf_drive(images)[:, None]
                        - model.time_bias[:, None, None])
    target = torch.full((cfg.n_steps, cfg.n_cells), 0.07) if output_rate is None else output_rate
    target = target.to(base)
    units = cfg.readout_units

    def cell_rates(bias):
        cur = (base + bias.repeat_interleave(units, dim=1)[:, None, None]).reshape(cfg.n_steps, n_trials * B, -1)
        return model._run_output(cur)[0].view(cfg.n_steps, -1, cfg.n_cells, units).mean((1, 3))

    model.time_bias.copy_(bisect_shift(cell_rates, target, like=model.time_bias, iterations=iterations))
    rates.append(float(cell_rates(model.time_bias).mean()))
    return rates


class RetinaRFCNN(_RFBase):
    """Rate model: ReLU core, RF features, Gaussian readout, parameterised softplus (module docstring).

    The core's readout gives one value per cell, ``g_n``, which enters every time bin with
    its own weight ``c_n(t)`` (initialised to 1): ``rate_n(t) = PSoftplus(a_n(t) +
    Σ_k b_nk(t) f_nk + c_n(t) g_n)``.

    Shape
    -----
    images : Tensor [B, 1, H, W]; output : Tensor [T, B, n_cells] rates (expected spikes per bin)
    """

    def __init__(self, config: RFConfig | None = None, rfs=None):
        config = config if config is not None else RFConfig()
        super().__init__(config, rfs)
        cfg = config
        c1, c2 = cfg.channels
        k1, k2 = cfg.kernel_sizes
        norm = cfg.has_core_norm(True)
        self.core = nn.Sequential(
            nn.Conv2d(2, c1, k1, padding=k1 // 2, bias=not norm), nn.BatchNorm2d(c1) if norm else nn.Identity(),
            nn.ReLU(),
            nn.Conv2d(c1, c2, k2, padding=k2 // 2, bias=not norm), nn.BatchNorm2d(c2) if norm else nn.Identity(),
            nn.ReLU(),
        )
        centres, cov = self._core_geometry
        self.readout = GaussianReadout(centres, cov, (cfg.core_size,) * 2, c2)
        self.core_weights = nn.Parameter(torch.ones(cfg.n_steps, cfg.n_cells))
        self.output = PSoftplus(cfg.n_cells)

    def forward(self, images: Tensor) -> Tensor:
        self.check_images(images)
        g = self.readout(self.core(F.avg_pool2d(on_off(images), self.config.core_pool)))  # [B, N]
        return self.output(self.rf_drive(images) + self.core_weights[:, None] * g[None])

    @torch.no_grad()
    def initialise_rates(self, psth: Tensor) -> None:
        """Start at the training images' mean PSTH ``[T, n_cells]``: time bias = softplus⁻¹(psth)."""
        p = psth.clamp(min=1e-3)
        self.time_bias.copy_(p + torch.log(-torch.expm1(-p)))
