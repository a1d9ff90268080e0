"""Fitting retina models to recorded responses: configuration, data, training loop, predictions.

The training loop is model-agnostic over three model kinds:

``nsnn``
    :class:`~neurocode.models.RetinaSNN` with noisy LIF neurons (Gaussian sigma = 0.2) and
    noise-driven learning. Each step takes ``batch_images`` training images, samples
    ``model_trials`` (K) spiking responses per image and compares the set of K model
    trials with the set of the image's recorded trials (set-level PSP-kernel MMD^2,
    :func:`~neurocode.losses.set_mmd_loss`), or, with ``loss="paired"``, each model trial
    with one recorded trial (paper Eq. 27, :func:`~neurocode.losses.psp_mmd_loss`).
``dsnn``
    The same network with deterministic LIF neurons and the ERF surrogate gradient. Its
    trials are identical, so one is computed and repeated (no extra cost).
``cnn``
    :class:`~neurocode.models.RetinaCNN` predicting rates, trained with the Poisson
    negative log-likelihood of single recorded trials, ``batch_size`` (image, trial) pairs
    per step.
``ln``
    :class:`~neurocode.models.RetinaLN`, the linear-nonlinear reference on receptive-field
    features, fitted in closed form (ridge = MSE on the trial-averaged PSTH) with the ridge
    strength chosen on the validation images.

Two architectures (``architecture``): ``"rf"`` (the quick preset) gives every model the
cells' receptive fields -- RF features and a core readout placed at each RF
(:mod:`neurocode.models.rf`); ``"paper"`` keeps the paper's networks.

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
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from neurocode._io import atomic_path
from neurocode.data import ImageNormalizer, Recording, downsample, kfold_split, load_recording
from neurocode.data.receptive_fields import ReceptiveFields, receptive_fields_for
from neurocode.losses import poisson_nll, psp_mmd_loss, set_mmd_loss
from neurocode.models import CNNConfig, RetinaCNN, RetinaSNN, SNNConfig, calibrate_rates
from neurocode.models.rf import RetinaLN, RetinaRFCNN, RetinaRFSNN, RFConfig, calibrate_rf_snn

__all__ = [
    "MODELS",
    "LOSSES",
    "PRESETS",
    "FitConfig",
    "FitData",
    "CheckpointError",
    "make_config",
    "prepare_data",
    "build_model",
    "train",
    "predict",
    "load_checkpoint",
    "resolve_device",
    "predicts_rates",
    "validation_split",
]

MODELS = ("nsnn", "dsnn", "cnn", "ln")
LOSSES = ("mmd_linear", "mmd_gaussian", "paired", "poisson", "mse")
ARCHITECTURES = ("paper", "rf")
CHECKPOINT_FORMAT = "neurocode-checkpoint"
CHECKPOINT_VERSION = 2


class CheckpointError(RuntimeError):
    """A checkpoint file is unreadable, corrupt or belongs to another run."""


@dataclass
class FitConfig:
    """Everything that defines a fit; saved as ``config.json`` in the run folder.

    Attributes
    ----------
    model : {"nsnn", "dsnn", "cnn", "ln"}
    architecture : {"rf", "paper"}
        "rf": RF-aware models (:mod:`neurocode.models.rf`, configured by ``rf``); "paper":
        the paper's networks (``snn`` / ``cnn``). The LN model is always RF-based.
    preset : str
        Name of the preset the values came from ("quick", "paper", or "custom").
    data : str or None
        Prepared HDF5 recording file; None is the bundled retina-2 file.
    recording : str or None
        Recording (group) name in ``data``; None is the natural-image recording.
    fold, n_folds, seed : int
        Held-out image fold (k-fold by image, seeded by ``seed``) and the seed of
        initialisation, noise and batch order.
    input_size : int
        Images are area-averaged from 256 px to this side.
    bin_size : float
        Time step in s (0.01: T = 30 over the 0-300 ms response).
    epochs : int
        Passes over the training images.
    lr : float
        Initial Adam learning rate, cosine-decayed to 0 over all steps.
    batch_images : int
        Spiking models: images per step (each with all its recorded trials).
    batch_size : int
        CNN: (image, trial) pairs per step.
    model_trials : int
        Spiking models: K sampled trials per image in training.
    eval_trials : int
        Spiking models: sampled trials per held-out image for predictions and scores.
    loss : str
        "mmd_linear" / "mmd_gaussian" (set-level MMD^2) or "paired" (Eq. 27) for spiking
        models; "poisson" for the CNN.
    tau_s : float
        PSP time constant in steps (paper: 2).
    hidden_rate : float
        Initial mean firing rate of hidden spiking layers (calibrated on training images).
    val_fraction : float
        Fraction of the training images held out for validation (seeded, at least one).
    val_every : int
        Validate every this many epochs (and after the last).
    val_trials : int
        Spiking models: sampled trials per validation image.
    patience : int or None
        Stop early after this many validations without improvement (None: run all epochs;
        the best validation epoch's weights are kept either way).
    ln_ridge : tuple of float
        LN: candidate ridge strengths, the best on the validation images is used.
    probability_loss : bool
        RF-architecture NSNN: each sampled trial enters the loss as its output neurons'
        per-step firing probabilities given the trial's own history (spikes, resets and the
        noisy hidden layers stay sampled). Their expectation is that of the spikes, so the
        set-level MMD keeps its meaning, and their gradient is the NDL gradient F'(ubar - v_th)
        of the output layer; only the Bernoulli sampling noise of the last step is removed
        (Rao-Blackwellisation).
    snn, cnn, rf : SNNConfig, CNNConfig, RFConfig
        Architectures (only the one matching ``model`` and ``architecture`` is used).
    device : str
        "auto" (a GPU when present, else CPU), "cpu", "cuda", ...
    threads : int or None
        torch CPU threads (None: torch's default).
    """

    model: str = "nsnn"
    architecture: str = "paper"
    preset: str = "custom"
    data: str | None = None
    recording: str | None = None
    fold: int = 0
    n_folds: int = 5
    seed: int = 0
    input_size: int = 64
    bin_size: float = 0.01
    epochs: int = 64
    lr: float = 3e-4
    batch_images: int = 2
    batch_size: int = 64
    model_trials: int = 8
    eval_trials: int = 64
    loss: str = "mmd_linear"
    tau_s: float = 2.0
    hidden_rate: float = 0.1
    val_fraction: float = 1 / 6
    val_every: int = 2
    val_trials: int = 16
    patience: int | None = None
    ln_ridge: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
    probability_loss: bool = False
    snn: SNNConfig = field(default_factory=SNNConfig)
    cnn: CNNConfig = field(default_factory=CNNConfig)
    rf: RFConfig = field(default_factory=RFConfig)
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        expected = {"cnn": ("poisson",), "ln": ("mse",)}.get(self.model, ("mmd_linear", "mmd_gaussian", "paired"))
        if self.loss not in expected:
            raise ValueError(f"loss {self.loss!r} does not apply to model {self.model!r} "
                             "(the CNN uses 'poisson', LN 'mse', spiking models an MMD or 'paired')")
        if not 0 < float(self.val_fraction) < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if self.probability_loss and not (self.model == "nsnn" and self.architecture == "rf"):
            raise ValueError("probability_loss applies to the RF-architecture NSNN (model='nsnn', architecture='rf')")
        if self.patience is not None and int(self.patience) < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience!r}")
        self.ln_ridge = tuple(float(v) for v in self.ln_ridge)
        if not self.ln_ridge or any(not (v >= 0 and math.isfinite(v)) for v in self.ln_ridge):
            raise ValueError(f"ln_ridge must be non-negative numbers, got {self.ln_ridge!r}")
        for name in ("epochs", "batch_images", "batch_size", "eval_trials", "input_size", "n_folds", "val_every",
                     "val_trials"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.model_trials < 2 and self.model == "nsnn" and self.loss != "paired":
            raise ValueError("model_trials must be >= 2 for a set-level MMD of a noisy model")
        if not 0 <= self.fold < self.n_folds:
            raise ValueError(f"fold={self.fold} out of range for n_folds={self.n_folds} (0..{self.n_folds - 1})")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if isinstance(self.snn, dict):
            self.snn = SNNConfig(**self.snn)
        if isinstance(self.cnn, dict):
            self.cnn = CNNConfig(**self.cnn)
        if isinstance(self.rf, dict):
            self.rf = RFConfig(**self.rf)
        self.snn.noisy = self.rf.noisy = self.model == "nsnn"
        self.snn.input_size = self.cnn.input_size = self.rf.input_size = self.input_size
        self.snn.n_steps = self.cnn.n_steps = self.rf.n_steps = self.n_steps

    @property
    def n_steps(self) -> int:
        return int(round(0.3 / self.bin_size))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FitConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config field(s) {sorted(unknown)}")
        d = dict(d)
        for key, kind in (("snn", SNNConfig), ("cnn", CNNConfig), ("rf", RFConfig)):
            if key in d and isinstance(d[key], dict):
                d[key] = kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in d[key].items()})
        if isinstance(d.get("ln_ridge"), list):
            d["ln_ridge"] = tuple(d["ln_ridge"])
        return cls(**d)


#: Named starting points; ``make_config`` applies them, then the caller's overrides.
#: Per preset: fit fields shared by all models ("common"), then per model its own fit
#: fields and architecture ("snn" / "cnn" / "rf" dicts).
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
#: "paper": the paper's architecture and training (Adam, cosine decay from 3e-4, 64 epochs;
#: batch 64 = two images x 30 recorded trials for the spiking models, 64 (image, trial)
#: pairs for the CNN), now with validation and the best validation epoch's weights. The
#: paper-architecture DSNN reads each cell out as the mean of 64 units.
PRESETS: dict[str, dict[str, dict]] = {
    "paper": {
        "common": dict(architecture="paper", epochs=64, lr=3e-4, input_size=64, batch_images=2, batch_size=64,
                       model_trials=8, eval_trials=64, val_every=4),
        "nsnn": dict(),
        "dsnn": dict(snn=dict(readout_units=64, readout="mean")),
        "cnn": dict(),
        "ln": dict(architecture="rf"),
    },
    "quick": {
        "common": dict(architecture="rf", lr=3e-3, input_size=64, batch_images=4, batch_size=64, model_trials=4,
                       eval_trials=64, epochs=30, val_every=3),
        "nsnn": dict(),
        "dsnn": dict(rf=dict(readout_units=32)),
        "cnn": dict(epochs=40),
        "ln": dict(),
    },
}

_DEFAULT_LOSS = {"cnn": "poisson", "ln": "mse"}


def make_config(model: str = "nsnn", preset: str = "quick", **overrides) -> FitConfig:
    """Build a :class:`FitConfig` from a preset plus overrides.

    ``overrides`` may set any field; ``snn=`` / ``cnn=`` / ``rf=`` dicts update the preset's
    architecture field by field.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    kwargs = dict(PRESETS[preset]["common"])
    kwargs["loss"] = _DEFAULT_LOSS.get(model, "mmd_linear")
    specific = dict(PRESETS[preset][model])
    arch = {key: dict(specific.pop(key, {})) for key in ("snn", "cnn", "rf")}
    kwargs.update(specific)
    for key in arch:
        arch[key].update(overrides.pop(key, {}) or {})
    kwargs.update(overrides)
    return FitConfig(model=model, preset=preset, snn=SNNConfig(**arch["snn"]), cnn=CNNConfig(**arch["cnn"]),
                     rf=RFConfig(**arch["rf"]), **kwargs)


def predicts_rates(config: FitConfig) -> bool:
    """Whether the model's predictions are rates only (CNN, LN, population-mean readouts), not spikes."""
    if config.model in ("cnn", "ln"):
        return True
    if config.architecture == "rf":
        return config.rf.readout_units > 1
    return config.snn.readout == "mean"


def _uses_rf(config: FitConfig) -> bool:
    return config.architecture == "rf" or config.model == "ln"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class FitData:
    """A recording prepared for fitting.

    Attributes
    ----------
    images : Tensor [n_stimuli, 1, S, S] float32
        Downsampled images, normalised with statistics of the training images only.
    counts : Tensor [n_stimuli, T, n_trials, n_cells] float32
        Recorded spike counts per time bin.
    train_idx, test_idx : np.ndarray of int
        Stimulus indices of the split (no image in both).
    fit_idx, val_idx : np.ndarray of int
        The training images split into those the network is trained on and the seeded
        validation images (together ``train_idx``).
    bin_size : float
        Time step in s.
    recording : Recording
    rfs : ReceptiveFields or None
        The cells' receptive fields in the frames' pixel coordinates (stored, or estimated
        from the training images only); None for the paper architecture's models.
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

    def __post_init__(self) -> None:
        if self.fit_idx is None or self.val_idx is None:
            self.fit_idx, self.val_idx = np.asarray(self.train_idx), np.asarray(self.train_idx[:0])

    @property
    def n_cells(self) -> int:
        return self.counts.shape[-1]


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
        raise ValueError(f"{train_idx.size} training images: at least 3 are needed to hold out validation images")
    n_val = min(train_idx.size - 2, max(1, int(round(fraction * train_idx.size))))
    val = np.sort(np.random.default_rng([seed, 7]).choice(train_idx, n_val, replace=False))
    return np.setdiff1d(train_idx, val), val


def prepare_data(config: FitConfig, recording: Recording | None = None) -> FitData:
    """Load (unless given), bin, downsample, normalise and split the recording for ``config``.

    The image normalisation and the receptive-field estimate use the training images only.
    """
    rec = recording if recording is not None else load_recording(config.data, config.recording)
    if rec.stimuli is None:
        raise ValueError(f"recording {rec.name!r} has no stimulus frames: fitting needs the flashed images "
                         "(movie recordings are for stimulus-free analyses)")
    counts = rec.binned(config.bin_size)
    if counts.shape[1] != config.n_steps:
        raise ValueError(f"recording {rec.name!r} window {rec.window} gives {counts.shape[1]} bins of "
                         f"{config.bin_size} s, the model expects {config.n_steps}")
    train_idx, test_idx = kfold_split(rec.n_stimuli, config.n_folds, config.fold, config.seed)
    fit_idx, val_idx = validation_split(train_idx, config.val_fraction, config.seed)
    small = downsample(rec.stimuli, config.input_size)
    images = ImageNormalizer().fit(small[train_idx]).transform(small)
    rfs = receptive_fields_for(rec, train_idx, bin_size=config.bin_size) if _uses_rf(config) else None
    return FitData(
        images=torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None],
        counts=torch.from_numpy(counts.astype(np.float32)),
        train_idx=train_idx,
        test_idx=test_idx,
        bin_size=config.bin_size,
        recording=rec,
        fit_idx=fit_idx,
        val_idx=val_idx,
        rfs=rfs,
    )


def build_model(config: FitConfig, n_cells: int, generator: torch.Generator | None = None,
                rfs: ReceptiveFields | None = None) -> nn.Module:
    """The model ``config.model`` with ``n_cells`` outputs (weights from torch's global RNG).

    ``rfs`` places the RF-aware models' features and readouts (None: placeholders, for
    loading a checkpoint, whose buffers hold the fitted ones).
    """
    if _uses_rf(config):
        rf = dataclasses.replace(config.rf, n_cells=n_cells)
        if config.model == "ln":
            return RetinaLN(rf, rfs)
        if config.model == "cnn":
            return RetinaRFCNN(rf, rfs)
        return RetinaRFSNN(rf, rfs, generator=generator)
    if config.model == "cnn":
        return RetinaCNN(dataclasses.replace(config.cnn, n_cells=n_cells))
    return RetinaSNN(dataclasses.replace(config.snn, n_cells=n_cells), generator=generator)


def _snn_loss(config: FitConfig, model_spikes: Tensor, recorded: Tensor, gen: torch.Generator) -> Tensor:
    """model_spikes [T, K, B, N]; recorded [T, R, B, N]."""
    if config.loss == "paired":
        T, K, B, N = model_spikes.shape
        R = recorded.shape[1]
        pick = torch.randint(R, (K,), generator=gen, device=gen.device).to(recorded.device)
        return psp_mmd_loss(model_spikes.reshape(T, K * B, N), recorded[:, pick].reshape(T, K * B, N), config.tau_s)
    if model_spikes.shape[1] == 1:
        # a deterministic model's trials are identical: repeating costs nothing
        model_spikes = model_spikes.expand(-1, 2, -1, -1)
    kernel = "linear" if config.loss == "mmd_linear" else "gaussian"
    return set_mmd_loss(model_spikes, recorded, kernel=kernel, tau_s=config.tau_s)


def _batches(n: int, size: int, gen: torch.Generator) -> list[Tensor]:
    order = torch.randperm(n, generator=gen)
    return list(order.split(size))


def _pairs_per_step(config: FitConfig) -> bool:
    """The paper CNN trains on (image, trial) pairs; every other model on whole images."""
    return config.model == "cnn" and config.architecture == "paper"


def _steps_per_epoch(config: FitConfig, data: FitData) -> int:
    n_fit = len(data.fit_idx)
    if _pairs_per_step(config):
        return math.ceil(n_fit * data.counts.shape[2] / config.batch_size)
    return math.ceil(n_fit / config.batch_images)


def _train_step(config, model, data, batch, device, noise_gen) -> Tensor:
    """Loss of one batch; ``batch`` indexes the images the network is trained on (``fit_idx``),
    or (image, trial) pairs of them (paper CNN)."""
    fit_idx = torch.as_tensor(data.fit_idx)
    if _pairs_per_step(config):
        R = data.counts.shape[2]
        img = fit_idx[batch // R]
        trial = batch % R
        uniq, inverse = torch.unique(img, return_inverse=True)
        rates = model(data.images[uniq].to(device))  # [T, U, N]
        target = data.counts[img, :, trial].to(device).transpose(0, 1)  # [T, P, N]
        return poisson_nll(rates[:, inverse], target)
    img = fit_idx[batch]
    if config.model == "cnn":
        # all trials of each image: the Poisson NLL summed over trials is R x that of the mean count
        rates = model(data.images[img].to(device))  # [T, B, N]
        return poisson_nll(rates, data.counts[img].mean(2).to(device).transpose(0, 1))
    K = 1 if config.model == "dsnn" else config.model_trials
    if config.probability_loss:
        _, spikes = model(data.images[img].to(device), n_trials=K, return_probability=True)
    else:
        spikes = model(data.images[img].to(device), n_trials=K)  # [T, K, B, N]
    recorded = data.counts[img].to(device).permute(1, 2, 0, 3)  # [T, R, B, N]
    return _snn_loss(config, spikes, recorded, noise_gen)


def _checkpoint_state(config, model, optimizer, scheduler, epoch, history, gens, best) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_kind": config.model,
        "config": config.to_dict(),
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "rng": {name: g.get_state() for name, g in gens.items()},
        "history": history,
        "best": best,
    }


def load_checkpoint(path: str | os.PathLike, config: FitConfig | None = None) -> dict:
    """Read and validate a checkpoint; with ``config``, check it belongs to that run.

    Raises
    ------
    CheckpointError
        Unreadable or corrupt file, not a neurocode checkpoint, or written by a run with a
        different model or configuration.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises many types for damaged files
        # first line only: torch's unpickling errors run over many lines and suggest weights_only=False
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"{path}: cannot read checkpoint, the file is damaged or not a checkpoint "
                              f"({type(exc).__name__}: {detail})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a neurocode checkpoint (field 'format' missing or wrong)")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')!r}, expected {CHECKPOINT_VERSION}")
    missing = {"model_kind", "config", "epoch", "model", "optimizer", "scheduler", "rng", "history", "best"} - set(state)
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks field(s) {sorted(missing)}")
    if config is not None:
        if state["model_kind"] != config.model:
            raise CheckpointError(f"{path}: checkpoint is of model {state['model_kind']!r}, this run fits {config.model!r}")
        saved = FitConfig.from_dict(state["config"]).to_dict()
        now = config.to_dict()
        # where it runs may change; the epoch count may not (the lr schedule depends on it)
        diff = sorted(k for k in now if k not in ("device", "threads") and saved.get(k) != now[k])
        if diff:
            raise CheckpointError(f"{path}: checkpoint was written with a different configuration (fields {diff})")
    return state


