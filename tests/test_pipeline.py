"""neurocode.fit / neurocode.evaluate: run folder, resume, metrics, bad input.

The fits use a tiny network on 16-px images (a few seconds each) on the bundled recording.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import neurocode
from neurocode.fitting import CheckpointError, FitConfig
from neurocode.analysis.scores import compute_metrics
from neurocode.analysis.scores import format_metrics
from neurocode.pipeline import RunFolderError, evaluate, fit

TINY = dict(preset="quick", architecture="paper", epochs=3, input_size=16, eval_trials=4, model_trials=2, threads=1,
            snn={"channels": (2, 4), "kernel_sizes": (5, 3), "hidden": (8,)})
# the paper's CNN: a fit holds only its own architecture config, and no spiking settings
TINY_CNN = {**{k: v for k, v in TINY.items() if k not in ("snn", "model_trials")},
            "cnn": {"channels": (2, 4), "kernel_sizes": (5, 3)}}
RUN_FILES = ["config.json", "checkpoint.pt", "history.json", "predictions.h5", "metrics.json",
             "per_cell_scores.csv", "training_curve.png", "cell_raster.png", "ln_reference.pt"]
MEAN_KEYS = ["rate_cc", "count_cc", "baseline_rate_cc", "ceiling_rate_cc", "fano_corr"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "nsnn"
    result = fit("nsnn", out=out, progress=False, **TINY)
    return result


def _snapshot(folder: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


def _copy(run, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run.run_dir, dst)
    return dst


# --------------------------------------------------------------------------- end to end
def test_fit_writes_every_file_and_metric(tiny_run):
    d = tiny_run.run_dir
    for name in RUN_FILES:
        assert (d / name).is_file(), name
    m = json.loads((d / "metrics.json").read_text())
    assert m == tiny_run.metrics
    for key in MEAN_KEYS:
        assert key in m
        assert key in m["per_cell"] or key == "fano_corr"
    for key in ["rate_cc", "count_cc", "baseline_rate_cc", "ceiling_rate_cc", "recorded_ff", "model_ff"]:
        assert len(m["per_cell"][key]) == 49
    assert m["model"] == "nsnn" and m["preset"] == "quick" and m["fold"] == 0 and m["seed"] == 0
    assert m["n_test_images"] == 12 and m["n_train_images"] == 48 and m["n_cells"] == 49
    assert m["parameter_count"] > 0 and m["model_trials"] == 4
    assert -1 <= m["rate_cc"] <= 1 and 0 < m["ceiling_rate_cc"] <= 1
    assert m["model_rate_hz"] > 0 and m["recorded_rate_hz"] > 0
    assert len(m["initial_rates"]) == 4  # conv1, conv2, one hidden FC, output
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["model"] == "nsnn" and cfg["epochs"] == 3 and "torch_version" in cfg and "neurocode_version" in cfg
    hist = json.loads((d / "history.json").read_text())
    assert hist[0]["epoch"] == 0 and "initial_rates" in hist[0]
    assert [h["epoch"] for h in hist[1:-1]] == [1, 2, 3]
    assert hist[-1]["best_epoch"] in (1, 2, 3) and m["best_epoch"] == hist[-1]["best_epoch"]
    with h5py.File(d / "predictions.h5") as f:
        s = f["spikes"]
        assert s.dtype == np.uint8 and s.shape == (12, 30, 4, 49)
        assert f["test_stimuli"].dtype == np.int64 and len(f["test_stimuli"]) == 12
        assert f.attrs["model"] == "nsnn" and f.attrs["n_trials"] == 4 and f.attrs["bin_size"] == 0.01
        assert set(np.unique(s[()])) <= {0, 1}
    rows = (d / "per_cell_scores.csv").read_text().splitlines()
    assert rows[0] == ("cell,rate_cc,count_cc,baseline_rate_cc,ceiling_rate_cc,recorded_ff,model_ff,"
                       "mmd2,mmd2_floor,recorded_ff_active,model_ff_active")
    assert len(rows) == 50
    text = format_metrics(m)
    assert "rate CC" in text and "NSNN" in text and "initial firing rates" in text
    assert "MMD²" in text and "floor (split half)" in text and "noise correlations" in text
    assert m["distribution_model_trials"] == 4 and m["mmd2_n_stimuli"] == 12 and m["mmd2_n_cells"] == 49
    assert str(tiny_run).endswith(f"run folder: {d}")


def test_fit_reduces_the_loss(tiny_run):
    losses = [h["loss"] for h in tiny_run.history if "loss" in h]
    assert len(losses) == 3
    assert losses[-1] < losses[0]
    assert all(np.isfinite(losses))


def test_evaluate_recomputes_the_same_metrics(tiny_run, tmp_path):
    d = _copy(tiny_run, tmp_path)
    (d / "metrics.json").unlink()
    (d / "cell_raster.png").unlink()
    m = evaluate(d)
    assert m == tiny_run.metrics
    assert (d / "cell_raster.png").is_file()


def test_evaluate_reuses_the_runs_ln_reference_and_refits_it_only_when_missing(tiny_run, tmp_path, monkeypatch):
    """The LN reference is a step of the run: fitted once, stored in the folder, reused by evaluate
    (and evaluate --rescore); without the file, evaluate fits it again and stores it."""
    import neurocode.fitting as fitting

    d = _copy(tiny_run, tmp_path)
    stored = (d / "ln_reference.pt").read_bytes()
    calls = []
    real_train = fitting.train
    monkeypatch.setattr(fitting, "train", lambda *a, **k: calls.append(a[0].model) or real_train(*a, **k))
    m = evaluate(d)
    assert calls == [] and m["ln_rate_cc"] == tiny_run.metrics["ln_rate_cc"]
    assert (d / "ln_reference.pt").read_bytes() == stored
    (d / "ln_reference.pt").unlink()
    m = evaluate(d)
    assert calls == ["ln"] and (d / "ln_reference.pt").is_file()
    assert m["ln_rate_cc"] == tiny_run.metrics["ln_rate_cc"]


def test_package_exports():
    assert neurocode.fit is fit and neurocode.evaluate is evaluate
    assert {"fit", "evaluate"} <= set(neurocode.__all__)


def test_resume_equals_uninterrupted(tiny_run, tmp_path):
    out = tmp_path / "interrupted"

    class Stop(Exception):
        pass

    def stop_after_first(epoch, record):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        fit("nsnn", out=out, progress=False, on_epoch=stop_after_first, **TINY)
    assert (out / "checkpoint.pt").is_file() and not (out / "metrics.json").exists()
    # without --resume the interrupted run is protected
    with pytest.raises(FileExistsError, match="--resume"):
        fit("nsnn", out=out, progress=False, **TINY)
    resumed = fit("nsnn", out=out, progress=False, resume=True, **TINY)

    a = torch.load(tiny_run.run_dir / "checkpoint.pt", weights_only=True)
    b = torch.load(out / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    with h5py.File(tiny_run.run_dir / "predictions.h5") as fa, h5py.File(out / "predictions.h5") as fb:
        assert np.array_equal(fa["spikes"][()], fb["spikes"][()])
    assert resumed.history == tiny_run.history
    drop = {"data"}
    assert {k: v for k, v in resumed.metrics.items() if k not in drop} == \
        {k: v for k, v in tiny_run.metrics.items() if k not in drop}


def test_resume_of_a_finished_run_rescores_without_training(tiny_run, tmp_path):
    d = _copy(tiny_run, tmp_path)
    before = torch.load(d / "checkpoint.pt", weights_only=True)
    r = fit("nsnn", out=d, progress=False, resume=True, **TINY)
    after = torch.load(d / "checkpoint.pt", weights_only=True)
    for k in before["model"]:
        assert torch.equal(before["model"][k], after["model"][k])
    assert r.metrics == tiny_run.metrics


@pytest.mark.parametrize("model, readout", [("dsnn", "mean"), ("dsnn", "sum"), ("cnn", None)])
def test_fit_other_models(model, readout, tmp_path):
    kwargs = dict(TINY_CNN if model == "cnn" else TINY)
    if readout == "sum":  # the paper's DSNN readout: one deterministic spiking unit per cell
        kwargs["snn"] = {**TINY["snn"], "readout_units": 1, "readout": "sum"}
    elif readout == "mean":  # a population-mean readout of 8 units per cell
        kwargs["snn"] = {**TINY["snn"], "readout_units": 8, "readout": "mean"}
    r = fit(model, out=tmp_path / model, progress=False, **kwargs)
    m = r.metrics
    assert m["model"] == model
    assert m["fano_corr"] is None  # DSNN: FF = 0 for every cell (or a rate readout); CNN: no trials
    with h5py.File(r.run_dir / "predictions.h5") as f:
        if readout == "sum":
            s = f["spikes"][()]
            assert s.shape == (12, 30, 4, 49)
            assert (s == s[:, :, :1]).all()  # identical trials
            assert all(v == 0 for v in m["per_cell"]["model_ff"] if v is not None)
            # the distribution scores see the deterministic trials: FF 0, no count residuals
            assert all(v == 0 for v in m["per_cell"]["model_ff_active"] if v is not None)
            assert m["noise_corr_r"] is None and m["noise_corr_model_mean"] is None
        else:  # the CNN's rates, or the DSNN's population-mean readout (default)
            rates = f["rates"][()]
            assert rates.dtype == np.float32 and rates.shape == (12, 30, 49)
            assert m["model_trials"] is None
            if model == "dsnn":
                # fraction of a cell's units firing: multiples of 1 / readout_units
                units = r.config.arch.readout_units
                np.testing.assert_allclose(rates * units, np.round(rates * units), atol=1e-4)
                # the distribution scores: the population-mean readout is its every (identical) trial
                assert m["distribution_sampling"] == "deterministic" and m["ff_model"] in (0.0, None)
            else:
                assert m["initial_rates"] is None
                # scored on Poisson draws from its rates, as many trials as an NSNN samples
                assert m["distribution_sampling"] == "poisson" and m["distribution_model_trials"] == 4
                assert m["ff_model"] > 0 and m["mmd2"] is not None
    for name in RUN_FILES:
        assert (r.run_dir / name).is_file()
    assert np.isfinite(m["rate_cc"])


# --------------------------------------------------------------------------- metrics on synthetic cases
def _synthetic(seed=0, n=6, T=30, R=10, N=5, n_train=8):
    rng = np.random.default_rng(seed)
    rate = rng.gamma(2.0, 0.05, size=(n + n_train, T, 1, N))
    counts = (rng.random((n + n_train, T, R, N)) < rate).astype(float)
    return counts[:n], counts[n:]


def test_metrics_perfect_model():
    rec, train = _synthetic()
    m = compute_metrics(rec, rec.copy(), train, spiking=True)
    assert m["rate_cc"] == pytest.approx(1.0) and m["count_cc"] == pytest.approx(1.0)
    assert np.allclose(m["per_cell"]["rate_cc"], 1.0)
    assert m["fano_corr"] == pytest.approx(1.0)
    assert m["model_rate_hz"] == pytest.approx(m["recorded_rate_hz"])
    # a CNN predicting the recorded trial mean exactly
    mc = compute_metrics(rec, rec.mean(axis=2), train, spiking=False)
    assert mc["rate_cc"] == pytest.approx(1.0) and mc["count_cc"] == pytest.approx(1.0)
    assert mc["fano_corr"] is None


def test_metrics_stimulus_independent_model_equals_baseline():
    rec, train = _synthetic(1)
    base = train.mean(axis=(0, 2))  # [T, N] expected spikes per bin
    model = np.broadcast_to(base, (rec.shape[0],) + base.shape).copy()
    m = compute_metrics(rec, model, train, spiking=False)
    assert np.allclose(m["per_cell"]["rate_cc"], m["per_cell"]["baseline_rate_cc"])
    assert m["rate_cc"] == pytest.approx(m["baseline_rate_cc"])
    # the same counts in every image: the model predicts no count differences, which scores 0
    assert (m["per_cell"]["count_cc"] == 0).all() and m["count_cc"] == 0
    assert m["n_averaged"]["count_cc"] == rec.shape[-1]


def test_metrics_constant_model_fano_is_null():
    rec, train = _synthetic(2)
    one = (rec[:, :, :1] > 0).astype(float)
    model = np.repeat(one, 4, axis=2)  # deterministic model: identical trials
    m = compute_metrics(rec, model, train, spiking=True)
    assert m["fano_corr"] is None
    ff = m["per_cell"]["model_ff"]
    assert np.all((ff == 0) | np.isnan(ff))


def test_metrics_match_hand_computation():
    rec, train = _synthetic(3, n=4, T=12, R=6, N=5, n_train=5)
    rng = np.random.default_rng(9)
    model = (rng.random((4, 12, 7, 5)) < 0.2).astype(float)
    m = compute_metrics(rec, model, train, spiking=True, bin_size=0.01)
    for c in range(5):
        rp = rec[..., c].mean(axis=2).ravel()
        mp = model[..., c].mean(axis=2).ravel()
        assert m["per_cell"]["rate_cc"][c] == pytest.approx(np.corrcoef(rp, mp)[0, 1])
        bp = np.tile(train[..., c].mean(axis=(0, 2)), 4)
        assert m["per_cell"]["baseline_rate_cc"][c] == pytest.approx(np.corrcoef(rp, bp)[0, 1])
        rc = rec[..., c].sum(axis=1).mean(axis=1)
        mc = model[..., c].sum(axis=1).mean(axis=1)
        assert m["per_cell"]["count_cc"][c] == pytest.approx(np.corrcoef(rc, mc)[0, 1])
        even = rec[:, :, 0::2, c].mean(axis=2).ravel()
        odd = rec[:, :, 1::2, c].mean(axis=2).ravel()
        assert m["per_cell"]["ceiling_rate_cc"][c] == pytest.approx(np.corrcoef(even, odd)[0, 1])

        def ff(x):  # x [n, trials] whole-window counts -> mean FF over images with a defined FF
            mu, var = x.mean(axis=1), x.var(axis=1)
            ok = mu > 0
            return (var[ok] / mu[ok]).mean()

        assert m["per_cell"]["recorded_ff"][c] == pytest.approx(ff(rec[..., c].sum(axis=1)))
        assert m["per_cell"]["model_ff"][c] == pytest.approx(ff(model[..., c].sum(axis=1)))
    r = np.corrcoef(m["per_cell"]["recorded_ff"], m["per_cell"]["model_ff"])[0, 1]
    assert m["fano_corr"] == pytest.approx(r)
    assert m["recorded_rate_hz"] == pytest.approx(rec.mean() / 0.01)


def test_evaluate_perfect_predictions_file(tiny_run, tmp_path):
    """evaluate() reads predictions.h5: the recorded trials themselves score rate CC 1."""
    from neurocode.fitting import prepare_data
    from neurocode.runs import RunFolder

    d = _copy(tiny_run, tmp_path)
    cfg = RunFolder(d).read_config(FitConfig)
    data = prepare_data(cfg)
    with h5py.File(d / "predictions.h5", "r+") as f:
        del f["spikes"], f["rates"]
        f["spikes"] = data.counts.numpy()[data.test_idx].astype(np.uint8)
        f["rates"] = data.counts.numpy()[data.test_idx].mean(2).astype(np.float32)
    m = evaluate(d)
    finite = [v for v in m["per_cell"]["rate_cc"] if v is not None]
    assert np.allclose(finite, 1.0) and m["rate_cc"] == pytest.approx(1.0)
    assert m["fano_corr"] == pytest.approx(1.0)
    # the distribution scores of the recording against itself
    assert m["ff_abs_diff"] == 0.0 and m["ff_corr"] == pytest.approx(1.0) and m["ff_n_cells"] > 40
    assert m["peak_ratio"] == pytest.approx(1.0) and m["peak_max_ratio"] == pytest.approx(1.0)
    assert m["noise_corr_r"] == pytest.approx(1.0) and m["noise_corr_n_pairs"] > 1000
    assert m["mmd2"] <= 0 and m["mmd2_cell"] <= 0  # identical sets: minus the diagonal's excess


# --------------------------------------------------------------------------- bad input
def test_unknown_model_preset_option(tmp_path):
    with pytest.raises(ValueError, match="model"):
        fit("lstm", out=tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="preset"):
        fit("nsnn", preset="huge", out=tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="epoch"):
        fit("nsnn", out=tmp_path / "a", progress=False, epoch=3)
    with pytest.raises(ValueError, match="epochs"):
        fit("nsnn", out=tmp_path / "a", progress=False, epochs=0)
    assert not (tmp_path / "a").exists()


def test_missing_data_file(tmp_path):
    missing = tmp_path / "nope.h5"
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        fit("nsnn", data=missing, out=tmp_path / "a", progress=False)
    assert not (tmp_path / "a").exists()


def test_fold_out_of_range(tmp_path):
    for fold in (5, -1):
        with pytest.raises(ValueError, match="fold"):
            fit("nsnn", fold=fold, out=tmp_path / "a", progress=False)
    assert not (tmp_path / "a").exists()


def test_existing_run_is_not_overwritten(tiny_run, tmp_path):
    d = _copy(tiny_run, tmp_path)
    before = _snapshot(d)
    with pytest.raises(FileExistsError, match="--resume"):
        fit("nsnn", out=d, progress=False, **TINY)
    assert _snapshot(d) == before


def test_corrupt_checkpoint(tiny_run, tmp_path):
    d = _copy(tiny_run, tmp_path)
    (d / "checkpoint.pt").write_bytes(b"\x00garbage, not a checkpoint" * 10)
    before = _snapshot(d)
    with pytest.raises(CheckpointError, match="checkpoint.pt"):
        fit("nsnn", out=d, progress=False, resume=True, **TINY)
    assert _snapshot(d) == before


def test_run_folder_of_another_model(tiny_run, tmp_path):
    d = _copy(tiny_run, tmp_path)
    before = _snapshot(d)
    with pytest.raises(RunFolderError, match="holds a nsnn run, not cnn"):
        fit("cnn", out=d, progress=False, resume=True, **TINY_CNN)
    assert _snapshot(d) == before
    # same model, different settings: also refused
    with pytest.raises(RunFolderError, match="input_size"):
        fit("nsnn", out=d, progress=False, resume=True, **{**TINY, "input_size": 20})
    assert _snapshot(d) == before


def test_evaluate_bad_run_folders(tiny_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        evaluate(tmp_path / "missing")
    d = _copy(tiny_run, tmp_path)
    (d / "predictions.h5").rename(d / "p.h5")
    with pytest.raises(FileNotFoundError, match="predictions.h5"):
        evaluate(d)
    (d / "predictions.h5").write_bytes(b"not hdf5")
    with pytest.raises(RunFolderError, match="predictions.h5"):
        evaluate(d)
    (d / "p.h5").replace(d / "predictions.h5")
    cfg = json.loads((d / "config.json").read_text())
    as_cnn = {**{k: v for k, v in cfg.items() if k not in ("snn", "spiking")}, "model": "cnn", "loss": "poisson",
              "cnn": {}}
    (d / "config.json").write_text(json.dumps(as_cnn))
    with pytest.raises(RunFolderError, match="predictions of a nsnn model"):
        evaluate(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(RunFolderError, match="config.json"):
        evaluate(d)
    (d / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        evaluate(d)


def test_default_run_dir_never_collides_and_resume_takes_latest(tmp_path, monkeypatch):
    from neurocode.pipeline import default_run_dir

    monkeypatch.chdir(tmp_path)
    first = default_run_dir("nsnn", "quick", 0, 0)
    assert first == Path("runs/nsnn-quick-fold0-seed0")
    assert default_run_dir("nsnn", "quick", 0, 0, resume=True) == first
    first.mkdir(parents=True)
    second = default_run_dir("nsnn", "quick", 0, 0)
    assert second == Path("runs/nsnn-quick-fold0-seed0-2")
    assert default_run_dir("nsnn", "quick", 0, 0, resume=True) == first
    second.mkdir()
    assert default_run_dir("nsnn", "quick", 0, 0) == Path("runs/nsnn-quick-fold0-seed0-3")
    assert default_run_dir("nsnn", "quick", 0, 0, resume=True) == second


def test_atomic_writes_get_usual_permissions(tmp_path):
    import os

    from neurocode._io import write_json

    umask = os.umask(0o022)
    try:
        p = write_json(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(umask)
    assert p.stat().st_mode & 0o777 == 0o644


def test_load_run_restores_the_fitted_model(tiny_run):
    from neurocode.fitting import predict
    from neurocode.pipeline import load_run

    config, model, data = load_run(tiny_run.run_dir)
    assert config.device == "cpu"  # loaded for prediction here, whatever the fit ran on
    assert {**config.to_dict(), "device": None} == {**tiny_run.config.to_dict(), "device": None}
    assert not model.training
    with h5py.File(tiny_run.run_dir / "predictions.h5") as f:
        saved = f["spikes"][()]
    # same weights and the same prediction seed: the run's predictions are reproduced exactly
    np.testing.assert_array_equal(predict(config, model, data, data.test_idx, n_trials=saved.shape[2]), saved)


def test_metrics_fano_cells_count_only_cells_defined_in_both():
    rec, train = _synthetic(4, N=8)
    rng = np.random.default_rng(11)
    model = (rng.random(rec.shape[:2] + (6, 8)) < 0.3).astype(float)
    rec[..., 1] = 0.0    # a silent recorded cell: no recorded FF
    model[..., 3] = 0.0  # a silent model cell: no model FF
    m = compute_metrics(rec, model, train, spiking=True)
    assert m["n_averaged"]["fano_corr"] == 6
    ok = [0, 2, 4, 5, 6, 7]
    r = np.corrcoef(m["per_cell"]["recorded_ff"][ok], m["per_cell"]["model_ff"][ok])[0, 1]
    assert m["fano_corr"] == pytest.approx(r)


def _printed_metrics(**extra) -> dict:
    m = {"model": "nsnn", "preset": "movie", "fold": 0, "seed": 0, "n_test_images": 9, "n_cells": 20,
         "parameter_count": 100, "bin_size": 0.033, "rate_cc": 0.8, "count_cc": 0.5, "ln_rate_cc": 0.7,
         "ln_count_cc": 0.4, "baseline_rate_cc": 0.0, "ceiling_rate_cc": 0.7, "fano_corr": 0.3, "n_averaged": {"fano_corr": 17},
         "recorded_ff": 1.0, "model_ff": 0.9, "model_rate_hz": 5.0, "recorded_rate_hz": 5.1, "val_rate_cc": 0.6,
         "best_epoch": 4, "epochs": 20, "n_validation_images": 8}
    m.update(extra)
    return m


def test_printout_of_a_clip_recording_counts_clips_not_images():
    text = format_metrics(_printed_metrics(stimulus="clips"))
    assert "images" not in text
    assert "9 held-out clips" in text and "count CC (across clips)" in text and "8 validation clips" in text
    assert "0.300 over 17 cells" in text


def test_printout_of_flashed_images_and_of_an_undefined_fano_correlation():
    text = format_metrics(_printed_metrics(stimulus="flashed frames", fano_corr=None, n_averaged={"fano_corr": 2}))
    assert "9 held-out images" in text and "count CC (across images)" in text and "8 validation images" in text
    fano = next(line for line in text.splitlines() if "Fano factor corr." in line)
    assert "n/a" in fano and "cells  " not in fano and "over" not in fano


def test_printout_of_one_validation_clip_is_singular():
    text = format_metrics(_printed_metrics(stimulus="clips", n_validation_images=1))
    assert "1 validation clip)" in text


def test_a_run_written_before_the_neuron_spec_loads_and_resumes(tmp_path, monkeypatch):
    """Run folders written before the neuron spec (no noise family; the core / output neuron
    ablations as their own fields) and when a fit held all three architecture configs load,
    evaluate (reusing their cached LN reference) and resume as the same run."""
    import json

    import neurocode.fitting as fitting
    from neurocode.fitting import load_checkpoint
    from neurocode.models import CNNConfig, SNNConfig
    from neurocode.models.rf import RFConfig
    from neurocode.pipeline import load_run

    before = dict(TINY)
    d = tmp_path / "before"
    original = fit("nsnn", out=d, progress=False, **before)

    def as_before(config: dict) -> None:
        """A config of today as such a run stored it: all three architectures, the RF one in its old fields, and
        the flat fields of before the sections (every fit held all five)."""
        assert sum(name in config for name in ("snn", "cnn", "rf")) == 1
        for name, kind in (("snn", SNNConfig), ("cnn", CNNConfig), ("rf", RFConfig)):
            config.setdefault(name, dataclasses.asdict(kind()))
        config["rf"] = {**dataclasses.asdict(RFConfig()), **config["rf"]}  # the LN's held the neurons' settings too
        assert config["snn"].pop("noise") == "gaussian" and config["rf"].pop("noise") == "gaussian"
        assert config["rf"].pop("core_neuron") is None and config["rf"].pop("output_neuron") is None
        assert config["rf"].pop("readout") is None
        config["rf"].update(core_noisy=True, core_noise_sigma=None, learn_sigma=False, learn_core_sigma=False)
        spiking = config.pop("spiking") or {"model_trials": 4, "tau_s": 2.0, "hidden_rate": 0.1}
        ln = config.pop("ln") or {"ridge": [0.3, 1.0, 3.0, 10.0, 30.0, 100.0]}
        pairs = config.pop("pairs") or {"batch_size": 64}
        assert config.pop("clips") is None
        config.update(spiking, clip_duration=1.0, clip_history=0.3, ln_ridge=ln["ridge"], **pairs)

    stored = json.loads((d / "config.json").read_text())
    as_before(stored)
    (d / "config.json").write_text(json.dumps(stored))
    ckpt = torch.load(d / "checkpoint.pt", weights_only=True)
    as_before(ckpt["config"])
    torch.save(ckpt, d / "checkpoint.pt")
    ln = torch.load(d / "ln_reference.pt", weights_only=True)
    stamp = json.loads(ln["stamp"])
    as_before(stamp["config"])
    ln["stamp"] = json.dumps(stamp)
    torch.save(ln, d / "ln_reference.pt")
    config, model, data = load_run(d)
    assert config.arch.noise == "gaussian" and config.arch_name == "snn"
    load_checkpoint(d / "checkpoint.pt", config)
    calls = []
    real_train = fitting.train
    monkeypatch.setattr(fitting, "train", lambda *a, **k: calls.append(a[0].model) or real_train(*a, **k))
    assert evaluate(d)["rate_cc"] == original.metrics["rate_cc"]
    assert calls == []  # the cached LN reference of the old stamp is reused, not refitted
    resumed = fit("nsnn", out=d, progress=False, resume=True, **before)
    assert resumed.metrics["rate_cc"] == original.metrics["rate_cc"]
