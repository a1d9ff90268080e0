"""Checkpoints of a run, shared by the retina fits and the recognition runs.

A checkpoint (``checkpoint.pt`` of a :class:`~neurocode.runs.RunFolder`) is a dict written
atomically with :func:`torch.save` after every epoch::

    format, version   which kind of run wrote it (a :class:`CheckpointFormat`) and its layout
    config            the run's configuration (``to_dict()``)
    epoch             epochs finished, 0 <= epoch <= config.epochs
    model             the weights after ``epoch``
    optimizer, scheduler
                      their ``state_dict()`` ({} for a closed-form fit)
    rng               {name: generator state}
    history           the training records so far (as ``history.json``)
    best              None or {"epoch", <the selection score>, "model": weights}
    ...               what the kind of run stores beside these (``CheckpointFormat.extra``)

It is read with ``weights_only=True`` (no code runs from it) and checked before anything is
taken from it: a damaged file, one of another run, an epoch outside the run, a history that
is not a list of records, weights holding NaN, or weights that do not fit the model are each a
one-line :class:`CheckpointError` naming the file (and how to refit, where resuming cannot help).
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from neurocode._io import atomic_path
from neurocode.runs import RunFolder, RunFolderError, check_history

__all__ = ["CheckpointError", "CheckpointFormat", "checkpoint_state", "save_checkpoint", "read_checkpoint",
           "restore_training", "load_weights", "load_fitted", "read_run"]

#: The fields every checkpoint holds.
FIELDS = ("config", "epoch", "model", "optimizer", "scheduler", "rng", "history", "best")


class CheckpointError(RunFolderError, RuntimeError):
    """A checkpoint file is unreadable, corrupt, incomplete or belongs to another run."""


@dataclass(frozen=True)
class CheckpointFormat:
    """What tells one kind of run's checkpoints apart.

    Attributes
    ----------
    name : str
        The ``format`` field ("neurocode-checkpoint": retina fits).
    version : int
        The layout's version; a checkpoint of another version is refused.
    config_type : type
        The run's configuration dataclass (``from_dict``, ``differences``, ``model``, ``epochs``).
    refit : str
        How to start the run afresh, for the messages of checkpoints no resume can use
        (e.g. "refit with `neurocode fit ... --overwrite`").
    extra : tuple of str
        Fields this kind stores beside :data:`FIELDS`; ``"torch_rng"`` (torch's global
        generator) is restored by :func:`restore_training`.
    """

    name: str
    version: int
    config_type: type
    refit: str
    extra: tuple[str, ...] = ()


def checkpoint_state(fmt: CheckpointFormat, config, model: nn.Module, optimizer, scheduler, epoch: int,
                     history: list, gens: dict[str, torch.Generator], best: dict | None, **extra: Any) -> dict:
    """The checkpoint dict (module docstring); ``optimizer`` / ``scheduler`` None: a closed-form fit."""
    missing = set(fmt.extra) - set(extra)
    if missing:
        raise ValueError(f"checkpoint_state: {fmt.name} checkpoints need {sorted(missing)}")
    return {"format": fmt.name, "version": fmt.version, **extra, "config": config.to_dict(), "epoch": int(epoch),
            "model": model.state_dict(), "optimizer": optimizer.state_dict() if optimizer is not None else {},
            "scheduler": scheduler.state_dict() if scheduler is not None else {},
            "rng": {name: g.get_state() for name, g in gens.items()}, "history": history, "best": best}


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` atomically (the old checkpoint or the complete new one; WriteError naming ``path``)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _weights(path: Path, weights, what: str, fmt: CheckpointFormat) -> dict:
    if not isinstance(weights, dict) or not all(isinstance(k, str) and isinstance(v, Tensor)
                                                for k, v in weights.items()):
        raise CheckpointError(f"{path}: incomplete checkpoint ({what} is not a dict of tensors); {fmt.refit}")
    bad = sorted(k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if bad:
        raise CheckpointError(f"{path}: the {what} {bad[:3]}{' ...' if len(bad) > 3 else ''} hold NaN or inf; "
                              "refusing to use them (a diverged fit)")
    return weights


def read_checkpoint(path: str | os.PathLike, fmt: CheckpointFormat, config=None) -> dict:
    """Read and check a checkpoint; with ``config``, check it is that run's.

    Parameters
    ----------
    path : path
    fmt : CheckpointFormat
        The kind of run that should have written it.
    config : optional
        The run resumed or loaded (``fmt.config_type``).

    Returns
    -------
    dict
        The checkpoint (module docstring); ``state["config"]`` stays a dict.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    CheckpointError
        Unreadable, another format or version, a field missing or of the wrong type, an epoch
        outside ``0..epochs`` or not the history's last, NaN weights, or another run's.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged files
        # first line only: torch's unpickling errors run over many lines and suggest weights_only=False
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"{path}: cannot read checkpoint, the file is damaged or not a checkpoint "
                              f"({type(exc).__name__}: {detail})") from exc
    if not isinstance(state, dict) or state.get("format") != fmt.name:
        raise CheckpointError(f"{path}: not a {fmt.name} file (field 'format' missing or wrong)")
    _weights(path, state.get("model"), "model weights", fmt)
    if state.get("version") != fmt.version:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')!r}, expected {fmt.version}; "
                              f"{fmt.refit}")
    missing = (set(FIELDS) | set(fmt.extra)) - set(state)
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, it lacks field(s) {sorted(missing)}; {fmt.refit}")
    try:
        stored = fmt.config_type.from_dict(state["config"])
    except (TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: invalid configuration in the checkpoint ({str(exc)[:200]}); "
                              f"{fmt.refit}") from None
    _check_progress(path, state, stored, fmt)
    if config is not None:
        if stored.model != config.model:
            raise CheckpointError(f"{path}: checkpoint is of model {stored.model!r}, this run fits {config.model!r}")
        diff = config.differences(stored)
        if diff:
            raise CheckpointError(f"{path}: checkpoint was written with a different configuration (fields {diff})")
    return state


