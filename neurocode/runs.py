"""A run folder: its layout, atomic writes, and the one rule for "the same run".

::

    config.json            the FitConfig (+ neurocode and torch versions)
    checkpoint.pt          model, optimiser, scheduler and RNG states, history, best model
                           (:mod:`neurocode.checkpoints`, written by fitting.train every epoch)
    history.json           the training curve
    ln_reference.pt        the LN reference fitted on the same split (fitting.fit_ln_reference)
    receptive_fields.json  the RFs the RF-aware models used, and how they were obtained
    normalizer.json        the training images' mean and SD the model's input was z-scored with
    predictions.h5         held-out predictions: ``rates`` [n_test, T, n_cells], ``spikes``
                           [n_test, T, K, n_cells] for spiking models, ``test_stimuli``
    metrics.json           held-out scores
    per_cell_scores.csv    the per-cell scores as a table
    training_curve.png, cell_raster.png

Every file is written atomically (a reader sees the old file or the complete new one), and a
folder that holds a run is never written by another one: :meth:`RunFolder.check` refuses it
before anything is written unless the same run (:meth:`neurocode.fitting.FitConfig.differences`)
is resumed.

Recognition runs (:mod:`neurocode.recognition.training`) use the same skeleton: a
:class:`RunConfig` dataclass in config.json, the folder's lock and checks, and the checkpoints
of :mod:`neurocode.checkpoints`.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from neurocode._io import write_json, write_text

__all__ = ["RunFolder", "RunFolderError", "RunFolderBusy", "RunConfig", "default_run_dir", "check_history",
           "PREDICTIONS_FORMAT"]

PREDICTIONS_FORMAT = "neurocode-predictions"


class RunFolderError(ValueError):
    """A run folder's content is missing, corrupt, or belongs to another run."""


class RunFolderBusy(RunFolderError):
    """Another process (a fit, evaluate or predict) holds the run folder's lock."""


#: Fields of a training record and what they hold: epochs (integers >= 0), numbers (null where
#: NaN) and per-cell lists of numbers; a record's other fields are free.
_HISTORY_EPOCHS = ("epoch", "best_epoch")
_HISTORY_NUMBERS = ("loss", "lr", "val_rate_cc", "ridge", "chosen_ridge", "train_accuracy", "val_accuracy",
                    "val_loss", "seconds")
_HISTORY_LISTS = ("initial_rates", "gain_multipliers")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_history(history) -> list:
    """``history`` if it is a list of training records (``history.json``), else ValueError saying where not.

    A record is a dict; its ``epoch`` / ``best_epoch`` are integers >= 0, its ``loss``, ``lr``,
    validation scores and ridge strengths numbers or null, ``initial_rates`` lists of numbers,
    and a record with a ``loss`` has an ``epoch``.
    """
    if not isinstance(history, list):
        raise ValueError(f"expected a list of training records, got {type(history).__name__}")
    for i, record in enumerate(history):
        if not isinstance(record, dict):
            raise ValueError(f"record {i} is {type(record).__name__}, expected an object")
        for key, value in record.items():
            if key in _HISTORY_EPOCHS:
                ok, want = isinstance(value, int) and not isinstance(value, bool) and value >= 0, "an integer >= 0"
            elif key in _HISTORY_NUMBERS:
                ok, want = value is None or _number(value), "a number"
            elif key in _HISTORY_LISTS:
                ok, want = isinstance(value, list) and all(v is None or _number(v) for v in value), "a list of numbers"
            else:
                continue
            if not ok:
                raise ValueError(f"record {i}: field {key!r} is {str(value)[:40]!r}, expected {want}")
        if "loss" in record and "epoch" not in record:
            raise ValueError(f"record {i} has a 'loss' but no 'epoch'")
    return history


