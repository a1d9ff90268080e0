"""End to end: every notebook runs top to bottom, every analysis script's --quick mode works.

Notebooks are executed in a fresh Jupyter kernel with nbclient (a failing cell raises
``CellExecutionError`` and fails the test); the analysis scripts run as subprocesses with
``--quick --out tmp_path/...`` and must exit 0 and write their table(s) and figure(s).

These are the slowest tests of the suite (a few minutes together on a 2-core CPU); they
are marked ``slow`` and run in CI with the rest (``python -m pytest -q``). Deselect them
locally with ``-m "not slow"``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ANALYSES = ROOT / "analyses"
NOTEBOOK_TIMEOUT = 900  # s per cell

pytestmark = pytest.mark.slow


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_all_notebooks_present():
    names = [p.name for p in NOTEBOOKS]
    assert names == ["01_quickstart.ipynb", "02_neural_coding.ipynb", "03_noise_and_surrogates.ipynb",
                     "04_stability.ipynb", "05_recognition.ipynb", "06_own_recording.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_outputs_stripped(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: commit notebooks without outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    for k, v in _env().items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(path, as_version=4)
    # run in a scratch folder: a notebook must not need (or write into) the repository
    client = NotebookClient(nb, timeout=NOTEBOOK_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(ANALYSES / script), "--quick", "--threads", "1", "--no-progress",
                           *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_retina_fit_comparison_quick(tmp_path):
    out = tmp_path / "cmp"
    proc = _run("retina_fit_comparison.py", "--out", str(out), cwd=tmp_path)
    for name in ("summary.csv", "summary.json", "runs.csv", "differences.csv", "comparison.png",
                 "rate_cc_per_cell.png"):
        assert (out / name).is_file(), name
    rows = _csv(out / "summary.csv")
    assert list(rows[0]) == ["model", "n_runs", "rate_cc_mean", "rate_cc_sd", "count_cc_mean", "count_cc_sd",
                             "fano_corr_mean", "fano_corr_sd", "parameter_count", "model_ff_mean",
                             "recorded_ff_mean", "mmd2_mean", "mmd2_sd", "mmd2_cell_mean", "mmd2_cell_sd",
                             "ff_abs_diff_mean", "ff_abs_diff_sd", "ff_corr_mean", "ff_corr_sd",
                             "noise_corr_r_mean", "noise_corr_r_sd", "peak_ratio_mean", "peak_ratio_sd",
                             "peak_max_ratio_mean", "peak_max_ratio_sd"]
    runs = {r["model"]: r for r in _csv(out / "runs.csv")}
    differences = {(d["pair"], d["score"]): d for d in _csv(out / "differences.csv")}
    d = differences[("NSNN - CNN", "rate_cc")]
    # one split: the difference is that split's, it wins or not, and no interval can be formed
    assert float(d["mean"]) == pytest.approx(float(runs["NSNN"]["rate_cc"]) - float(runs["CNN"]["rate_cc"]), abs=1e-4)
    assert d["n_splits"] == "1" and d["wins"] == str(int(float(d["mean"]) > 0)) and d["ci_low"] == ""
    d = differences[("NSNN - CNN", "mmd2")]  # lower is better: a win is a negative difference
    assert d["better"] == "lower" and d["wins"] == str(int(float(d["mean"]) < 0))
    assert float(runs["NSNN"]["mmd2_floor"]) == pytest.approx(float(runs["CNN"]["mmd2_floor"]))  # same split
    assert float(rows[4]["model_ff_mean"]) > 0 and rows[3]["model_ff_mean"] in ("", "0.0000")
    assert float(rows[2]["model_ff_mean"]) > 0  # the dispersion CNN samples its own trials
    assert [r["model"] for r in rows] == ["LN", "CNN", "CNN_CMP", "DSNN", "NSNN", "baseline", "ceiling"]
    assert ("NSNN - CNN_CMP", "mmd2") in differences and ("CNN_CMP - CNN", "ff_abs_diff") in differences
    for r in rows:
        assert -1 <= float(r["rate_cc_mean"]) <= 1
    assert int(rows[0]["parameter_count"]) > 0
    assert "NSNN" in proc.stdout and "ceiling" in proc.stdout
    # resume: a second call redoes no finished fit
    again = _run("retina_fit_comparison.py", "--out", str(out), cwd=tmp_path)
    assert again.stdout.count("[skip]") == 5 and "[fit]" not in again.stdout
    assert _csv(out / "summary.csv") == rows


def test_coding_analysis_quick(tmp_path):
    out = tmp_path / "coding"
    proc = _run("coding_analysis.py", "--out", str(out), cwd=tmp_path)
    for name in ("coding.csv", "coding.json", "coding_per_stimulus.csv", "coding_recorded.png",
                 "coding_nsnn-fold0-seed0.png"):
        assert (out / name).is_file(), name
    rows = _csv(out / "coding.csv")
    assert list(rows[0]) == ["source", "n_stimuli", "n_valid", "trials", "r", "p", "slope", "mean_fano",
                             "mean_cosine"]
    recorded = rows[0]
    assert recorded["source"] == "recorded" and int(recorded["n_valid"]) == 60
    # the recorded retina: significantly negative (Fig. 4B); deterministic input, so exact
    assert float(recorded["r"]) < 0 and float(recorded["p"]) < 0.01
    assert rows[1]["source"].startswith("NSNN")
    assert "recorded" in proc.stdout


def test_noise_level_sweep_quick(tmp_path):
    out = tmp_path / "sweep"
    _run("noise_level_sweep.py", "--out", str(out), cwd=tmp_path)
    for name in ("noise_level_sweep.csv", "noise_level_sweep.json", "noise_level_sweep.png"):
        assert (out / name).is_file(), name
    rows = _csv(out / "noise_level_sweep.csv")
    assert [float(r["sigma"]) for r in rows] == [0.1, 0.4]
    assert {"sigma", "n_runs", "rate_cc_mean", "rate_cc_sd", "model_ff", "final_loss"} <= set(rows[0])
    cfg = json.loads((out / "runs" / "nsnn-sigma0.4-fold0-seed0" / "config.json").read_text())
    # the quick preset's RF-aware NSNN gets the swept noise; it holds no paper network's config
    assert cfg["rf"]["noise_sigma"] == 0.4 and "snn" not in cfg


def test_robustness_quick(tmp_path):
    out = tmp_path / "rob"
    _run("robustness.py", "--out", str(out), cwd=tmp_path)
    for name in ("robustness.csv", "robustness.json", "robustness.png"):
        assert (out / name).is_file(), name
    rows = _csv(out / "robustness.csv")
    assert list(rows[0]) == ["model", "beta", "n_runs", "rate_cc_mean", "rate_cc_sd", "relative_to_beta0"]
    assert [(r["model"], float(r["beta"])) for r in rows] == [(m, b) for m in ("NSNN", "DSNN") for b in (0, 0.01, 0.05)]
    assert all(float(r["relative_to_beta0"]) == 1.0 for r in rows if float(r["beta"]) == 0)


def test_validation_ablation_scores_validation_images_and_resumes(tmp_path):
    sys.path.insert(0, str(ANALYSES))
    try:
        import validation_ablation
    finally:
        sys.path.remove(str(ANALYSES))
    from neurocode.fitting import make_config

    # stage-1 rows reproduce the old preset (no BatchNorm in the spiking core), later rows today's
    def config(row):
        model, overrides = validation_ablation.ROWS[row]
        return make_config(model, "quick", **overrides)

    assert config("nsnn").arch.core_norm and config("dsnn").arch.core_norm
    assert not config("nsnn-old").arch.core_norm and not config("nsnn-substeps3").arch.core_norm
    assert config("nsnn-substeps3").arch.output_substeps == 3 and config("bn+substeps3").arch.core_norm
    # issue 31 rows: on top of bn+substeps3+noise, the per-cell Gaussian MMD beside the linear one
    cell = config("s3n+learn-sigma+cellmmd10")
    assert cell.loss == "mmd_linear+gaussian_cell" and cell.loss_options["cell_mmd_weight"] == 10.0
    assert cell.arch.output_substeps == 3 and cell.arch.output_neuron["learnable"] == "neuron"
    assert abs(cell.arch.output_neuron["sigma"] - 0.2 * 3 ** 0.5) < 1e-12
    # the Fano start is the output part's, one line of parts=; five substeps keep the preset's learnt sigma
    assert config("fano-start").parts == {"output": "noisy_lif_fano"} and config("fano-start").arch == config("nsnn").arch
    five = config("s5n+fano-start").arch
    assert five.output_substeps == 5 and five.output_neuron == {"sigma": 0.2 * 5 ** 0.5, "learnable": "neuron"}
    # the more regular output neuron: the preset's output reset by subtraction (and a longer memory)
    preset_output = config("nsnn").arch.output_neuron
    assert config("s3n+subtract").arch.output_neuron == {**preset_output, "reset": "subtract"}
    again = config("s3n+subtract+tau0.65+fano-again")
    assert again.parts == {"output": "noisy_lif_fano_again"}
    assert again.arch == dataclasses.replace(config("nsnn").arch, output_neuron={**preset_output, "reset": "subtract",
                                                                                 "tau": 0.65})
    out = tmp_path / "ablation"
    cmd = [sys.executable, str(ANALYSES / "validation_ablation.py"), "--row", "ln", "--folds", "0", "--threads", "1",
           "--out", str(out)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _csv(out / "ablation.csv")
    assert [(r["row"], r["fold"], r["seed"]) for r in rows] == [("ln", "0", "0")]
    # the test images are NaN during the fit: a score is finite only if nothing read them, and an
    # LN model on validation images is far above chance
    assert 0.5 < float(rows[0]["val_rate_cc"]) < 1 and 0.5 < float(rows[0]["val_count_cc"]) < 1
    # the distribution scores on the validation images: the LN model's trials are Poisson draws
    # (FF 1 up to the sampling error of 64-trial FFs averaged over cells), the recording's split
    # half is 0 up to noise, and a Poisson model is further from the recording than that
    row = rows[0]
    assert 0.85 < float(row["ff_model"]) < 1.15 and 0.2 < float(row["ff_recorded"]) < 1
    assert abs(float(row["ff_abs_diff"]) - abs(float(row["ff_model"]) - float(row["ff_recorded"]))) < 0.5
    assert abs(float(row["mmd2_floor"])) < 0.02 < float(row["mmd2"])
    assert 0 < float(row["peak_ratio"]) and 0 < float(row["peak_max_ratio"])
    noise = json.loads((out / "noise-corr-ln-fold0-seed0.json").read_text())
    assert noise["noise_corr_r"] == pytest.approx(float(row["noise_corr_r"]))
    assert -1 <= noise["noise_corr_split_half_r"] <= 1 and noise["noise_corr_null_sd"] > 0
    again = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and _csv(out / "ablation.csv") == rows
    # a table of an older version (other columns) is refused, not appended to
    old = tmp_path / "old"
    old.mkdir()
    (old / "ablation.csv").write_text("row,model,fold,seed,val_rate_cc\nln,ln,1,0,0.7\n")
    refused = subprocess.run(cmd[:-1] + [str(old)], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                             timeout=900)
    assert refused.returncode == 2 and "ablation.csv: its columns" in refused.stderr


def test_peak_diagnosis_reads_the_saved_validation_trials(tmp_path):
    import numpy as np

    from neurocode.analysis.distribution import peak_fidelity

    out = tmp_path / "ablation"
    fit = [sys.executable, str(ANALYSES / "validation_ablation.py"), "--row", "ln", "--folds", "0", "--threads", "1",
           "--save-trials", "--out", str(out)]
    proc = subprocess.run(fit, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = _csv(out / "ablation.csv")[0]
    with np.load(out / "val-trials-ln-fold0-seed0.npz") as z:
        recorded, trials, psth, stimuli = z["recorded"], z["model_trials"], z["model_psth"], z["stimuli"]
    # the saved arrays are the ones the row was scored on: its peak ratio from them again
    assert recorded.shape[0] == trials.shape[0] == psth.shape[0] == stimuli.size == 8
    assert peak_fidelity(recorded.mean(axis=2), trials.mean(axis=2))["peak_ratio"] == pytest.approx(
        float(row["peak_ratio"]))
    diag = [sys.executable, str(ANALYSES / "peak_diagnosis.py"), "--out", str(out), "--boot", "20"]
    proc = subprocess.run(diag, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (d,) = json.loads((out / "peak-diagnosis.json").read_text())
    assert (d["row"], d["fold"], d["seed"]) == ("ln", 0, 0)
    # the LN model's PSTH (its rates) against the recording: the same peak bins as the row's score
    assert d["peak_ratio"] == pytest.approx(peak_fidelity(recorded.mean(axis=2), psth)["peak_ratio"])
    assert d["n_peak_bins"] == sum(d["peak_bins_per_time"]) == d["n_peak_bins_on"] + d["n_peak_bins_off"]
    assert 0.5 < d["ceiling"] < 1 and "| ln | 1 |" in proc.stdout
    # a wider model PSTH reaches further into the recorded peaks and further past its own
    g1, g14 = d["gains"]["1"], d["gains"]["1.4"]
    assert g1["peak_ratio"] == pytest.approx(d["peak_ratio"]) and g1["mse_ratio"] == pytest.approx(1.0)
    assert g14["peak_ratio"] > g1["peak_ratio"] and g14["model_peak_ratio"] < g1["model_peak_ratio"]
    empty = subprocess.run(diag[:-3] + [str(tmp_path)], cwd=tmp_path, env=_env(), capture_output=True, text=True)
    assert empty.returncode == 2 and "--save-trials" in empty.stderr


def test_validation_ablation_learnt_sigma_against_fano_factors(tmp_path):
    sys.path.insert(0, str(ANALYSES))
    try:
        import validation_ablation
    finally:
        sys.path.remove(str(ANALYSES))
    import types

    import numpy as np
    import torch

    # 3 fit images, 4 trials, all counts in the first bin: cells 0 and 2 count 0, 2, 0, 2 (mean 1,
    # population variance 1: FF 1), cell 1 counts 1, 1, 1, 1 (FF 0)
    counts = torch.zeros(3, 5, 4, 3)
    counts[:, 0, :, 0] = counts[:, 0, :, 2] = torch.tensor([0.0, 2, 0, 2])
    counts[:, 0, :, 1] = 1.0
    data = types.SimpleNamespace(counts=counts, trial_mask=torch.ones(3, 4, dtype=torch.bool), fit_idx=np.arange(3))
    per_cell = {"recorded_ff_active": np.array([0.9, 0.1, 0.5]), "model_ff_active": np.array([0.5, 0.4, np.nan])}
    sigma = np.array([0.3, 0.1, 0.2])
    path = tmp_path / "sigma.json"
    validation_ablation.write_learnt_sigma(path, sigma, per_cell, data)
    rec = json.loads(path.read_text())
    assert rec["recorded_ff_fit"] == [1.0, 0.0, 1.0]
    assert rec["r_sigma_recorded_ff_val"] == pytest.approx(np.corrcoef(sigma, [0.9, 0.1, 0.5])[0, 1])
    assert rec["r_sigma_recorded_ff_fit"] == pytest.approx(np.corrcoef(sigma, [1.0, 0.0, 1.0])[0, 1])
    assert rec["r_sigma_model_ff_val"] is None  # two defined cells: too few for a correlation
    assert rec["sigma_mean"] == pytest.approx(0.2)
