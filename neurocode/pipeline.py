"""The main job: fit a retina model to the recording, predict the held-out images, score it.

:func:`fit` runs one fit end to end and writes a *run folder* (:class:`neurocode.runs.RunFolder`:
config, checkpoint, history, predictions, metrics, per-cell scores, figures; every file written
atomically, and a folder that holds a run never written by another one).
:func:`evaluate` recomputes ``metrics.json``, the table and the figures from a run folder.
The scores themselves are computed by :func:`neurocode.analysis.scores.compute_metrics`
and printed by :func:`neurocode.analysis.scores.format_metrics`; the figures are
:func:`neurocode.plotting.plot_training_curve` and
:func:`neurocode.plotting.plot_representative_cell`.

Scores (held-out stimuli: the images of the fold, or the clips of a repeated segment)
------------------------------------------------------------------------------------
For a continuous recording the test stimuli are the clips of its repeated segment, with one
trial per repeat; the baseline is then the mean rate (its ``rate_cc`` is ~0) and the ceiling
the split half over the repeats. Test stimuli with different trial counts are scored on the
trials all of them have.

``rate_cc``
    Per cell, Pearson r between the recorded trial-averaged PSTH and the model's (the
    ``rates`` of :func:`neurocode.fitting.predict`: for an RF-architecture NSNN the mean over
    K sampled trials of each trial's firing probability, for other spiking models the spike
    average, for rate models the predicted rate), the test images' PSTHs concatenated in time.
``count_cc``
    Per cell, Pearson r across test images of the trial-averaged spike count in the window.
``baseline_rate_cc``
    ``rate_cc`` of a stimulus-independent baseline: each cell's mean PSTH over the training
    images, repeated for every test image (the "time since the flash" alone; the floor).
``ceiling_rate_cc``
    Split-half reliability of the recording on the same images: Pearson r between the PSTHs
    of even and odd trials (the ceiling; no Spearman-Brown correction).
``ln_rate_cc``, ``ln_count_cc``
    The same scores of the LN reference model (``ln``: RF features, no core, a rectified output) fitted
    on the same training images, so every run reports where the field's first model is.
``val_rate_cc``, ``best_epoch``
    The validation score of the kept weights and their epoch (the LN: its chosen ridge).
``fano_corr``
    Pearson r across cells between the recorded and the model's Fano factor of whole-window
    spike counts (per test image across trials: 30 recorded, K model; averaged over the
    test images where defined). ``null`` where undefined: a CNN has no trials, a DSNN's
    trials are identical (FF = 0 for every cell), fewer than 5 cells have both
    (:data:`~neurocode.analysis.statistics.MIN_CORRELATION_POINTS`).
``n_averaged``
    Per score, how many cells its mean is over (``fano_corr``: how many cells it correlates).
    Every cell whose recorded response varies on the test stimuli is scored: one the model
    does not predict (a constant, e.g. silent, or non-finite prediction) scores r = 0, so a
    model cannot raise its mean by leaving cells out; only cells with a constant recording
    (r undefined for any model) are left out of the means.
``mmd2``, ``mmd2_floor``, ``ff_abs_diff``, ``ff_corr``, ``noise_corr_r``, ``peak_ratio``, ...
    The single-trial distribution, the same for every model, each sampled from its own
    likelihood (:func:`neurocode.analysis.distribution.model_single_trials`; ``distribution_sampling``
    says how: an NSNN's stored trials, a population-readout DSNN's rates repeated in each of
    ``eval_trials`` trials, a CNN's or LN's ``eval_trials`` Poisson draws seeded by the run's
    seed, the dispersion CNN's stored draws from its own count likelihood); defined in
    :mod:`neurocode.analysis.distribution`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from neurocode._io import sha256_file, write_json
from neurocode.analysis.distribution import distribution_scores, model_single_trials
from neurocode.analysis.scores import compute_metrics, format_metrics
from neurocode.fitting import ARCH_CONFIGS, MOVED_FIELDS, FitConfig, load_checkpoint, predicts_rates
from neurocode.neurons._kernels import caching_scope, subnormals_flushed  # both within fit/predict/evaluate only
from neurocode.runs import RunFolder, RunFolderBusy, RunFolderError, default_run_dir, write_predictions

__all__ = ["RunResult", "RunFolderError", "RunFolderBusy", "FitInterrupted", "fit", "recording_sha256", "evaluate", "default_run_dir", "load_run",
           "predict_run", "simulate_run", "check_provenance"]

@dataclass
class RunResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    run_dir : Path
        The run folder.
    config : FitConfig
    metrics : dict
        The content of ``metrics.json``.
    history : list of dict
        The training curve (``history.json``).
    """

    run_dir: Path
    config: Any
    metrics: dict
    history: list = field(default_factory=list)

    def __str__(self) -> str:  # printing a result shows the scores
        return format_metrics(self.metrics) + f"\nrun folder: {self.run_dir}"


