"""Model kinds: what a fit does differently for each model family, one object per family.

Every family implements the :class:`ModelKind` protocol: build its network, list the items a
training step draws from (stimuli, or (stimulus, trial) pairs), give the loss of a batch of
them, set its starting point (calibration, or a closed-form fit), and respond to one stimulus
(spikes and/or rates). :func:`neurocode.fitting.train` and :func:`neurocode.fitting.predict`
call these and never ask which family they hold. The entries (``MODEL_KINDS``):

``nsnn``
    :class:`SpikingKind` with noisy LIF neurons and noise-driven learning: K sampled trials per
    stimulus, compared as a set with the recorded trials (PSP-kernel MMD^2) or pairwise.
``dsnn``
    :class:`SpikingKind` without noise (surrogate gradients): its trials are identical, so one
    is computed and repeated.
``cnn``
    :class:`CNNKind`: rates; the paper's CNN trains on (stimulus, trial) pairs with the Poisson
    NLL, the RF-aware CNN on whole stimuli.
``cnn_cmp``
    :class:`CountCNNKind`: the CNN with a Conway-Maxwell-Poisson count output per (bin, cell)
    and a learnt dispersion per cell (:mod:`neurocode.models.outputs`), trained by its count
    NLL on every recorded trial; its trials are sampled from that likelihood.
``ln``
    :class:`LNKind`: the linear-nonlinear reference, fitted in closed form (ridge) on flashed
    stimuli and by gradient descent on clips.

A kind reads the fit's configuration (:class:`neurocode.fitting.FitConfig`) and data
(:class:`neurocode.fitting.FitData`) but imports neither: it sits between the models and losses
below it and the fitting loop above it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor, nn

from neurocode.data.receptive_fields import ReceptiveFields
from neurocode.losses import poisson_nll, psp_mmd_loss, set_mmd_loss
from neurocode.models.cnn import paper_cnn_spec
from neurocode.models.outputs import count_bound
from neurocode.models.parts.front_ends import spike_triggered_average
from neurocode.models.parts.outputs import FanoEnd, FanoStart
from neurocode.models.retina import (CALIBRATIONS, ModelSpec, RetinaModel, calibrate_output_fano, calibrate_spiking,
                                    start_rates)
from neurocode.models.rf import rf_model_spec
from neurocode.models.snn import paper_snn_spec

if TYPE_CHECKING:
    from neurocode.fitting import FitConfig, FitData

__all__ = ["ModelKind", "SpikingKind", "RateKind", "CNNKind", "CountCNNKind", "LNKind", "MODEL_KINDS", "Response",
           "SpikingFitConfig", "LNFitConfig", "PairsFitConfig"]

#: Fits an LN model to the same data (the clip models' starting point): returns (model, history).
LNFitter = Callable[[], "tuple[nn.Module, list[dict]]"]


def _count(value, name: str) -> int:
    """``value`` as an int >= 1, else a one-line error naming the setting ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class SpikingFitConfig:
    """The training settings of a fit of a spiking family (:class:`SpikingKind`: NSNN, DSNN); a fit of
    another family has none (``FitConfig.spiking`` is None).

    Attributes
    ----------
    model_trials : int
        K sampled trials per stimulus in a training step (a deterministic model computes one).
    tau_s : float
        PSP time constant of the loss's spike traces, in steps (paper: 2).
    hidden_rate : float
        Mean firing rate per step the hidden spiking layers are calibrated to before training.
    """

    model_trials: int = 8
    tau_s: float = 2.0
    hidden_rate: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_trials", _count(self.model_trials, "spiking.model_trials"))
        if not (isinstance(self.tau_s, (int, float)) and math.isfinite(self.tau_s) and self.tau_s >= 1):
            raise ValueError(f"spiking.tau_s must be a number of steps >= 1, got {self.tau_s!r}")
        if not (isinstance(self.hidden_rate, (int, float)) and 0 < self.hidden_rate < 1):
            raise ValueError(f"spiking.hidden_rate must be a rate per step in (0, 1), got {self.hidden_rate!r}")


