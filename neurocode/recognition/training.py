"""Training a recognition network: configuration, run folder, checkpoints, resume, metrics.

:func:`classify` is the whole job (also ``neurocode classify``): load the dataset, train with
Adam and a cosine-annealed learning rate while choosing the epoch on the validation set,
checkpoint every epoch (atomically; ``resume=True`` continues an interrupted run with the same
result as an uninterrupted one), then score the chosen model once on the test set, with the
robustness curves and, optionally, the Fig. 4B coding analysis.

The run skeleton is the retina fits': a :class:`~neurocode.runs.RunFolder` (lock, checks
before any write, config.json with the versions), :class:`ClassifyConfig` a
:class:`~neurocode.runs.RunConfig`, and the checkpoints of :mod:`neurocode.checkpoints`.

Run folder::

    config.json        the ClassifyConfig (+ neurocode and torch versions)
    checkpoint.pt      model, optimiser, scheduler, RNG states, history, best model
    history.json       per epoch: loss, train accuracy, lr, validation accuracy and loss
    metrics.json       test_accuracy, test_loss, robustness curves, coding analysis, timings
    training_curve.png, robustness.png (and coding_scatter.png with the coding analysis)
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from neurocode._io import write_json
from neurocode.checkpoints import (CheckpointFormat, checkpoint_state, load_fitted, read_checkpoint, read_run,
                                   restore_training, save_checkpoint)
from neurocode.neurons._kernels import subnormals_flushed
from neurocode.recognition.architectures import ARCHITECTURES, SpikingClassifier, build_classifier, parameter_count
from neurocode.recognition.data import DATASETS, ClassificationData, load_dataset
from neurocode.recognition.layers import MODELS, NeuronSpec
from neurocode.recognition.methods import METHODS, get_method
from neurocode.recognition.presets import PRESETS, find_preset, get_preset
from neurocode.recognition.robustness import evaluate, model_input, robustness_curves
from neurocode.runs import RunConfig, RunFolder

#: What a classifier run writes beside the common run-folder files.
FIGURES = ("robustness.png", "coding_scatter.png")

__all__ = ["ClassifyConfig", "make_config", "build_model", "train_classifier", "classify", "ClassifyResult",
           "load_run", "CHECKPOINT_FORMAT", "DEFAULT_ARCH"]

CHECKPOINT_FORMAT = "neurocode-classifier-checkpoint"
CHECKPOINT_VERSION = 1

#: The architecture a dataset uses unless one is named (the paper's first for it; digits: its own).
DEFAULT_ARCH = {"digits": "digits", "cifar10": "cifarnet", "cifar100": "cifarnet", "dvs-cifar10": "vggsnn",
                "dvs-gesture": "7bnet"}

def _tuple(v):
    return tuple(float(x) for x in v)


@dataclass(frozen=True)
class ClassifyConfig(RunConfig):
    """Everything that defines a recognition run (use :func:`make_config` to fill it from a preset).

    Attributes
    ----------
    dataset, arch, method, model : str
        See :data:`~neurocode.recognition.data.DATASETS`, :data:`~neurocode.recognition.ARCHITECTURES`,
        :data:`~neurocode.recognition.METHODS`; model ``"nsnn"`` or ``"dsnn"``.
    preset : str
        The preset the training settings started from.
    timesteps, lr, batch_size, epochs, noise_sigma, weight_decay
        Training settings (Adam, cosine annealing per step to 0).
    tau, v_th, surrogate_width, tet_lambda
        Neuron and method parameters.
    val_fraction, split_seed : float, int
        Validation set carved from the training set (seeded, stratified).
    seed : int
        Weights, batch order, augmentation and membrane noise.
    flip_betas, fgsm_eps, do_gammas, drop_rhos : tuple of float
        Robustness curves computed on the test set after training.
    robust_repeats : int
        Evaluations per level (mean ± SD).
    robust_limit : int or None
        Test samples used for the robustness curves (None: all).
    coding_samples, coding_trials : int
        Fig. 4B on this many test samples with this many noisy trials each (0: skipped).
    device, threads, num_workers, data_dir, download, eval_batch_size
        Execution; not part of the run's identity (a resumed run may change them).
    """

    dataset: str = "digits"
    arch: str = "digits"
    method: str = "stbp"
    model: str = "nsnn"
    preset: str = "digits"
    timesteps: int = 4
    lr: float = 3e-3
    batch_size: int = 32
    epochs: int = 40
    noise_sigma: float = 0.3
    weight_decay: float = 0.0
    tau: float = 0.5
    v_th: float = 1.0
    surrogate_width: float = 1.0
    tet_lambda: float = 1e-3
    val_fraction: float = 0.1
    split_seed: int = 0
    seed: int = 0
    flip_betas: tuple = (0.0, 0.01, 0.02, 0.04, 0.1)
    fgsm_eps: tuple = (0.0, 0.02, 0.05, 0.1, 0.2)
    do_gammas: tuple = ()
    drop_rhos: tuple = ()
    robust_repeats: int = 3
    robust_limit: int | None = None
    coding_samples: int = 0
    coding_trials: int = 10
    device: str = "cpu"
    threads: int | None = None
    num_workers: int = 0
    data_dir: str | None = None
    download: bool = False
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        def choice(name, allowed):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {getattr(self, name)!r}")

        choice("dataset", DATASETS)
        choice("arch", tuple(ARCHITECTURES))
        choice("method", tuple(METHODS))
        choice("model", MODELS)
        for name in ("timesteps", "batch_size", "epochs", "robust_repeats", "coding_trials"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name in ("coding_samples", "num_workers", "split_seed", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
        for name in ("lr", "noise_sigma", "v_th", "surrogate_width"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a finite positive number, got {v!r}")
        if not 0 < self.tau <= 1:
            raise ValueError(f"tau must be in (0, 1], got {self.tau!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if not 0 <= self.tet_lambda <= 1:
            raise ValueError(f"tet_lambda must be in [0, 1], got {self.tet_lambda!r}")
        for name, hi in (("flip_betas", 1.0), ("drop_rhos", 1.0), ("fgsm_eps", None), ("do_gammas", None)):
            vals = _tuple(getattr(self, name))
            object.__setattr__(self, name, vals)
            for v in vals:
                if not math.isfinite(v) or v < 0 or (hi is not None and v > hi):
                    raise ValueError(f"{name} must hold values in [0, {hi if hi else 'inf'}], got {v!r}")
        if self.robust_limit is not None and (not isinstance(self.robust_limit, int) or self.robust_limit < 1):
            raise ValueError(f"robust_limit must be a positive integer or None, got {self.robust_limit!r}")
        if self.drop_rhos and self.dataset in ("digits", "cifar10", "cifar100"):
            raise ValueError(f"drop_rhos (EventDrop) needs an event dataset, not {self.dataset!r}")

    #: Fields that may change between a run and its resumption (they do not change what is trained).
    RESUMABLE = ("device", "threads", "num_workers", "data_dir", "download", "eval_batch_size", "flip_betas",
                 "fgsm_eps", "do_gammas", "drop_rhos", "robust_repeats", "robust_limit", "coding_samples",
                 "coding_trials")

    @property
    def neuron(self) -> NeuronSpec:
        return NeuronSpec(self.model, self.noise_sigma, self.tau, self.v_th, self.surrogate_width)

    @property
    def static(self) -> bool:
        return self.dataset in ("digits", "cifar10", "cifar100")


def make_config(dataset: str = "digits", model: str = "nsnn", method: str = "stbp", arch: str | None = None,
                preset: str | None = None, **overrides) -> ClassifyConfig:
    """A :class:`ClassifyConfig` from a preset (Table 4, or the digits one) and overrides.

    Without ``preset`` the Table 4 row of (dataset, method, arch, model) is used (T = 2 where Table 4
    lists T = 2 and 4, or the ``timesteps`` override's row); a combination Table 4 does not list
    takes the DSNN/NSNN row of the same dataset and architecture with another method, and fails if
    there is none.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(map(repr, DATASETS))}, got {dataset!r}")
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(map(repr, MODELS))}, got {model!r}")
    get_method(method)
    arch = DEFAULT_ARCH[dataset] if arch is None else arch
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {', '.join(map(repr, ARCHITECTURES))}, got {arch!r}")
    if preset is not None:
        p = get_preset(preset)
    else:
        p = find_preset(dataset, method, arch, model, overrides.get("timesteps"))
        if p is None:  # same dataset and architecture, another method's row
            for other in METHODS:
                p = find_preset(dataset, other, arch, model, overrides.get("timesteps"))
                if p is not None:
                    break
        if p is None and {"lr", "batch_size", "epochs", "timesteps"} <= set(overrides):
            from neurocode.recognition.presets import TrainPreset

            p = TrainPreset("custom", dataset, method, arch, model, overrides["timesteps"], overrides["lr"],
                            overrides["batch_size"], overrides["epochs"], 0.2 if dataset == "dvs-cifar10" else 0.3,
                            source="user")
        if p is None:
            rows = sorted({f"{q.arch}" for q in PRESETS.values() if q.dataset == dataset})
            raise ValueError(f"no Table 4 preset for arch {arch!r} on dataset {dataset!r} (its architectures: "
                             f"{', '.join(rows)}); pass --preset NAME or --lr/--batch-size/--epochs/--timesteps")
    base = dict(dataset=dataset, arch=arch, method=method, model=model, preset=p.name, timesteps=p.timesteps,
                lr=p.lr, batch_size=p.batch_size, epochs=p.epochs, noise_sigma=p.noise_sigma,
                weight_decay=p.weight_decay)
    if dataset == "digits":
        base.update(fgsm_eps=(0.0, 0.02, 0.05, 0.1, 0.2), do_gammas=(0.0, 0.5, 1.0), coding_samples=540)
    else:
        base.update(fgsm_eps=(0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255) if dataset.startswith("cifar") else (),
                    robust_limit=1000)
    if dataset.startswith("dvs"):
        base.update(drop_rhos=(0.0, 0.05, 0.25, 0.45, 0.65), flip_betas=(0.0, 0.01, 0.02, 0.03, 0.04))
    unknown = set(overrides) - {f.name for f in fields(ClassifyConfig)}
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)}")
    base.update(overrides)
    return ClassifyConfig(**base)