# --------------------------------------------------------------------------- fit
class FitInterrupted(KeyboardInterrupt):
    """A fit stopped by Ctrl-C (SIGINT); says whether an epoch was checkpointed to resume from."""

    def __init__(self, run_dir: Path, checkpointed: bool):
        super().__init__(str(run_dir))
        self.run_dir, self.checkpointed = Path(run_dir), checkpointed


def recording_sha256(config) -> str:
    """SHA-256 of the recording file a configuration names (the bundled file when None).

    Raises
    ------
    ValueError
        The file is an HDF5 file that reads data from other files (an external link, a
        virtual dataset, external raw storage): its hash would not cover what is read, so such
        a file is refused (the message names the file and the object).
    """
    from neurocode.data import bundled_path
    from neurocode.data.hdf5 import check_self_contained

    path = config.data if config.data is not None else bundled_path()
    check_self_contained(path)
    return sha256_file(path)


def check_provenance(folder: RunFolder, config=None) -> str:
    """The one provenance check of every command that reads a run: the recording file the run's
    ``config.json`` names must be the file it was fitted to (SHA-256 stored at the fit).

    ``fit --resume``, ``evaluate``, ``predict``, :func:`simulate_run` and a ``sweep`` that
    would skip or resume a run all call it before reading the recording. A run written before
    the hash was stored (no ``data_sha256``) passes.

    Returns
    -------
    str
        The recording file's SHA-256 now.

    Raises
    ------
    RunFolderError
        The file changed since the fit (the message names the run folder and the file).
    ValueError
        The file reads data from other HDF5 files (:func:`recording_sha256`).
    """
    config = folder.read_config(FitConfig) if config is None else config
    digest = recording_sha256(config)
    stored = folder.read_config_extra().get("data_sha256")
    if stored is not None and stored != digest:
        from neurocode.data import bundled_path

        path = config.data if config.data is not None else bundled_path()
        raise RunFolderError(f"{folder.path}: the recording file changed since this run was fitted ({path}: "
                             f"SHA-256 {stored[:12]}... then, {digest[:12]}... now); its scores, normalisation and "
                             "receptive fields belong to the old file: fit again on the new file, or score the run "
                             "against it with `neurocode evaluate --rescore` (rescore=True; written to "
                             "metrics_rescored.json)")
    return digest