@dataclass(frozen=True)
class LNFitConfig:
    """The LN reference's own settings (:class:`LNKind`); a fit of another family has none (``FitConfig.ln``
    is None).

    Attributes
    ----------
    ridge : tuple of float
        Flashed stimuli: the candidate ridge strengths; the best on the validation stimuli is used.
    """

    ridge: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)

    def __post_init__(self) -> None:
        try:
            ridge = tuple(float(v) for v in self.ridge)
        except (TypeError, ValueError):
            ridge = ()
        if not ridge or any(not (v >= 0 and math.isfinite(v)) for v in ridge):
            raise ValueError(f"ln.ridge must be non-negative numbers, got {self.ridge!r}")
        object.__setattr__(self, "ridge", ridge)


@dataclass(frozen=True)
class PairsFitConfig:
    """The settings of a fit that trains on (stimulus, trial) pairs (the paper's CNN,
    :meth:`ModelKind.trains_on_pairs`); a fit that trains on whole stimuli has none (``FitConfig.pairs`` is None).

    Attributes
    ----------
    batch_size : int
        (stimulus, trial) pairs per step.
    """

    batch_size: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch_size", _count(self.batch_size, "pairs.batch_size"))


@dataclass(frozen=True)
class Response:
    """A model's response to one stimulus.

    Attributes
    ----------
    rates : Tensor [T, N] float
        The PSTH in expected spikes per bin.
    spikes : Tensor [T, K, N], or None
        K sampled trials: spikes in {0, 1} (spiking models), counts per bin (the dispersion CNN;
        substep outputs); None for rate models.
    """

    rates: Tensor
    spikes: Tensor | None = None


@dataclass(frozen=True, kw_only=True)
class ModelKind:
    """The protocol of a model family (module docstring); subclasses fill in the methods.

    Attributes
    ----------
    name : str
    spiking : bool
        Emits spike trains (NSNN, DSNN); otherwise predicts rates (CNN, LN).
    noisy : bool
        Its trials differ (NSNN): K sampled trials per stimulus, a noise generator.
    default_loss : str
        The loss a fit of this kind uses unless told otherwise; ``losses`` are those that apply.
    reference : bool
        The LN reference model: every other fit reports its scores beside it.
    """

    name: str
    spiking: bool
    noisy: bool
    default_loss: str
    losses: tuple[str, ...]
    reference: bool = False

    def trials(self, k: int) -> int:
        """Trials to sample when K are wanted: a deterministic model's trials are identical."""
        return k if self.noisy else 1

    def trains_on_pairs(self, architecture: str) -> bool:
        """Whether a fit in ``architecture`` ("paper" or "rf") trains on (stimulus, trial) pairs
        (``FitConfig.pairs``) rather than on whole stimuli with all their trials (``batch_images``)."""
        return False

    def uses_rf(self, config: FitConfig) -> bool:
        """Whether the model reads each cell out at its receptive field (the RF-aware models)."""
        return config.architecture == "rf"

    def predicts_rates(self, config: FitConfig) -> bool:
        """Whether predictions are rates only (CNN, LN, population-mean readouts), not spikes."""
        return True

    def parts(self, clips: bool) -> tuple[str | None, str]:
        """The core and the output this family composes (:mod:`neurocode.models.parts`)."""
        raise NotImplementedError

    def build(self, config: FitConfig, n_cells: int, generator: torch.Generator | None = None,
              rfs: ReceptiveFields | None = None, *, n_steps: int = 30, n_lags: int = 0) -> nn.Module:
        """The network with ``n_cells`` outputs (weights from torch's global RNG): a :class:`RetinaModel`
        of the family's :meth:`parts` (:func:`model_spec`).

        ``rfs`` places the RF-aware models' features and readouts (None: placeholders, for
        loading a checkpoint). ``n_steps`` is T of flashed stimuli; ``n_lags > 0``: clips (a
        temporal filter of ``n_lags`` frames).
        """
        core, output = self.parts(n_lags > 0)
        chosen = {"core": core, "output": output, **(config.parts or {})}
        spec = model_spec(config, chosen["core"], chosen["output"], n_cells, n_steps, n_lags)
        # only noisy parts keep the generator (a mixed model's noisy core included)
        return RetinaModel(spec, rfs, generator)

    def training_items(self, config: FitConfig, data: FitData) -> tuple[Tensor, int]:
        """What one epoch draws batches from, and how many per step.

        Returns
        -------
        items : Tensor [n] of stimulus indices, or [P, 2] of (stimulus, trial)
        per_step : int
        """
        return torch.as_tensor(data.fit_idx), config.batch_images

    def loss(self, config: FitConfig, model: nn.Module, data: FitData, items: Tensor, device: torch.device,
             noise_gen: torch.Generator) -> Tensor:
        """Scalar training loss of a batch of ``items`` (rows of :meth:`training_items`)."""
        raise NotImplementedError

    def fit_closed_form(self, config: FitConfig, model: nn.Module, data: FitData, device: torch.device,
                        validate: Callable[[nn.Module], float]) -> list[dict] | None:
        """Fit without gradient descent and return the history, or None: train by gradient."""
        return None

    def start(self, config: FitConfig, model: nn.Module, data: FitData, device: torch.device,
              fit_ln: LNFitter) -> dict | None:
        """Set a fresh model's starting point on training stimuli only; a history record or None."""
        return None

    def after_epoch(self, config: FitConfig, model: nn.Module, data: FitData, device: torch.device,
                    epoch: int) -> dict | None:
        """Re-set part of the model after training epoch ``epoch`` (training stimuli only); a history record or None."""
        return None

    def after_training(self, config: FitConfig, model: nn.Module, data: FitData, device: torch.device) -> dict | None:
        """Re-set part of the fitted model (the weights the fit keeps) on training stimuli only; a history
        record or None. Runs once per fit: a resumed fit that already ran it does not run it again."""
        return None

    def respond(self, config: FitConfig, model: nn.Module, x: Tensor, n_trials: int, clips: bool) -> Response:
        """The response to one stimulus ``x`` (``[1, 1, S, S]`` frame or ``[F, 1, S, S]`` clip)."""
        return Response(rates=model(x)[:, 0])