class RunConfig:
    """The config.json side of a run's frozen configuration dataclass (mixed into it).

    ``to_dict`` / ``from_dict`` are the round trip through config.json (lists back to tuples,
    unknown fields refused); ``differences`` is the one rule of "the same run": every field
    counts but those in the class's ``RESUMABLE`` (where a run executes and what is measured
    after training), which may change when a run is resumed.
    """

    RESUMABLE: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {sorted(unknown)}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})

    def differences(self, other) -> list[str]:
        """Fields (sorted) in which ``other`` is another run than this one."""
        a, b = self.to_dict(), other.to_dict()
        return sorted(k for k in a if k not in self.RESUMABLE and a[k] != b.get(k))


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
    RESCORED = "metrics_rescored.json"
    NORMALIZER = "normalizer.json"
    LN_REFERENCE = "ln_reference.pt"

    #: Every file a fit writes (the folder holds only these, our temporary files and
    #: ``predictions_*.h5`` of ``neurocode predict``).
    FILES = (CONFIG, CHECKPOINT, HISTORY, PREDICTIONS, METRICS, SCORES, CURVE_FIGURE, RASTER_FIGURE,
             RECEPTIVE_FIELDS, RESCORED, NORMALIZER, LN_REFERENCE)

    def __init__(self, path: str | os.PathLike):
        if not os.fspath(path).strip():
            raise ValueError("the run folder path is empty (--out); give a folder name")
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
    normalizer = property(lambda self: self.path / self.NORMALIZER)

    # ------------------------------------------------------------------ one writer at a time
    @property
    def lock_file(self) -> Path:
        """The lock beside the folder (``.NAME.lock`` in its parent): taking it creates nothing inside."""
        resolved = self.path.resolve()
        return resolved.parent / f".{resolved.name}.lock"

    @contextlib.contextmanager
    def lock(self):
        """Hold the folder's OS-level lock for the block, or raise :class:`RunFolderBusy` at once.

        A fit holds it from its checks to its last write, ``evaluate`` and ``predict`` while
        they read and write, so two processes never write one run folder.
        """
        from filelock import FileLock, Timeout

        path = self.lock_file
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise RunFolderBusy(f"{self.path}: another neurocode process (a fit, evaluate or predict) is using "
                                "this run folder; wait for it to finish or choose another --out") from None
        try:
            yield self
        finally:
            lock.release()

    # ------------------------------------------------------------------ the one compatibility rule
    def foreign_files(self, files: tuple[str, ...] = ()) -> list[str]:
        """Entries of the folder that no run of neurocode wrote (all of them, if it holds no run);
        ``files``: names a kind of run writes beside the common ones."""
        if not self.path.is_dir():
            return []
        names = sorted(p.name for p in self.path.iterdir())
        if self.CONFIG not in names:
            return names
        ours = set(self.FILES) | set(files)
        return [n for n in names if n not in ours and not (n.startswith("predictions_") and n.endswith(".h5"))
                and not (n.startswith(".") and n.endswith(".tmp"))]  # .NAME.XXXX.tmp: an atomic write's

    def check(self, config, resume: bool, overwrite: bool = False, *, load_checkpoint,
              files: tuple[str, ...] = ()) -> None:
        """Refuse, before anything is written, a folder that is not this run's to write.

        Parameters
        ----------
        config : FitConfig, or another frozen run configuration
            Any dataclass with ``model``, ``to_dict()``, ``from_dict()`` and
            ``differences(other)`` (a classifier's ``ClassifyConfig``).
        resume : bool
            Continue (or re-score) the run the folder holds.
        overwrite : bool
            Write into a folder that holds files neurocode did not make (they are left alone,
            except those with the names of a run's files), or replace the run it holds (its
            files are deleted first).
        load_checkpoint : callable
            ``load_checkpoint(path, config)`` raising on a corrupt checkpoint or one of another
            run (:func:`neurocode.fitting.load_checkpoint` for a fit).
        files : tuple of str
            Names this kind of run writes beside the common ones (not foreign files).

        Raises
        ------
        ValueError
            ``resume`` and ``overwrite`` together.
        FileExistsError
            The path is a file; the folder holds files neurocode did not make; or it holds a
            run and neither ``resume`` nor ``overwrite`` is given.
        RunFolderError
            ``resume`` into a folder holding another model or configuration.
        neurocode.checkpoints.CheckpointError
            The checkpoint to resume from is corrupt or of another configuration.
        """
        if resume and overwrite:
            raise ValueError("--resume continues the run in the folder, --overwrite replaces it: give one of them")
        if self.path.exists() and not self.path.is_dir():
            raise FileExistsError(f"{self.path}: exists and is not a folder; choose another --out")
        foreign = self.foreign_files(files)
        if foreign and not overwrite:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise FileExistsError(f"{self.path}: holds files neurocode did not make ({shown}); choose another --out "
                                  "or pass --overwrite to write into it anyway (nothing was changed)")
        present = [name for name in (self.METRICS, self.CHECKPOINT, self.CONFIG) if (self.path / name).exists()]
        if present and not (resume or overwrite):
            raise FileExistsError(
                f"{self.path}: already holds a run ({', '.join(present)}); pass --resume (resume=True) to continue "
                "or re-score it, --overwrite to replace it, or choose another --out"
            )
        if resume and self.config.exists():
            self.check_same_run(config)
        if resume and self.checkpoint.exists():
            load_checkpoint(self.checkpoint, config)  # CheckpointError (corrupt / other run)

    def clear(self) -> None:
        """Delete the run's files (not any other file in the folder): ``--overwrite`` starts afresh."""
        for name in self.FILES:
            (self.path / name).unlink(missing_ok=True)

    def check_same_run(self, config) -> None:
        """RunFolderError unless the stored configuration is ``config``'s run (where it runs aside)."""
        stored = self.read_config(type(config))
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
        """config.json: ``config.to_dict()``, the neurocode and torch versions, and ``extra``
        (:data:`CONFIG_EXTRA`: the recording's SHA-256, the kind of run)."""
        import torch

        from neurocode import __version__

        unknown = set(extra) - set(self.CONFIG_EXTRA)
        if unknown:
            raise ValueError(f"config.json holds no field(s) {sorted(unknown)} beside the configuration")
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.config, {**config.to_dict(), "neurocode_version": __version__,
                                 "torch_version": torch.__version__, **extra})

    #: What config.json holds beside the configuration's fields: versions, the recording's
    #: SHA-256, the kind of run.
    CONFIG_EXTRA = ("neurocode_version", "torch_version", "data_sha256", "kind")

    def _read_config_json(self) -> dict:
        path = self.config
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file ({self.path} is not a neurocode run folder)")
        try:
            d = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RunFolderError(f"{path}: corrupt run configuration ({exc})") from None
        except RecursionError:
            raise RunFolderError(f"{path}: not a neurocode run configuration (nested too deeply)") from None
        if not isinstance(d, dict) or "model" not in d:
            raise RunFolderError(f"{path}: not a neurocode run configuration (field 'model' missing)")
        return d

    def read_config(self, kind):
        """The stored configuration as a ``kind`` (e.g. :class:`~neurocode.fitting.FitConfig`;
        FileNotFoundError / RunFolderError naming the file)."""

        d = {k: v for k, v in self._read_config_json().items() if k not in self.CONFIG_EXTRA}
        try:
            return kind.from_dict(d)
        except (TypeError, ValueError, RecursionError) as exc:
            raise RunFolderError(f"{self.config}: invalid run configuration ({str(exc)[:300]})") from None

    def read_config_extra(self) -> dict:
        """The versions and the recording's SHA-256 stored beside the configuration (absent keys: older runs)."""
        d = self._read_config_json()
        return {k: d[k] for k in self.CONFIG_EXTRA if k in d}

    def read_metrics(self) -> dict:
        """metrics.json ({} before the run has finished; RunFolderError naming the file if it is corrupt)."""
        path = self.metrics
        if not path.exists():
            return {}
        try:
            m = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise RunFolderError(f"{path}: corrupt metrics ({str(exc)[:200]})") from None
        if not isinstance(m, dict):
            raise RunFolderError(f"{path}: metrics must be a JSON object, got {type(m).__name__}")
        return m

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
        try:
            return check_history(h)
        except ValueError as exc:
            raise RunFolderError(f"{path}: invalid training history ({exc}); restore the file the fit wrote or "
                                 "refit") from None

    # ------------------------------------------------------------------ what predict reuses
    def write_normalizer(self, normalizer) -> None:
        """Store an :class:`~neurocode.data.ImageNormalizer`'s mean and SD (``normalizer.json``)."""
        write_json(self.normalizer, {"mean": normalizer.mean_, "std": normalizer.std_,
                                     "unit": "grey levels of the resampled frames"})

    def read_normalizer(self):
        """The stored :class:`~neurocode.data.ImageNormalizer` (None for runs written before it was stored)."""
        from neurocode.data import ImageNormalizer

        d = self._read_json(self.normalizer, "image normalisation")
        if d is None:
            return None
        mean, std = (d.get(k) if isinstance(d, dict) else None for k in ("mean", "std"))
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in (mean, std)) \
                or std <= 0:
            raise RunFolderError(f"{self.normalizer}: fields 'mean' and 'std' must be finite numbers, std > 0")
        normalizer = ImageNormalizer()
        normalizer.mean_, normalizer.std_ = float(mean), float(std)
        return normalizer

    def read_receptive_fields(self, n_cells: int):
        """The stored receptive fields of ``n_cells`` cells (None when the run stored none)."""
        from neurocode.data.receptive_fields import ReceptiveFields

        d = self._read_json(self.receptive_fields, "receptive fields")
        if d is None:
            return None
        try:
            rfs = ReceptiveFields.from_dict(d)
        except (TypeError, ValueError, KeyError) as exc:
            raise RunFolderError(f"{self.receptive_fields}: invalid receptive fields ({str(exc)[:300]})") from None
        if rfs.n_cells != n_cells:
            raise RunFolderError(f"{self.receptive_fields}: {rfs.n_cells} cells, the recording has {n_cells}")
        return rfs

    @staticmethod
    def _read_json(path: Path, what: str):
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise RunFolderError(f"{path}: corrupt {what} ({type(exc).__name__})") from None

    # ------------------------------------------------------------------ predictions and scores
    def write_scores(self, per_cell: dict) -> None:
        cols = ["rate_cc", "count_cc", "baseline_rate_cc", "ceiling_rate_cc", "recorded_ff", "model_ff"]
        cols += [k for k in per_cell if k not in cols]  # e.g. the distribution scores' per-cell columns
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
                      overwrite: bool = True, **attrs) -> None:
    """Predictions file: ``rates``, ``spikes`` (spiking models), ``test_stimuli`` (when given), ``attrs``;
    ``overwrite=False``: FileExistsError if ``path`` exists, also when it appears meanwhile."""
    from neurocode._io import atomic_h5

    spiking = not config.kind.predicts_rates(config)
    # built in memory, written in one piece: a full disk is a WriteError naming the file (no crash)
    with atomic_h5(path, overwrite=overwrite) as f:
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

    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such file (the run did not finish; continue it with `neurocode fit ... --resume`)"
        )
    key = "rates" if config.kind.predicts_rates(config) else "spikes"
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
    want_ndim = 3 if config.kind.predicts_rates(config) else 4
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
