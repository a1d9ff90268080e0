"""Fitting retina models to recorded responses: configuration, data, training loop, predictions.

The training loop is model-agnostic: what differs between the model families (nsnn, dsnn,
cnn, cnn_cmp, ln) -- their networks, training items, losses, starting points and responses -- is
each family's :class:`~neurocode.kinds.ModelKind` (:mod:`neurocode.kinds`), and
:func:`train` only calls it.

Two architectures: ``"rf"`` (the quick and movie presets) gives every model the cells' receptive
fields -- RF features and a core readout placed at each RF (:mod:`neurocode.models.rf`, an
:class:`RFConfig`, or for the rate models an :class:`RFRateConfig`); ``"paper"`` keeps the paper's networks (an :class:`SNNConfig` or a
:class:`CNNConfig`). A fit holds the one architecture config it uses (``FitConfig.arch``).

Validation and the test images
------------------------------
Every fit carves a seeded validation set (``val_fraction`` of the training images) out of
its training images. The network is trained on the rest; every ``val_every`` epochs its
validation ``rate_cc`` is measured, and the weights of the best validation epoch are the
result (best checkpoint). :func:`train` only ever reads the training and validation images
of :class:`FitData`; the test images are read once, by the caller, after training.

Training is seeded and resumable: a checkpoint holding the model, optimiser, scheduler and
every random-number state is written atomically after each epoch, and resuming from it
gives the same result as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Literal, get_args

import numpy as np
import torch
from torch import Tensor, nn

from neurocode._io import atomic_path
from neurocode.checkpoints import CheckpointError, CheckpointFormat, checkpoint_state, read_checkpoint, \
    restore_training, save_checkpoint
from neurocode.data import ContinuousRecording, ImageNormalizer, Recording, downsample, kfold_split, load_recording
from neurocode.data.preprocessing import pad_to_square
from neurocode.data.receptive_fields import ReceptiveFields, receptive_fields_for
from neurocode.kinds import MODEL_KINDS, LNFitConfig, ModelKind, PairsFitConfig, SpikingFitConfig
from neurocode.models import CNNConfig, SNNConfig
from neurocode.models.parts import FRONT_ENDS
from neurocode.models.rf import RFConfig, RFRateConfig
from neurocode.neurons._kernels import subnormals_flushed

__all__ = [
    "MODELS",
    "LOSSES",
    "PRESETS",
    "FitConfig",
    "ClipsConfig",
    "SpikingFitConfig",
    "LNFitConfig",
    "PairsFitConfig",
    "FitData",
    "CheckpointError",
    "make_config",
    "reachable_settings",
    "prepare_data",
    "build_model",
    "train",
    "steps_per_epoch",
    "predict",
    "predict_stimuli",
    "load_checkpoint",
    "resolve_device",
    "check_device",
    "predicts_rates",
    "validation_split",
    "ln_reference_config",
    "fit_ln_reference",
]

#: The model names: those of the kinds registry (kinds.MODEL_KINDS), the one list of them.
MODELS: tuple[str, ...] = tuple(MODEL_KINDS)
ModelName = Literal[MODELS]  # type: ignore[valid-type]
LossName = Literal["mmd_linear", "mmd_gaussian", "mmd_gaussian_cell", "mmd_linear+gaussian_cell", "paired", "poisson",
                   "mse", "count_nll"]
ArchitectureName = Literal["paper", "rf"]
LOSSES: tuple[str, ...] = get_args(LossName)
ARCHITECTURES: tuple[str, ...] = get_args(ArchitectureName)
#: The architecture configs by the name a fit's settings, presets and config.json use for them ("rf": an
#: RFRateConfig, or an RFConfig, which adds the neurons, where the fit has spiking parts: :func:`arch_class`).
ARCH_CONFIGS: dict[str, type] = {"snn": SNNConfig, "cnn": CNNConfig, "rf": RFRateConfig}
ArchConfig = SNNConfig | CNNConfig | RFRateConfig
#: Config fields that may differ when a run is resumed (where it runs, not what it computes).
RESUMABLE_FIELDS = ("device", "threads")
CHECKPOINT_FORMAT = "neurocode-checkpoint"
CHECKPOINT_VERSION = 2


@dataclass(frozen=True)
class ClipsConfig:
    """How a fit cuts a continuous recording (movie, white noise) into clips
    (:meth:`~neurocode.data.ContinuousRecording.to_clips`): training on non-repeated time, testing on the
    repeated segment. A fit of flashed stimuli has none (``FitConfig.clips`` is None).

    Attributes
    ----------
    duration : float
        Each clip's response in s.
    history : float
        Stimulus before each clip's first response bin, in s.
    """

    duration: float = 1.0
    history: float = 0.3

    def __post_init__(self) -> None:
        for name, positive in (("duration", True), ("history", False)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
                    or value < 0 or (positive and value == 0):
                raise ValueError(f"clips.{name} must be a {'positive' if positive else 'non-negative'} number of "
                                 f"seconds, got {value!r}")


#: A fit's settings of the parts only some fits have, by their name in settings, presets and ``config.json``:
#: ``clips`` (continuous recordings), ``spiking`` (the spiking families' training), ``ln`` (the LN reference's)
#: and ``pairs`` (training on (stimulus, trial) pairs: the paper's CNN).
SECTIONS: dict[str, type] = {"clips": ClipsConfig, "spiking": SpikingFitConfig, "ln": LNFitConfig,
                             "pairs": PairsFitConfig}
#: The parts ``FitConfig.parts`` may choose by name (``parts={"output": "noisy_lif_fano_end"}``, ``--set
#: parts.output=...``), each from its registry in :mod:`neurocode.models.parts`.
PART_ROLES = ("core", "output")
#: The sections a fit holds exactly when its model family (in its architecture, "paper" or "rf") has the part
#: (the defaults where not given), by the test of whether it has it, and what a fit without it lacks.
KIND_SECTIONS: dict[str, tuple[Callable[[ModelKind, str], bool], str]] = {
    "spiking": (lambda kind, architecture: kind.spiking, "trains no spiking network"),
    "ln": (lambda kind, architecture: kind.reference, "is not the LN reference"),
    "pairs": (lambda kind, architecture: kind.trains_on_pairs(architecture),
              "trains on whole stimuli (batch_images), not on (stimulus, trial) pairs"),
}
#: Flat fields of configs written before the sections, and where each went (``make_config`` and ``--set`` take
#: the old names too).
MOVED_FIELDS: dict[str, tuple[str, str]] = {
    "clip_duration": ("clips", "duration"), "clip_history": ("clips", "history"),
    "model_trials": ("spiking", "model_trials"), "tau_s": ("spiking", "tau_s"),
    "hidden_rate": ("spiking", "hidden_rate"),
    "ln_ridge": ("ln", "ridge"), "batch_size": ("pairs", "batch_size"),
}


@dataclass(frozen=True)
class FitConfig:
    """Everything that defines a fit; saved as ``config.json`` in the run folder.

    Attributes
    ----------
    model : {"nsnn", "dsnn", "cnn", "cnn_cmp", "ln"}
    preset : str
        Name of the preset the values came from ("quick", "paper", or "custom").
    data : str or None
        Prepared HDF5 recording file; None is the bundled retina-2 file.
    recording : str or None
        Recording (group) name in ``data``; None is the natural-image recording.
    nwb_stimulus_column, nwb_stimulus : str or None
        An NWB ``data`` file's read options (:func:`~neurocode.data.nwb.read_nwb`'s
        ``stimulus_column``: the trials column with each trial's image; ``stimulus``: the
        stimulus object); None: read_nwb's defaults.
    fold, n_folds, seed : int
        Held-out image fold (k-fold by image, seeded by ``seed``) and the seed of
        initialisation, noise and batch order.
    input_size : int
        Frames are area-resampled to this side (non-square frames are first letterboxed to a
        square with the training frames' mean grey level; nothing is squashed).
    bin_size : float
        Time step in s (0.01: T = 30 over the 0-300 ms response). T is derived from the
        recording's window (or ``window``) and this, never fixed.
    window : (float, float) or None
        Response window in s to fit (inside the recording's); None: the recording's own.
    clips : ClipsConfig or None
        How a continuous recording is cut into clips (the movie preset's; None: the defaults of
        :class:`ClipsConfig` where the recording is continuous). Settings on a recording of flashed
        stimuli are an error when its data are prepared.
    epochs : int
        Passes over the training images.
    lr : float
        Initial Adam learning rate, cosine-decayed to 0 over all steps.
    batch_images : int
        Images per step (each with all its recorded trials), unless the fit trains on pairs.
    pairs : PairsFitConfig or None
        The settings of a fit that trains on (image, trial) pairs (the paper's CNN: ``batch_size``,
        pairs per step); None for the others (such a fit's None: the defaults).
    spiking : SpikingFitConfig or None
        The spiking families' training settings (``model_trials``, ``tau_s``, ``hidden_rate``); None for
        the other families (a spiking fit's None: the defaults).
    eval_trials : int
        Spiking models: sampled trials per held-out image for predictions and scores.
    loss : str
        "mmd_linear" / "mmd_gaussian" (set-level MMD^2), "mmd_gaussian_cell" (the Gaussian-kernel
        set MMD^2 of each cell's own PSP trace, averaged over cells: it sees each cell's
        variability), "mmd_linear+gaussian_cell" (the linear one plus ``loss_options["cell_mmd_weight"]`` times
        the per-cell Gaussian one) or "paired" (Eq. 27) for spiking models; "poisson" for the CNN;
        "count_nll" (its count output's NLL) for the dispersion CNN.
    val_fraction : float
        Fraction of the training images held out for validation (seeded, at least one).
    val_every : int
        Validate every this many epochs (and after the last).
    val_trials : int
        Spiking models: sampled trials per validation image.
    patience : int or None
        Stop early after this many validations without improvement (None: run all epochs;
        the best validation epoch's weights are kept either way).
    ln : LNFitConfig or None
        The LN reference's settings (``ridge``: the candidate ridge strengths, the best on the
        validation images is used); None for the other families (the LN's None: the defaults).
    loss_options : dict or None
        The loss's own options (None: none). Spiking models with a set-level MMD: ``count_weight``
        (float >= 0), the weight of a second MMD² term on each trial's spike count over the window
        (the same linear-kernel estimator on counts, so it does not penalise the model's
        trial-to-trial scatter). The RF-architecture NSNN: ``probability`` (bool), each sampled
        trial enters the loss as its output neurons' per-step firing probabilities given the
        trial's own history (spikes, resets and the noisy hidden layers stay sampled); their
        expectation is that of the spikes, so the set-level MMD keeps its meaning, and their
        gradient is the NDL gradient F'(ubar - v_th) of the output layer: only the Bernoulli
        sampling noise of the last step is removed (Rao-Blackwellisation). Loss
        "mmd_linear+gaussian_cell": ``cell_mmd_weight`` (float >= 0, default 1), the weight of the
        per-cell Gaussian-kernel MMD^2 beside the linear one.
    parts : dict or None
        The RF-aware model's parts by name in place of the family's own (None: the family's): a
        mixed model is one line, e.g. ``parts={"core": "relu"}`` for the NSNN (a ReLU core under
        its noisy LIF output) or ``parts={"core": "spiking"}`` for the CNN (a spiking core under
        its softplus-Poisson output; ``rf={"core_neuron": {"family": "noisy_lif"}}`` makes that
        core noisy). Keys ``core`` (:data:`~neurocode.models.parts.CORES`) and ``output``
        (:data:`~neurocode.models.parts.OUTPUTS`); the output must be what the family's loss reads
        (spikes for the NSNN and DSNN, rates for the rate models).
    arch : SNNConfig, CNNConfig, RFRateConfig, RFConfig or None
        The fit's architecture, the only one it holds: the RF-aware models of
        :mod:`neurocode.models.rf` (the LN model and clip models always), an :class:`RFConfig` where
        the fit has spiking parts, an :class:`RFRateConfig` (no neurons) where it has none
        (:func:`arch_class`); or the paper's network of the family, an :class:`SNNConfig` (NSNN,
        DSNN) or a :class:`CNNConfig` (CNNs). None: the family's paper network (the LN's
        RFRateConfig). Its ``input_size`` (and a spiking architecture's ``noisy``) follow the fit's. Settings, presets and ``config.json`` name it by
        :attr:`arch_name` ("snn", "cnn" or "rf": ``rf.noise_sigma``); :attr:`architecture` is "paper"
        or "rf".
    device : str
        "auto" (the CPU until the CUDA path is verified on a GPU: ``CUDA_VERIFIED``), "cpu", "cuda", ...
    threads : int or None
        torch CPU threads (None: torch's default).
    """

    model: ModelName = "nsnn"
    preset: str = "custom"
    data: str | None = None
    recording: str | None = None
    nwb_stimulus_column: str | None = None
    nwb_stimulus: str | None = None
    fold: int = 0
    n_folds: int = 5
    seed: int = 0
    input_size: int = 64
    bin_size: float = 0.01
    window: tuple[float, float] | None = None
    clips: ClipsConfig | None = None
    epochs: int = 64
    lr: float = 3e-4
    batch_images: int = 2
    pairs: PairsFitConfig | None = None
    spiking: SpikingFitConfig | None = None
    eval_trials: int = 64
    loss: LossName = "mmd_linear"
    val_fraction: float = 1 / 6
    val_every: int = 2
    val_trials: int = 16
    patience: int | None = None
    ln: LNFitConfig | None = None
    loss_options: dict | None = None
    parts: dict | None = None
    arch: ArchConfig | None = None
    device: str = "auto"
    threads: int | None = None

    def _check_parts(self) -> None:
        from neurocode.models.parts import CORES, OUTPUTS

        if self.parts is None:
            return
        if not isinstance(self.parts, dict) or set(self.parts) - set(PART_ROLES):
            raise ValueError(f"parts must be a dict with keys {' and/or '.join(map(repr, PART_ROLES))} or None, "
                             f"got {self.parts!r}")
        if self.architecture != "rf" or self.kind.reference:
            raise ValueError(f"parts applies to the RF-aware NSNN, DSNN and CNNs (architecture='rf'), got "
                             f"model={self.model!r}, architecture={self.architecture!r}")
        for part, registry in (("core", CORES), ("output", OUTPUTS)):
            name = self.parts.get(part)
            if part in self.parts and name not in registry:
                raise ValueError(f"parts[{part!r}] must be one of {sorted(registry)}, got {name!r}")
        output = self.parts.get("output")
        if output is not None and bool(getattr(OUTPUTS[output], "spiking", False)) != self.kind.spiking:
            raise ValueError(f"parts['output']={output!r} does not give what model {self.model!r}'s loss reads "
                             f"({'spikes' if self.kind.spiking else 'rates'})")

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.loss not in self.kind.losses:
            raise ValueError(f"loss {self.loss!r} does not apply to model {self.model!r} "
                             "(the CNN uses 'poisson', the dispersion CNN 'count_nll', LN 'mse', spiking models an "
                             "MMD or 'paired')")
        if not 0 < float(self.val_fraction) < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        options = self.loss_options or {}
        if not isinstance(options, dict) or set(options) - {"probability", "count_weight", "cell_mmd_weight"}:
            raise ValueError(f"loss_options must be a dict of 'probability' (bool), 'count_weight' (float >= 0) and "
                             f"'cell_mmd_weight' (float >= 0) or None, got {self.loss_options!r}")
        if options.get("probability") and not (self.kind.spiking and self.kind.noisy and self.architecture == "rf"):
            raise ValueError("loss_options 'probability' applies to the RF-architecture NSNN (model='nsnn', "
                             "architecture='rf')")
        count_weight = options.get("count_weight", 0.0)
        if not (count_weight >= 0 and math.isfinite(count_weight)):
            raise ValueError(f"loss_options 'count_weight' must be a non-negative number, got {count_weight!r}")
        if count_weight and not (self.kind.spiking and self.loss.startswith("mmd")):
            raise ValueError("loss_options 'count_weight' applies to spiking models with a set-level MMD loss")
        cell_mmd_weight = options.get("cell_mmd_weight", 1.0)
        if not (cell_mmd_weight >= 0 and math.isfinite(cell_mmd_weight)):
            raise ValueError(f"loss_options 'cell_mmd_weight' must be a non-negative number, got {cell_mmd_weight!r}")
        if "cell_mmd_weight" in options and self.loss != "mmd_linear+gaussian_cell":
            raise ValueError(f"loss_options 'cell_mmd_weight' applies to loss 'mmd_linear+gaussian_cell' only, got loss "
                             f"{self.loss!r}")
        self._check_parts()
        if self.patience is not None and int(self.patience) < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience!r}")
        # frozen: the normalised values (tuples, nested configs) are set once, here
        for name in ("epochs", "batch_images", "eval_trials", "input_size", "n_folds", "val_every", "val_trials"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0 <= self.fold < self.n_folds:
            raise ValueError(f"fold={self.fold} out of range for n_folds={self.n_folds} (0..{self.n_folds - 1})")
        for name in ("seed", "fold", "threads"):
            value = getattr(self, name)
            if value is None and name == "threads":
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"{name} must be an integer (--{name}), got {value!r}")
            object.__setattr__(self, name, int(value))
        if not 0 <= self.seed < 2 ** 63 - 1:
            raise ValueError(f"seed must be in [0, 2**63 - 1) (--seed), got {self.seed}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be a positive integer or None (--threads), got {self.threads!r}")
        check_device(self.device, available=False)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        value = self.bin_size
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
            raise ValueError(f"bin_size must be a positive number of seconds, got {value!r}")
        if self.window is not None:
            try:
                w = tuple(float(v) for v in self.window)
            except (TypeError, ValueError):
                raise ValueError(f"window must be (t_start, t_stop) in s, got {self.window!r}") from None
            if len(w) != 2 or not (math.isfinite(w[0]) and math.isfinite(w[1]) and w[0] < w[1]):
                raise ValueError(f"window must be (t_start, t_stop) with t_start < t_stop, got {self.window!r}")
            object.__setattr__(self, "window", w)
        usable = sorted({arch_class(self.model, arch_name(self.model, a), self.parts) for a in ARCHITECTURES},
                        key=lambda kind: kind.__name__)
        arch = arch_class(self.model, arch_name(self.model, "paper"), self.parts)() if self.arch is None else self.arch
        if type(arch) not in usable:
            raise ValueError(f"arch must be one of {', '.join(kind.__name__ for kind in usable)} for model "
                             f"{self.model!r} (parts {self.parts!r}), got {type(arch).__name__}")
        # the architecture follows the fit's model kind and input size
        shared = {"input_size": self.input_size}
        if isinstance(arch, (SNNConfig, RFConfig)):
            shared["noisy"] = self.kind.spiking and self.kind.noisy
        object.__setattr__(self, "arch", dataclasses.replace(arch, **shared))
        self._set_sections()
        if self.kind.spiking and self.kind.noisy and self.spiking.model_trials < 2 and self.loss != "paired":
            raise ValueError("spiking.model_trials must be >= 2 for a set-level MMD of a noisy model")

    def _set_sections(self) -> None:
        """Each section as its config (a dict of its fields is taken); those of :data:`KIND_SECTIONS` exactly for
        the families that have the part."""
        for name, kind in SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                value = _section(name, value)
            if value is not None and not isinstance(value, kind):
                raise ValueError(f"{name} must be a {kind.__name__} (or a dict of its fields) or None, got {value!r}")
            object.__setattr__(self, name, value)
        for name, (has, _) in KIND_SECTIONS.items():
            value = getattr(self, name)
            if has(self.kind, self.architecture) and value is None:
                object.__setattr__(self, name, SECTIONS[name]())
            elif not has(self.kind, self.architecture) and value is not None:
                raise ValueError(f"{name}={dataclasses.asdict(value)}: "
                                 f"{_no_section(name, self.model, self.architecture)}")

    def _moved(self, name: str):
        section, field = MOVED_FIELDS[name]
        if section == "clips":
            return getattr(self.clips or ClipsConfig(), field)
        if getattr(self, section) is None:
            raise AttributeError(f"{name}: {_no_section(section, self.model, self.architecture)}")
        return getattr(getattr(self, section), field)

    # the moved fields, read-only where old code reads them (clip_*: what a continuous recording is cut with)
    clip_duration = property(lambda self: self._moved("clip_duration"), doc="``clips.duration`` (s).")
    clip_history = property(lambda self: self._moved("clip_history"), doc="``clips.history`` (s).")
    model_trials = property(lambda self: self._moved("model_trials"), doc="``spiking.model_trials``.")
    tau_s = property(lambda self: self._moved("tau_s"), doc="``spiking.tau_s`` (steps).")
    hidden_rate = property(lambda self: self._moved("hidden_rate"), doc="``spiking.hidden_rate``.")
    ln_ridge = property(lambda self: self._moved("ln_ridge"), doc="``ln.ridge``.")
    batch_size = property(lambda self: self._moved("batch_size"), doc="``pairs.batch_size``.")

    @property
    def kind(self) -> ModelKind:
        return MODEL_KINDS[self.model]

    @property
    def arch_name(self) -> str:
        """The architecture config's name in settings, presets and config.json: "snn", "cnn" or "rf"."""
        return next(name for name, kind in ARCH_CONFIGS.items() if isinstance(self.arch, kind))

    @property
    def architecture(self) -> ArchitectureName:
        """ "rf" (the RF-aware models) or "paper" (the paper's networks), from the type of ``arch``."""
        return "rf" if isinstance(self.arch, RFRateConfig) else "paper"

    def to_dict(self) -> dict:
        """The fields as plain data, the architecture as ``architecture`` and its config under :attr:`arch_name`."""
        out = {}
        for name, value in asdict(self).items():
            out[self.arch_name if name == "arch" else name] = value
            if name == "model":
                out["architecture"] = self.architecture
        return out

    def differences(self, other: "FitConfig", ignore: tuple[str, ...] = ()) -> list[str]:
        """Fields (sorted) in which ``other`` is another run than this one: the one rule of "same run".

        Where a fit runs (``RESUMABLE_FIELDS``: device, threads) may change on resume; every
        other field may not (the epoch count sets the lr schedule). ``ignore`` adds fields the
        caller compares its own way.
        """
        a, b = self.to_dict(), other.to_dict()
        skip = set(RESUMABLE_FIELDS) | set(ignore)
        return sorted(k for k in a if k not in skip and a[k] != b.get(k))

    #: Fields of configs written before the loss's own options, and the option each became (its default dropped).
    LEGACY_FIELDS = {"probability_loss": ("probability", False), "count_weight": ("count_weight", 0.0),
                     "cell_mmd_weight": ("cell_mmd_weight", 1.0)}

    @classmethod
    def from_dict(cls, d: dict) -> "FitConfig":
        """The config of a :meth:`to_dict` record (``config.json``, a checkpoint), also one written when a
        fit held all three architecture configs (``snn``, ``cnn``, ``rf``; only the one its
        ``architecture`` and model used is kept) or older field names."""
        d = dict(d)
        for old, (option, default) in cls.LEGACY_FIELDS.items():
            if old in d:
                value = d.pop(old)
                if value != default:
                    d["loss_options"] = {**(d.get("loss_options") or {}), option: value}
        d["arch"] = _arch_from_dict(d)
        _sections_from_flat(d)
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config field(s) {sorted(unknown)}")
        if isinstance(d.get("window"), list):
            d["window"] = tuple(d["window"])
        return cls(**d)


def _section(name: str, values: dict):
    """The section ``name``'s config (:data:`SECTIONS`) of a dict of its fields; an unknown one is named."""
    kind = SECTIONS[name]
    unknown = set(values) - {f.name for f in fields(kind)}
    if unknown:
        raise ValueError(f"{name}: unknown {kind.__name__} field(s) {sorted(unknown)}; it has "
                         f"{', '.join(f.name for f in fields(kind))}")
    return kind(**values)


def _no_section(section: str, model: str, architecture: str) -> str:
    """Why a fit of ``model`` in ``architecture`` has no ``section`` of :data:`KIND_SECTIONS` (the end of a
    one-line error)."""
    has, lacks = KIND_SECTIONS[section]
    # a section some family holds in one architecture only names the architectures
    where = {a for kind in MODEL_KINDS.values() for a in ("paper", "rf") if has(kind, a) != has(kind, "rf")}
    fit = f"a {model} fit in the {architecture!r} architecture" if where else f"a {model} fit"
    users = ", ".join(name + "".join(f" in the {a!r} architecture" for a in sorted(where) if has(kind, a))
                      for name, kind in MODEL_KINDS.items() if has(kind, "paper") or has(kind, "rf"))
    return f"{fit} {lacks}, so it has no {section} settings (they apply to {users})"


def _sections_from_flat(d: dict) -> None:
    """Move a stored config's flat fields of before the sections (:data:`MOVED_FIELDS`) into ``d``'s sections.

    Such a record held them all for every fit: a spiking fit's three are its ``spiking``, the LN's ridge its
    ``ln``; the clip settings are ``clips`` of the movie preset and wherever they differ from the defaults (a fit
    of flashed stimuli stored the unused defaults); the rest were read by no part of the fit and are dropped.
    """
    flat = {name: d.pop(name) for name in MOVED_FIELDS if name in d}
    sections = {name: {MOVED_FIELDS[k][1]: v for k, v in flat.items() if MOVED_FIELDS[k][0] == name}
                for name in SECTIONS}
    kind = MODEL_KINDS.get(d.get("model", "nsnn"))
    architecture = "rf" if isinstance(d.get("arch"), RFRateConfig) else "paper"
    for name, (has, _) in KIND_SECTIONS.items():
        if sections[name] and kind is not None and has(kind, architecture) and d.get(name) is None:
            d[name] = sections[name]
    clips = sections["clips"]
    if clips and d.get("clips") is None and (d.get("preset") == "movie" or any(
            v != getattr(ClipsConfig(), k) for k, v in clips.items())):
        d["clips"] = clips


def _section_overrides(model: str, architecture: str, preset: dict, overrides: dict) -> dict:
    """The sections of a fit of ``model`` in ``architecture``: the preset's, updated by the ``overrides``
    (popped from it) of a section (a dict of its fields, a config, or None: no change) or of its old flat
    fields (:data:`MOVED_FIELDS`).

    A preset's section for a part the fit lacks does not apply; an override of one is a one-line error.
    """
    given: dict[str, dict] = {name: {} for name in SECTIONS}
    named = []  # the settings as the caller named them
    for name in SECTIONS:
        value = overrides.pop(name, None)
        if dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"{name} must be a dict of {SECTIONS[name].__name__} fields, a {SECTIONS[name].__name__} "
                             f"or None, got {value!r}")
        given[name].update(value or {})
        named += [f"{name}.{field}" for field in value or {}]
    for old in [k for k in overrides if k in MOVED_FIELDS]:
        name, field = MOVED_FIELDS[old]
        given[name][field] = overrides.pop(old)
        named.append(f"{old} (now {name}.{field})")
    sections = {name: {**(preset.get(name) or {}), **given[name]} for name in SECTIONS}
    for name, (has, _) in KIND_SECTIONS.items():
        if has(MODEL_KINDS[model], architecture):
            continue
        if given[name]:
            setting = next(n for n in named if f"{name}." in n)
            raise ValueError(f"{setting}: {_no_section(name, model, architecture)}")
        del sections[name]
    return {name: _section(name, values) for name, values in sections.items() if values}


def arch_name(model: str, architecture: str) -> str:
    """The name of the architecture config a fit of ``model`` uses in ``architecture`` ("paper" or "rf"):
    "rf" for the RF-aware models (the LN model always), else the family's paper network, "snn" or "cnn"."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    kind = MODEL_KINDS[model]
    if architecture == "rf" or kind.reference:
        return "rf"
    return "snn" if kind.spiking else "cnn"


def arch_class(model: str, name: str, parts: dict | None = None) -> type:
    """The class of the architecture config ``name`` of a fit of ``model`` with ``parts``: for "rf", an
    :class:`RFConfig` where the fit has a spiking part (NSNN, DSNN, a rate model's spiking core), else an
    :class:`RFRateConfig` (no neurons)."""
    if name != "rf":
        return ARCH_CONFIGS[name]
    core = parts.get("core") if isinstance(parts, dict) else None
    return RFConfig if MODEL_KINDS[model].spiking or core == "spiking" else RFRateConfig


def _neuron_fields() -> set[str]:
    """RFConfig's fields (and old field names) that an RFRateConfig lacks: the neurons' settings."""
    return {f.name for f in fields(RFConfig)} - {f.name for f in fields(RFRateConfig)} | set(RFConfig.LEGACY_FIELDS)


def _arch_config(kind: type, name: str, values: dict) -> ArchConfig:
    """The architecture config of class ``kind`` (named ``name`` in settings) of a dict of its fields."""
    unknown = set(values) - {f.name for f in fields(kind)} - set(getattr(kind, "LEGACY_FIELDS", ()))
    if unknown:
        why = " (a fit without spiking parts has no neurons)" if kind is RFRateConfig and unknown <= _neuron_fields() \
            else ""
        raise ValueError(f"{name}: unknown {kind.__name__} field(s) {sorted(unknown)}{why}; it has "
                         f"{', '.join(f.name for f in fields(kind))}")
    if hasattr(kind, "from_dict"):
        return kind.from_dict(values)
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _arch_from_dict(d: dict) -> ArchConfig | None:
    """Pop a stored config's ``architecture`` and architecture configs from ``d``; the one its fit uses.

    A record of one architecture config holds it under its name; a record from when a fit held all
    three (``snn``, ``cnn``, ``rf``) names the used one by ``architecture`` (default "paper") and model.
    """
    architecture = d.pop("architecture", None)
    stored = {name: d.pop(name) for name in ARCH_CONFIGS if name in d}
    model = d.get("model", "nsnn")
    if model not in MODELS:
        return None  # FitConfig names the bad model
    if architecture is None and len(stored) == 1:
        architecture = "rf" if "rf" in stored else "paper"
    name = arch_name(model, "paper" if architecture is None else architecture)
    if name not in stored:
        if stored:
            raise ValueError(f"the config's architecture {architecture!r} of model {model!r} is {name!r}, but it "
                             f"holds {sorted(stored)}")
        return arch_class(model, name, d.get("parts"))()
    values = stored[name]
    kind = arch_class(model, name, d.get("parts"))
    if not isinstance(values, dict):
        raise ValueError(f"config field {name!r} must be a dict of {kind.__name__} fields, got {values!r}")
    if kind is RFRateConfig:  # a rate model's record from when every RF-aware fit held the neurons' settings
        values = {k: v for k, v in values.items() if k not in _neuron_fields()}
    return _arch_config(kind, name, values)


def reachable_settings(config: FitConfig) -> list[str]:
    """The settings a fit exposes: every field of ``config``, the architecture's fields as
    ``{arch_name}.{field}`` (the names of ``--set``: ``rf.noise_sigma``), in field order.

    A field holding a dataclass contributes its fields (a section, :data:`SECTIONS`, only where the
    fit has it); every other field (a dict of a part's options included) is one setting. Derived
    fields (an architecture's ``input_size``, ``noisy``, ``n_cells``, ``n_steps``) count as well: this
    is the rule the count before FitConfig held one architecture was measured with (75 for every fit;
    then 50 for the quick NSNN and 40 for the quick CNN; with the sections 46 and 33).
    """
    def leaves(obj, prefix: str) -> list[str]:
        out = []
        for f in fields(obj):
            value = getattr(obj, f.name)
            if obj is config and f.name in SECTIONS and value is None:
                continue
            name = config.arch_name if obj is config and f.name == "arch" else f.name
            out += leaves(value, f"{prefix}{name}.") if dataclasses.is_dataclass(value) else [prefix + name]
        return out

    return leaves(config, "")


#: Named starting points; ``make_config`` applies them, then the caller's overrides.
#: Per preset: fit fields shared by all models ("common"; a section of :data:`SECTIONS` applies to the fits
#: that have the part), then per model (a name of ``MODELS``; absent: none) its own fit fields and
#: architecture ("snn" / "cnn" / "rf" dicts).
#:
#: "quick" (the default): the RF-aware models of :mod:`neurocode.models.rf` on 64-px images
#: (core on 32-px ON/OFF maps, RF features on the 64-px image), a couple of minutes at most
#: per fit on a 2-core CPU. Nothing in it depends on one recording: the RFs come from the
#: recording (or are estimated from its training images), the cell count and T from its data.
#: The DSNN reads each cell out as the mean of 32 deterministic units with fixed offsets at
#: the quantiles of the NSNN's noise (a frozen-noise population code: a deterministic network
#: cannot sample trials, and one binary unit per cell cannot follow rates of ~0.07 spikes per
#: 10-ms bin). How the settings were chosen (on validation images only) is in README.md.
#:
#: "movie": continuous recordings (white noise, movies) as the paper fitted its movie: 1-s clips
#: with 0.3 s of stimulus history, 33-ms bins, frames resampled to 90×90; the clip models (the
#: ``clips`` front end of :mod:`neurocode.models.parts`), trained on non-repeated time and tested on
#: the repeated segment.
#:
#: "paper": the paper's architecture and training (Adam, cosine decay from 3e-4, 64 epochs;
#: batch 64 = two images x 30 recorded trials for the spiking models, 64 (image, trial)
#: pairs for the CNN), now with validation and the best validation epoch's weights. The
#: paper-architecture DSNN reads each cell out as the mean of 64 units.
PRESETS: dict[str, dict[str, dict]] = {
    "paper": {
        "common": dict(architecture="paper", epochs=64, lr=3e-4, input_size=64, batch_images=2,
                       pairs=dict(batch_size=64), spiking=dict(model_trials=8), eval_trials=64, val_every=4),
        "dsnn": dict(snn=dict(readout_units=64, readout="mean")),
        "ln": dict(architecture="rf"),
    },
    "movie": {
        "common": dict(architecture="rf", lr=3e-3, input_size=90, bin_size=0.033, clips=dict(duration=1.0, history=0.3),
                       batch_images=8, pairs=dict(batch_size=64), spiking=dict(model_trials=4), eval_trials=32,
                       epochs=20, val_every=2, val_trials=8),
        "nsnn": dict(rf=dict(output_substeps=3)),
        "dsnn": dict(rf=dict(readout_units=16, output_substeps=3)),
        "ln": dict(lr=1e-2),
    },
    "quick": {
        "common": dict(architecture="rf", lr=3e-3, input_size=64, batch_images=4, pairs=dict(batch_size=64),
                       spiking=dict(model_trials=4), eval_trials=64, epochs=30, val_every=3),
        # three noisy output substeps per 10-ms bin (0-3 spikes per bin: no one-spike ceiling), the
        # noise scaled by sqrt(3) so the count's rate curve stays smooth and NDL's gradient of it
        # exact, the noise scale a parameter per cell: chosen on validation images
        # (docs/nsnn_vs_cnn.md, "Toward a generative NSNN")
        "nsnn": dict(rf=dict(core_norm=True, output_substeps=3,
                             output_neuron={"sigma": 0.2 * math.sqrt(3), "learnable": "neuron"})),
        "dsnn": dict(rf=dict(readout_units=32, core_norm=True)),
        "cnn": dict(epochs=40),
    },
}
for _preset in PRESETS.values():  # the dispersion CNN trains as the CNN does
    if "cnn" in _preset:
        _preset["cnn_cmp"] = dict(_preset["cnn"])


def make_config(model: str = "nsnn", preset: str = "quick", **overrides) -> FitConfig:
    """Build a :class:`FitConfig` from a preset plus overrides.

    ``overrides`` may set any field; a section (:data:`SECTIONS`: ``clips=``, ``spiking=``, ``ln=``) by a
    dict of the fields to change, or by its old flat fields (``model_trials=4``: :data:`MOVED_FIELDS`); a
    section the fit does not have (``spiking`` of a rate model) is a ValueError. ``architecture="paper"`` /
    ``"rf"`` picks the architecture (default: the preset's; the LN model is always "rf"); a dict under
    the architecture config's name (``snn=`` / ``cnn=`` / ``rf=``, :func:`arch_name`) or ``arch=``
    (whichever the fit uses) updates the preset's architecture field by field. A non-empty dict for
    another architecture config is a ValueError that names the one this fit uses.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    unknown = set(PRESETS[preset]) - {"common", *MODELS}
    if unknown:
        raise ValueError(f"PRESETS[{preset!r}] names model(s) {sorted(unknown)} that are not in MODELS {MODELS}")
    kwargs = {k: v for k, v in PRESETS[preset]["common"].items() if k not in SECTIONS}
    kwargs["loss"] = MODEL_KINDS[model].default_loss
    specific = dict(PRESETS[preset].get(model, {}))
    sections = {name: {**PRESETS[preset]["common"].get(name, {}), **specific.pop(name, {})} for name in SECTIONS}
    architecture = kwargs.pop("architecture", "paper")
    architecture = overrides.pop("architecture", specific.pop("architecture", architecture))
    name = arch_name(model, architecture)
    # the preset's entries for the model in another architecture than the one chosen do not apply
    arch = dict(specific.get(name) or {})
    kwargs.update({k: v for k, v in specific.items() if k not in ARCH_CONFIGS})
    given = {key: overrides.pop(key) for key in (*ARCH_CONFIGS, "arch") if key in overrides}
    kwargs.update(_section_overrides(model, "rf" if name == "rf" else "paper", sections, overrides))
    kwargs.update(overrides)
    kind = arch_class(model, name, kwargs.get("parts"))
    for key, values in given.items():
        if values and key not in (name, "arch"):
            raise ValueError(f"{key}={values!r}: a {model} fit in the {architecture!r} architecture uses {name!r} "
                             f"({kind.__name__}), not {key!r}; set {name}.FIELD")
        arch.update(values or {})
    return FitConfig(model=model, preset=preset, arch=_arch_config(kind, name, arch), **kwargs)


def predicts_rates(config: FitConfig) -> bool:
    """Whether the model's predictions are rates only (CNN, LN, population-mean readouts), not spikes."""
    return config.kind.predicts_rates(config)


def check_device(name: str, available: bool = True) -> None:
    """ValueError unless ``name`` is "auto" or a device torch knows (and, with ``available``,
    one this machine has: a stored configuration may name a GPU the reader lacks)."""
    if name == "auto":
        return
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N', ... (--device), got {name!r} "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise ValueError(f"device {name!r} (--device): fits run on 'cpu', 'cuda' (or 'auto')")
    if not available:
        return
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} (--device): no CUDA device on this machine; use 'cpu' or 'auto'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} (--device): this machine has {torch.cuda.device_count()} CUDA "
                             "device(s)")
    elif device.type != "cpu" and not getattr(torch, device.type).is_available():
        raise ValueError(f"device {name!r} (--device): not available on this machine")


#: Where and when the CUDA tests (``pytest -m cuda``) last passed on a real GPU; None: never, so
#: "auto" means the CPU and a CUDA device is used only when named, with a one-line notice.
CUDA_VERIFIED: str | None = None
_cuda_notice_shown = False


def resolve_device(name: str) -> torch.device:
    """The torch device of ``name`` ("auto": a GPU once the CUDA path is verified, else the CPU)."""
    global _cuda_notice_shown
    check_device(name)
    if name == "auto":
        return torch.device("cuda" if CUDA_VERIFIED and torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not CUDA_VERIFIED and not _cuda_notice_shown:
        _cuda_notice_shown = True
        print(f"neurocode: the CUDA path ({name}) has not yet been verified on a GPU (the CUDA tests have not run on "
              "one); proceeding", file=sys.stderr, flush=True)
    return device


@dataclass
class FitData:
    """A recording prepared for fitting.

    Attributes
    ----------
    images : Tensor [n_stimuli, 1, S, S] or [n_stimuli, F, S, S] float32
        Flashed frames, or clips of ``F = n_lags - 1 + T`` frames on the bin grid; resampled
        to ``S = input_size`` and normalised with statistics of the training stimuli only.
    counts : Tensor [n_stimuli, T, n_trials, n_cells] float32
        Recorded spike counts per time bin (absent trials are 0: see ``trial_mask``).
    train_idx, test_idx : np.ndarray of int
        Stimulus indices of the split (no stimulus in both).
    bin_size : float
        Time step in s.
    recording : Recording
        The recording as fitted (clips of a continuous recording; cropped to ``window``).
    fit_idx, val_idx : np.ndarray of int
        The training stimuli split into those the network is trained on and the seeded
        validation stimuli (together ``train_idx``).
    rfs : ReceptiveFields or None
        The cells' receptive fields in the (letterboxed) frames' pixel coordinates (stored,
        or estimated from the training stimuli only); None for the paper architecture.
    trial_mask : Tensor [n_stimuli, n_trials] bool, optional
        Which trials exist (None: all).
    n_lags : int
        Clips: frames of the models' temporal filter (``F - T + 1``); 0 for flashed frames.
    normalizer : ImageNormalizer, optional
        The training stimuli's normalisation, for new stimuli (:func:`predict_stimuli`).
    preprocessing : str
        How the frames became model input (letterboxing, resampling), for the record.
    """

    images: Tensor
    counts: Tensor
    train_idx: np.ndarray
    test_idx: np.ndarray
    bin_size: float
    recording: Recording
    fit_idx: np.ndarray | None = None
    val_idx: np.ndarray | None = None
    rfs: ReceptiveFields | None = None
    trial_mask: Tensor | None = None
    n_lags: int = 0
    normalizer: ImageNormalizer | None = None
    preprocessing: str = ""

    def __post_init__(self) -> None:
        if self.fit_idx is None or self.val_idx is None:
            self.fit_idx, self.val_idx = np.asarray(self.train_idx), np.asarray(self.train_idx[:0])
        if self.trial_mask is None:
            self.trial_mask = torch.ones(self.counts.shape[0], self.counts.shape[2], dtype=torch.bool)

    @property
    def n_cells(self) -> int:
        return self.counts.shape[-1]

    @property
    def n_steps(self) -> int:
        return self.counts.shape[1]

    @property
    def is_clips(self) -> bool:
        return self.n_lags > 0

    @property
    def front_end(self) -> type:
        """The front end of the stimulus type (:data:`~neurocode.models.parts.FRONT_ENDS`): its stimuli's layout."""
        return FRONT_ENDS["clips" if self.is_clips else "flash"]

    def inputs(self, idx, device=None) -> Tensor:
        """Model input for stimuli ``idx``: ``[B, 1, S, S]`` frames or time-major clips ``[F, B, S, S]``."""
        x = self.front_end.batch(self.images[torch.as_tensor(np.asarray(idx))])
        return x.to(device) if device is not None else x

    def test_counts(self) -> np.ndarray:
        """``[n_test, T, R, n_cells]``: the test stimuli's counts, their first R = fewest trials of any test stimulus."""
        R = int(self.trial_mask[torch.as_tensor(self.test_idx)].sum(1).min())
        return self.counts.numpy()[self.test_idx][:, :, :R]

    def psth(self, idx) -> Tensor:
        """``[n, T, n_cells]``: trial-averaged counts of stimuli ``idx`` (absent trials excluded)."""
        idx = torch.as_tensor(np.asarray(idx))
        n_trials = self.trial_mask[idx].sum(1).clamp(min=1).to(self.counts.dtype)
        return self.counts[idx].sum(2) / n_trials[:, None, None]


def validation_split(train_idx: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Carve a seeded validation set out of the training images.

    Returns
    -------
    fit_idx, val_idx : np.ndarray of int
        Sorted and disjoint, together ``train_idx``; ``val_idx`` holds
        ``max(1, round(fraction * len(train_idx)))`` images.

    Raises
    ------
    ValueError
        Fewer than 3 training images (nothing left to train on after validation).
    """
    train_idx = np.asarray(train_idx, dtype=np.int64)
    if train_idx.size < 3:
        raise ValueError(f"{train_idx.size} training stimuli: at least 3 are needed to hold out validation stimuli")
    n_val = min(train_idx.size - 2, max(1, int(round(fraction * train_idx.size))))
    val = np.sort(np.random.default_rng([seed, 7]).choice(train_idx, n_val, replace=False))
    return np.setdiff1d(train_idx, val), val


def _check_folds(name: str, n_stimuli: int, n_folds: int) -> None:
    """ValueError naming ``--n-folds`` unless every fold leaves 3 training stimuli (validation needs them)."""
    def enough(k: int) -> bool:
        return 2 <= k <= n_stimuli and n_stimuli - -(-n_stimuli // k) >= 3

    if enough(n_folds):
        return
    if n_stimuli < 4:
        raise ValueError(f"recording {name!r} has {n_stimuli} stimuli: a fit split by stimulus needs at least 4 "
                         "(3 to train on, one of them for validation, and 1 held out)")
    good = [k for k in range(2, n_stimuli + 1) if enough(k)]
    raise ValueError(f"recording {name!r} has {n_stimuli} stimuli: n_folds={n_folds} folds cannot hold one out and "
                     f"keep 3 to train on; pass --n-folds K (n_folds=K in Python) with {good[0]} <= K <= {good[-1]}")


def _model_frames(frames: np.ndarray, size: int, fill: float) -> tuple[np.ndarray, str]:
    """Letterbox to a square (``fill`` grey) and area-resample to ``size``; returns float32 frames and a note."""
    h, w = frames.shape[-2:]
    padded, _ = pad_to_square(frames, fill)
    S = padded.shape[-1]
    note = f"{h}x{w} frames"
    if (h, w) != (S, S):
        note += f" letterboxed to {S}x{S} with the training frames' mean grey level ({fill:.4g})"
    note += f", area-resampled to {size}x{size}"
    return downsample(padded, size), note


def prepare_data(config: FitConfig, recording: Recording | ContinuousRecording | None = None) -> FitData:
    """Load (unless given), bin, resample, normalise and split the recording for ``config``.

    * Flashed stimuli: k-fold split by stimulus (``fold`` of ``n_folds``, seeded), unless the
      recording designates its test stimuli.
    * A continuous recording is cut into clips (``clips``: :class:`ClipsConfig`) after its
      frames are resampled; its repeated segment is the test set.

    The normalisation and the receptive-field estimate use the training stimuli only.
    """
    rec = recording if recording is not None else load_recording(
        config.data, config.recording, stimulus_column=config.nwb_stimulus_column, stimulus=config.nwb_stimulus)
    if isinstance(rec, ContinuousRecording):
        fill = float(rec.frames.mean(dtype=np.float64))
        frames, note = _model_frames(rec.frames, config.input_size, fill)
        # stored RF contours are in display px of the original frames; after resampling they are estimated
        rec = dataclasses.replace(rec.with_frames(frames), receptive_fields=None)
        clips = config.clips or ClipsConfig()
        rec = rec.to_clips(clips.duration, config.bin_size, clips.history)
        note += f"; cut into {rec.n_stimuli} clips of {clips.duration:g} s + {clips.history:g} s history"
    else:
        if config.clips is not None:
            raise ValueError(f"clips={dataclasses.asdict(config.clips)}: recording {rec.name!r} holds flashed stimuli; "
                             "clips settings apply to continuous recordings (movies, white noise)")
        note = None
    if config.window is not None:
        rec = rec.cropped(config.window)
    if rec.stimuli is None:
        raise ValueError(f"recording {rec.name!r} has no stimulus frames: fitting needs them "
                         "(recordings without frames are for stimulus-free analyses)")
    counts = rec.binned(config.bin_size, padded=True)
    T = counts.shape[1]
    n_lags = 0
    if rec.is_clips:
        if config.architecture != "rf":
            raise ValueError(f"recording {rec.name!r} holds clips: they need the RF-aware architecture (--preset "
                             f"movie), not the paper's network of this {config.model} fit")
        Fr = rec.stimuli.shape[1]
        lead = (rec.window[0] - rec.stimulus_start) / config.bin_size
        if abs(rec.frame_interval - config.bin_size) > 1e-9 * config.bin_size or abs(lead - round(lead)) > 1e-6 \
                or Fr < round(lead) + T:
            raise ValueError(f"recording {rec.name!r}: clips on a {rec.frame_interval:g}-s frame grid starting "
                             f"{rec.window[0] - rec.stimulus_start:g} s before the window do not match bins of "
                             f"{config.bin_size:g} s (--bin-size must be the clips' frame interval)")
        n_lags = int(round(lead)) + 1
        rec = dataclasses.replace(rec, stimuli=rec.stimuli[:, : n_lags - 1 + T])
    if rec.test_stimuli is not None:
        test_idx = rec.test_stimuli
        train_idx = np.setdiff1d(np.arange(rec.n_stimuli), test_idx)
    else:
        _check_folds(rec.name, rec.n_stimuli, config.n_folds)
        train_idx, test_idx = kfold_split(rec.n_stimuli, config.n_folds, config.fold, config.seed)
    fit_idx, val_idx = validation_split(train_idx, config.val_fraction, config.seed)
    fill = float(rec.stimuli[train_idx].mean(dtype=np.float64))
    small, frame_note = _model_frames(rec.stimuli, config.input_size, fill)
    note = frame_note if note is None else note
    normalizer = ImageNormalizer().fit(small[train_idx])
    images = normalizer.transform(small)
    rfs = None
    if config.kind.uses_rf(config) or rec.is_clips:
        square = dataclasses.replace(rec, stimuli=pad_to_square(rec.stimuli, fill)[0])
        rfs = receptive_fields_for(square, train_idx, bin_size=config.bin_size)
    images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    return FitData(
        images=FRONT_ENDS["clips" if rec.is_clips else "flash"].stored(images),
        counts=torch.from_numpy(counts.astype(np.float32)),
        train_idx=train_idx,
        test_idx=test_idx,
        bin_size=config.bin_size,
        recording=rec,
        fit_idx=fit_idx,
        val_idx=val_idx,
        rfs=rfs,
        trial_mask=torch.from_numpy(rec.trial_mask()),
        n_lags=n_lags,
        normalizer=normalizer,
        preprocessing=note,
    )


def build_model(config: FitConfig, n_cells: int, generator: torch.Generator | None = None,
                rfs: ReceptiveFields | None = None, *, n_steps: int = 30, n_lags: int = 0) -> nn.Module:
    """The model ``config.model`` with ``n_cells`` outputs: :meth:`neurocode.kinds.ModelKind.build`."""
    return config.kind.build(config, n_cells, generator, rfs, n_steps=n_steps, n_lags=n_lags)


def _batches(n: int, size: int, gen: torch.Generator) -> list[Tensor]:
    order = torch.randperm(n, generator=gen)
    return list(order.split(size))


def steps_per_epoch(config: FitConfig, data: FitData) -> int:
    items, per_step = config.kind.training_items(config, data)
    return math.ceil(len(items) / per_step)


#: A fit's checkpoints (:mod:`neurocode.checkpoints`); ``model_kind`` is kept for the layout's sake.
FIT_CHECKPOINT = CheckpointFormat(CHECKPOINT_FORMAT, CHECKPOINT_VERSION, FitConfig,
                                  "refit with `neurocode fit ... --overwrite` (or another --out)", ("model_kind",))


def load_checkpoint(path: str | os.PathLike, config: FitConfig | None = None) -> dict:
    """Read and validate a fit's checkpoint; with ``config``, check it belongs to that run.

    Raises
    ------
    CheckpointError
        Unreadable, corrupt or incomplete file, not a neurocode checkpoint, an epoch outside
        the run, or written by a run with a different model or configuration
        (:func:`neurocode.checkpoints.read_checkpoint`).
    """
    return read_checkpoint(path, FIT_CHECKPOINT, config)


def _validation_rate_cc(config: FitConfig, model: nn.Module, data: FitData) -> float:
    """Mean over cells of the validation images' rate CC (PSTHs concatenated); a cell the model does
    not predict (constant prediction, varying recording) scores 0, as in the held-out scores, so an
    epoch cannot be chosen for leaving cells out."""
    from neurocode.analysis import rate_cc_per_cell

    _, rates = predict(config, model, data, data.val_idx, n_trials=config.val_trials, seed=config.seed + 20_000,
                       return_rates=True)
    recorded = data.psth(data.val_idx).numpy()  # [n, T, N]
    n, T, N = rates.shape
    cc = rate_cc_per_cell(recorded.reshape(n * T, N), rates.reshape(n * T, N), constant_model_r=0.0)
    cc = cc[np.isfinite(cc)]
    return float(cc.mean()) if cc.size else float("nan")


#: The fields an LN reference takes from the fit it accompanies (the data, split, seed and
#: where it runs); everything else is the LN entry of the fit's preset.
LN_SHARED_FIELDS = ("data", "recording", "fold", "n_folds", "seed", "input_size", "bin_size", "window", "clips",
                    "val_fraction", "device", "threads")


def ln_reference_config(config: FitConfig, clips: bool) -> FitConfig:
    """The one rule for the LN reference of a fit: the LN of the fit's preset (of "movie" for
    clips and "quick" for flashes when the fit's preset is custom), on the fit's data and split."""
    preset = config.preset if config.preset in PRESETS else ("movie" if clips else "quick")
    return make_config("ln", preset, **{name: getattr(config, name) for name in LN_SHARED_FIELDS})


def fit_ln_reference(config: FitConfig, data: FitData, path: str | os.PathLike | None = None
                     ) -> tuple[nn.Module, list[dict]]:
    """The LN reference of a fit (:func:`ln_reference_config`), fitted once per run folder.

    ``path`` (the run folder's ``ln_reference.pt``) caches it: a file written for the same LN
    settings and training stimuli is loaded instead of fitting again; otherwise the LN is
    fitted (global RNG untouched) and the file written atomically. Returns (model, history).
    """
    ln_config = ln_reference_config(config, data.is_clips)
    stamp = {"config": _ln_settings(ln_config), "train_idx": np.asarray(data.train_idx).tolist()}
    path = Path(path) if path is not None else None
    if path is not None and path.exists():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # unreadable or of another torch: fitted again below
            state = None
        if state is not None and _stored_ln_stamp(state["stamp"]) == json.loads(json.dumps(stamp)):
            with torch.random.fork_rng(devices=[]):
                model = build_model(ln_config, data.n_cells, None, data.rfs, n_steps=data.n_steps,
                                    n_lags=data.n_lags)
            model.load_state_dict(state["model"])
            return model.to(resolve_device(ln_config.device)), json.loads(state["history"])
    with torch.random.fork_rng(devices=[]):
        model, history = train(ln_config, data, progress=False)
    if path is not None:
        with atomic_path(path) as tmp:
            torch.save({"stamp": json.dumps(stamp), "model": {k: v.cpu() for k, v in model.state_dict().items()},
                        "history": json.dumps(history)}, tmp)
    return model, history


def _ln_settings(config: FitConfig) -> dict:
    """What an LN reference's cache is valid for: its settings, not where it runs (device, threads)."""
    return {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_FIELDS}


def _stored_ln_stamp(text: str) -> dict | None:
    """A cached LN reference's stamp, its settings as today's config writes them (a file written when a
    fit held all three architecture configs stays valid); None if they are no config."""
    stamp = json.loads(text)
    try:
        stamp["config"] = json.loads(json.dumps(_ln_settings(FitConfig.from_dict(stamp["config"]))))
    except (KeyError, TypeError, ValueError):
        return None
    return stamp


def _ln_fitter(config: FitConfig, data: FitData, path: str | os.PathLike | None = None):
    """The clip models' starting point: the fit's LN reference (:func:`fit_ln_reference`)."""
    return lambda: fit_ln_reference(config, data, path)


@subnormals_flushed  # noise densities' far tails would slow CPU convolutions ~10x (SubnormalsFlushed)
def train(
    config: FitConfig,
    data: FitData,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[int, dict], None] | None = None,
    ln_reference: str | os.PathLike | None = None,
) -> tuple[nn.Module, list[dict]]:
    """Fit ``config.model`` to the training images of ``data``, selecting on its validation images.

    Only ``data.fit_idx`` (trained on) and ``data.val_idx`` (validation) are read; the
    test images are not.

    Parameters
    ----------
    config : FitConfig
    data : FitData
    checkpoint : path, optional
        Written atomically after every epoch.
    resume : bool
        Continue from ``checkpoint`` if it exists (validated against ``config``).
    progress : bool
        Show a tqdm progress bar.
    on_epoch : callable, optional
        Called as ``on_epoch(epoch, record)`` after each epoch's checkpoint.
    ln_reference : path, optional
        Where the fit's LN reference is cached (:func:`fit_ln_reference`), for the models that
        start from it.

    Returns
    -------
    model : nn.Module
        The model with the weights of the best validation epoch (on ``config.device``).
    history : list of dict
        Per epoch: ``epoch``, ``loss`` (mean training loss), ``lr``, and ``val_rate_cc``
        where validated; the last record is ``{"best_epoch", "val_rate_cc"}``. LN: one
        record per candidate ridge strength and the chosen one.
    """
    from tqdm.auto import tqdm

    if config.threads:
        torch.set_num_threads(int(config.threads))
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    gens = {
        "noise": torch.Generator(device=device).manual_seed(config.seed),
        "order": torch.Generator().manual_seed(config.seed + 1),
    }
    kind = config.kind
    model = kind.build(config, data.n_cells, gens["noise"], data.rfs, n_steps=data.n_steps,
                       n_lags=data.n_lags).to(device)
    ckpt = Path(checkpoint) if checkpoint is not None else None
    closed_form = kind.fit_closed_form(config, model, data, device, lambda m: _validation_rate_cc(config, m, data))
    if closed_form is not None:
        if ckpt is not None:
            save_checkpoint(ckpt, checkpoint_state(FIT_CHECKPOINT, config, model, None, None, 1, closed_form, gens,
                                                   None, model_kind=config.model))
        return model, closed_form
    steps = steps_per_epoch(config, data)
    total = config.epochs * steps
    # fused: one pass over all parameters (torch's CPU default loops over the tensors, ~10 operations each)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=device.type in ("cpu", "cuda"))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    history: list[dict] = []
    start = 0
    best: dict | None = None  # {"epoch", "val_rate_cc", "model": state_dict}
    if resume and ckpt is not None and ckpt.exists():
        history, start, best = restore_training(ckpt, load_checkpoint(ckpt, config), FIT_CHECKPOINT, model,
                                                optimizer, scheduler, gens)
    else:
        initial = kind.start(config, model, data, device, _ln_fitter(config, data, ln_reference))
        if initial is not None:
            history.append(initial)
    items, per_step = kind.training_items(config, data)
    since_best = 0 if best is None else sum(1 for h in history if h.get("epoch", 0) > best["epoch"]
                                            and "val_rate_cc" in h)
    bar = tqdm(total=total, initial=start * steps, desc=f"fit {config.model}", disable=not progress, unit="step")
    try:
        for epoch in range(start, config.epochs):
            if config.patience is not None and since_best >= config.patience:
                break
            model.train()
            losses = []
            for b in _batches(len(items), per_step, gens["order"]):
                loss = kind.loss(config, model, data, items[b], device, gens["noise"])
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"the training loss became {loss.item()} in epoch {epoch + 1}; lower "
                                             f"lr ({_kept(ckpt, start, epoch)})")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.4g}")
            reset = kind.after_epoch(config, model, data, device, epoch + 1)
            if reset is not None:
                history.append(reset)
            record = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": scheduler.get_last_lr()[0]}
            if len(data.val_idx) and ((epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs):
                with torch.random.fork_rng(devices=[]):
                    val = _validation_rate_cc(config, model, data)
                record["val_rate_cc"] = val
                if best is None or (math.isfinite(val) and not val <= best["val_rate_cc"]):
                    best = {"epoch": epoch + 1, "val_rate_cc": val, "model": _weights_copy(model)}
                    since_best = 0
                else:
                    since_best += 1
                bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.4g}", val_cc=f"{val:.3f}")
            history.append(record)
            bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
            if bad:
                raise FloatingPointError(f"the weights {bad[:3]} became NaN or inf in epoch {epoch + 1}; lower lr "
                                         f"({_kept(ckpt, start, epoch)})")
            if ckpt is not None:
                save_checkpoint(ckpt, checkpoint_state(FIT_CHECKPOINT, config, model, optimizer, scheduler, epoch + 1,
                                                       history, gens, best, model_kind=config.model))
            if on_epoch is not None:
                on_epoch(epoch + 1, record)
    finally:
        bar.close()
    if best is not None:
        model.load_state_dict(best["model"])
    if not any("after_training" in h for h in history):
        finish = kind.after_training(config, model, data, device)
        if finish is not None:
            history.append({"after_training": True, **finish})
            if best is not None:
                best = {**best, "model": _weights_copy(model)}
            if ckpt is not None:  # the re-set weights are the result, and a resumed fit does not re-set them again
                epoch = max((h["epoch"] for h in history if "loss" in h), default=start)
                save_checkpoint(ckpt, checkpoint_state(FIT_CHECKPOINT, config, model, optimizer, scheduler, epoch,
                                                       history, gens, best, model_kind=config.model))
    if best is not None:
        history.append({"best_epoch": best["epoch"], "val_rate_cc": best["val_rate_cc"]})
    return model, history


def _weights_copy(model: nn.Module) -> dict[str, Tensor]:
    """A copy of the model's state_dict that later steps do not change."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _kept(ckpt: Path | None, start: int, epoch: int) -> str:
    """What a diverged fit leaves behind, for its error message."""
    if ckpt is None:
        return "no checkpoint was requested"
    if epoch == 0 or (epoch == start and not ckpt.exists()):
        return f"no epoch finished, so {ckpt} was not written"
    return f"{ckpt} keeps epoch {epoch}, the last good one"


@subnormals_flushed
def predict(config: FitConfig, model: nn.Module, data: FitData, stimuli: np.ndarray, n_trials: int | None = None,
            seed: int | None = None, return_rates: bool = False):
    """Model responses to stimuli: indices into the recording, or new frames/clips.

    ``stimuli`` is a 1-D array of stimulus indices of ``data``, or an array of new flashed
    frames ``[n, H, W]`` / clips ``[n, F, H, W]``, which go to :func:`predict_stimuli`.

    Returns
    -------
    np.ndarray
        Spiking models and the dispersion CNN: uint8 spikes (counts per bin) ``[n, T, K, n_cells]``
        with K = ``n_trials``
        (default ``config.eval_trials``; a DSNN's trials are identical). CNN, LN, and
        spiking models with a population-mean readout: float32 rates ``[n, T, n_cells]`` in
        expected spikes per bin.
    rates : np.ndarray, with ``return_rates``
        float32 ``[n, T, n_cells]``: the model's PSTH in expected spikes per bin. For an
        RF-architecture NSNN the mean over the K trials of each trial's firing probability
        given its own history (same expectation as the spike average, less sampling noise);
        for other spiking models the spike average.
    """
    x = np.asarray(stimuli)
    if x.ndim >= 3:
        return predict_stimuli(config, model, data, x, n_trials, seed, return_rates)
    if x.ndim != 1 or not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"stimuli must be 1-D integer indices or frames [n, H, W] / clips [n, F, H, W], got "
                         f"{x.dtype} {x.shape}")
    return _predict_inputs(config, model, data.images[torch.as_tensor(x)], data, n_trials, seed, return_rates)


def predict_stimuli(config: FitConfig, model: nn.Module, data: FitData, frames: np.ndarray,
                    n_trials: int | None = None, seed: int | None = None, return_rates: bool = False):
    """Model responses to new stimuli, prepared exactly as the fit's training stimuli.

    Parameters
    ----------
    frames : np.ndarray
        Flashed frames ``[n, H, W]`` (models of flashed stimuli), or clips ``[n, F, H, W]`` on
        the fit's bin grid with ``F >= data.n_lags`` (clip models; the first ``n_lags - 1``
        frames are history, so ``T = F - n_lags + 1`` bins are predicted). Any grey-level
        scale of the recording, any H×W: letterboxed with the training frames' mean grey
        level, area-resampled to ``input_size`` and normalised with the training statistics.

    Returns
    -------
    As :func:`predict`.
    """
    x = np.asarray(frames)
    data.front_end.check_stimuli(x.shape, data.n_lags)
    if not np.isfinite(x).all():
        raise ValueError("stimuli contain NaN or infinite values")
    largest, float32_max = float(np.abs(x).max()), float(np.finfo(np.float32).max)
    if largest > float32_max:  # the model's float32 would make them infinite
        raise ValueError(f"stimuli hold values up to {largest:g}, outside the float32 range (±{float32_max:.3g}) "
                         "the model computes in")
    fill = float(data.recording.stimuli[data.train_idx].mean(dtype=np.float64))
    small, _ = _model_frames(x, config.input_size, fill)
    images = torch.from_numpy(data.normalizer.transform(small))
    return _predict_inputs(config, model, data.front_end.stored(images), data, n_trials, seed, return_rates)


@torch.no_grad()
def _predict_inputs(config, model, images: Tensor, data: FitData, n_trials, seed, return_rates):
    """Responses to stored stimuli ``images`` (``data.images``' layout) of ``data``'s stimulus type."""
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, numbers.Integral)
                                 or n_trials < 1):
        raise ValueError(f"n_trials (--trials) must be an integer >= 1 (sampled trials per stimulus), got {n_trials!r}")
    device = next(model.parameters()).device
    model.eval()
    images = images.to(device)
    clips = data.is_clips

    def one(i):  # stimulus i as model input
        return data.front_end.batch(images[i : i + 1])

    if not (config.kind.spiking or config.kind.noisy):
        rates = torch.stack([config.kind.respond(config, model, one(i), 1, clips).rates
                             for i in range(images.shape[0])]).cpu().numpy().astype(np.float32)
        return (rates, rates) if return_rates else rates
    K = config.eval_trials if n_trials is None else int(n_trials)
    gen = torch.Generator(device=device).manual_seed(config.seed + 10_000 if seed is None else seed)
    previous = model.generator
    model.generator = gen
    try:
        responses = [config.kind.respond(config, model, one(i), K, clips) for i in range(images.shape[0])]
        rates = torch.stack([r.rates for r in responses]).cpu().numpy().astype(np.float32)
        if predicts_rates(config):  # a population rate code (DSNN readout) predicts rates, not spikes
            return (rates, rates) if return_rates else rates
        spikes = torch.stack([r.spikes for r in responses]).to(torch.uint8).cpu().numpy()  # [n, T, K, N]
        return (spikes, rates) if return_rates else spikes
    finally:
        model.generator = previous