def build_model(config: ClassifyConfig, data: ClassificationData, generator: torch.Generator | None = None
                ) -> SpikingClassifier:
    """The configuration's network for ``data`` (input shape, classes, normalisation statistics)."""
    return build_classifier(config.arch, n_classes=data.n_classes, input_shape=data.input_shape, neuron=config.neuron,
                            norm=get_method(config.method).norm, n_steps=config.timesteps, generator=generator,
                            mean=data.mean, std=data.std)


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# ------------------------------------------------------------------ checkpoints
#: A classifier run's checkpoints (:mod:`neurocode.checkpoints`), with torch's global generator.
CLASSIFIER_CHECKPOINT = CheckpointFormat(CHECKPOINT_FORMAT, CHECKPOINT_VERSION, ClassifyConfig,
                                         "start it afresh with `neurocode classify ... --out NEW_FOLDER`",
                                         ("torch_rng",))


def load_checkpoint(path: str | os.PathLike, config: ClassifyConfig | None = None) -> dict:
    """Read a classifier checkpoint; with ``config``, check it is this run's
    (:class:`~neurocode.checkpoints.CheckpointError`, a RunFolderError, otherwise)."""
    return read_checkpoint(path, CLASSIFIER_CHECKPOINT, config)


# ------------------------------------------------------------------ training
def _validate(model, data: ClassificationData, config: ClassifyConfig, device, epoch: int) -> dict:
    if len(data.val) == 0:
        return {}
    res = evaluate(model, data.val, static=data.static, batch_size=config.eval_batch_size, device=device,
                   seed=config.seed + 10_000, num_workers=config.num_workers)
    return {"val_accuracy": res["accuracy"], "val_loss": res["loss"]}