@caching_scope
@subnormals_flushed
def fit(model: str = "nsnn", data: str | os.PathLike | None = None, preset: str | None = None, fold: int = 0,
        seed: int = 0, out: str | os.PathLike | None = None, resume: bool = False, overwrite: bool = False,
        progress: bool = True, on_epoch=None, **overrides) -> RunResult:
    """Fit a retina model to the recording, predict the held-out images and score them.

    Parameters
    ----------
    model : {"nsnn", "dsnn", "cnn"}
        Noisy spiking network (noise-driven learning), deterministic spiking network
        (surrogate gradient) or the CNN baseline.
    data : path, optional
        A neurocode HDF5 recording file or an NWB file; None is the bundled retina-2
        recording. ``recording=NAME`` chooses a recording in a file that holds several.
    preset : {"quick", "paper", "movie"}, optional
        "paper": the paper's architecture, Adam, cosine-decayed lr from 3e-4, batch 64,
        64 epochs. "quick": RF-aware models that learn in a few minutes on a CPU. "movie":
        continuous recordings cut into clips (1 s, 33-ms bins, 90×90 px). None: "movie" for
        a continuous recording, else "quick".
    fold : int
        Held-out fold (5 folds by image: 48 training / 12 test images).
    seed : int
        Seed of the split, the initialisation, the noise and the batch order.
    out : path, optional
        Run folder; default ``runs/{model}-{preset}-fold{fold}-seed{seed}`` (with a ``-2``,
        ``-3``, … suffix when that exists; with ``resume``, the latest of them).
    resume : bool
        Continue an interrupted run in ``out`` from its checkpoint (same result as an
        uninterrupted run), or re-predict and re-score a finished one. The configuration
        must be the one stored in the folder (``device`` and ``threads`` excepted: the
        learning-rate schedule depends on the epoch count, so it cannot change), and the
        recording file the one it was fitted to (SHA-256).
    overwrite : bool
        Replace the run ``out`` holds (its files are deleted first), or write into a folder
        that holds files neurocode did not make (those keep, except any with a run file's name).
    progress : bool
        Show a progress bar.
    on_epoch : callable, optional
        Called as ``on_epoch(epoch, record)`` after each epoch's checkpoint is written.
    **overrides
        Any :class:`~neurocode.fitting.FitConfig` field (``epochs=``, ``lr=``,
        ``input_size=``, ``eval_trials=``, ``device=``, ``threads=``, ...), ``architecture=``, and the
        fit's architecture config as :func:`~neurocode.fitting.make_config` takes it (``rf={...}``).

    Returns
    -------
    RunResult

    Raises
    ------
    ValueError
        A bad argument (unknown model, preset or option, fold out of range, ...), or
        ``resume`` into a folder that holds a different run (:class:`RunFolderError`).
    FileNotFoundError
        ``data`` does not exist.
    FileExistsError
        ``out`` already holds a run and neither ``resume`` nor ``overwrite`` is given, or it
        holds files neurocode did not make and ``overwrite`` is not given.
    RunFolderBusy
        Another process is fitting, evaluating or predicting in ``out``.
    FitInterrupted
        Ctrl-C during training (a KeyboardInterrupt).
    neurocode.fitting.CheckpointError
        The checkpoint to resume from is corrupt or belongs to another configuration.

    Nothing in ``out`` is written or overwritten before these checks pass.
    """
    from neurocode.data import ContinuousRecording, load_recording
    from neurocode.fitting import check_device, make_config, prepare_data, train

    # 1. configuration (a bad argument names itself)
    known = {f.name for f in fields(FitConfig)} - {"model", "preset", "data", "fold", "seed"}
    # make_config's: the architecture and its config by name, the sections' old flat fields
    known |= {"architecture", *ARCH_CONFIGS, *MOVED_FIELDS}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown fit option(s) {unknown}; valid options: {sorted(known)}")
    if data is not None:
        data = Path(data).expanduser()
        if not data.is_file():
            raise FileNotFoundError(f"{data}: no such recording file (--data)")
        data = str(data.resolve())
    # the recording first: its kind chooses the default preset, and its errors come before any write
    recording = load_recording(data, overrides.get("recording"), stimulus_column=overrides.get("nwb_stimulus_column"),
                               stimulus=overrides.get("nwb_stimulus"))
    if preset is None:
        preset = "movie" if isinstance(recording, ContinuousRecording) else "quick"
    config = make_config(model, preset, data=data, fold=fold, seed=seed, **overrides)
    check_device(config.device)  # a GPU this machine lacks is refused before anything is written

    # 2. the run folder: one writer at a time, and nothing written before the checks pass
    run_dir = RunFolder(out).path if out is not None else default_run_dir(config.model, config.preset, config.fold, config.seed, resume)
    folder = RunFolder(run_dir)
    with folder.lock():
        folder.check(config, resume, overwrite, load_checkpoint=load_checkpoint)
        digest = check_provenance(folder, config) if resume and folder.config.exists() else recording_sha256(config)

        # 3. data (errors in the recording surface before the folder is created)
        fit_data = prepare_data(config, recording)

        # 4. train
        if overwrite:
            folder.clear()
        folder.write_config(config, data_sha256=digest)
        if fit_data.rfs is not None:
            write_json(folder.receptive_fields, fit_data.rfs.to_dict())
        folder.write_normalizer(fit_data.normalizer)
        try:
            net, history = train(config, fit_data, checkpoint=folder.checkpoint, resume=resume, progress=progress,
                                 on_epoch=on_epoch, ln_reference=folder.path / folder.LN_REFERENCE)
        except KeyboardInterrupt:
            raise FitInterrupted(run_dir, folder.checkpoint.exists()) from None
        folder.write_history(history)
        return _predict_and_score(folder, config, fit_data, net, history)