@contextlib.contextmanager
def _predicting(model: nn.Module):
    """The model in eval mode, as it predicts (BatchNorm at its running statistics, which stay put),
    its own mode back afterwards."""
    training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(training)


def _initial_psth(data: FitData, device, max_count: int = 1) -> tuple[Tensor, Tensor]:
    """The training stimuli and their mean PSTH ``[T, N]``, below ``max_count`` spikes per bin."""
    fit = torch.as_tensor(data.fit_idx)
    return fit, data.psth(fit).mean(0).clamp(max=0.95 * max_count).to(device)


def _clip_rate(data: FitData, device) -> Tensor:
    """``[N]`` mean spikes per bin of the training clips (clamped away from 0 and 1)."""
    return data.psth(torch.as_tensor(data.fit_idx)).mean((0, 1)).clamp(min=1e-3, max=0.95).to(device)


def _start_from_ln(model: nn.Module, fit_ln: LNFitter, scale: float) -> tuple[nn.Module, dict]:
    """Copy a fitted LN model's linear pathway into a clip model, its gain times ``scale``."""
    with torch.random.fork_rng(devices=[]):
        ln, ln_history = fit_ln()
    with torch.no_grad():
        model.front_end.filter.load_state_dict(ln.front_end.filter.state_dict())
        model.front_end.filter_gain.copy_(ln.front_end.filter_gain.detach() * scale)
    return ln, ln_history[-1]


def model_spec(config: FitConfig, core: str | None, output: str, n_cells: int, n_steps: int,
               n_lags: int = 0) -> ModelSpec:
    """The :class:`ModelSpec` of a fit's model with this core and output, from the fit's architecture config
    ``config.arch``: the RF-aware models of an RFRateConfig / RFConfig (:func:`~neurocode.models.rf.rf_model_spec`;
    clips always), else the paper's network of an SNNConfig or a CNNConfig."""
    arch = dataclasses.replace(config.arch, n_cells=n_cells, n_steps=n_steps)
    if config.architecture == "rf":
        return rf_model_spec(arch, core, output, n_lags)
    if n_lags > 0:
        raise ValueError(f"clips (a continuous recording) need the RF-aware architecture (architecture='rf', the "
                         f"movie preset); this {config.model} fit uses the paper's network")
    spec = paper_snn_spec(arch) if config.arch_name == "snn" else paper_cnn_spec(arch)
    return dataclasses.replace(spec, output=output)


