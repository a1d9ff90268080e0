"""Reliability of run folders and the command line: one writer per folder, nothing of the
user's overwritten, the recording's provenance, options checked before any write, clear
one-line errors for write failures, interrupts and hostile names (reliability issue items
1, 2, 5, 9, 10, 11, 12, 15; items 3, 6, 8, 13, 14 are in test_reliability_data.py, item 4
in test_neurons.py, item 7 in test_any_recording.py)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neurocode.fitting import CheckpointError, load_checkpoint
from neurocode.pipeline import RunFolderBusy, RunFolderError, evaluate, fit
from neurocode.runs import RunFolder
from test_pipeline import TINY
from reliability_helpers import data_copy, ln_run, run_cli  # noqa: F401 -- fixtures

REPO = Path(__file__).resolve().parents[1]





# ---------------------------------------------------------------- 1. one writer per run folder
def test_a_locked_folder_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out).lock():
        with pytest.raises(RunFolderBusy, match="another neurocode process"):
            fit("nsnn", out=out, progress=False, **TINY)
        assert not out.exists()
    with RunFolder(out).lock():  # released, and re-acquirable
        pass


def test_evaluate_during_a_fit_is_refused(ln_run):
    with RunFolder(ln_run).lock():
        with pytest.raises(RunFolderBusy):
            evaluate(ln_run)


@pytest.mark.slow
def test_two_fits_started_together_exactly_one_runs(tmp_path):
    """Two `neurocode fit` processes into one folder at the same moment: one exits 0, the other
    non-zero, and the folder holds the winner's run only (config and metrics of one seed)."""
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    cmd = [sys.executable, "-m", "neurocode", "fit", "--model", "ln", "--out", str(out), "--no-progress",
           "--threads", "1"]
    procs = [subprocess.Popen(cmd + ["--seed", str(seed)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for seed in (0, 1)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = [err for code, err in results if code != 0][0]
    assert "another neurocode process" in loser or "already holds a run" in loser
    winner_seed = [seed for seed, (code, _) in zip((0, 1), results) if code == 0][0]
    assert json.loads((out / "config.json").read_text())["seed"] == winner_seed
    assert json.loads((out / "metrics.json").read_text())["seed"] == winner_seed


# ---------------------------------------------------------------- 2. the user's files, empty paths
def test_a_folder_of_user_files_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "history.json").write_text("my notes")
    (out / "paper.pdf").write_bytes(b"%PDF")
    with pytest.raises(FileExistsError, match="did not make .*history.json, paper.pdf"):
        fit("ln", out=out, progress=False, threads=1)
    assert (out / "history.json").read_text() == "my notes" and sorted(p.name for p in out.iterdir()) == [
        "history.json", "paper.pdf"]
    fit("ln", out=out, overwrite=True, progress=False, threads=1)
    assert (out / "paper.pdf").read_bytes() == b"%PDF" and (out / "metrics.json").exists()


def test_overwrite_replaces_a_run_and_resume_with_overwrite_is_refused(ln_run, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(ln_run, out)
    cfg = json.loads((out / "config.json").read_text())
    with pytest.raises(FileExistsError, match="--overwrite to replace it"):
        fit("ln", data=cfg["data"], out=out, seed=3, progress=False, threads=1)
    with pytest.raises(ValueError, match="give one of them"):
        fit("ln", data=cfg["data"], out=out, seed=3, resume=True, overwrite=True, progress=False, threads=1)
    fit("ln", data=cfg["data"], out=out, seed=3, overwrite=True, progress=False, threads=1)
    assert json.loads((out / "config.json").read_text())["seed"] == 3
    assert json.loads((out / "metrics.json").read_text())["seed"] == 3


@pytest.mark.parametrize("out", ["", "   "])
def test_empty_out_is_an_error(out, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["fit", "--model", "ln", "--out", out], capsys)
    assert code == 2 and "path is empty (--out)" in err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- 5. NaN in a fit
def test_a_diverging_fit_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import neurocode.fitting as fitting
    from neurocode.kinds import SpikingKind

    real_loss, calls = SpikingKind.loss, {"n": 0}
    steps = None

    def loss(self, config, model, data, items, *args):
        nonlocal steps
        steps = steps or fitting.steps_per_epoch(config, data)
        calls["n"] += 1
        value = real_loss(self, config, model, data, items, *args)
        return value * float("nan") if calls["n"] > steps else value  # diverges in epoch 2

    monkeypatch.setattr(SpikingKind, "loss", loss)
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError, match="epoch 2.*keeps epoch 1, the last good one"):
        fit("nsnn", out=out, progress=False, **TINY)
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_a_checkpoint_with_nan_weights_is_refused(tmp_path):
    import neurocode.fitting as fitting
    from neurocode.checkpoints import checkpoint_state
    from neurocode.fitting import make_config

    config = make_config("nsnn", **{k: v for k, v in TINY.items() if k != "preset"})
    model = fitting.build_model(config, n_cells=3, n_steps=30)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    gens = {"noise": torch.Generator(), "order": torch.Generator()}
    path = tmp_path / "checkpoint.pt"
    torch.save(checkpoint_state(fitting.FIT_CHECKPOINT, config, model, None, None, 1, [], gens, None,
                                model_kind="nsnn"), path)
    with pytest.raises(CheckpointError, match="NaN or inf"):
        load_checkpoint(path)


# ---------------------------------------------------------------- 9. the recording's provenance
def test_evaluate_refuses_a_changed_recording_unless_rescore(ln_run, data_copy, tmp_path):
    import shutil

    from neurocode.data import load_recording

    run = tmp_path / "run"
    shutil.copytree(ln_run, run)
    stored = json.loads((run / "config.json").read_text())["data_sha256"]
    from neurocode._io import sha256_file

    assert stored == sha256_file(data_copy)
    before = (run / "metrics.json").read_bytes()
    changed = tmp_path / "changed.h5"
    rec = load_recording(data_copy)
    rec.provenance = {**rec.provenance, "note": "re-sorted"}
    rec.save(changed)
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"] = str(changed)  # the stored path now holds another file
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunFolderError, match="recording file changed since this run was fitted"):
        evaluate(run)
    metrics = evaluate(run, rescore=True)
    assert (run / "metrics_rescored.json").exists() and metrics["data_sha256"] == sha256_file(changed)
    assert (run / "metrics.json").read_bytes() == before


# ---------------------------------------------------------------- 11. options before any write
@pytest.mark.parametrize("args, message", [
    (["--device", "cuda"], "--device"),
    (["--device", "gpu0"], "--device"),
    (["--threads", "0"], "--threads"),
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2 ** 64)], "--seed"),
])
def test_bad_options_are_refused_before_the_folder_exists(args, message, tmp_path, capsys):
    if args[:2] == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "run"
    code, _, err = run_cli(["fit", "--model", "ln", "--out", out, *args], capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert not out.exists()  # so the next plain run is not blocked by a stray config.json


# ---------------------------------------------------------------- 12. write errors
def test_disk_full_while_writing_a_run_is_one_clear_line(tmp_path, capsys, monkeypatch):
    import neurocode.runs as runs

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "run" / "config.json"))

    monkeypatch.setattr(runs, "write_json", full)
    code, _, err = run_cli(["fit", "--model", "ln", "--out", tmp_path / "run", "--threads", "1", "--no-progress"],
                            capsys)
    assert code == 1
    assert err.strip().splitlines() == [f"neurocode: error: cannot write or read {tmp_path / 'run' / 'config.json'}: "
                                        "No space left on device"]


