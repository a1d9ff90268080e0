"""Sweeps on Ray Tune (neurocode.sweep): grid = sequential bit for bit, restart refits nothing, search on validation.

The Ray tests share one local Ray session (2 CPUs) and skip when Ray is not installed
(``pip install -e ".[test,sweep]"`` runs them); the sequential ones run without it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import neurocode
from neurocode.cli import main
from neurocode.sweep import SweepError, run_name, sweep
from neurocode.sweep._trials import expand_setting, run_search_trial, settings_overrides, withhold_test_stimuli
from neurocode.sweep.cli import parse_search, parse_set

# a tiny NSNN (as tests/test_pipeline.py): the paper architecture on 16-px images, one epoch
TINY = dict(architecture="paper", epochs=1, input_size=16, eval_trials=4, model_trials=2,
            snn={"channels": (2, 4), "kernel_sizes": (5, 3), "hidden": (8,)})
# a tiny RF-architecture NSNN (the quick preset's, whose noise is rf.noise_sigma), validated every epoch
TINY_RF = dict(epochs=3, input_size=16, eval_trials=4, model_trials=2, val_every=1, val_trials=2,
               rf={"channels": (2, 3), "kernel_sizes": (3, 3)})
# the grid's NSNN and LN both hold an RFConfig (the LN is always RF-aware), so one rf= reaches both; the LN
# has no spiking settings (model_trials)
GRID = dict(models="nsnn,ln", folds=[0, 1], seeds=[0], preset="quick", log=None, epochs=1, input_size=16,
            eval_trials=4, rf={"channels": (2, 3), "kernel_sizes": (3, 3)})
NAMES = ["nsnn-fold0-seed0", "nsnn-fold1-seed0", "ln-fold0-seed0", "ln-fold1-seed0"]


def _snapshot(out: Path) -> dict:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted((out / "runs").rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- no fits
def test_settings_names_and_parsing():
    assert expand_setting("lr", 1e-3) == {"lr": 1e-3}
    assert expand_setting("rf.noise_sigma", 0.1) == {"rf": {"noise_sigma": 0.1}}
    assert expand_setting("sigma", 0.4) == {"arch": {"noise_sigma": 0.4}}  # the fit's own architecture's
    assert expand_setting("parts.output", "noisy_lif_fano_end") == {"parts": {"output": "noisy_lif_fano_end"}}
    assert settings_overrides({"parts.output": "noisy_lif_fano_end", "parts.core": "relu"}) == {
        "parts": {"output": "noisy_lif_fano_end", "core": "relu"}}
    assert run_name("nsnn", 0, 2, {"sigma": 0.4}) == "nsnn-sigma0.4-fold0-seed2"
    assert run_name("cnn", 1, 0, {}) == "cnn-fold1-seed0"
    assert parse_set(["sigma=0.1,0.4", "rf.channels=(2,3),(4,8)", "loss=mmd_linear"]) == {
        "sigma": [0.1, 0.4], "rf.channels": [(2, 3), (4, 8)], "loss": ["mmd_linear"]}
    assert parse_search(["lr=loguniform:1e-4:1e-2", "epochs=int:10:40", "loss=choice:mmd_linear,paired"]) == {
        "lr": ("loguniform", 1e-4, 1e-2), "epochs": ("int", 10, 40), "loss": ("choice", ["mmd_linear", "paired"])}
    with pytest.raises(ValueError, match="KEY=V1"):
        parse_set(["sigma"])


@pytest.mark.parametrize("kwargs, match", [
    (dict(grid={"noise": [0.1]}), "unknown setting 'noise'"),
    (dict(grid={"rf.nope": [1]}), "unknown setting 'rf.nope'"),
    (dict(grid={"parts.readout": ["rf"]}), "unknown setting 'parts.readout'.*parts.output"),
    (dict(grid={"fold": [1]}), "axis of the sweep"),
    (dict(models="rnn"), "unknown model"),
    (dict(grid={"lr": [1e-3]}, search={"lr": ("loguniform", 1e-4, 1e-2)}), "both a grid axis and searched"),
    (dict(search={"lr": ("normal", 0, 1)}), "kind one of"),
    (dict(grid={"lr": [-1.0]}), "lr must be a positive number"),
    # the LN holds an RFConfig only: a setting of the paper SNN's is refused, naming the one it uses
    (dict(grid={"snn.noise_sigma": [0.3]}), "ln-snn.noise_sigma0.3-fold0-seed0: .*uses 'rf'"),
    (dict(use_ray=False, address="auto"), "cannot go with --no-ray"),
])
def test_bad_arguments_fail_before_anything_runs(tmp_path, kwargs, match):
    args = {"models": "ln", "out": tmp_path / "s", "preset": "quick", "log": None, **kwargs}
    with pytest.raises(SweepError, match=match):
        sweep(**args)
    assert not (tmp_path / "s" / "runs").exists()


# --------------------------------------------------------------------------- grids
@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.tune")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def sequential_grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweeps") / "sequential"
    t0 = time.perf_counter()
    result = sweep(out=out, use_ray=False, **GRID)
    return result, time.perf_counter() - t0


@pytest.fixture(scope="module")
def ray_grid(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweeps") / "ray"
    t0 = time.perf_counter()
    result = sweep(out=out, use_ray=True, **GRID)
    return result, time.perf_counter() - t0


@pytest.mark.slow
def test_sequential_grid_writes_one_row_per_fit_and_the_figure(sequential_grid):
    result, _ = sequential_grid
    out = result.out
    assert result.engine == "sequential"
    assert [r["run"] for r in result.rows] == [f"runs/{n}" for n in NAMES]
    for name in ("results.csv", "results.json", "summary.csv", "comparison.png"):
        assert (out / name).is_file(), name
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["model", "fold", "seed"] and {"rate_cc", "count_cc", "val_rate_cc", "run"} <= set(header)
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert [r["model"] for r in summary] == ["NSNN", "LN", "baseline", "ceiling"]
    for name in NAMES:
        assert (out / "runs" / name / "metrics.json").is_file()
    assert "baseline" in result.table() and "NSNN" in str(result)


@pytest.mark.slow
def test_ray_grid_equals_sequential_bit_for_bit(ray_grid, sequential_grid):
    (ray_result, _), (seq_result, _) = ray_grid, sequential_grid
    assert ray_result.engine == "ray" and {r["status"] for r in ray_result.log} == {"fitted"}
    # the same table, every digit
    assert (ray_result.out / "results.csv").read_text() == (seq_result.out / "results.csv").read_text()
    for name in NAMES:
        a, b = ray_result.out / "runs" / name, seq_result.out / "runs" / name
        assert json.loads((a / "metrics.json").read_text()) == json.loads((b / "metrics.json").read_text()), name
        ca = torch.load(a / "checkpoint.pt", weights_only=True)["model"]
        cb = torch.load(b / "checkpoint.pt", weights_only=True)["model"]
        for k in ca:
            assert torch.equal(ca[k], cb[k]), (name, k)
        with h5py.File(a / "predictions.h5") as fa, h5py.File(b / "predictions.h5") as fb:
            for key in fa:
                np.testing.assert_array_equal(fa[key][()], fb[key][()])


@pytest.mark.slow
def test_restarting_a_finished_sweep_refits_nothing(ray_grid):
    result, first = ray_grid
    out = result.out
    before = _snapshot(out)
    table = (out / "results.csv").read_text()
    t0 = time.perf_counter()
    again = neurocode.sweep(out=out, use_ray=True, **GRID)  # the module is callable
    took = time.perf_counter() - t0
    assert {r["status"] for r in again.log} == {"done earlier"} and len(again.log) == 4
    assert again.engine.startswith("none")  # no Ray session was even started
    assert _snapshot(out) == before  # no run folder file was written
    assert (out / "results.csv").read_text() == table
    assert took < 0.1 * first, (took, first)


@pytest.mark.slow
def test_a_killed_fit_resumes_from_its_checkpoint(ray_session, tmp_path):
    """A fit stopped after its first epoch (checkpoint, no metrics) is resumed, to the uninterrupted result."""
    settings = {**TINY, "epochs": 2, "val_every": 1}
    sweep(models="nsnn", out=tmp_path / "clean", preset="quick", use_ray=False, log=None, **settings)

    def stop_after_first(epoch, record):
        raise KeyboardInterrupt

    run = tmp_path / "sweep" / "runs" / "nsnn-fold0-seed0"
    with pytest.raises(KeyboardInterrupt):
        neurocode.fit("nsnn", preset="quick", out=run, progress=False, on_epoch=stop_after_first, threads=1,
                      **settings)
    assert (run / "checkpoint.pt").is_file() and not (run / "metrics.json").exists()
    resumed = sweep(models="nsnn", out=tmp_path / "sweep", preset="quick", use_ray=True, log=None, **settings)
    assert [r["status"] for r in resumed.log] == ["resumed"]
    assert json.loads((run / "metrics.json").read_text()) == \
        json.loads((tmp_path / "clean" / "runs" / "nsnn-fold0-seed0" / "metrics.json").read_text())


@pytest.mark.slow
def test_a_folder_of_other_settings_is_refused(sequential_grid):
    result, _ = sequential_grid
    before = _snapshot(result.out)
    with pytest.raises(SweepError, match="other settings.*epochs"):
        sweep(out=result.out, use_ray=False, **{**GRID, "epochs": 2})
    assert _snapshot(result.out) == before


@pytest.mark.slow
def test_cli_grid_over_a_setting_without_ray(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["sweep", "--models", "ln", "--folds", "0", "--seeds", "0", "--preset", "quick", "--epochs", "1",
                 "--set", "val_fraction=0.15,0.2", "--out", str(out), "--no-ray"]) == 0
    printed = capsys.readouterr().out
    assert "[fit] ln-val_fraction0.15-fold0-seed0" in printed and "ceiling" in printed
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0].split(",")[3] == "val_fraction" and len(rows) == 3
    cfg = json.loads((out / "runs" / "ln-val_fraction0.2-fold0-seed0" / "config.json").read_text())
    assert cfg["val_fraction"] == 0.2
    assert main(["sweep", "--models", "ln", "--preset", "quick", "--epochs", "1", "--set", "val_fraction=0.15,0.2",
                 "--out", str(out), "--no-ray"]) == 0
    assert capsys.readouterr().out.count("[skip]") == 2
    assert main(["sweep", "--models", "ln", "--out", str(out), "--set", "nope=1"]) == 2
    assert "unknown setting 'nope'" in capsys.readouterr().err


# --------------------------------------------------------------------------- search: validation only
def test_search_trials_read_no_test_image(tmp_path, monkeypatch, natural_recording):
    """A search trial trains and validates; every stimulus it predicts is a validation stimulus, and it
    never predicts, scores or writes anything for the test stimuli."""
    import neurocode.fitting as fitting
    import neurocode.pipeline as pipeline
    from neurocode.sweep._trials import TrialSpec

    spec = TrialSpec(model="nsnn", fold=0, seed=0, preset="quick", data=None, recording=None,
                     overrides={**TINY_RF, "threads": 1}, name="nsnn-fold0-seed0")
    config = spec.config()
    split = fitting.prepare_data(config, natural_recording)
    predicted = []
    real_predict = fitting.predict

    def spy(config, model, data, stimuli, *args, **kwargs):
        predicted.append(np.asarray(stimuli))
        return real_predict(config, model, data, stimuli, *args, **kwargs)

    def forbidden(*args, **kwargs):
        raise AssertionError("a search trial called a test-scoring function")

    monkeypatch.setattr(fitting, "predict", spy)
    for name in ("fit", "_predict_and_score", "ln_reference", "evaluate"):
        monkeypatch.setattr(pipeline, name, forbidden)
    reports = []
    res = run_search_trial(spec.to_dict(), {"lr": 3e-3, "sigma": 0.3}, tmp_path / "t", reports.append)
    assert res["finished"] and np.isfinite(res["best_val_rate_cc"])
    assert len(predicted) == 3 and all(set(p.tolist()) == set(split.val_idx.tolist()) for p in predicted)
    assert [r["iteration"] for r in reports] == [1, 2, 3] and reports[-1]["finished"]
    assert reports[-1]["best_val_rate_cc"] == max(r["val_rate_cc"] for r in reports) == res["best_val_rate_cc"]
    assert not (tmp_path / "t" / "predictions.h5").exists() and not (tmp_path / "t" / "metrics.json").exists()
    # the trial's data holds no test stimulus: blanked before training
    withhold_test_stimuli(split)
    assert torch.isnan(split.images[torch.as_tensor(split.test_idx)]).all()
    assert torch.isfinite(split.images[torch.as_tensor(split.train_idx)]).all()


@pytest.mark.slow
def test_search_over_lr_and_sigma_on_validation_then_refit(ray_session, tmp_path):
    out = tmp_path / "search"
    space = {"lr": ("loguniform", 1e-3, 3e-2), "sigma": ("uniform", 0.1, 0.4)}
    result = sweep(models="nsnn", folds=0, seeds=0, out=out, preset="quick", search=space, samples=4, use_ray=True,
                   log=None, **TINY_RF)
    folder = out / "search" / "nsnn-fold0-seed0"
    for name in ("best.json", "trials.csv", "validation_curve.csv", "validation_curve.png", "search.json"):
        assert (folder / name).is_file(), name
    best = json.loads((folder / "best.json").read_text())
    assert set(best["chosen"]) == {"lr", "sigma"} and best["n_trials"] == 4
    assert 1e-3 <= best["chosen"]["lr"] <= 3e-2 and 0.1 <= best["chosen"]["sigma"] <= 0.4
    curve = (folder / "validation_curve.csv").read_text().splitlines()
    assert curve[0] == "trial,lr,sigma,epoch,val_rate_cc,loss" and len(curve) >= 1 + 3 + 3
    vals = [float(line.split(",")[4]) for line in curve[1:]]
    assert all(np.isfinite(vals)) and max(vals) == pytest.approx(best["best_val_rate_cc"], abs=0)
    # no search trial predicted or scored the test stimuli
    trials = [d for d in (folder / "trials").iterdir() if d.is_dir()]
    assert len(trials) == 4
    for d in trials:
        assert not (d / "predictions.h5").exists() and not (d / "metrics.json").exists()
    # the refit with the chosen settings is the one fit scored on the test stimuli; its training is the
    # chosen trial's bit for bit (the trial's test stimuli were blanked: training never read them)
    run = out / "runs" / "nsnn-fold0-seed0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val_rate_cc"] == best["best_val_rate_cc"]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["lr"] == best["chosen"]["lr"] and cfg["rf"]["noise_sigma"] == best["chosen"]["sigma"]
    row = result.rows[0]
    assert row["lr"] == best["chosen"]["lr"] and row["sigma"] == best["chosen"]["sigma"]
    assert result.search["nsnn-fold0-seed0"]["chosen"] == best["chosen"]
    # restarted: neither the search nor the refit is redone
    again = sweep(models="nsnn", folds=0, seeds=0, out=out, preset="quick", search=space, samples=4, use_ray=True,
                  log=None, **TINY_RF)
    assert [r["status"] for r in again.log] == ["done earlier"] and again.search == result.search


@pytest.mark.slow
def test_search_without_ray_uses_optuna_in_process(tmp_path):
    pytest.importorskip("optuna")
    out = tmp_path / "search"
    result = sweep(models="nsnn", out=out, preset="quick", search={"lr": ("loguniform", 1e-3, 3e-2)}, samples=2,
                   use_ray=False, log=None, **TINY_RF)
    best = json.loads((out / "search" / "nsnn-fold0-seed0" / "best.json").read_text())
    assert best["n_trials"] == 2 and result.rows[0]["lr"] == best["chosen"]["lr"]
    assert json.loads((out / "runs" / "nsnn-fold0-seed0" / "metrics.json").read_text())["val_rate_cc"] == \
        best["best_val_rate_cc"]