@dataclass(frozen=True, kw_only=True)
class SpikingKind(ModelKind):
    """NSNN (``noisy``) and DSNN: spike trains compared with the recorded trials."""

    spiking: bool = True
    default_loss: str = "mmd_linear"
    losses: tuple[str, ...] = ("mmd_linear", "mmd_gaussian", "mmd_gaussian_cell", "mmd_linear+gaussian_cell", "paired")

    def predicts_rates(self, config: FitConfig) -> bool:
        if config.architecture == "rf":
            return config.arch.readout_units > 1
        return config.arch.readout == "mean"

    def reports_probability(self, model: RetinaModel) -> bool:
        """An NSNN with one output unit per cell read out at its RF reports its firing probabilities
        (given each trial's own history): the PSTH without Bernoulli sampling noise."""
        return self.noisy and model.spec.readout == "rf" and model.output.units == 1

    def parts(self, clips):
        return "spiking", "noisy_lif" if self.noisy else "lif_population"

    def loss(self, config, model, data, items, device, noise_gen):
        K, tau_s = self.trials(config.spiking.model_trials), config.spiking.tau_s
        x = data.inputs(items, device)
        options = config.loss_options or {}
        if options.get("probability"):
            _, spikes = model(x, n_trials=K, return_probability=True)
        else:
            spikes = model(x, n_trials=K)  # [T, K, B, N]
        recorded = data.counts[items].to(device).permute(1, 2, 0, 3)  # [T, R, B, N]
        mask = data.trial_mask[items].T.to(device)  # [R, B]: which recorded trials exist
        if config.loss == "paired":
            T, K, B, N = spikes.shape
            if not bool(mask.all()):
                raise ValueError("loss 'paired' needs equal trial counts per stimulus; use 'mmd_linear'")
            pick = torch.randint(recorded.shape[1], (K,), generator=noise_gen, device=noise_gen.device)
            return psp_mmd_loss(spikes.reshape(T, K * B, N), recorded[:, pick.to(device)].reshape(T, K * B, N),
                                tau_s)
        if spikes.shape[1] == 1:
            # a deterministic model's trials are identical: repeating costs nothing
            spikes = spikes.expand(-1, 2, -1, -1)
        mask = None if bool(mask.all()) else mask
        if config.loss == "mmd_gaussian_cell":
            loss = set_mmd_loss(spikes, recorded, kernel="gaussian", tau_s=tau_s, recorded_mask=mask, per_cell=True)
        else:
            kernel = "gaussian" if config.loss == "mmd_gaussian" else "linear"
            loss = set_mmd_loss(spikes, recorded, kernel=kernel, tau_s=tau_s, recorded_mask=mask)
        if config.loss == "mmd_linear+gaussian_cell":
            loss = loss + options.get("cell_mmd_weight", 1.0) * set_mmd_loss(
                spikes, recorded, kernel="gaussian", tau_s=tau_s, recorded_mask=mask, per_cell=True)
        count_weight = options.get("count_weight", 0.0)
        if count_weight:
            # the window's spike count as a one-step trace (tau_s = 1: the PSP is the value itself)
            loss = loss + count_weight * set_mmd_loss(spikes.sum(0, keepdim=True), recorded.sum(0, keepdim=True),
                                                      kernel="linear", tau_s=1.0, recorded_mask=mask)
        return loss

    def start(self, config, model, data, device, fit_ln):
        fano = getattr(model.output, "fano_start", None)
        if (fano is not None or getattr(model.output, "fano_end", None) is not None) and (
                data.is_clips or model.spec.readout != "rf"):
            raise ValueError(f"output {model.spec.output!r} (a Fano calibration) applies to flashed images and the "
                             "RF readout (architecture='rf')")
        if data.is_clips:
            rate = _clip_rate(data, device)
            ln, ln_summary = _start_from_ln(model, fit_ln, config.arch.noise_sigma)
            return self._calibrate_clip_gains(config, model, data, device, rate, ln, ln_summary)
        fit, psth = _initial_psth(data, device, model.output.substeps)
        with torch.no_grad():
            model.front_end.prepare(data.images[fit].to(device))
            rates = CALIBRATIONS[model.spec.readout](model, data.images[fit[:16]].to(device),
                                                     hidden_rate=config.spiking.hidden_rate,
                              output_rate=psth, n_trials=self.trials(4))
        if fano is None:
            return {"epoch": 0, "initial_rates": rates}
        return {"epoch": 0, "initial_rates": rates, "fano_start": self._fano(config, model, data, device, fano)}

    def after_epoch(self, config, model, data, device, epoch):
        fano = getattr(model.output, "fano_start", None)
        if fano is None or epoch not in fano.again:
            return None
        with torch.no_grad():  # searched within +- bound of the spec's sigma again, not of the last result
            model.output.neuron.log_sigma.fill_(math.log(model.spec.output_options["neuron"].sigma))
        with _predicting(model):
            return {"epoch": epoch, "fano_again": self._fano(config, model, data, device, fano)}

    def after_training(self, config, model, data, device):
        fano = getattr(model.output, "fano_end", None)
        if fano is None:
            return None
        with _predicting(model):
            return {"fano_end": self._fano(config, model, data, device, fano)}

    @staticmethod
    def _fano(config, model, data, device, fano: FanoStart | FanoEnd) -> dict:
        """Each output cell's sigma set to its recorded Fano factor on the training images; its bias to the
        recorded mean PSTH (a start), or kept at the model's own rate, with a drive gain per cell if
        ``fano.gains`` (an end)."""
        fit, psth = _initial_psth(data, device, model.output.substeps)
        # the recorded window counts of the training images (NaN where a trial does not exist)
        counts = data.counts[fit].sum(1)
        counts = torch.where(data.trial_mask[fit][:, :, None], counts, torch.full_like(counts, math.nan))
        end = isinstance(fano, FanoEnd)
        return calibrate_output_fano(model, data.images[fit].to(device), counts, None if end else psth,
                                     n_trials=fano.n_trials, iterations=fano.iterations, bound=fano.bound,
                                     min_mean_count=fano.min_mean_count, seed=config.seed,
                                     gains=fano.gains if end else ())

    #: Multipliers of a spiking clip model's initial linear gain tried per cell.
    GAIN_MULTIPLIERS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)

    @torch.no_grad()
    def _calibrate_clip_gains(self, config, model, data, device, rate, ln, ln_summary) -> dict:
        """Biases at the mean rates, and per cell the linear gain whose spiking rate follows the LN rate best.

        A spiking output neuron's rate curve (the noise CDF through a leaky membrane with reset)
        is not the LN model's softplus: per cell, the gain (a multiple of ``noise_sigma × LN
        gain``) whose predicted rate correlates best with the fitted LN's rate on 16 training
        clips is kept.
        """
        fit = torch.as_tensor(data.fit_idx)
        pick = fit[torch.randperm(len(fit), generator=torch.Generator().manual_seed(config.seed))[:16]]
        x = data.inputs(pick, device)
        target = ln(x)  # [T, B, N]
        gain = model.front_end.filter_gain
        base = gain.detach().clone()
        k = self.trials(4)
        best_cc = torch.full_like(base, -2.0)
        best_gain = base.clone()
        for m in self.GAIN_MULTIPLIERS:
            gain.copy_(base * m)
            calibrate_spiking(model, x, hidden_rate=config.spiking.hidden_rate, output_rate=rate, n_trials=k)
            if self.reports_probability(model):
                predicted = model(x, n_trials=k, return_probability=True)[1].mean(1)
            else:
                predicted = model(x, n_trials=k).mean(1)
            a = predicted.flatten(0, 1) - predicted.flatten(0, 1).mean(0)
            b = target.flatten(0, 1) - target.flatten(0, 1).mean(0)
            cc = (a * b).sum(0) / (a.norm(dim=0) * b.norm(dim=0)).clamp(min=1e-12)
            better = cc > best_cc
            best_cc = torch.where(better, cc, best_cc)
            best_gain = torch.where(better, base * m, best_gain)
        gain.copy_(best_gain)
        rates = calibrate_spiking(model, x, hidden_rate=config.spiking.hidden_rate, output_rate=rate, n_trials=k)
        return {"epoch": 0, "initial_rates": rates, "ln_start": ln_summary,
                "gain_multipliers": (best_gain / base).tolist()}

    def respond(self, config, model, x, n_trials, clips):
        k = self.trials(n_trials)
        if self.reports_probability(model):
            spikes, probability = model(x, n_trials=k, return_probability=True)  # [T, k, 1, N] each
            rates = probability[:, :, 0].mean(1)
        else:
            spikes = model(x, n_trials=k)
            rates = None
        spikes = spikes.expand(-1, n_trials, -1, -1)[:, :, 0]  # [T, K, N]
        return Response(rates=spikes.mean(1) if rates is None else rates, spikes=spikes)


