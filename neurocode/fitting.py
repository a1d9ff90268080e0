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
from neurocode.losses import poisson_nll, psp_mmd_loss, set_mmd_loss
from neurocode.models import CNNConfig, RetinaCNN, RetinaSNN, SNNConfig, calibrate_rates

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
]

MODELS = ("nsnn", "dsnn", "cnn")
LOSSES = ("mmd_linear", "mmd_gaussian", "paired", "poisson")
CHECKPOINT_FORMAT = "neurocode-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is unreadable, corrupt or belongs to another run."""


@dataclass
class FitConfig:
    """Everything that defines a fit; saved as ``config.json`` in the run folder.

    Attributes
    ----------
    model : {"nsnn", "dsnn", "cnn"}
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
    snn, cnn : SNNConfig, CNNConfig
        Architectures (only the one matching ``model`` is used).
    device : str
        "auto" (a GPU when present, else CPU), "cpu", "cuda", ...
    threads : int or None
        torch CPU threads (None: torch's default).
    """

    model: str = "nsnn"
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
    snn: SNNConfig = field(default_factory=SNNConfig)
    cnn: CNNConfig = field(default_factory=CNNConfig)
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if (self.model == "cnn") != (self.loss == "poisson"):
            raise ValueError(f"loss {self.loss!r} does not apply to model {self.model!r} "
                             "(the CNN uses 'poisson', spiking models an MMD or 'paired')")
        for name in ("epochs", "batch_images", "batch_size", "eval_trials", "input_size", "n_folds"):
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
        self.snn.noisy = self.model == "nsnn"
        self.snn.input_size = self.cnn.input_size = self.input_size
        self.snn.n_steps = self.cnn.n_steps = self.n_steps

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
        if "snn" in d and isinstance(d["snn"], dict):
            d["snn"] = SNNConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["snn"].items()})
        if "cnn" in d and isinstance(d["cnn"], dict):
            d["cnn"] = CNNConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["cnn"].items()})
        return cls(**d)


#: Named starting points; ``make_config`` applies them, then the caller's overrides.
#: Per preset: fit fields shared by all models ("common"), then per model its own fit
#: fields and architecture ("snn" / "cnn" dicts).
#:
#: "paper": the paper's architecture and training (Adam, cosine decay from 3e-4, 64 epochs;
#: batch 64 = two images x 30 recorded trials for the spiking models, 64 (image, trial)
#: pairs for the CNN). "quick": a smaller network on 32-px images (2x2 average pooling
#: after each conv) that learns in a couple of minutes on a 2-core CPU.
#:
#: The DSNN reads each cell out as the mean of 64 deterministic units in both presets: a
#: deterministic network cannot sample trials, and with one binary unit per cell its
#: "PSTH" is 0 or 1 per bin, which cannot follow rates of ~0.07 spikes per 10-ms bin (the
#: PSP-MMD optimum is silence; it scored below the stimulus-independent baseline here).
#: The NSNN keeps the paper's one neuron per cell: its rate is the mean over sampled trials.
#: ``snn={"readout_units": 1, "readout": "sum"}`` restores the paper's DSNN readout.
PRESETS: dict[str, dict[str, dict]] = {
    "paper": {
        "common": dict(epochs=64, lr=3e-4, input_size=64, batch_images=2, batch_size=64,
                       model_trials=8, eval_trials=64),
        "nsnn": dict(),
        "dsnn": dict(snn=dict(readout_units=64, readout="mean")),
        "cnn": dict(),
    },
    "quick": {
        "common": dict(lr=3e-3, input_size=32, batch_images=4, batch_size=64, model_trials=4, eval_trials=64),
        "nsnn": dict(epochs=24, lr=1e-3, snn=dict(channels=(8, 16), kernel_sizes=(13, 7), pool=2)),
        "dsnn": dict(epochs=48, snn=dict(channels=(8, 16), kernel_sizes=(13, 7), pool=2, readout_units=64,
                                         readout="mean")),
        "cnn": dict(epochs=40, cnn=dict(channels=(8, 8), kernel_sizes=(13, 7))),
    },
}


