"""A retina model composed of parts: front end, core, readout, output (:mod:`neurocode.models.parts`).

:class:`ModelSpec` names one part of each family and its options; :class:`RetinaModel` builds
them in that order (front end, core, readout, output: the order in which their weights draw from
torch's generator) and runs a stimulus through them::

    stimulus -> front_end.drive -> core -> readout (+ front_end.linear) -> output -> response

:func:`calibrate_spiking` sets a spiking model's biases so that each layer starts at a realistic
firing rate. Weights of the model classes this replaced (``RetinaSNN``, ``RetinaCNN``, ``RetinaRFSNN``,
``RetinaRFCNN``, ``RetinaLN``, ``ClipSNN``, ``ClipCNN``, ``ClipLN``) load: their names are mapped
(:meth:`RetinaModel.upgrade_state_dict`); training does not resume from such a checkpoint.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from neurocode.models.parts import CORES, FRONT_ENDS, OUTPUTS, READOUTS
from neurocode.models.utils import bisect_shift
from neurocode.neurons import is_noisy

__all__ = ["ModelSpec", "RetinaModel", "build_retina_model", "calibrate_spiking", "calibrate_dense", "CALIBRATIONS",
           "start_rates", "window_fano", "calibrate_output_fano"]


@dataclass(frozen=True)
class ModelSpec:
    """One part of each family, its options, and the shapes they share.

    Attributes
    ----------
    front_end, core, readout, output : str
        Names in ``FRONT_ENDS``, ``CORES`` (or None: no core), ``READOUTS``, ``OUTPUTS``.
    n_cells, n_steps : int
        Cells and time bins T.
    input_size : int
        Stimulus side S in pixels.
    core_pool : int
        The core runs on maps of ``S // core_pool``.
    channels, kernel_sizes : (int, int)
        conv1 (the front end's) and conv2 (the core's); odd kernels ('same' padding).
    front_end_options, core_options, readout_options, output_options : dict
        Keyword options of each part's constructor (e.g. the neurons' ``NeuronSpec``, ``units``,
        ``substeps``, ``time_weights``, ``n_lags``).
    """

    front_end: str
    core: str | None
    readout: str
    output: str
    n_cells: int
    n_steps: int
    input_size: int = 64
    core_pool: int = 2
    channels: tuple[int, int] = (8, 16)
    kernel_sizes: tuple[int, int] = (9, 5)
    front_end_options: dict = field(default_factory=dict)
    core_options: dict = field(default_factory=dict)
    readout_options: dict = field(default_factory=dict)
    output_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for family, registry in (("front_end", FRONT_ENDS), ("core", CORES), ("readout", READOUTS),
                                 ("output", OUTPUTS)):
            name = getattr(self, family)
            if not (name in registry or (family == "core" and name is None)):
                raise ValueError(f"ModelSpec.{family} must be one of {sorted(registry)}, got {name!r}")


def _part(family: str, name: str, build, *args, **options):
    try:
        return build(*args, **options)
    except TypeError as exc:
        raise ValueError(f"ModelSpec.{family}_options for {name!r}: {exc}") from None


class RetinaModel(nn.Module):
    """A retina model from parts (module docstring).

    Parameters
    ----------
    spec : ModelSpec
    rfs : ReceptiveFields, optional
        The cells' RFs in the recording's frame coordinates (None: placeholders, for loading a checkpoint).
    generator : torch.Generator, optional
        Noise source of every noisy layer.

    Shape
    -----
    stimulus : Tensor [B, 1, S, S] (flash) or [F, B, S, S] (clips, time-major)
    output : spiking: Tensor [T, K, B, n_cells] (spike counts per bin, or a population's rate);
    rate: Tensor [T, B, n_cells] in expected spikes per bin
    """

    def __init__(self, spec: ModelSpec, rfs=None, generator: torch.Generator | None = None):
        super().__init__()
        self.spec = spec
        (c1, c2), (k1, k2) = spec.channels, spec.kernel_sizes
        has_core = spec.core is not None
        self.front_end = _part("front_end", spec.front_end, FRONT_ENDS[spec.front_end], spec.n_cells, spec.n_steps,
                               spec.input_size, spec.core_pool, rfs, channels=c1 if has_core else None,
                               kernel_size=k1 if has_core else None, **spec.front_end_options)
        self.core = _part("core", spec.core, CORES[spec.core], c1, c2, k2, generator=generator,
                          **spec.core_options) if has_core else None
        self.readout = _part("readout", spec.readout, READOUTS[spec.readout], spec.n_cells, spec.n_steps, rfs,
                             spec.input_size, spec.input_size // spec.core_pool, c2, **spec.readout_options)
        self.output = _part("output", spec.output, OUTPUTS[spec.output], spec.n_cells,
                            generator=generator, **spec.output_options)

    @property
    def spiking(self) -> bool:
        return self.output.spiking

    @property
    def neurons(self) -> list[nn.Module]:
        """The spiking layers in order: the core's, then the output neurons (empty for a rate model)."""
        core = list(self.core.neurons) if self.core is not None and self.core.spiking else []
        return core + ([self.output.neuron] if self.spiking else [])

    def _sources(self):
        """The modules that draw random numbers: noisy neurons, a sampling count output."""
        return [m for m in self.modules() if is_noisy(m) or getattr(m, "samples", False)]

    @property
    def generator(self) -> torch.Generator | None:
        """The noise source of the noisy layers or of a count output's samples (None: a deterministic model)."""
        return next((m.generator for m in self._sources()), None)

    @generator.setter
    def generator(self, generator: torch.Generator | None) -> None:
        for m in self._sources():
            m.generator = generator

    def forward(self, stimulus: Tensor, n_trials: int = 1, *, return_all: bool = False,
                return_probability: bool = False):
        """The response to a batch of stimuli (``n_trials`` sampled trials each for a spiking output).

        Returns
        -------
        Rate output: rates ``[T, B, n_cells]``. Spiking output: spikes ``[T, K, B, n_cells]``, then with
        ``return_all`` the list of every spiking layer's output ``[T, K*B, ...]``, and with
        ``return_probability`` (a noisy output, one unit per cell) each trial's firing probability per
        bin given its own history ``[T, K, B, n_cells]``: its mean over trials has the expectation of
        the spike average with less variance, and its gradient is the output layer's NDL gradient.
        """
        current, layers = self._current(stimulus, n_trials)
        if not self.spiking:
            return self.output(current)
        out, last, probability = self.output(current, return_probability)
        extra = ((layers + [last],) if return_all else ()) + ((probability,) if return_probability else ())
        return (out, *extra) if extra else out

    def _current(self, stimulus: Tensor, n_trials: int) -> tuple[Tensor, list[Tensor]]:
        """The output's input current (``[T, K, B, ...]`` for a spiking output, ``[T, B, ...]`` for a rate
        output) and the core's spiking layers."""
        if n_trials < 1:
            raise ValueError(f"n_trials must be >= 1, got {n_trials}")
        self.front_end.check(stimulus)
        K = n_trials if self.spiking else None
        features, layers = self.core(self.front_end.drive(stimulus), K or 1) if self.core is not None else (None, [])
        return self.readout(self.front_end.linear(stimulus), features, K), layers

    def log_prob(self, stimulus: Tensor, counts: Tensor) -> Tensor:
        """A count output's ``log P(counts)`` for recorded counts ``[T, R, B, N]``, elementwise."""
        return self.output.log_prob(self._current(stimulus, 1)[0], counts)

    def sample(self, stimulus: Tensor, n_trials: int) -> tuple[Tensor, Tensor]:
        """A count output's ``(counts [T, K, B, N], E[k] [T, B, N])``: K trials from its own likelihood."""
        return self.output.sample(self._current(stimulus, 1)[0], n_trials)

    @torch.no_grad()
    def firing_rates(self, stimulus: Tensor, n_trials: int = 1) -> list[float]:
        """Mean spikes per step of every spiking layer (core layers, then the output)."""
        _, layers = self.forward(stimulus, n_trials, return_all=True)
        return [float(s.mean()) for s in layers]

    def upgrade_state_dict(self, state: dict) -> dict:
        """``state`` with the weight names of a checkpoint written before the models were composed of
        parts mapped to this model's (unchanged if already of this layout)."""
        if any(k.startswith("net.") for k in state):  # a rate network under a count output (cnn_cmp)
            net = self.upgrade_state_dict({k[len("net."):]: v for k, v in state.items() if k.startswith("net.")})
            counts = {"output.distribution." + k[len("output."):]: v for k, v in state.items()
                      if k.startswith("output.")}
            return {**net, **counts}
        if any(k.startswith("front_end.") for k in state):
            return state
        rules = _legacy_names(self.spec)
        upgraded = {}
        for key, value in state.items():
            for old, new in rules:
                if re.match(old, key):
                    key = None if new is None else re.sub(old, new, key, count=1)
                    break
            if key is not None:  # None: a buffer now derived from the spec
                upgraded[key] = value
        return upgraded

    def _load_from_state_dict(self, state, prefix, *args) -> None:
        # runs before the parts read their weights: old names become theirs (an override, not a load
        # hook, which would hold the model in a reference cycle)
        own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        upgraded = self.upgrade_state_dict(own)
        if upgraded is not own:
            for k in own:
                del state[prefix + k]
            state.update({prefix + k: v for k, v in upgraded.items()})
        super()._load_from_state_dict(state, prefix, *args)


_FLASH_LN = [(r"^features\.", "front_end.features."), (r"^time_bias$", "front_end.time_bias"),
             (r"^feature_weights$", "front_end.feature_weights")]
_CLIP_LN = [(r"^linear\.", "front_end.filter."), (r"^bias$", "front_end.cell_bias"),
            (r"^linear_gain$", "front_end.filter_gain")]
#: Old weight names -> new, per (front end, core): the models composed of parts replaced.
_LEGACY_NAMES = {
    ("flash", None): _FLASH_LN,
    ("clips", None): _CLIP_LN,
    ("flash", "spiking"): _FLASH_LN + [
        (r"^conv1\.", "front_end.conv1."), (r"^norm1\.", "front_end.norm."), (r"^gain$", "front_end.gain"),
        (r"^offset$", "front_end.offset"), (r"^conv2\.", "core.conv2."), (r"^norm2\.", "core.norm."),
        (r"^neurons\.([01])\.", r"core.neurons.\1."), (r"^neurons\.2\.", "output.neuron."),
        (r"^unit_offsets$", None), (r"^readout\.", "readout.gaussian."),
        (r"^core_weights$", "readout.time_weights")],
    ("flash", "relu"): _FLASH_LN + [
        (r"^core\.0\.", "front_end.conv1."), (r"^core\.1\.", "core.norm_in."), (r"^core\.3\.", "core.conv2."),
        (r"^core\.4\.", "core.norm."), (r"^readout\.", "readout.gaussian."),
        (r"^core_weights$", "readout.time_weights")],
    ("clips", "spiking"): _CLIP_LN + [
        (r"^core\.conv1\.", "front_end.conv1."), (r"^core\.temporal$", "front_end.temporal"),
        (r"^core\.bias$", "front_end.bias"), (r"^conv2\.", "core.conv2."),
        (r"^neurons\.([01])\.", r"core.neurons.\1."), (r"^neurons\.2\.", "output.neuron."),
        (r"^unit_offsets$", None), (r"^readout\.", "readout.gaussian.")],
    ("clips", "relu"): _CLIP_LN + [
        (r"^core\.conv1\.", "front_end.conv1."), (r"^core\.temporal$", "front_end.temporal"),
        (r"^core\.bias$", "front_end.bias"), (r"^head\.0\.", "core.norm_in."), (r"^head\.2\.", "core.conv2."),
        (r"^head\.3\.", "core.norm."), (r"^readout\.", "readout.gaussian.")],
}


def _legacy_names(spec: ModelSpec) -> list[tuple[str, str | None]]:
    """The replaced class's weight names -> this spec's (regular expressions, first match wins)."""
    if spec.readout != "dense":
        return _LEGACY_NAMES[(spec.front_end, spec.core)]
    if spec.core == "relu":  # RetinaCNN
        return [(r"^features\.0\.", "front_end.conv1."), (r"^features\.1\.", "core.norm_in."),
                (r"^features\.4\.", "core.conv2."), (r"^features\.5\.", "core.norm."),
                (r"^readout\.1\.", "readout.linear."), (r"^readout\.2\.", "readout.norm."),
                (r"^readout\.3\.", "output.")]
    hidden = len(spec.core_options.get("hidden", ()))  # RetinaSNN
    return [(r"^conv1\.", "front_end.conv1."), (r"^gain$", "front_end.gain"), (r"^offset$", "front_end.offset"),
            (r"^conv2\.", "core.conv2."), (rf"^fcs\.{hidden}\.", "readout.linear."), (r"^fcs\.", "core.fcs."),
            (r"^out_time_bias$", "readout.time_bias"), (rf"^neurons\.{hidden + 2}\.", "output.neuron."),
            (r"^neurons\.", "core.neurons.")]


def build_retina_model(spec: ModelSpec, rfs=None, generator: torch.Generator | None = None) -> RetinaModel:
    """The :class:`RetinaModel` of ``spec`` (weights from torch's global generator)."""
    return RetinaModel(spec, rfs, generator)


@torch.no_grad()
def calibrate_spiking(model: RetinaModel, stimulus: Tensor, hidden_rate: float, output_rate: Tensor,
                      n_trials: int = 2, iterations: int = 16) -> list[float]:
    """Set a spiking model's biases so that every layer fires at a realistic rate before training.

    Layer by layer, the bias that shifts the layer's current (the front end's ``drive_bias``, then
    conv2's or its BatchNorm's) is bisected to a mean rate ``hidden_rate`` (spikes per neuron per
    step), the next layer calibrated on the calibrated layer's spikes; then the front end's
    ``output_bias`` is bisected element-wise so that each cell fires at ``output_rate`` (shaped like
    that bias: ``[T, n_cells]`` per bin, or ``[n_cells]``, spikes per bin), with the LN pathway
    and the core readout at their initial weights. A core without spiking layers (ReLU) is run as it is.

    Returns
    -------
    list of float
        The achieved mean rate of every spiking layer.
    """
    fe, core, out = model.front_end, model.core, model.output
    x = fe.drive(stimulus)
    rates = []
    if core.spiking:
        biases = (fe.drive_bias, core.layer_bias(1))
        for i, neuron in enumerate(core.neurons):
            current = core.layer_current(i, x, n_trials)
            shift = bisect_shift(lambda s: neuron(current + s).mean(), hidden_rate, iterations=iterations)
            biases[i].add_(shift)
            x = neuron(current + shift)
            rates.append(float(x.mean()))
    else:  # a ReLU core under a spiking output (a mixed model): only the output is calibrated
        x = core(x, n_trials)[0]
    linear = fe.linear(stimulus)
    T, B = linear.shape[:2]
    core_current = model.readout.core_current(x, n_trials, B)
    if core_current.dim() == 3:  # a static (ReLU) core's current drives every trial alike
        core_current = core_current[:, None].expand(-1, n_trials, -1, -1)
    base = out.unit_currents(fe.base_current(core_current, linear))
    bias, units, N = fe.output_bias, out.units, model.spec.n_cells
    per_bin = bias.dim() == 2

    def cell_rates(b):
        b = b.repeat_interleave(units, dim=-1)
        cur = (base + (b[:, None, None] if per_bin else b)).reshape(T, n_trials * B, -1)
        spikes = out.run(cur)[0].view(T, -1, N, units)
        return spikes.mean((1, 3)) if per_bin else spikes.mean((0, 1, 3))

    bias.copy_(bisect_shift(cell_rates, output_rate.to(base), like=bias, iterations=iterations))
    rates.append(float(cell_rates(bias).mean()))
    return rates


def window_fano(counts: Tensor, active: Tensor) -> Tensor:
    """Each cell's Fano factor of window counts, averaged over its counted (stimulus, cell) pairs.

    Parameters
    ----------
    counts : Tensor [B, K, N]
        Spike counts in the window per stimulus, trial and cell; NaN for a trial that does not exist.
    active : Tensor [B, N] of bool
        The pairs that count (e.g. a recorded mean count >= 0.5); a pair whose mean count is 0
        (Fano factor undefined) is left out.

    Returns
    -------
    Tensor [N]
        Population variance over trials / mean, averaged over a cell's counted pairs (NaN for a
        cell without one), as :func:`neurocode.analysis.distribution.fano_scores`.
    """
    present = torch.isfinite(counts)
    n = present.sum(1)
    c = torch.where(present, counts, torch.zeros_like(counts))
    mean = c.sum(1) / n.clamp(min=1)
    var = torch.where(present, (c - mean[:, None]).square(), torch.zeros_like(c)).sum(1) / n.clamp(min=1)
    counted = active & (mean > 0) & (n >= 2)
    ff = torch.where(counted, var / mean.clamp(min=1e-12), torch.zeros_like(mean))
    pairs = counted.sum(0)
    return torch.where(pairs > 0, ff.sum(0) / pairs.clamp(min=1), torch.full_like(ff[0], math.nan))


@torch.no_grad()
def calibrate_output_fano(model: RetinaModel, stimulus: Tensor, recorded_counts: Tensor, output_rate: Tensor | None, *,
                          n_trials: int = 16, iterations: int = 8, bound: float = math.log(2.0),
                          min_mean_count: float = 0.5, rate_iterations: int = 16, chunk: int = 4,
                          seed: int = 0, gains: tuple[float, ...] = ()) -> dict:
    """Set each output cell's noise scale so that its model Fano factor matches the recorded one.

    The model (its biases already at their rates, :func:`calibrate_spiking`) is run once on
    ``stimulus`` with ``n_trials`` trials up to the output neurons; then, jointly over cells, each
    cell's ``log sigma`` is bisected within ``+- bound`` of its value so that the Fano factor of its
    window count (:func:`window_fano`, over the pairs where the recorded mean count is at least
    ``min_mean_count``) matches the recorded one, the output bias re-bisected at every step to
    ``output_rate`` (the noise scale moves the rate). Every evaluation draws the same output noise
    (a generator seeded by ``seed``), so the Fano factor is a smooth function of sigma. Cells
    without a counted pair keep their sigma.

    Parameters
    ----------
    model : RetinaModel
        RF readout, a noisy spiking output with one unit and one ``log_sigma`` per cell.
    stimulus : Tensor [B, 1, S, S]
        Training images.
    recorded_counts : Tensor [B, R, N]
        Their recorded window counts per trial (NaN: no such trial).
    output_rate : Tensor or None
        Each cell's target rate, shaped like the front end's ``output_bias`` (spikes per bin); None:
        the rate the model has before the calibration (on ``stimulus``, the same noise draw), so
        that only the variability moves.
    gains : tuple of float
        Drive gains to try (an output with a ``drive_gain`` per cell, :class:`FanoEnd`): the
        calibration is run at each gain, and each cell keeps the gain (with its sigma and bias)
        whose PSTH on ``stimulus`` is nearest (mean squared difference) the model's PSTH before the
        calibration. A lower sigma steepens the count's rate curve; a lower gain on the drive
        flattens it again, so the cell's trials spread less while its mean response to each
        stimulus stays. Empty: the gain is left alone.

    Returns
    -------
    dict
        Per cell (lists, None where undefined): ``target_ff``, ``start_ff`` (before), ``model_ff``
        (after), ``sigma``, with ``gains`` also ``gain``; and ``r_sigma_target`` across cells.
    """
    out, fe = model.output, model.front_end
    neuron = getattr(out, "neuron", None)
    if getattr(neuron, "log_sigma", None) is None or neuron.log_sigma.dim() != 1 or out.units != 1:
        raise ValueError("calibrate_output_fano needs a noisy output with one unit and one learnable sigma per cell "
                         "(output_neuron learnable='neuron')")
    bias = fe.output_bias
    per_bin = bias.dim() == 2
    # the current without the output bias, chunked over images (the core holds T x K x B feature maps)
    base = torch.cat([model._current(stimulus[i:i + chunk], n_trials)[0] for i in range(0, len(stimulus), chunk)],
                     dim=2) - (bias[:, None, None] if per_bin else bias)
    T, K, B, N = base.shape
    recorded = recorded_counts.to(base)
    present = torch.isfinite(recorded)
    active = (torch.where(present, recorded, torch.zeros_like(recorded)).sum(1) / present.sum(1).clamp(min=1)
              >= min_mean_count)
    target = window_fano(recorded, active)
    has_target = torch.isfinite(target)
    start = neuron.log_sigma.detach().clone()
    # every evaluation on the same draws: the Fano factor and the rate are then smooth in sigma and bias
    noise = neuron.draw_noise(base.new_empty(T * out.substeps, K * B, N),
                              torch.Generator(device=base.device).manual_seed(seed))

    def spikes(b: Tensor) -> Tensor:
        return out.run((base + (b[:, None, None] if per_bin else b)).reshape(T, K * B, N), noise=noise)[0].view(
            T, K, B, N)

    def rate_of(b: Tensor) -> Tensor:
        s = spikes(b)
        return s.mean((1, 2)) if per_bin else s.mean((0, 1, 2))

    def fano_at(shift: Tensor) -> Tensor:
        neuron.log_sigma.copy_(start + shift)
        bias.copy_(bisect_shift(rate_of, output_rate.to(base), like=bias, iterations=rate_iterations))
        ff = window_fano(spikes(bias).sum(0).transpose(0, 1), active)
        return torch.nan_to_num(ff, nan=0.0)  # no spikes in any counted pair: no variability

    def calibrated() -> Tensor:
        """sigma (searched around ``start``) and bias set; the Fano factor they give."""
        shift = bisect_shift(fano_at, torch.where(has_target, target, start_ff), like=start, iterations=iterations,
                             bound=bound)
        return fano_at(torch.where(has_target, shift, torch.zeros_like(shift)))

    drive_gain = out.drive_gain
    if gains and drive_gain is None:
        raise ValueError("calibrate_output_fano: gains need an output with a drive gain per cell (FanoEnd.gains)")
    if output_rate is None:
        output_rate = rate_of(bias.detach().clone())
    start_ff = fano_at(torch.zeros_like(start))
    if not gains:
        model_ff = calibrated()
    else:
        reference = spikes(bias).mean(1)  # [T, B, N] the model's PSTH before the calibration
        tried = []  # per gain: PSTH error per cell, log sigma, bias, Fano factor
        for g in gains:
            drive_gain.fill_(g)
            ff = calibrated()
            err = (spikes(bias).mean(1) - reference).square().mean((0, 1))
            tried.append((err, neuron.log_sigma.detach().clone(), bias.detach().clone(), ff))
        best = torch.stack([t[0] for t in tried]).argmin(0)  # [N]: each cell's gain

        def chosen(i: int) -> Tensor:  # each cell's value at its gain, from [G, ..., N]
            values = torch.stack([t[i] for t in tried])
            return values.gather(0, best.expand_as(values[:1])).squeeze(0)

        drive_gain.copy_(torch.as_tensor(gains, dtype=base.dtype)[best])
        neuron.log_sigma.copy_(chosen(1))
        bias.copy_(chosen(2))
        model_ff = chosen(3)
    sigma = neuron.log_sigma.exp()

    def listed(x: Tensor) -> list:
        return [float(v) if math.isfinite(float(v)) else None for v in x]

    ok = has_target
    r = torch.corrcoef(torch.stack([sigma[ok], target[ok]]))[0, 1] if int(ok.sum()) > 2 else torch.tensor(math.nan)
    result = {"target_ff": listed(target), "start_ff": listed(torch.where(has_target, start_ff, math.nan)),
              "model_ff": listed(torch.where(has_target, model_ff, math.nan)), "sigma": listed(sigma),
              "r_sigma_target": float(r) if math.isfinite(float(r)) else None}
    if gains:
        result["gain"] = listed(drive_gain)
    return result


@torch.no_grad()
def calibrate_dense(model: RetinaModel, images: Tensor, hidden_rate: float = 0.1, output_rate: float | Tensor = 0.07,
                    n_trials: int = 2, iterations: int = 16) -> list[float]:
    """Set each layer's bias of a spiking model with a dense readout (the paper's network) so that it
    fires at a target rate (spikes per neuron per step).

    Layer by layer from the input, the layer's current on ``images`` is computed once and its bias
    (for conv1: the temporal offset) shifted by bisection until its mean firing probability is the
    target; the next layer is calibrated on the calibrated layer's spikes. With ``output_rate`` a
    ``[T, n_cells]`` target (e.g. the recorded mean PSTH of the training images) the readout's time
    bias is bisected per (bin, unit), so that the model starts from the stimulus-independent time
    course and learns the stimulus dependence on top of it.

    Returns
    -------
    list of float
        The achieved mean rate of every spiking layer, conv1 first.
    """
    fe, core, readout, out = model.front_end, model.core, model.readout, model.output
    x, rates = fe.drive(images), []
    n_core = len(core.neurons)
    for i in range(n_core + 1):
        last = i == n_core
        if last:
            neuron, current = out.neuron, readout(None, x, n_trials).flatten(1, 2)
        else:
            neuron, current = core.neurons[i], core.layer_current(i, x, n_trials)
        per_unit = last and isinstance(output_rate, Tensor)
        if per_unit:
            bias = readout.time_bias
            target = output_rate.to(current).repeat_interleave(out.units, dim=1)
            if out.unit_sum:
                target = target / out.units
        else:
            bias = readout.linear.bias if last else fe.drive_bias if i == 0 else core.layer_bias(i)
            target = torch.tensor(output_rate if last else hidden_rate, device=current.device)

        def shifted(shift):
            return current + shift[:, None, :] if per_unit else current + shift

        def rate_of(shift):
            spikes = neuron(shifted(shift))
            return spikes.mean(1) if per_unit else spikes.mean()

        shift = bisect_shift(rate_of, target, like=bias if per_unit else None, iterations=iterations)
        # every bias enters the current additively (conv1's offset[t, c] directly, conv2's unchanged
        # through the average pooling), so shifting it shifts the current
        bias.add_(shift)
        x = neuron(shifted(shift))
        rates.append(float(x.mean()))
    return rates


#: How a spiking model's biases are calibrated, by its readout: per cell at its RF, or layer by layer.
CALIBRATIONS = {"rf": calibrate_spiking, "dense": calibrate_dense}


@torch.no_grad()
def start_rates(model: RetinaModel, rate: Tensor) -> None:
    """A rate model starts at ``rate`` (shaped like the front end's ``output_bias``): bias = softplus^-1(rate)."""
    p = rate.clamp(min=1e-3)
    model.front_end.output_bias.copy_(p + torch.log(-torch.expm1(-p)))