@dataclass(frozen=True, kw_only=True)
class RateKind(ModelKind):
    """Models that predict rates (CNN, LN): by default trained on whole stimuli against their
    trial-averaged counts (MSE, or the Poisson NLL)."""

    spiking: bool = False
    noisy: bool = False

    def loss(self, config, model, data, items, device, noise_gen):
        rates = model(data.inputs(items, device))  # [T, B, N]
        target = data.psth(items).to(device).transpose(0, 1)
        if config.loss == "mse":
            return (rates - target).square().mean()
        # all trials of each stimulus: the Poisson NLL summed over trials is R x that of the mean count
        return poisson_nll(rates, target)


@dataclass(frozen=True, kw_only=True)
class CNNKind(RateKind):
    """The CNN baseline: rates through a parameterised softplus."""

    default_loss: str = "poisson"
    losses: tuple[str, ...] = ("poisson", "mse")

    def trains_on_pairs(self, architecture):
        # the paper's CNN trains on (stimulus, trial) pairs, as published; the RF-aware CNN on
        # whole stimuli
        return architecture == "paper"

    def parts(self, clips):
        return "relu", "softplus_poisson"

    def training_items(self, config, data):
        if not self.trains_on_pairs(config.architecture):
            return super().training_items(config, data)
        fit_idx = torch.as_tensor(data.fit_idx)
        rows, trials = torch.nonzero(data.trial_mask[fit_idx], as_tuple=True)
        return torch.stack([fit_idx[rows], trials], dim=1), config.pairs.batch_size

    def loss(self, config, model, data, items, device, noise_gen):
        if items.dim() == 1:
            return super().loss(config, model, data, items, device, noise_gen)
        stimulus, trial = items[:, 0], items[:, 1]
        unique, inverse = torch.unique(stimulus, return_inverse=True)
        rates = model(data.inputs(unique, device))  # [T, U, N]
        target = data.counts[stimulus, :, trial].to(device).transpose(0, 1)  # [T, P, N]
        return poisson_nll(rates[:, inverse], target)

    def start(self, config, model, data, device, fit_ln):
        if data.is_clips:
            rate = _clip_rate(data, device)
            _, ln_summary = _start_from_ln(model, fit_ln, 1.0)
            start_rates(model, rate)
            return {"epoch": 0, "ln_start": ln_summary}
        if model.spec.readout == "rf":
            fit, psth = _initial_psth(data, device)
            with torch.no_grad():
                model.front_end.prepare(data.images[fit].to(device))
            start_rates(model, psth)
        return None


