"""The ``neurocode`` command, run in-process: exit codes, printed scores, one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from neurocode.cli import main

TINY_ARGS = ["--epochs", "2", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_cli_run(tmp_path_factory):
    """A finished tiny run made through the Python API (the CLI has no architecture flags)."""
    from neurocode.pipeline import fit

    out = tmp_path_factory.mktemp("cli") / "run"
    fit("nsnn", out=out, progress=False, epochs=2, input_size=16, eval_trials=4, model_trials=2, threads=1,
        rf={"channels": (2, 3), "kernel_sizes": (3, 3)})
    return out


def _error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    assert lines[0].startswith("neurocode: error: ")
    return lines[0]


def test_evaluate_prints_scores(tiny_cli_run, capsys):
    assert main(["evaluate", str(tiny_cli_run)]) == 0
    out = capsys.readouterr().out
    assert "rate CC" in out and "baseline" in out and "ceiling" in out and "count CC" in out
    assert "Fano factor corr." in out and "NSNN" in out
    assert f"run folder: {tiny_cli_run}" in out
    m = json.loads((tiny_cli_run / "metrics.json").read_text())
    assert f"{m['rate_cc']:.3f}" in out


def test_fit_refuses_existing_run(tiny_cli_run, capsys):
    before = (tiny_cli_run / "metrics.json").read_bytes()
    assert main(["fit", "--out", str(tiny_cli_run)] + TINY_ARGS) == 2
    line = _error_line(capsys)
    assert "already holds a run" in line and "--resume" in line
    assert (tiny_cli_run / "metrics.json").read_bytes() == before


def test_fit_resume_into_run_of_another_model(tiny_cli_run, capsys):
    assert main(["fit", "--model", "cnn", "--resume", "--out", str(tiny_cli_run)] + TINY_ARGS) == 2
    assert "holds a nsnn run, not cnn" in _error_line(capsys)


def test_fit_corrupt_checkpoint(tiny_cli_run, tmp_path, capsys):
    d = tmp_path / "run"
    shutil.copytree(tiny_cli_run, d)
    # the CLI's quick preset differs from the tiny run: make the config agree, then corrupt
    cfg = json.loads((d / "config.json").read_text())
    (d / "checkpoint.pt").write_bytes(b"garbage")
    from neurocode.fitting import make_config

    quick = make_config("nsnn", "quick", epochs=2, threads=1).to_dict()
    cfg.update({k: quick[k] for k in quick if k != "data"})
    (d / "config.json").write_text(json.dumps(cfg))
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    assert main(["fit", "--resume", "--out", str(d)] + TINY_ARGS) == 2
    line = _error_line(capsys)
    assert "checkpoint.pt" in line and "cannot read checkpoint" in line
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before


@pytest.mark.parametrize("argv, expect", [
    (["fit", "--fold", "5"], "fold=5 out of range"),
    (["fit", "--fold", "-1"], "fold=-1 out of range"),
    (["fit", "--data", "{tmp}/missing.h5"], "missing.h5: no such recording file"),
    (["fit", "--epochs", "0"], "epochs must be >= 1"),
    (["evaluate", "{tmp}/nothing"], "no such run folder"),
    (["data", "list", "{tmp}/missing.h5"], "missing.h5"),
    (["analyze", "coding", "--data", "{tmp}/missing.h5"], "missing.h5"),
    (["data", "build", "--source", "{tmp}/nosource", "--out", "{tmp}/x.h5"], "nosource"),
])
def test_bad_input_one_line_exit_2(argv, expect, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path) for a in argv]
    out = tmp_path / "out"
    if argv[0] == "fit":  # the case's own options last: they win over TINY_ARGS
        argv = ["fit", "--out", str(out)] + TINY_ARGS + argv[1:]
    assert main(argv) == 2
    assert expect in _error_line(capsys)
    assert not out.exists()


def test_corrupt_data_file(tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file")
    assert main(["fit", "--data", str(bad), "--out", str(tmp_path / "out")] + TINY_ARGS) == 2
    assert "bad.h5" in _error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_unknown_model_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--model", "lstm"])
    assert exc.value.code == 2
    assert "invalid choice: 'lstm'" in capsys.readouterr().err


def test_data_list(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "natural_images" in out and "movie1" in out and "movie2" in out
    assert "181,542" in out and "256x256" in out


def test_analyze_coding(tmp_path, capsys):
    assert main(["analyze", "coding", "--out", str(tmp_path / "coding")]) == 0
    out = capsys.readouterr().out
    assert "r = " in out and "p = " in out
    assert (tmp_path / "coding" / "coding_scatter.png").is_file()
    d = json.loads((tmp_path / "coding" / "coding.json").read_text())
    assert d["r"] < 0 and d["n_valid"] == 60


def test_python_dash_m_and_help():
    res = subprocess.run([sys.executable, "-m", "neurocode", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    for cmd in ("fit", "evaluate", "data", "analyze"):
        assert cmd in res.stdout
    res = subprocess.run([sys.executable, "-m", "neurocode", "fit", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and "--resume" in res.stdout and "--preset" in res.stdout


_REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
_SHARED = _REPO.parent / "shared" / "data" / "onken2016"


@pytest.mark.skipif(not _SHARED.is_dir(), reason=f"original Onken 2016 files not present at {_SHARED}")
def test_data_build_reproduces_the_bundled_file(tmp_path, capsys):
    out = tmp_path / "built.h5"
    assert main(["data", "build", "--source", str(_SHARED), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    # the build writes the current schema (2); the bundled file is a version-1 file of the same content
    from neurocode.data import list_recordings, load_recording

    bundled = _REPO / "datasets" / "onken2016_retina2.h5"
    assert list_recordings(out) == list_recordings(bundled)
    for name in list_recordings(out):
        a, b = load_recording(out, name), load_recording(bundled, name)
        assert a.shape == b.shape and a.window == b.window and a.provenance == b.provenance
        for key in ("spike_times_flat", "spike_offsets", "stimuli", "receptive_fields", "trial_counts"):
            x, y = getattr(a, key), getattr(b, key)
            assert (x is None and y is None) or np.array_equal(x, y)


def _flashed_file(path, n_stimuli: int, seed: int = 0):
    """A small flashed-image recording of 2 cells (4 trials each) saved as ``path``."""
    from neurocode.data import Recording

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n_stimuli, 24, 32), dtype=np.uint8)
    trials = [[[np.sort(rng.uniform(0, 0.3, rng.poisson(4))) for _ in range(4)] for _cell in range(2)]
              for _ in range(n_stimuli)]
    Recording.from_spike_times(trials, window=(0.0, 0.3), stimuli=images, name="lab").save(path)
    return path


def test_fit_n_folds_and_set_reach_the_fit(tmp_path, capsys):
    data = _flashed_file(tmp_path / "lab.h5", 12)
    out = tmp_path / "run"
    argv = ["fit", "--model", "ln", "--data", str(data), "--input-size", "16", "--n-folds", "3",
            "--set", "ln_ridge=(1,10)", "--set", "val_fraction=0.25", "--out", str(out), "--threads", "1",
            "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["n_folds"] == 3 and cfg["ln"]["ridge"] == [1.0, 10.0] and cfg["val_fraction"] == 0.25
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_test_images"] == 4 and m["n_validation_images"] == 2 and m["ln_ridge"] in (1.0, 10.0)
    assert "4 held-out images" in printed and "2 validation images" in printed


def test_fit_set_architecture_field_and_alias():
    from neurocode.cli import build_parser
    from neurocode.sweep.cli import parse_fit_set

    args = build_parser().parse_args(["fit", "--set", "sigma=0.3", "--set", "rf.tau=0.6"])
    # sigma: the noise of whichever architecture config the fit holds ("arch")
    assert parse_fit_set(args.set) == {"arch": {"noise_sigma": 0.3}, "rf": {"tau": 0.6}}


@pytest.mark.parametrize("argv, expect", [
    (["--set", "lr"], "--set 'lr': write KEY=V1,V2"),
    (["--set", "lr=1e-3,3e-3"], "fit takes one value per setting"),
    (["--set", "lr=1e-3", "--set", "lr=3e-3"], "--set lr: given twice"),
    (["--set", "no_such_field=1"], "unknown setting 'no_such_field'"),
    (["--set", "fold=1"], "fold has its own option (--fold)"),
    (["--set", "epochs=1", "--epochs", "2"], "--set epochs=... and --epochs both given"),
    # the quick preset's NSNN holds an RFConfig, not the paper network's SNNConfig
    (["--set", "snn.noise_sigma=0.3"], "a nsnn fit in the 'rf' architecture uses 'rf' (RFConfig), not 'snn'; set "
                                       "rf.FIELD"),
    (["--preset", "paper", "--set", "rf.tau=0.6"], "uses 'snn' (SNNConfig), not 'rf'"),
])
def test_fit_bad_set_one_line_exit_2(argv, expect, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["fit", "--out", str(out), "--no-progress"] + argv) == 2
    assert expect in _error_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("n_stimuli, n_folds, expect", [
    (3, None, "has 3 stimuli: a fit split by stimulus needs at least 4"),
    (4, None, "n_folds=5 folds cannot hold one out and keep 3 to train on; pass --n-folds K (n_folds=K in Python) "
              "with 4 <= K <= 4"),
    (5, "2", "n_folds=2 folds cannot hold one out and keep 3 to train on; pass --n-folds K (n_folds=K in Python) "
             "with 3 <= K <= 5"),
])
def test_too_few_stimuli_for_the_folds_names_the_option(n_stimuli, n_folds, expect, tmp_path, capsys):
    data = _flashed_file(tmp_path / "few.h5", n_stimuli)
    out = tmp_path / "out"
    argv = ["fit", "--model", "ln", "--data", str(data), "--out", str(out), "--no-progress"]
    assert main(argv + (["--n-folds", n_folds] if n_folds else [])) == 2
    assert expect in _error_line(capsys)
    assert not out.exists()