def _predict_and_score(folder: RunFolder, config, fit_data, net, history: list) -> RunResult:
    run_dir = folder.path

    # 5. predict the held-out images (the first and only time the test images are read)
    from neurocode.fitting import predict

    preds, rates = predict(config, net, fit_data, fit_data.test_idx, return_rates=True)
    write_predictions(folder.predictions, config, preds, rates, fit_data.test_idx)

    # 6. score, next to the LN reference on the same split
    from neurocode.models import parameter_count

    ln = None if config.kind.reference else ln_reference(config, fit_data, folder.path / folder.LN_REFERENCE)
    metrics = _evaluate(run_dir, config, fit_data, preds, rates, fit_data.test_idx, history, parameter_count(net),
                        ln=ln)
    return RunResult(run_dir=run_dir, config=config, metrics=metrics, history=history)


def ln_reference(config, data, path=None) -> dict:
    """The fit's LN reference (:func:`neurocode.fitting.fit_ln_reference`, cached in ``path``)
    scored on the test images.

    Returns ``{"rate_cc", "count_cc", "ridge"}``; the RFs are those of ``data`` (or
    estimated from its training images, for the paper architecture's models).
    """
    from neurocode.data.receptive_fields import receptive_fields_for
    from neurocode.fitting import fit_ln_reference, ln_reference_config, predict

    if data.rfs is None:
        data = dataclasses.replace(data, rfs=receptive_fields_for(data.recording, data.train_idx,
                                                                  bin_size=data.bin_size))
    model, history = fit_ln_reference(config, data, path)
    rates = predict(ln_reference_config(config, data.is_clips), model, data, data.test_idx)
    m = compute_metrics(data.test_counts(), rates, data.psth(data.train_idx).numpy(), spiking=False,
                        bin_size=config.bin_size)
    return {"rate_cc": m["rate_cc"], "count_cc": m["count_cc"], "ridge": history[-1].get("chosen_ridge"),
            "n_averaged": m["n_averaged"]}


def load_run(run_dir: str | os.PathLike, device: str = "cpu"):
    """The fitted model of a run folder, ready to predict.

    The recording file must be the one the run was fitted to (:func:`check_provenance`): the
    model's cells, bins and split come from it. The image normalisation and the receptive
    fields are the ones stored in the run folder at the fit (``normalizer.json``,
    ``receptive_fields.json``), not re-derived; runs written before they were stored
    re-derive them from the (hash-checked) file.

    Returns
    -------
    config : FitConfig
    model : nn.Module
        With the checkpoint's weights, in eval mode, on ``device``.
    data : FitData
        The recording prepared as for the fit (same split and normalisation).

    Raises
    ------
    RunFolderError
        The recording file changed since the fit, or a stored file is corrupt.
    """
    from neurocode.checkpoints import load_fitted, read_checkpoint
    from neurocode.fitting import FIT_CHECKPOINT, build_model, prepare_data

    folder = RunFolder(run_dir)
    config = folder.read_config(FitConfig)
    check_provenance(folder, config)  # before the checkpoint: a changed file is named as such
    state = read_checkpoint(folder.checkpoint, FIT_CHECKPOINT, config)
    config = dataclasses.replace(config, device=device)
    data = prepare_data(config)
    normalizer, rfs = folder.read_normalizer(), folder.read_receptive_fields(data.n_cells)
    data = dataclasses.replace(data, normalizer=data.normalizer if normalizer is None else normalizer,
                               rfs=data.rfs if rfs is None else rfs)
    model = build_model(config, data.n_cells, rfs=data.rfs, n_steps=data.n_steps, n_lags=data.n_lags)
    load_fitted(model, state, folder.checkpoint, FIT_CHECKPOINT)
    return config, model.to(device).eval(), data