@dataclass(frozen=True, kw_only=True)
class CountCNNKind(CNNKind):
    """The CNN's network with a count output (``output``: "cmp" or "poisson_counts" of
    :data:`neurocode.models.parts.OUTPUTS`, a distribution of :data:`neurocode.models.outputs.OUTPUTS`).

    The network's softplus gives the output's intensity; the fit maximises the likelihood of
    every recorded trial's count per (bin, cell) (the dispersion needs the trial-to-trial
    spread, not the trial mean), trials absent from a stimulus (``trial_mask``) left out. It
    starts as the CNN does with the output at its Poisson point, the support's bound from the
    training counts. Its trials differ (``noisy``): each is drawn from its own likelihood, and
    its rate is the expected count.
    """

    noisy: bool = True
    output: str = "cmp"
    default_loss: str = "count_nll"
    losses: tuple[str, ...] = ("count_nll",)

    def predicts_rates(self, config):
        return False

    def parts(self, clips):
        return "relu", self.output

    def trains_on_pairs(self, architecture):
        # whole stimuli with all their trials, also for the paper's network (the CNN draws pairs)
        return False

    def loss(self, config, model, data, items, device, noise_gen):
        counts = data.counts[items].to(device).permute(1, 2, 0, 3)  # [T, R, B, N]
        mask = data.trial_mask[items].T.to(device)[None, :, :, None].to(counts.dtype)  # [1, R, B, 1]
        log_p = model.log_prob(data.inputs(items, device), counts)
        return -(log_p * mask).sum() / (mask.sum() * counts.shape[0] * counts.shape[-1])

    def start(self, config, model, data, device, fit_ln):
        if hasattr(model.output.distribution, "set_max_count"):
            # absent trials hold 0 counts: the training stimuli's largest count per bin
            model.output.distribution.set_max_count(count_bound(int(data.counts[torch.as_tensor(data.fit_idx)].max())))
        return super().start(config, model, data, device, fit_ln)

    def respond(self, config, model, x, n_trials, clips):
        counts, rates = model.sample(x, n_trials)  # [T, K, 1, N], [T, 1, N]
        return Response(rates=rates[:, 0], spikes=counts[:, :, 0])