def _better(record: dict, best: dict | None) -> bool:
    if best is None:
        return True
    return (record["val_accuracy"], -record["val_loss"]) > (best["val_accuracy"], -best["val_loss"])


@subnormals_flushed  # noise densities deep in their tails would otherwise slow CPU convolutions
def train_classifier(config: ClassifyConfig, data: ClassificationData | None = None,
                     checkpoint: str | os.PathLike | None = None, resume: bool = False, progress: bool = True,
                     on_epoch: Callable[[int, dict], None] | None = None) -> tuple[SpikingClassifier, list[dict]]:
    """Train ``config``'s network on ``data``'s training set, choosing the epoch on its validation set.

    Parameters
    ----------
    config : ClassifyConfig
    data : ClassificationData, optional
        Default: ``load_dataset`` of the configuration.
    checkpoint : path, optional
        Written atomically after every epoch; with ``resume``, continued from.
    progress : bool
        tqdm progress bar (steps).
    on_epoch : callable, optional
        ``on_epoch(epoch, record)`` after each epoch's checkpoint.

    Returns
    -------
    model : SpikingClassifier
        With the weights of the best validation epoch (the last one without a validation set).
    history : list of dict
        Per epoch ``epoch, loss, train_accuracy, lr, val_accuracy, val_loss, seconds``; then
        ``{"best_epoch", "val_accuracy", "val_loss"}``.
    """
    from tqdm.auto import tqdm

    if config.threads:
        torch.set_num_threads(int(config.threads))
    device = _resolve_device(config.device)
    data = data if data is not None else load_dataset(config.dataset, data_dir=config.data_dir,
                                                      download=config.download, timesteps=config.timesteps,
                                                      val_fraction=config.val_fraction, split_seed=config.split_seed)
    torch.manual_seed(config.seed)
    gens = {"noise": torch.Generator(device=device).manual_seed(config.seed),
            "order": torch.Generator().manual_seed(config.seed + 1),
            "augment": torch.Generator().manual_seed(config.seed + 2)}
    model = build_model(config, data, gens["noise"] if config.model == "nsnn" else None).to(device)
    method = get_method(config.method)
    if method.loss == "tet":
        method = replace(method, tet_lambda=config.tet_lambda)
    loader = DataLoader(data.train, batch_size=config.batch_size, shuffle=True, generator=gens["order"],
                        num_workers=config.num_workers, drop_last=len(data.train) > config.batch_size)
    steps = len(loader)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                 fused=device.type in ("cpu", "cuda"))  # one pass, not ~10 ops per tensor
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps)
    ckpt = Path(checkpoint) if checkpoint is not None else None
    history: list[dict] = []
    best: dict | None = None
    start = 0
    if resume and ckpt is not None and ckpt.exists():
        history, start, best = restore_training(ckpt, load_checkpoint(ckpt, config), CLASSIFIER_CHECKPOINT, model,
                                                optimizer, scheduler, gens)
    bar = tqdm(total=config.epochs * steps, initial=start * steps, desc=f"train {config.model} {config.arch}",
               disable=not progress, unit="step")
    try:
        for epoch in range(start, config.epochs):
            t0 = time.perf_counter()
            model.train()
            losses, correct, seen = [], 0, 0
            for x, y in loader:
                if data.augment is not None:
                    x = data.augment(x, gens["augment"])
                x, y = model_input(x.to(device, non_blocking=True), data.static), y.to(device)
                out = model(x)
                loss = method.loss_fn(out, y)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch + 1}; lower lr "
                                             "(the last checkpoint holds the previous epoch)")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                correct += int((out.detach().mean(0).argmax(-1) == y).sum())
                seen += len(y)
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.3f}")
            record = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "train_accuracy": correct / max(seen, 1),
                      "lr": scheduler.get_last_lr()[0]}
            record.update(_validate(model, data, config, device, epoch + 1))
            record["seconds"] = time.perf_counter() - t0
            if "val_accuracy" in record:
                bar.set_postfix(epoch=epoch + 1, loss=f"{record['loss']:.3f}", val_acc=f"{record['val_accuracy']:.3f}")
                if _better(record, best):
                    best = {"epoch": epoch + 1, "val_accuracy": record["val_accuracy"], "val_loss": record["val_loss"],
                            "model": {k: v.detach().clone() for k, v in model.state_dict().items()}}
            history.append(record)
            if ckpt is not None:
                save_checkpoint(ckpt, checkpoint_state(CLASSIFIER_CHECKPOINT, config, model, optimizer, scheduler,
                                                       epoch + 1, history, gens, best, torch_rng=torch.get_rng_state()))
            if on_epoch is not None:
                on_epoch(epoch + 1, record)
    finally:
        bar.close()
    if best is not None:
        model.load_state_dict(best["model"])
        history.append({"best_epoch": best["epoch"], "val_accuracy": best["val_accuracy"],
                        "val_loss": best["val_loss"]})
    return model, history


