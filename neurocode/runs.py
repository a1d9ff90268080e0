"""A run folder: its layout, atomic writes, and the one rule for "the same run".

::

    config.json            the FitConfig (+ neurocode and torch versions)
    checkpoint.pt          model, optimiser, scheduler and RNG states (written by fitting.train)
    history.json           the training curve
    receptive_fields.json  the RFs the RF-aware models used, and how they were obtained
    predictions.h5         held-out predictions: ``rates`` [n_test, T, n_cells], ``spikes``
                           [n_test, T, K, n_cells] for spiking models, ``test_stimuli``
    metrics.json           held-out scores
    per_cell_scores.csv    the per-cell scores as a table
    training_curve.png, cell_raster.png

Every file is written atomically (a reader sees the old file or the complete new one), and a
folder that holds a run is never written by another one: :meth:`RunFolder.check` refuses it
before anything is written unless the same run (:meth:`neurocode.fitting.FitConfig.differences`)
is resumed.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from neurocode._io import atomic_path, write_json, write_text

__all__ = ["RunFolder", "RunFolderError", "default_run_dir", "PREDICTIONS_FORMAT"]

PREDICTIONS_FORMAT = "neurocode-predictions"


class RunFolderError(ValueError):
    """A run folder's content is missing, corrupt, or belongs to another run."""


def default_run_dir(model: str, preset: str, fold: int, seed: int, resume: bool = False) -> Path:
    """``runs/{model}-{preset}-fold{fold}-seed{seed}`` (relative to the working directory).

    A new run takes the first of that name, ``…-2``, ``…-3``, … not yet used, so repeating a
    command never collides with an earlier run; ``resume`` takes the latest existing one.
    """
    base = Path("runs") / f"{model}-{preset}-fold{fold}-seed{seed}"
    if not base.exists():
        return base
    latest, i = base, 2
    while (nxt := base.with_name(f"{base.name}-{i}")).exists():
        latest, i = nxt, i + 1
    return latest if resume else nxt