def _validation_rate_cc(config: FitConfig, model: nn.Module, data: FitData) -> float:
    """Mean over cells of the validation images' rate CC (PSTHs concatenated)."""
    from neurocode.analysis import rate_cc_per_cell

    _, rates = predict(config, model, data, data.val_idx, n_trials=config.val_trials, seed=config.seed + 20_000,
                       return_rates=True)
    recorded = data.counts[torch.as_tensor(data.val_idx)].mean(2).numpy()  # [n, T, N]
    n, T, N = rates.shape
    cc = rate_cc_per_cell(recorded.reshape(n * T, N), rates.reshape(n * T, N))
    cc = cc[np.isfinite(cc)]
    return float(cc.mean()) if cc.size else float("nan")


def _train_ln(config: FitConfig, model: RetinaLN, data: FitData, device) -> list[dict]:
    """Ridge strength chosen on the validation images, then refitted on all training images."""
    images, counts = data.images.to(device), data.counts.to(device)
    psth = counts.mean(2)  # [n, T, N]
    history = []
    for ridge in config.ln_ridge:
        model.fit_ridge(images[data.fit_idx], psth[data.fit_idx], ridge)
        history.append({"ridge": ridge, "val_rate_cc": _validation_rate_cc(config, model, data)})
    best = max(history, key=lambda h: (np.nan_to_num(h["val_rate_cc"], nan=-np.inf)))
    model.fit_ridge(images[data.train_idx], psth[data.train_idx], best["ridge"])
    history.append({"chosen_ridge": best["ridge"], "val_rate_cc": best["val_rate_cc"],
                    "refit_on": "training + validation images"})
    return history


