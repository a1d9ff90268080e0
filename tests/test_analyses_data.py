"""The analysis scripts run on the user's own recording and never mix in another one's numbers.

A small simulated recording ("other": 60 flashed images as in the bundled file, 6 cells, 8
trials) is saved to a file and a tiny NSNN is fitted on it (1 epoch, 32-px input: seconds).
``coding_analysis.py --run`` must then print the "recorded" row of THAT recording (not of the
bundled retina-2 file) and name it; runs of different recordings, or a --data/--recording
other than a run's, are refused with a message, and so are reused run folders of another
recording in the other scripts. Scripts run as subprocesses, as in
``tests/test_notebooks_and_analyses.py``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ANALYSES = ROOT / "analyses"


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ANALYSES / script), "--threads", "1", "--no-progress", *map(str, args)],
                          cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _refused(proc: subprocess.CompletedProcess, *words: str) -> str:
    msg = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"expected an error, got exit 0:\n{msg[-3000:]}"
    assert "Traceback" not in msg, msg[-3000:]
    for w in words:
        assert w in msg, f"{w!r} not in:\n{msg[-3000:]}"
    return msg


def _csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    """(file, run folder): a simulated recording 'other' and a tiny NSNN fitted on it."""
    import neurocode
    from neurocode.simulate import LNPoisson, flashes, simulate_flashes

    d = tmp_path_factory.mktemp("other")
    model = LNPoisson.random(6, (32, 32), seed=3)
    # as many images as the bundled recording: a script that mixed in the bundled "recorded"
    # row would run through without an error, only its numbers would be wrong
    rec = simulate_flashes(model, flashes(60, (32, 32), seed=4), n_trials=8, seed=5, name="other")
    path = rec.save(d / "other.h5", "other")
    run = d / "run_other"
    neurocode.fit("nsnn", data=path, recording="other", epochs=1, eval_trials=4, input_size=32, threads=1,
                  progress=False, out=run)
    return path, run


@pytest.fixture(scope="module")
def bundled_run(tmp_path_factory):
    """A tiny NSNN fitted on the bundled retina-2 recording (data = null in its config)."""
    import neurocode

    run = tmp_path_factory.mktemp("bundled") / "run_bundled"
    neurocode.fit("nsnn", epochs=1, eval_trials=4, input_size=32, threads=1, progress=False, out=run)
    return run


def test_coding_analysis_recorded_row_is_the_runs_recording(other, tmp_path):
    from neurocode.analysis import recorded_coding_analysis
    from neurocode.data import load_recording

    path, run = other
    out = tmp_path / "coding"
    proc = _ok(_run("coding_analysis.py", "--run", run, "--trials", 4, "--out", out, cwd=tmp_path))

    rec = load_recording(path, "other")
    want = recorded_coding_analysis(rec)
    bundled = load_recording()
    rows = _csv(out / "coding.csv")
    recorded = rows[0]
    assert recorded["source"] == "recorded"
    assert int(recorded["n_stimuli"]) == rec.n_stimuli == 60
    assert int(recorded["trials"]) == rec.n_trials == 8 != bundled.n_trials
    assert not math.isclose(float(recorded["r"]), recorded_coding_analysis(bundled).r, rel_tol=1e-3)
    assert int(recorded["n_valid"]) == want.n_valid
    for col, val in (("r", want.r), ("p", want.p), ("slope", want.slope),
                     ("mean_fano", float(np.nanmean(want.mean_fano))), ("mean_cosine", float(np.nanmean(want.cosine)))):
        assert math.isclose(float(recorded[col]), val, rel_tol=1e-5, abs_tol=1e-12), col
    # the model row is on the same stimuli
    assert rows[1]["source"].startswith("NSNN") and int(rows[1]["n_stimuli"]) == 60

    js = json.loads((out / "coding.json").read_text())
    per = js["per_stimulus"]["recorded"]
    as_arr = lambda v: np.array([np.nan if x is None else x for x in v], float)  # noqa: E731
    np.testing.assert_allclose(as_arr(per["mean_fano"]), want.mean_fano, rtol=1e-12)
    np.testing.assert_allclose(as_arr(per["cosine"]), want.cosine, rtol=1e-12)
    assert js["recording"] == "other" and js["data"] == str(Path(path).resolve())
    # the printed table names the recording and its file
    header = next(line for line in proc.stdout.splitlines() if line.startswith("Fig. 4B"))
    assert "'other'" in header and str(Path(path).resolve()) in header

    # an explicit --data/--recording that agrees with the run is accepted
    _ok(_run("coding_analysis.py", "--run", run, "--data", path, "--recording", "other", "--trials", 4,
             "--out", tmp_path / "coding2", cwd=tmp_path))
    assert _csv(tmp_path / "coding2" / "coding.csv")[0] == recorded


def test_coding_analysis_refuses_runs_of_different_recordings(other, bundled_run, tmp_path):
    path, run = other
    out = tmp_path / "mixed"
    _refused(_run("coding_analysis.py", "--run", run, "--run", bundled_run, "--trials", 4, "--out", out,
                  cwd=tmp_path), "'other'", "'natural_images'", str(run), str(bundled_run))
    assert not (out / "coding.csv").exists()
    # --data (the bundled file, here named explicitly) other than the run's recording
    from neurocode.data.hdf5 import bundled_path

    _refused(_run("coding_analysis.py", "--run", run, "--data", bundled_path(), "--trials", 4, "--out", out,
                  cwd=tmp_path), "'other'", "--data")
    _refused(_run("coding_analysis.py", "--run", bundled_run, "--data", path, "--trials", 4, "--out", out,
                  cwd=tmp_path), "'other'", "'natural_images'")
    assert not (out / "coding.csv").exists()


def test_robustness_reuses_runs_of_its_recording_only(other, tmp_path):
    path, run = other
    runs = tmp_path / "runs"
    shutil.copytree(run, runs / "nsnn-fold0-seed0")
    _refused(_run("robustness.py", "--runs", runs, "--trials", 4, "--out", tmp_path / "rob0", cwd=tmp_path),
             "'other'", "'natural_images'")
    out = tmp_path / "rob"
    _ok(_run("robustness.py", "--runs", runs, "--data", path, "--betas", 0, 0.05, "--trials", 4, "--out", out,
             cwd=tmp_path))
    js = json.loads((out / "robustness.json").read_text())
    assert js["recording"] == "other" and js["data"] == str(Path(path).resolve())
    assert [r["model"] for r in _csv(out / "robustness.csv")] == ["NSNN", "NSNN"]


def test_fitting_scripts_refuse_a_run_folder_of_another_recording(other, tmp_path):
    """Fits made by the scripts go to OUT/runs/...; a folder there fitted on another recording
    is never reused (its metrics would be reported as those of --data)."""
    path, run = other
    sweep = tmp_path / "sweep"
    shutil.copytree(run, sweep / "runs" / "nsnn-sigma0.1-fold0-seed0")
    _refused(_run("noise_level_sweep.py", "--quick", "--sigmas", 0.1, "--out", sweep, cwd=tmp_path),
             "'other'", "'natural_images'", "--out")
    cmp_ = tmp_path / "cmp"
    shutil.copytree(run, cmp_ / "runs" / "nsnn-fold0-seed0")
    _refused(_run("retina_fit_comparison.py", "--quick", "--models", "nsnn", "--out", cmp_, cwd=tmp_path),
             "'other'", "'natural_images'", "--out")
    rob = tmp_path / "rob"
    shutil.copytree(run, rob / "runs" / "nsnn-fold0-seed0")
    _refused(_run("robustness.py", "--quick", "--out", rob, cwd=tmp_path), "'other'", "'natural_images'")
    coding = tmp_path / "coding"
    shutil.copytree(run, coding / "runs" / "nsnn-fold0-seed0")
    _refused(_run("coding_analysis.py", "--quick", "--out", coding, cwd=tmp_path), "'other'", "'natural_images'")
    for script in ("coding_analysis.py", "robustness.py", "noise_level_sweep.py", "retina_fit_comparison.py"):
        _refused(_run(script, "--quick", "--data", tmp_path / "missing.h5", "--out", tmp_path / "x", cwd=tmp_path),
                 "missing.h5")


def test_noise_level_sweep_fits_the_given_recording(other, tmp_path):
    path, _ = other
    out = tmp_path / "sweep"
    proc = _ok(_run("noise_level_sweep.py", "--data", path, "--recording", "other", "--sigmas", 0.1, "--epochs", 1,
                    "--eval-trials", 4, "--out", out, cwd=tmp_path))
    cfg = json.loads((out / "runs" / "nsnn-sigma0.1-fold0-seed0" / "config.json").read_text())
    assert cfg["data"] == str(Path(path).resolve()) and cfg["recording"] == "other"
    assert cfg["rf"]["noise_sigma"] == 0.1  # the quick preset's (RF-aware) model gets the swept noise
    metrics = json.loads((out / "runs" / "nsnn-sigma0.1-fold0-seed0" / "metrics.json").read_text())
    row = _csv(out / "noise_level_sweep.csv")[0]
    assert row["recording"] == "other" and row["data"] == str(Path(path).resolve())
    assert math.isclose(float(row["ceiling_rate_cc"]), metrics["ceiling_rate_cc"], abs_tol=1e-4)
    assert "'other'" in proc.stdout