class RunFolder:
    """The files of one fit (module docstring); ``RunFolder(path).metrics`` etc. are their paths."""

    CONFIG = "config.json"
    CHECKPOINT = "checkpoint.pt"
    HISTORY = "history.json"
    PREDICTIONS = "predictions.h5"
    METRICS = "metrics.json"
    SCORES = "per_cell_scores.csv"
    CURVE_FIGURE = "training_curve.png"
    RASTER_FIGURE = "cell_raster.png"
    RECEPTIVE_FIELDS = "receptive_fields.json"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # the files' paths
    config = property(lambda self: self.path / self.CONFIG)
    checkpoint = property(lambda self: self.path / self.CHECKPOINT)
    history = property(lambda self: self.path / self.HISTORY)
    predictions = property(lambda self: self.path / self.PREDICTIONS)
    metrics = property(lambda self: self.path / self.METRICS)
    scores = property(lambda self: self.path / self.SCORES)
    curve_figure = property(lambda self: self.path / self.CURVE_FIGURE)
    raster_figure = property(lambda self: self.path / self.RASTER_FIGURE)
    receptive_fields = property(lambda self: self.path / self.RECEPTIVE_FIELDS)

    # ------------------------------------------------------------------ the one compatibility rule
    def check(self, config, resume: bool) -> None:
        """Refuse, before anything is written, a folder that is not this run's to write.

        Raises
        ------
        FileExistsError
            The path is a file, or the folder holds a run and ``resume`` is False.
        RunFolderError
            ``resume`` into a folder holding another model or configuration.
        neurocode.fitting.CheckpointError
            The checkpoint to resume from is corrupt or of another configuration.
        """
        from neurocode.fitting import load_checkpoint

        if self.path.exists() and not self.path.is_dir():
            raise FileExistsError(f"{self.path}: exists and is not a folder; choose another --out")
        present = [name for name in (self.METRICS, self.CHECKPOINT, self.CONFIG) if (self.path / name).exists()]
        if present and not resume:
            raise FileExistsError(
                f"{self.path}: already holds a run ({', '.join(present)}); pass --resume (resume=True) to continue "
                "or re-score it, or choose another --out"
            )
        if resume and self.config.exists():
            self.check_same_run(config)
        if resume and self.checkpoint.exists():
            load_checkpoint(self.checkpoint, config)  # CheckpointError (corrupt / other run)

    def check_same_run(self, config) -> None:
        """RunFolderError unless the stored configuration is ``config``'s run (device, threads aside)."""
        stored = self.read_config()
        if stored.model != config.model:
            raise RunFolderError(f"run folder {self.path} holds a {stored.model} run, not {config.model}; "
                                 "choose another --out (nothing was changed)")
        diff = config.differences(stored)
        if diff:
            old, new = stored.to_dict(), config.to_dict()
            detail = ", ".join(f"{k}: stored {old.get(k)!r}, now {new[k]!r}" for k in diff)
            raise RunFolderError(
                f"run folder {self.path} holds a run with a different configuration ({detail}); resume with the "
                "same settings or choose another --out (nothing was changed)"
            )

    # ------------------------------------------------------------------ config and history
    def write_config(self, config, **extra: Any) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.config, {**config.to_dict(), **extra})

    def read_config(self):
        """The stored :class:`~neurocode.fitting.FitConfig` (FileNotFoundError / RunFolderError naming the file)."""
        from neurocode.fitting import FitConfig

        path = self.config
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file ({self.path} is not a neurocode run folder)")
        try:
            d = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RunFolderError(f"{path}: corrupt run configuration ({exc})") from None
        if not isinstance(d, dict) or "model" not in d:
            raise RunFolderError(f"{path}: not a neurocode run configuration (field 'model' missing)")
        d = {k: v for k, v in d.items() if k not in ("neurocode_version", "torch_version")}
        try:
            return FitConfig.from_dict(d)
        except (TypeError, ValueError) as exc:
            raise RunFolderError(f"{path}: invalid run configuration ({exc})") from None

    def write_history(self, history: list) -> None:
        write_json(self.history, history)

    def read_history(self) -> list:
        """The training curve ([] when the fit wrote none)."""
        path = self.history
        if not path.exists():
            return []
        try:
            h = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RunFolderError(f"{path}: corrupt training history ({exc})") from None
        if not isinstance(h, list):
            raise RunFolderError(f"{path}: training history must be a list of records")
        return h

    # ------------------------------------------------------------------ predictions and scores
    def write_scores(self, per_cell: dict) -> None:
        cols = ["rate_cc", "count_cc", "baseline_rate_cc", "ceiling_rate_cc", "recorded_ff", "model_ff"]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["cell"] + cols)
        for c in range(len(per_cell["rate_cc"])):
            w.writerow([c] + ["" if not np.isfinite(per_cell[k][c]) else f"{per_cell[k][c]:.6g}" for k in cols])
        write_text(self.scores, buf.getvalue())

    def read_predictions(self, config, n_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(preds, rates, test_stimuli)`` of ``predictions.h5``, checked against ``config`` and T."""
        return read_predictions(self.predictions, config, n_steps)


def write_predictions(path: Path, config, preds: np.ndarray, rates: np.ndarray, test_idx: np.ndarray | None,
                      **attrs) -> None:
    """Predictions file: ``rates``, ``spikes`` (spiking models), ``test_stimuli`` (when given), ``attrs``."""
    import h5py

    from neurocode.fitting import predicts_rates

    spiking = not predicts_rates(config)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = PREDICTIONS_FORMAT
            f.attrs["model"] = config.model
            f.attrs["bin_size"] = float(config.bin_size)
            f.attrs["n_trials"] = int(preds.shape[2]) if spiking else 0
            f.attrs["seed"] = int(config.seed)
            f.attrs["fold"] = int(config.fold)
            for key, value in attrs.items():
                f.attrs[key] = value
            if spiking:
                ds = f.create_dataset("spikes", data=preds.astype(np.uint8), compression="gzip", compression_opts=4)
                ds.attrs["dims"] = "stimulus, time bin, model trial, cell"
            ds = f.create_dataset("rates", data=rates.astype(np.float32), compression="gzip", compression_opts=4)
            ds.attrs["dims"] = "stimulus, time bin, cell"
            ds.attrs["unit"] = "expected spikes per bin"
            if test_idx is not None:
                f.create_dataset("test_stimuli", data=np.asarray(test_idx, dtype=np.int64))


def read_predictions(path: Path, config, n_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(preds, rates, test_stimuli)``: spikes (spiking models) or rates, the rates, the test images."""
    import h5py

    from neurocode.fitting import predicts_rates

    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such file (the run did not finish; continue it with `neurocode fit ... --resume`)"
        )
    key = "rates" if predicts_rates(config) else "spikes"
    try:
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
            fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
            if fmt != PREDICTIONS_FORMAT:
                raise RunFolderError(f"{path}: not a neurocode predictions file (attribute 'format' is {fmt!r})")
            kind = f.attrs.get("model")
            kind = kind.decode() if isinstance(kind, bytes) else kind
            if kind != config.model:
                raise RunFolderError(f"{path}: holds predictions of a {kind} model, the run's config.json says "
                                     f"{config.model}")
            if key not in f:
                raise RunFolderError(f"{path}: dataset '{key}' missing")
            preds = f[key][()]
            # files of neurocode 0.1 held no rates for spiking models: the spike average is theirs
            rates = f["rates"][()] if "rates" in f else preds.mean(2).astype(np.float32)
            test = f["test_stimuli"][()] if "test_stimuli" in f else None
    except RunFolderError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py raises many types for damaged files
        raise RunFolderError(f"{path}: cannot read predictions ({type(exc).__name__}: {exc})") from None
    if test is None:
        raise RunFolderError(f"{path}: dataset 'test_stimuli' missing")
    want_ndim = 3 if predicts_rates(config) else 4
    if preds.ndim != want_ndim or preds.shape[0] != len(test) or preds.shape[1] != n_steps:
        raise RunFolderError(f"{path}: dataset '{key}' has shape {preds.shape}, expected "
                             f"[{len(test)}, {n_steps}{', K' if want_ndim == 4 else ''}, n_cells]")
    if rates.shape != (preds.shape[0], preds.shape[1], preds.shape[-1]):
        raise RunFolderError(f"{path}: dataset 'rates' has shape {rates.shape}, expected "
                             f"[{preds.shape[0]}, {preds.shape[1]}, {preds.shape[-1]}]")
    for name, arr in ((key, preds), ("rates", rates)):
        if not np.all(np.isfinite(arr)):
            raise RunFolderError(f"{path}: dataset '{name}' contains NaN or infinite values")
    return preds, rates, np.asarray(test, dtype=np.int64)