def _check_progress(path: Path, state: dict, stored, fmt: CheckpointFormat) -> None:
    """The epoch, history and best model are those of a run of ``stored``'s epochs."""
    epoch = state["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or not 0 <= epoch <= stored.epochs:
        raise CheckpointError(f"{path}: field 'epoch' is {epoch!r}, expected an integer in 0..{stored.epochs} "
                              f"(the run's epochs); {fmt.refit}")
    try:
        check_history(state["history"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: field 'history': {exc}; {fmt.refit}") from None
    trained = [h["epoch"] for h in state["history"] if "loss" in h]
    closed_form = not state["optimizer"]
    if trained != list(range(1, epoch + 1)) and not (closed_form and not trained):
        shown = f"{trained[0]}..{trained[-1]}" if trained else "none"
        raise CheckpointError(f"{path}: field 'epoch' is {epoch}, the epochs in its history are {shown}; "
                              f"{fmt.refit}")
    best = state["best"]
    if best is not None:
        if not isinstance(best, dict) or "model" not in best or not isinstance(best.get("epoch"), int) \
                or not 0 < best["epoch"] <= epoch:
            raise CheckpointError(f"{path}: field 'best' is not the record of an epoch up to {epoch}; {fmt.refit}")
        _weights(path, best["model"], "best model's weights", fmt)


def _check_fits(own: dict, weights: dict, path, refit: str) -> None:
    missing = sorted(set(own) - set(weights))
    extra = sorted(set(weights) - set(own))
    shapes = sorted(k for k in set(own) & set(weights) if tuple(own[k].shape) != tuple(weights[k].shape))
    tail = f"; {refit}" if refit else ""

    def few(keys):
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, the model weights lack {few(missing)} "
                              f"({len(missing)} of {len(own)} tensors){tail}")
    if extra or shapes:
        detail = f"unexpected {few(extra)}" if extra else f"other shapes for {few(shapes)}"
        raise CheckpointError(f"{path}: the checkpoint's weights are not this model's ({detail}){tail}")


def _own_names(model: nn.Module, weights: dict) -> dict:
    """``weights`` under ``model``'s names: a model that renamed its weights maps the old names
    (``upgrade_state_dict``, e.g. a checkpoint written before the retina models were composed of parts)."""
    upgrade = getattr(model, "upgrade_state_dict", None)
    return upgrade(weights) if upgrade is not None else weights


def load_weights(model: nn.Module, weights: dict, path: str | os.PathLike, refit: str = "") -> nn.Module:
    """``model.load_state_dict(weights)``; a weight missing, extra or of another shape is a CheckpointError.

    The message names ``path``, says the checkpoint is incomplete (or of another model) and,
    with ``refit``, how to refit. Weights under a model's former names load (:func:`_own_names`).
    """
    weights = _own_names(model, weights)
    _check_fits(model.state_dict(), weights, path, refit)
    model.load_state_dict(weights)
    return model


def restore_training(path: str | os.PathLike, state: dict, fmt: CheckpointFormat, model: nn.Module, optimizer,
                     scheduler, gens: dict[str, torch.Generator]) -> tuple[list, int, dict | None]:
    """Put a checked checkpoint's states into the training objects; ``(history, epoch, best)``.

    Anything that does not fit them (a tensor missing from the weights or the optimiser, a
    generator missing) is a one-line CheckpointError naming ``path`` and how to refit.
    """
    if _own_names(model, state["model"]) is not state["model"]:
        # the optimiser's state is kept per parameter position, and the positions moved with the names
        raise CheckpointError(f"{path}: written before the retina models were composed of parts; its weights "
                              f"load for evaluate and predict, but training cannot resume from it; {fmt.refit}")
    if state["best"] is not None:
        _check_fits(model.state_dict(), state["best"]["model"], path, fmt.refit)
    load_weights(model, state["model"], path, fmt.refit)
    n_params = sum(len(g["params"]) for g in optimizer.state_dict()["param_groups"])
    per_param = state["optimizer"].get("state") if isinstance(state["optimizer"], dict) else None
    # every parameter's state holds the same tensors (Adam: step, exp_avg, exp_avg_sq); one deleted
    # would fail mid-epoch, or resume silently afresh. (A parameter that never had a gradient has none.)
    complete = isinstance(per_param, dict) and len(per_param) <= n_params and all(
        isinstance(s, dict) for s in per_param.values()) and len({frozenset(s) for s in per_param.values()}) <= 1
    if not complete:
        raise CheckpointError(f"{path}: incomplete checkpoint, the optimiser state of the model's {n_params} "
                              f"parameters is not complete; {fmt.refit}")
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        for name, g in gens.items():
            g.set_state(state["rng"][name])
        if "torch_rng" in fmt.extra:
            torch.set_rng_state(state["torch_rng"])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        detail = (str(exc).strip().splitlines() or [""])[0][:120]
        raise CheckpointError(f"{path}: incomplete checkpoint, the optimiser, scheduler or random states do not "
                              f"fit this run ({type(exc).__name__}: {detail}); {fmt.refit}") from None
    return list(state["history"]), int(state["epoch"]), state["best"]


def read_run(run_dir: str | os.PathLike, fmt: CheckpointFormat) -> tuple[RunFolder, Any, dict]:
    """``(folder, config, checkpoint)`` of a run folder: its config.json, and its checkpoint checked against it."""
    folder = RunFolder(run_dir)
    config = folder.read_config(fmt.config_type)
    return folder, config, read_checkpoint(folder.checkpoint, fmt, config)


def load_fitted(model: nn.Module, state: dict, path: str | os.PathLike, fmt: CheckpointFormat) -> nn.Module:
    """Load the weights a run's result used into ``model``: the best epoch's, or the last ones
    without a selection; the checkpoint's every set of weights must fit the model (CheckpointError)."""
    if state.get("best"):
        _check_fits(model.state_dict(), _own_names(model, state["model"]), path, fmt.refit)
        return load_weights(model, state["best"]["model"], path, fmt.refit)
    return load_weights(model, state["model"], path, fmt.refit)