@dataclass(frozen=True, kw_only=True)
class LNKind(RateKind):
    """The linear-nonlinear reference on receptive-field features (always RF-based)."""

    default_loss: str = "mse"
    losses: tuple[str, ...] = ("mse",)
    reference: bool = True

    def parts(self, clips):
        # the flash LN's rectified rate is what its ridge regression fits; on clips, trained by gradient, a softplus
        return None, "softplus" if clips else "rectified"

    def fit_closed_form(self, config, model, data, device, validate):
        """Flashed stimuli: ridge regression, its strength chosen on the validation stimuli, then
        refitted on all training stimuli. Clips (a separable filter) train by gradient."""
        if data.is_clips:
            return None
        images = data.images.to(device)
        psth = data.psth(torch.arange(data.counts.shape[0])).to(device)  # [n, T, N]
        history = []
        for ridge in config.ln.ridge:
            model.front_end.fit_ridge(images[data.fit_idx], psth[data.fit_idx], ridge)
            history.append({"ridge": ridge, "val_rate_cc": validate(model)})
        best = max(history, key=lambda h: -math.inf if math.isnan(h["val_rate_cc"]) else h["val_rate_cc"])
        model.front_end.fit_ridge(images[data.train_idx], psth[data.train_idx], best["ridge"])
        history.append({"chosen_ridge": best["ridge"], "val_rate_cc": best["val_rate_cc"],
                        "refit_on": "training + validation images"})
        return history

    def start(self, config, model, data, device, fit_ln):
        if not data.is_clips:
            return None  # flashed stimuli: fit_closed_form
        # the separable filter starts from the training clips' spike-triggered average (rank 1)
        fit = torch.as_tensor(data.fit_idx)
        clips, psth = data.images[fit], data.psth(fit)
        rate = _clip_rate(data, device)
        with torch.no_grad():
            model.front_end.filter.init_from_sta(spike_triggered_average(clips, psth, data.n_lags).to(device),
                                                 clips.to(device))
            model.front_end.output_bias.copy_(rate + torch.log(-torch.expm1(-rate)))
        return None


MODEL_KINDS: dict[str, ModelKind] = {
    "nsnn": SpikingKind(name="nsnn", noisy=True),
    "dsnn": SpikingKind(name="dsnn", noisy=False),
    "cnn": CNNKind(name="cnn"),
    "cnn_cmp": CountCNNKind(name="cnn_cmp"),
    "ln": LNKind(name="ln"),
}