# ------------------------------------------------------------------ the whole job
@dataclass
class ClassifyResult:
    """What :func:`classify` returns: the configuration, the chosen model, its history and metrics."""

    config: ClassifyConfig
    model: SpikingClassifier
    history: list
    metrics: dict
    run_dir: Path | None
    data: ClassificationData = field(repr=False, default=None)


def _score(config: ClassifyConfig, model: SpikingClassifier, data: ClassificationData, device, progress: bool) -> dict:
    t0 = time.perf_counter()
    test = evaluate(model, data.test, static=data.static, batch_size=config.eval_batch_size, device=device,
                    seed=config.seed + 20_000, num_workers=config.num_workers)
    metrics = {"test_accuracy": test["accuracy"], "test_loss": test["loss"], "n_test": test["n"]}
    robust = robustness_curves(model, data.test, static=data.static, flip_betas=config.flip_betas,
                               fgsm_eps=config.fgsm_eps, do_gammas=config.do_gammas, drop_rhos=config.drop_rhos,
                               repeats=config.robust_repeats, seed=config.seed + 30_000,
                               batch_size=config.eval_batch_size, device=device, clamp=data.pixel_range,
                               limit=config.robust_limit, progress=progress)
    metrics["robustness"] = robust
    if config.coding_samples:
        from neurocode.recognition.coding import classifier_coding_analysis

        res = classifier_coding_analysis(model, data.test, n_samples=config.coding_samples,
                                         n_trials=config.coding_trials, static=data.static, seed=config.seed + 40_000,
                                         device=device)
        metrics["coding"] = {"r": res.r, "p": res.p, "n_samples": config.coding_samples, "n_valid": res.n_valid,
                             "n_trials": config.coding_trials, "slope": res.slope, "intercept": res.intercept,
                             "mean_fano": res.mean_fano, "cosine": res.cosine}
    metrics["evaluation_seconds"] = time.perf_counter() - t0
    return metrics