def _calibrate(config: FitConfig, model: nn.Module, data: FitData, device) -> dict | None:
    """Start every model at realistic rates (on training images only)."""
    fit = torch.as_tensor(data.fit_idx)
    psth = data.counts[fit].mean((0, 2)).clamp(max=0.95).to(device)  # [T, N]
    with torch.no_grad():
        if _uses_rf(config):
            model.features.fit_normalization(data.images[fit].to(device))
        if config.model == "cnn":
            if _uses_rf(config):
                model.initialise_rates(psth)
            return None
        calibrate = calibrate_rf_snn if _uses_rf(config) else calibrate_rates
        rates = calibrate(model, data.images[fit[:16]].to(device), hidden_rate=config.hidden_rate, output_rate=psth,
                          n_trials=1 if config.model == "dsnn" else 4)
    return {"epoch": 0, "initial_rates": rates}


def train(
    config: FitConfig,
    data: FitData,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[int, dict], None] | None = None,
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
    # Noise densities far in their tails (e.g. the Gaussian pdf ~13 sigma from threshold) are
    # subnormal floats; once they reach the gradients, CPU convolutions slow down ~10x (a
    # trained paper-preset NSNN step: 28 s instead of 2.3 s). Flushing them to zero changes
    # no value above 1e-38.
    torch.set_flush_denormal(True)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    gens = {
        "noise": torch.Generator(device=device).manual_seed(config.seed),
        "order": torch.Generator().manual_seed(config.seed + 1),
    }
    model = build_model(config, data.n_cells, generator=gens["noise"] if config.model == "nsnn" else None,
                        rfs=data.rfs).to(device)
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if config.model == "ln":
        history = _train_ln(config, model, data, device)
        if ckpt is not None:
            with atomic_path(ckpt) as tmp:
                torch.save(_checkpoint_state(config, model, None, None, 1, history, gens, None), tmp)
        return model, history
    steps = _steps_per_epoch(config, data)
    total = config.epochs * steps
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    history: list[dict] = []
    start = 0
    best: dict | None = None  # {"epoch", "val_rate_cc", "model": state_dict}
    if resume and ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt, config)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        for name, g in gens.items():
            g.set_state(state["rng"][name])
        history, start, best = list(state["history"]), int(state["epoch"]), state["best"]
    else:
        initial = _calibrate(config, model, data, device)
        if initial is not None:
            history.append(initial)
    n_items = len(data.fit_idx) * (data.counts.shape[2] if _pairs_per_step(config) else 1)
    batch = config.batch_size if _pairs_per_step(config) else config.batch_images
    since_best = 0 if best is None else sum(1 for h in history if h.get("epoch", 0) > best["epoch"]
                                            and "val_rate_cc" in h)
    bar = tqdm(total=total, initial=start * steps, desc=f"fit {config.model}", disable=not progress, unit="step")
    try:
        for epoch in range(start, config.epochs):
            if config.patience is not None and since_best >= config.patience:
                break
            model.train()
            losses = []
            for b in _batches(n_items, batch, gens["order"]):
                loss = _train_step(config, model, data, b, device, gens["noise"])
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch + 1}; "
                                             "lower lr (the last checkpoint holds the previous epoch)")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.4g}")
            record = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": scheduler.get_last_lr()[0]}
            if len(data.val_idx) and ((epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs):
                with torch.random.fork_rng(devices=[]):
                    val = _validation_rate_cc(config, model, data)
                record["val_rate_cc"] = val
                if best is None or (math.isfinite(val) and not val <= best["val_rate_cc"]):
                    best = {"epoch": epoch + 1, "val_rate_cc": val,
                            "model": {k: v.detach().clone() for k, v in model.state_dict().items()}}
                    since_best = 0
                else:
                    since_best += 1
                bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.4g}", val_cc=f"{val:.3f}")
            history.append(record)
            if ckpt is not None:
                state = _checkpoint_state(config, model, optimizer, scheduler, epoch + 1, history, gens, best)
                with atomic_path(ckpt) as tmp:
                    torch.save(state, tmp)
            if on_epoch is not None:
                on_epoch(epoch + 1, record)
    finally:
        bar.close()
    if best is not None:
        model.load_state_dict(best["model"])
        history.append({"best_epoch": best["epoch"], "val_rate_cc": best["val_rate_cc"]})
    return model, history


