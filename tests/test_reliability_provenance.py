"""Provenance that cannot be bypassed (reliability issue 32, group 2): every command that reads
a run checks that the recording file is the one the run was fitted to (one check,
:func:`neurocode.pipeline.check_provenance`), a file reading data from other HDF5 files is
refused, and ``predict`` reuses the normalisation and receptive fields stored in the run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from neurocode.pipeline import RunFolderError, evaluate, fit, load_run, simulate_run
from reliability_helpers import data_copy, ln_run, run_cli  # noqa: F401 -- fixtures

CHANGED = "recording file changed since this run was fitted"





@pytest.fixture(scope="module")
def brighter_copy(tmp_path_factory, data_copy) -> Path:
    """The recording with every frame 100 times brighter: a file whose normaliser differs."""
    from neurocode.data import load_recording

    rec = load_recording(data_copy)
    rec.stimuli = rec.stimuli.astype(np.float32) * 100
    path = tmp_path_factory.mktemp("changed") / "retina_brighter.h5"
    rec.save(path)
    return path


def _run_on(ln_run: Path, data: Path, tmp_path: Path) -> Path:
    """A copy of the run whose config.json names ``data`` (as if the fitted file had been replaced)."""
    run = tmp_path / "run"
    shutil.copytree(ln_run, run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"] = str(data)
    (run / "config.json").write_text(json.dumps(cfg))
    return run


@pytest.fixture
def stimuli(tmp_path, data_copy) -> Path:
    from neurocode.data import load_recording

    path = tmp_path / "new.npy"
    np.save(path, load_recording(data_copy).stimuli[:3])
    return path


# ---------------------------------------------------------------- every reader of a run checks the file
def test_predict_on_a_run_whose_recording_changed_is_refused(ln_run, brighter_copy, stimuli, tmp_path, capsys):
    run = _run_on(ln_run, brighter_copy, tmp_path)
    code, _, err = run_cli(["predict", run, "--stimuli", stimuli, "--out", tmp_path / "p.h5"], capsys)
    assert code == 2 and CHANGED in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p.h5").exists()


def test_simulate_run_on_a_run_whose_recording_changed_is_refused(ln_run, brighter_copy, data_copy, tmp_path):
    from neurocode.data import load_recording

    run = _run_on(ln_run, brighter_copy, tmp_path)
    with pytest.raises(RunFolderError, match=CHANGED):
        simulate_run(run, load_recording(data_copy).stimuli[:2], n_trials=2)


def test_resume_and_evaluate_use_the_same_check(data_copy, brighter_copy, tmp_path):
    data = tmp_path / "retina.h5"
    shutil.copyfile(data_copy, data)
    run = tmp_path / "run"
    fit("ln", data=data, out=run, progress=False, threads=1)
    shutil.copyfile(brighter_copy, data)
    with pytest.raises(RunFolderError, match=CHANGED):
        evaluate(run)
    with pytest.raises(RunFolderError, match=CHANGED):
        fit("ln", data=data, out=run, resume=True, progress=False, threads=1)


# ---------------------------------------------------------------- what predict reuses is the run's own
def test_the_fit_stores_its_normaliser_and_predict_reads_it_from_the_run(ln_run, data_copy, tmp_path):
    from neurocode.fitting import predict_stimuli, prepare_data

    stored = json.loads((ln_run / "normalizer.json").read_text())
    config, model, data = load_run(ln_run)
    rebuilt = prepare_data(config).normalizer
    assert (stored["mean"], stored["std"]) == (rebuilt.mean_, rebuilt.std_)
    assert (data.normalizer.mean_, data.normalizer.std_) == (stored["mean"], stored["std"])

    run = tmp_path / "run"
    shutil.copytree(ln_run, run)
    (run / "normalizer.json").write_text(json.dumps({**stored, "std": 2 * stored["std"]}))
    frames = data.recording.stimuli[:4]
    rates_stored = predict_stimuli(config, model, data, frames)
    _, model2, data2 = load_run(run)
    assert data2.normalizer.std_ == 2 * stored["std"]
    assert not np.allclose(predict_stimuli(config, model2, data2, frames), rates_stored)


def test_predict_reads_the_receptive_fields_from_the_run(ln_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(ln_run, run)
    rfs = json.loads((run / "receptive_fields.json").read_text())
    rfs["method"] = "as stored at the fit"
    (run / "receptive_fields.json").write_text(json.dumps(rfs))
    _, _, data = load_run(run)
    assert data.rfs.method == "as stored at the fit"
    np.testing.assert_array_equal(data.rfs.centres, np.asarray(rfs["centres"]))


@pytest.mark.parametrize("content, message", [("{", "corrupt image normalisation"),
                                              ('{"mean": 0.5, "std": 0}', "std > 0"),
                                              ('{"mean": "a", "std": 1}', "finite numbers")])
def test_a_damaged_stored_normaliser_is_a_clear_error(ln_run, tmp_path, content, message):
    run = tmp_path / "run"
    shutil.copytree(ln_run, run)
    (run / "normalizer.json").write_text(content)
    with pytest.raises(RunFolderError, match=message):
        load_run(run)


# ---------------------------------------------------------------- a sweep never reuses a run of another file
def test_a_rerun_sweep_on_a_changed_recording_is_refused_not_skipped(data_copy, tmp_path):
    from neurocode.data import load_recording
    from neurocode.sweep import SweepError, sweep

    data = tmp_path / "retina.h5"
    shutil.copyfile(data_copy, data)
    lines: list[str] = []
    kwargs = dict(out=tmp_path / "sweep", data=data, use_ray=False, figure=False, log=lines.append)
    sweep(models="ln", **kwargs)
    table = (tmp_path / "sweep" / "results.csv").read_text()
    sweep(models="ln", **kwargs)  # the same file: the finished fit is reused
    assert any("[skip]" in line for line in lines)

    rec = load_recording(data)
    rec.stimuli = rec.stimuli[::-1].copy()  # the same shape, other images: old scores are wrong
    data.unlink()
    rec.save(data)
    lines.clear()
    with pytest.raises(SweepError, match=CHANGED + ".*neither reuses nor refits"):
        sweep(models="ln", **kwargs)
    assert not any("[skip]" in line for line in lines)
    assert (tmp_path / "sweep" / "results.csv").read_text() == table


def test_an_analysis_script_does_not_reuse_a_run_whose_recording_changed(ln_run, brighter_copy, tmp_path,
                                                                         monkeypatch, capsys):
    import argparse
    import sys

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "analyses"))
    sys.modules.pop("_common", None)
    from _common import ensure_run, run_key

    run = _run_on(ln_run, brighter_copy, tmp_path)
    args = argparse.Namespace(preset="quick", data=str(brighter_copy), recording=None)
    with pytest.raises(SystemExit, match=CHANGED):
        ensure_run(run, "ln", args, run_key(run))
    assert "[skip]" not in capsys.readouterr().out
    assert ensure_run(ln_run, "ln", args, run_key(ln_run))["model"] == "ln"  # the fitted file: reused


# ---------------------------------------------------------------- only what is hashed is read
def _linking_file(path: Path, target: Path) -> Path:
    """A neurocode file whose recording group is an external link into ``target``."""
    with h5py.File(target, "r") as src, h5py.File(path, "w") as f:
        for key, value in src.attrs.items():
            f.attrs[key] = value
        f["natural_images"] = h5py.ExternalLink(str(target), "/natural_images")
    return path


def test_a_recording_group_that_is_an_external_link_is_refused(data_copy, tmp_path, capsys):
    link = _linking_file(tmp_path / "link.h5", data_copy)
    with pytest.raises(ValueError, match="external link"):
        fit("ln", data=link, out=tmp_path / "run", progress=False, threads=1)
    assert not (tmp_path / "run").exists()
    code, _, err = run_cli(["fit", "--model", "ln", "--data", link, "--out", tmp_path / "run2", "--threads", "1",
                             "--no-progress"], capsys)
    assert code == 2 and "'/natural_images' is an external link" in err and len(err.strip().splitlines()) == 1


def test_evaluate_refuses_a_run_whose_file_links_to_another(ln_run, data_copy, tmp_path):
    link = _linking_file(tmp_path / "link.h5", data_copy)
    run = _run_on(ln_run, link, tmp_path)
    with pytest.raises(ValueError, match="external link"):
        evaluate(run)
    with pytest.raises(ValueError, match="external link"):
        evaluate(run, rescore=True)  # not even scored against it


def test_virtual_and_externally_stored_datasets_are_refused(tmp_path):
    from neurocode.data.hdf5 import check_self_contained

    with h5py.File(tmp_path / "source.h5", "w") as f:
        f["x"] = np.arange(4.0)
    layout = h5py.VirtualLayout(shape=(4,), dtype="f8")
    layout[:] = h5py.VirtualSource(str(tmp_path / "source.h5"), "x", shape=(4,))
    with h5py.File(tmp_path / "virtual.h5", "w") as f:
        f.create_group("rec").create_virtual_dataset("spike_times", layout)
    with pytest.raises(ValueError, match="'/rec/spike_times' is a virtual dataset"):
        check_self_contained(tmp_path / "virtual.h5")

    (tmp_path / "raw.bin").write_bytes(np.arange(4.0).tobytes())
    with h5py.File(tmp_path / "external.h5", "w") as f:
        f.create_dataset("x", shape=(4,), dtype="<f8", external=[(str(tmp_path / "raw.bin"), 0, 32)])
    with pytest.raises(ValueError, match="'/x' is a dataset stored in external file"):
        check_self_contained(tmp_path / "external.h5")

    with h5py.File(tmp_path / "plain.h5", "w") as f:  # soft links inside the file are fine
        f["a/x"] = np.arange(3)
        f["b"] = h5py.SoftLink("/a")
    check_self_contained(tmp_path / "plain.h5")