# ---------------------------------------------------------------- 15. messages
def test_interrupt_before_the_first_epoch_does_not_claim_a_checkpoint(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("neurocode.fitting.train", interrupted)
    code, _, err = run_cli(["fit", "--model", "nsnn", "--out", tmp_path / "run", "--no-progress", "--epochs", "1",
                             "--threads", "1"], capsys)
    assert code == 130
    assert "no epoch had finished" in err and "is checkpointed" not in err


def test_group_names_are_printed_without_terminal_escapes(tmp_path, capsys, data_copy):
    from neurocode.data import load_recording

    path = tmp_path / "hostile.h5"
    rec = load_recording(data_copy)
    rec.name = "red\x1b[31m\x07"
    rec.save(path)
    code, out, _ = run_cli(["data", "list", path], capsys)
    assert code == 0 and "\x1b" not in out and "\x07" not in out and "red\\x1b[31m\\x07" in out


def test_deeply_nested_config_is_a_clear_error(ln_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(ln_run, run)
    (run / "config.json").write_text('{"model": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(RunFolderError, match="config.json"):
        evaluate(run)


# ---------------------------------------------------------------- 10. data build --out
def test_data_build_refuses_an_existing_out(tmp_path, capsys):
    out = tmp_path / "exists.h5"
    out.write_bytes(b"mine")
    code, _, err = run_cli(["data", "build", "--source", tmp_path, "--out", out], capsys)
    assert code == 2 and "--overwrite" in err and out.read_bytes() == b"mine"