def classify(dataset: str = "digits", model: str = "nsnn", method: str = "stbp", arch: str | None = None, *,
             preset: str | None = None, out: str | os.PathLike | None = None, resume: bool = False,
             progress: bool = True, figures: bool = True, data: ClassificationData | None = None,
             config: ClassifyConfig | None = None, **overrides) -> ClassifyResult:
    """Train and score a recognition network; the Python face of ``neurocode classify``.

    Parameters
    ----------
    dataset, model, method, arch, preset
        See :func:`make_config`; ``config`` replaces them all.
    out : path, optional
        Run folder (none: nothing written).
    resume : bool
        Continue the interrupted run in ``out`` (or re-score a finished one).
    progress : bool
        Progress bars.
    figures : bool
        Write training_curve.png and robustness.png into ``out``.
    data : ClassificationData, optional
        Already loaded data (must be the configuration's dataset).
    **overrides
        :class:`ClassifyConfig` fields (``epochs=5``, ``seed=1``, ``fgsm_eps=(0, 0.1)``, ...).

    Returns
    -------
    ClassifyResult
        ``metrics`` holds ``test_accuracy``, ``test_loss``, ``robustness`` (curves) and, with
        ``coding_samples``, ``coding`` (Fig. 4B r and p), plus timings.
    """
    if config is None:
        config = make_config(dataset, model, method, arch, preset, **overrides)
    elif overrides:
        config = replace(config, **overrides)
    folder = RunFolder(out) if out is not None else None
    # the run folder's OS-level lock, as the retina fits take it (two processes never write one folder)
    with folder.lock() if folder is not None else contextlib.nullcontext():
        return _classify(config, folder, resume, progress, figures, data)