@torch.no_grad()
def predict(config: FitConfig, model: nn.Module, data: FitData, stimuli: np.ndarray, n_trials: int | None = None,
            seed: int | None = None, return_rates: bool = False):
    """Model responses to the given stimuli.

    Returns
    -------
    np.ndarray
        Spiking models: uint8 spikes ``[n, T, K, n_cells]`` with K = ``n_trials``
        (default ``config.eval_trials``; a DSNN's trials are identical). CNN, LN, and
        spiking models with a population-mean readout: float32 rates ``[n, T, n_cells]`` in
        expected spikes per bin.
    rates : np.ndarray, with ``return_rates``
        float32 ``[n, T, n_cells]``: the model's PSTH in expected spikes per bin. For an
        RF-architecture NSNN the mean over the K trials of each trial's firing probability
        given its own history (same expectation as the spike average, less sampling noise);
        for other spiking models the spike average.
    """
    device = next(model.parameters()).device
    model.eval()
    images = data.images[torch.as_tensor(np.asarray(stimuli))].to(device)
    if config.model in ("cnn", "ln"):
        rates = model(images).permute(1, 0, 2).cpu().numpy().astype(np.float32)
        return (rates, rates) if return_rates else rates
    K = n_trials or config.eval_trials
    gen = torch.Generator(device=device).manual_seed(config.seed + 10_000 if seed is None else seed)
    previous = model.generator
    model.generator = gen
    # an RF-architecture NSNN reports its firing probabilities: the PSTH without sampling noise
    rb = _uses_rf(config) and config.model == "nsnn" and config.rf.readout_units == 1
    k = 1 if config.model == "dsnn" else K
    try:
        spikes, probs = [], []
        for i in range(images.shape[0]):
            if rb:
                s, p = model(images[i : i + 1], n_trials=k, return_probability=True)  # [T, K, 1, N]
                probs.append(p[:, :, 0].mean(1).cpu())
            else:
                s = model(images[i : i + 1], n_trials=k)
            spikes.append(s.expand(-1, K, -1, -1)[:, :, 0].cpu())
        out = torch.stack(spikes)  # [n, T, K, N]
        rates = (torch.stack(probs) if rb else out.mean(2)).numpy().astype(np.float32)
        # a population rate code (DSNN readout) predicts rates, not spikes
        preds = rates if predicts_rates(config) else out.to(torch.uint8).numpy()
        return (preds, rates) if return_rates else preds
    finally:
        model.generator = previous