def _fano_end_summary(history: list[dict]) -> dict | None:
    """What a Fano end (``noisy_lif_fano_end*``) set, from its history record: the noise scale's range, its
    Pearson r across cells with the recorded Fano factor, and the model's |ΔFF| on the training images."""
    record = next((h["fano_end"] for h in history if "fano_end" in h), None)
    if record is None:
        return None
    target, model = (np.array([np.nan if v is None else v for v in record[k]], float) for k in ("target_ff", "model_ff"))
    sigma = np.array(record["sigma"], float)
    both = np.isfinite(target) & np.isfinite(model)
    out = {"sigma_min": float(sigma.min()), "sigma_max": float(sigma.max()),
           "r_sigma_recorded_ff": record.get("r_sigma_target"),
           "train_ff_abs_diff": float(np.abs(target - model)[both].mean()) if both.any() else None,
           "cells": int(both.sum())}
    if record.get("gain"):
        out["gain_min"], out["gain_max"] = float(min(record["gain"])), float(max(record["gain"]))
    return out


def _is_recording_file(path: Path) -> bool:
    """A neurocode recording file or an NWB file (by content, whatever its name)."""
    if path.suffix.lower() == ".nwb":
        return True
    try:
        import h5py

        from neurocode.data.hdf5 import FILE_FORMAT

        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
            fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
            return fmt == FILE_FORMAT or "nwb_version" in f.attrs
    except Exception:  # noqa: BLE001 - not an HDF5 file (or unreadable): not a recording
        return False


def predictions_target(run_dir: Path, out: str | os.PathLike | None, stem: str, overwrite: bool = False) -> Path:
    """Where ``predict`` may write: refuses, before any work, a file it must not replace.

    Raises
    ------
    FileExistsError
        ``out`` exists (without ``overwrite``), is a folder, or is a recording file (never
        replaced, even with ``overwrite``).
    ValueError
        ``out`` is in a run folder (this one or another) and is not ``predictions_<name>.h5``:
        a run's own files (config.json, predictions.h5, ...) are never written by ``predict``.
    """
    out = Path(out) if out is not None else run_dir / f"predictions_{stem}.h5"
    if str(out).strip() in ("", "."):
        raise ValueError("--out is empty; give the predictions file's name")
    real = Path(os.path.realpath(out))  # a link is judged by what it points at
    if real.is_dir():
        raise FileExistsError(f"{out}: is a folder; --out names the predictions file (e.g. {out}/predictions.h5)")
    if (real.parent / RunFolder.CONFIG).is_file() and not (real.name.startswith("predictions_")
                                                           and real.name.endswith(".h5")):
        raise ValueError(f"{out}: in the run folder {real.parent}, predict writes only predictions_<name>.h5 "
                         "(a run's own files are never replaced); choose another --out")
    if os.path.lexists(out):
        if _is_recording_file(real):
            raise FileExistsError(f"{out}: is a recording file; predictions never replace one, choose another --out")
        if not overwrite:
            raise FileExistsError(f"{out}: exists; pass --overwrite to replace it, or choose another --out")
    return out