def make_config(model: str = "nsnn", preset: str = "quick", **overrides) -> FitConfig:
    """Build a :class:`FitConfig` from a preset plus overrides.

    ``overrides`` may set any field; ``snn=`` / ``cnn=`` dicts update the preset's
    architecture field by field.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    kwargs = dict(PRESETS[preset]["common"])
    kwargs["loss"] = "poisson" if model == "cnn" else "mmd_linear"
    specific = dict(PRESETS[preset][model])
    arch = {"snn": dict(specific.pop("snn", {})), "cnn": dict(specific.pop("cnn", {}))}
    kwargs.update(specific)
    for key in ("snn", "cnn"):
        arch[key].update(overrides.pop(key, {}) or {})
    kwargs.update(overrides)
    return FitConfig(model=model, preset=preset, snn=SNNConfig(**arch["snn"]), cnn=CNNConfig(**arch["cnn"]), **kwargs)


def predicts_rates(config: FitConfig) -> bool:
    """Whether the model's predictions are rates (CNN, population-mean readout), not spikes."""
    return config.model == "cnn" or config.snn.readout == "mean"


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
    bin_size : float
        Time step in s.
    """

    images: Tensor
    counts: Tensor
    train_idx: np.ndarray
    test_idx: np.ndarray
    bin_size: float
    recording: Recording

    @property
    def n_cells(self) -> int:
        return self.counts.shape[-1]


def prepare_data(config: FitConfig, recording: Recording | None = None) -> FitData:
    """Load (unless given), bin, downsample, normalise and split the recording for ``config``."""
    rec = recording if recording is not None else load_recording(config.data, config.recording)
    if rec.stimuli is None:
        raise ValueError(f"recording {rec.name!r} has no stimulus frames: fitting needs the flashed images "
                         "(movie recordings are for stimulus-free analyses)")
    counts = rec.binned(config.bin_size)
    if counts.shape[1] != config.n_steps:
        raise ValueError(f"recording {rec.name!r} window {rec.window} gives {counts.shape[1]} bins of "
                         f"{config.bin_size} s, the model expects {config.n_steps}")
    train_idx, test_idx = kfold_split(rec.n_stimuli, config.n_folds, config.fold, config.seed)
    small = downsample(rec.stimuli, config.input_size)
    images = ImageNormalizer().fit(small[train_idx]).transform(small)
    return FitData(
        images=torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None],
        counts=torch.from_numpy(counts.astype(np.float32)),
        train_idx=train_idx,
        test_idx=test_idx,
        bin_size=config.bin_size,
        recording=rec,
    )


def build_model(config: FitConfig, n_cells: int, generator: torch.Generator | None = None) -> nn.Module:
    """The model ``config.model`` with ``n_cells`` outputs (weights from torch's global RNG)."""
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


def _steps_per_epoch(config: FitConfig, data: FitData) -> int:
    n_train = len(data.train_idx)
    if config.model == "cnn":
        return math.ceil(n_train * data.counts.shape[2] / config.batch_size)
    return math.ceil(n_train / config.batch_images)


def _train_step(config, model, data, batch, device, noise_gen) -> Tensor:
    """Loss of one batch; ``batch`` indexes training images (spiking) or (image, trial) pairs (CNN)."""
    if config.model == "cnn":
        R = data.counts.shape[2]
        img = torch.as_tensor(data.train_idx)[batch // R]
        trial = batch % R
        uniq, inverse = torch.unique(img, return_inverse=True)
        rates = model(data.images[uniq].to(device))  # [T, U, N]
        target = data.counts[img, :, trial].to(device).transpose(0, 1)  # [T, P, N]
        return poisson_nll(rates[:, inverse], target)
    img = torch.as_tensor(data.train_idx)[batch]
    K = 1 if config.model == "dsnn" else config.model_trials
    spikes = model(data.images[img].to(device), n_trials=K)  # [T, K, B, N]
    recorded = data.counts[img].to(device).permute(1, 2, 0, 3)  # [T, R, B, N]
    return _snn_loss(config, spikes, recorded, noise_gen)


def _checkpoint_state(config, model, optimizer, scheduler, epoch, history, gens) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_kind": config.model,
        "config": config.to_dict(),
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {name: g.get_state() for name, g in gens.items()},
        "history": history,
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
    missing = {"model_kind", "config", "epoch", "model", "optimizer", "scheduler", "rng", "history"} - set(state)
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


def train(
    config: FitConfig,
    data: FitData,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> tuple[nn.Module, list[dict]]:
    """Fit ``config.model`` to the training images of ``data``.

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
        The trained model (on ``config.device``).
    history : list of dict
        Per epoch: ``epoch``, ``loss`` (mean training loss), ``lr``.
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
    model = build_model(config, data.n_cells, generator=gens["noise"] if config.model == "nsnn" else None).to(device)
    n_train = len(data.train_idx)
    steps = _steps_per_epoch(config, data)
    total = config.epochs * steps
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    history: list[dict] = []
    start = 0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if resume and ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt, config)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        for name, g in gens.items():
            g.set_state(state["rng"][name])
        history, start = list(state["history"]), int(state["epoch"])
    elif config.model != "cnn":
        with torch.no_grad():
            calib = torch.as_tensor(data.train_idx[: min(n_train, 16)])
            psth = data.counts[torch.as_tensor(data.train_idx)].mean((0, 2)).clamp(max=0.95).to(device)
            rates = calibrate_rates(model, data.images[calib].to(device), hidden_rate=config.hidden_rate,
                                    output_rate=psth, n_trials=1 if config.model == "dsnn" else 4)
        history.append({"epoch": 0, "initial_rates": rates})
    n_items = n_train * data.counts.shape[2] if config.model == "cnn" else n_train
    batch = config.batch_size if config.model == "cnn" else config.batch_images
    bar = tqdm(total=total, initial=start * steps, desc=f"fit {config.model}", disable=not progress, unit="step")
    try:
        for epoch in range(start, config.epochs):
            model.train()
            losses = []
            for b in _batches(n_items, batch, gens["order"]):
                loss = _train_step(config, model, data, b, device, gens["noise"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.4g}")
            record = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": scheduler.get_last_lr()[0]}
            history.append(record)
            if ckpt is not None:
                state = _checkpoint_state(config, model, optimizer, scheduler, epoch + 1, history, gens)
                with atomic_path(ckpt) as tmp:
                    torch.save(state, tmp)
            if on_epoch is not None:
                on_epoch(epoch + 1, record)
    finally:
        bar.close()
    return model, history


@torch.no_grad()
def predict(config: FitConfig, model: nn.Module, data: FitData, stimuli: np.ndarray, n_trials: int | None = None,
            seed: int | None = None) -> np.ndarray:
    """Model responses to the given stimuli.

    Returns
    -------
    np.ndarray
        Spiking models: uint8 spikes ``[n, T, K, n_cells]`` with K = ``n_trials``
        (default ``config.eval_trials``; a DSNN's trials are identical). CNN, and spiking
        models with a population-mean readout: float32 rates ``[n, T, n_cells]`` in
        expected spikes per bin.
    """
    device = next(model.parameters()).device
    model.eval()
    images = data.images[torch.as_tensor(np.asarray(stimuli))].to(device)
    if config.model == "cnn":
        return model(images).permute(1, 0, 2).cpu().numpy().astype(np.float32)
    K = n_trials or config.eval_trials
    gen = torch.Generator(device=device).manual_seed(config.seed + 10_000 if seed is None else seed)
    previous = model.generator
    model.generator = gen
    try:
        out = []
        for i in range(images.shape[0]):
            s = model(images[i : i + 1], n_trials=1 if config.model == "dsnn" else K)  # [T, K, 1, N]
            out.append(s.expand(-1, K, -1, -1)[:, :, 0].cpu())
        out = torch.stack(out)
        if model.config.readout == "mean":  # a population rate code predicts rates
            return out.mean(2).numpy().astype(np.float32)
        return out.to(torch.uint8).numpy()
    finally:
        model.generator = previous