def _classify(config: ClassifyConfig, folder: RunFolder | None, resume: bool, progress: bool, figures: bool,
              data: ClassificationData | None) -> ClassifyResult:
    if folder is not None:
        folder.check(config, resume, load_checkpoint=load_checkpoint, files=FIGURES)
        folder.write_config(config, kind="classifier")
    if data is None:
        data = load_dataset(config.dataset, data_dir=config.data_dir, download=config.download,
                            timesteps=config.timesteps, val_fraction=config.val_fraction,
                            split_seed=config.split_seed)
    elif data.name != config.dataset:
        raise ValueError(f"data is the {data.name!r} dataset, the configuration's is {config.dataset!r}")
    t0 = time.perf_counter()
    net, history = train_classifier(config, data, folder.checkpoint if folder else None, resume, progress)
    train_seconds = time.perf_counter() - t0
    device = _resolve_device(config.device)
    metrics = {"dataset": config.dataset, "arch": config.arch, "method": config.method, "model": config.model,
               "timesteps": config.timesteps, "seed": config.seed, "parameter_count": parameter_count(net)}
    best = history[-1] if history and "best_epoch" in history[-1] else {}
    metrics.update({"best_epoch": best.get("best_epoch"), "val_accuracy": best.get("val_accuracy")})
    metrics.update(_score(config, net, data, device, progress))
    metrics["train_seconds"] = train_seconds
    if folder is not None:
        folder.write_history(history)
        write_json(folder.metrics, metrics)
        if figures:
            from neurocode.recognition.figures import plot_learning_curves, plot_robustness
            from neurocode.plotting import save_figure

            save_figure(plot_learning_curves({config.model.upper(): history}), folder.curve_figure)
            if metrics["robustness"]:
                save_figure(plot_robustness({config.model.upper(): metrics["robustness"]}),
                            folder.path / "robustness.png")
            if "coding" in metrics:
                from neurocode.plotting import plot_coding_scatter

                from neurocode.analysis import CodingResult

                c = metrics["coding"]
                save_figure(plot_coding_scatter(CodingResult(np.asarray(c["mean_fano"]), np.asarray(c["cosine"]),
                                                             c["r"], c["p"], c["slope"], c["intercept"])),
                            folder.path / "coding_scatter.png")
    return ClassifyResult(config, net, history, metrics, folder.path if folder else None, data)


def load_run(run_dir: str | os.PathLike, data: ClassificationData | None = None,
             device: str = "cpu") -> tuple[ClassifyConfig, SpikingClassifier, dict]:
    """``(config, model, metrics)`` of a finished or interrupted run folder (the best model of its checkpoint)."""
    folder, config, state = read_run(run_dir, CLASSIFIER_CHECKPOINT)
    if data is None:
        data = load_dataset(config.dataset, data_dir=config.data_dir, timesteps=config.timesteps,
                            val_fraction=config.val_fraction, split_seed=config.split_seed)
    model = load_fitted(build_model(config, data), state, folder.checkpoint, CLASSIFIER_CHECKPOINT)
    return config, model.to(device), folder.read_metrics()