@caching_scope
@subnormals_flushed
def predict_run(run_dir: str | os.PathLike, stimuli: str | os.PathLike | np.ndarray,
                out: str | os.PathLike | None = None, n_trials: int | None = None, overwrite: bool = False) -> Path:
    """Predict a run folder's model on new stimuli and write the predictions (HDF5).

    Parameters
    ----------
    run_dir : path
    stimuli : path or np.ndarray
        Frames ``[n, H, W]`` or clips ``[n, F, H, W]`` (see
        :func:`neurocode.fitting.predict_stimuli`), or a ``.npy`` file (``.npz``: key ``stimuli``).
    out : path, optional
        Default ``RUN_DIR/predictions_<file stem>.h5`` (``predictions_new.h5`` for an array).
        Never a file of a run folder other than ``predictions_<name>.h5``, never a recording
        file (:func:`predictions_target`).
    n_trials : int, optional
        Sampled trials per stimulus (default: the run's ``eval_trials``).
    overwrite : bool
        Replace an existing ``out`` (refused otherwise).

    Returns
    -------
    Path
        The file: ``rates`` float32 ``[n, T, n_cells]`` (expected spikes per bin), ``spikes``
        uint8 ``[n, T, K, n_cells]`` for spiking models, attributes ``bin_size``, ``model``.

    Raises
    ------
    RunFolderError
        The recording file changed since the fit (:func:`check_provenance`).
    FileExistsError, ValueError
        ``out`` is not a file predict may write (:func:`predictions_target`).
    """
    from neurocode.fitting import predict_stimuli

    run_dir = Path(run_dir)
    if isinstance(stimuli, np.ndarray):
        frames, stem = stimuli, "new"
    else:
        frames, stem = load_stimulus_file(stimuli), Path(stimuli).stem
    out = predictions_target(run_dir, out, stem, overwrite)
    with RunFolder(run_dir).lock():
        config, model, data = load_run(run_dir)
        preds, rates = predict_stimuli(config, model, data, frames, n_trials=n_trials, return_rates=True)
        write_predictions(out, config, preds, rates, None, overwrite=overwrite, run_dir=str(run_dir.resolve()))
    return out


def load_stimulus_file(path: str | os.PathLike) -> np.ndarray:
    """Stimuli from a ``.npy`` file (or the array ``stimuli`` of a ``.npz``), without unpickling."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such stimulus file (--stimuli)")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a .npy/.npz array file ({exc})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        if "stimuli" not in loaded.files:
            raise ValueError(f"{path}: .npz file lacks the array 'stimuli' (found {loaded.files})")
        loaded = loaded["stimuli"]
    return loaded


@caching_scope
@subnormals_flushed
def simulate_run(run_dir: str | os.PathLike, stimuli: np.ndarray | None = None, n_trials: int = 20, seed: int = 0):
    """A fitted model as a digital twin: an in-silico recording of its responses to ``stimuli``.

    Spiking models (one unit per cell) record their own sampled spikes; rate models (CNN,
    LN, population-code DSNN) record Poisson spikes at their predicted rates
    (:func:`neurocode.simulate.simulate_from_rates`).

    Parameters
    ----------
    run_dir : path
    stimuli : np.ndarray, optional
        Frames ``[n, H, W]`` or clips ``[n, F, H, W]``, as for :func:`neurocode.fitting.predict_stimuli`;
        None: the run's held-out stimuli.
    n_trials : int
        Trials per stimulus.
    seed : int

    Returns
    -------
    Recording
        ``[n, n_cells, n_trials]`` trains over the model's response bins, the stimuli attached
        (clips as given: their first ``n_lags - 1`` frames are history before the window);
        ``provenance["recording_provenance"]`` is the fitted recording's (its NWB metadata).
    """
    from neurocode.fitting import predict_stimuli
    from neurocode.simulate import recording_from_spikes, simulate_from_rates

    config, model, data = load_run(run_dir)
    frames = np.asarray(data.recording.stimuli[data.test_idx] if stimuli is None else stimuli)
    preds, rates = predict_stimuli(config, model, data, frames, n_trials=n_trials, seed=seed, return_rates=True)
    dt = float(config.bin_size)
    t0 = float(data.recording.window[0])
    clip = dict(frame_interval=dt, stimulus_start=t0 - (data.n_lags - 1) * dt) if data.is_clips else {}
    prov = {"digital_twin_of": str(Path(run_dir).resolve()), "model": config.model,
            "recording_provenance": data.recording.provenance}
    if predicts_rates(config):
        return simulate_from_rates(rates, dt, n_trials=n_trials, stimuli=frames, window=(t0, t0 + rates.shape[1] * dt),
                                   seed=seed, name=f"twin_{config.model}", provenance=prov, **clip)
    return recording_from_spikes(preds, dt, stimuli=frames, t_start=t0, name=f"twin_{config.model}", provenance=prov,
                                 **clip)


# --------------------------------------------------------------------------- evaluate
@caching_scope
@subnormals_flushed
def evaluate(run_dir: str | os.PathLike, recording=None, rescore: bool = False) -> dict:
    """Recompute the held-out scores of a run folder and write them there.

    Reads ``config.json`` and ``predictions.h5``, reloads the recording named in the
    configuration (or uses ``recording``, a :class:`~neurocode.data.Recording`), and
    writes ``metrics.json``, ``per_cell_scores.csv``, ``training_curve.png`` (if
    ``history.json`` is present) and ``cell_raster.png``.

    The recording file must be the one the run was fitted to (its SHA-256 is stored in
    ``config.json``). ``rescore=True`` scores the run against a changed file instead and
    writes only ``metrics_rescored.json`` (the run's own files stay as they are).

    Returns
    -------
    dict
        The metrics (see the module docstring for their definitions).

    Raises
    ------
    FileNotFoundError
        ``run_dir``, its ``config.json`` or ``predictions.h5`` is missing.
    RunFolderError
        A file of the run folder is corrupt or inconsistent with the others or with the
        recording; the recording file changed since the fit (without ``rescore``).
    RunFolderBusy
        Another process is fitting or predicting in the folder.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    folder = RunFolder(run_dir)
    with folder.lock():
        return _rescore(folder, recording, rescore)


def _rescore(folder: RunFolder, recording, rescore: bool) -> dict:
    from neurocode.fitting import build_model, prepare_data
    from neurocode.models import parameter_count

    run_dir = folder.path
    config = folder.read_config(FitConfig)
    changed = False
    if recording is None:
        try:
            check_provenance(folder, config)
        except RunFolderError:
            if not rescore:
                raise
            changed = True
    data = prepare_data(config, recording)
    preds, rates, test = folder.read_predictions(config, data.n_steps)
    if not np.array_equal(test, data.test_idx):
        raise RunFolderError(
            f"{folder.predictions}: test images {test.tolist()} differ from the split of the recording "
            f"and config ({data.test_idx.tolist()}); was the recording file changed?"
        )
    if preds.shape[-1] != data.n_cells:
        raise RunFolderError(f"{folder.predictions}: {preds.shape[-1]} cells, the recording has {data.n_cells}")
    history = folder.read_history()
    import torch

    with torch.random.fork_rng(devices=[]):
        n_params = parameter_count(build_model(config, data.n_cells, rfs=data.rfs, n_steps=data.n_steps,
                                               n_lags=data.n_lags))
    ln = None if config.kind.reference else ln_reference(config, data, folder.path / folder.LN_REFERENCE)
    return _evaluate(run_dir, config, data, preds, rates, test, history, n_params, ln=ln, rescored=changed)


def _evaluate(run_dir: Path, config, data, preds: np.ndarray, rates: np.ndarray, test: np.ndarray, history: list,
              n_params: int, ln: dict | None = None, rescored: bool = False) -> dict:
    from neurocode import __version__
    from neurocode.plotting import plot_representative_cell, plot_training_curve, save_figure

    counts = data.test_counts()
    spiking = not predicts_rates(config)
    m = compute_metrics(counts, preds, data.psth(data.train_idx).numpy(), spiking, config.bin_size, model_rates=rates)
    # the single-trial distribution: every model sampled from its own likelihood, the same scores
    sampling = "trials" if spiking else "deterministic" if config.kind.spiking and not config.kind.noisy else "poisson"
    trials = model_single_trials(preds, sampling, n_trials=config.eval_trials, seed=config.seed)
    dist = {"distribution_sampling": sampling, **distribution_scores(counts, trials, seed=config.seed)}
    per_cell = {**m.pop("per_cell"), **dist.pop("per_cell")}
    m.update(dist)
    metrics: dict[str, Any] = {
        "model": config.model,
        "preset": config.preset,
        "fold": int(config.fold),
        "seed": int(config.seed),
        "recording": data.recording.name,
        "data": config.data,
        "window": list(data.recording.window),
        "n_bins": int(data.n_steps),
        "stimulus": "clips" if data.is_clips else "flashed frames",
        "split": "designated test stimuli (repeated segment)" if data.recording.test_stimuli is not None
                 else f"fold {config.fold} of {config.n_folds} by stimulus",
        "preprocessing": data.preprocessing,
        "n_test_images": int(len(test)),
        "n_train_images": int(len(data.train_idx)),
        "n_validation_images": int(len(data.val_idx)),
        "validation_stimuli": [int(i) for i in data.val_idx],
        "test_stimuli": [int(i) for i in test],
        "n_cells": int(counts.shape[-1]),
        "test_trials": int(counts.shape[2]),
        "model_trials": int(preds.shape[2]) if spiking else None,
        "parameter_count": int(n_params),
        "epochs": int(config.epochs),
        "architecture": config.architecture,
        "rf_source": None if data.rfs is None else data.rfs.source,
        "rf_method": None if data.rfs is None else data.rfs.method,
        "bin_size": float(config.bin_size),
    }
    metrics.update(m)
    summary = [h for h in history if "best_epoch" in h or "chosen_ridge" in h]
    metrics["val_rate_cc"] = float(summary[-1]["val_rate_cc"]) if summary else None
    metrics["best_epoch"] = int(summary[-1]["best_epoch"]) if summary and "best_epoch" in summary[-1] else None
    if summary and "chosen_ridge" in summary[-1]:
        metrics["ln_ridge"] = float(summary[-1]["chosen_ridge"])
    reference = ln if ln is not None else m if config.kind.reference else None
    if reference is not None:
        metrics["ln_rate_cc"], metrics["ln_count_cc"] = reference["rate_cc"], reference["count_cc"]
        metrics["n_averaged"].update({f"ln_{k}": reference["n_averaged"][k] for k in ("rate_cc", "count_cc")})
    if ln is not None:
        metrics["ln_ridge"] = ln.get("ridge")
    if not spiking:
        # a rate model (CNN, population-mean readout): its mean rate is reported, it has no spikes
        metrics["model_ff"] = None
    train_records = [h for h in history if "loss" in h]
    metrics["final_loss"] = float(train_records[-1]["loss"]) if train_records else None
    initial = [h for h in history if "initial_rates" in h]
    metrics["initial_rates"] = [float(v) for v in initial[0]["initial_rates"]] if initial else None
    metrics["output_noise_set"] = _fano_end_summary(history)
    metrics["neurocode_version"] = __version__
    metrics["per_cell"] = per_cell
    folder = RunFolder(run_dir)
    if rescored:  # against a recording file other than the fitted one: the run's own files stay
        metrics["data_sha256"] = recording_sha256(config)
        path = folder.path / "metrics_rescored.json"
        write_json(path, metrics)
        return json.loads(path.read_text())
    write_json(folder.metrics, metrics)
    folder.write_scores(per_cell)
    if train_records:
        save_figure(plot_training_curve(history, loss=config.loss, title=_title(config)), folder.curve_figure)
    elif folder.curve_figure.exists():
        folder.curve_figure.unlink()
    fig = plot_representative_cell(counts, preds, rates, per_cell["rate_cc"], dt=float(config.bin_size),
                                   name=config.model.upper(), rates_only=not spiking)
    save_figure(fig, folder.raster_figure)
    # what the caller gets back is what a reader of metrics.json gets (None for NaN, lists)
    return json.loads(folder.metrics.read_text())


def _title(config) -> str:
    return f"{config.model.upper()} ({config.preset}), fold {config.fold}, seed {config.seed}"
