"""Writes with a lock or a guard, and no code from a data file (reliability issue 32, groups 3
and 6): concurrent imports into one recording file both land, ``predict --out`` never replaces
a run's file, a recording or (without --overwrite) any file, ``sweep --out`` never takes a folder
of the user's files, a CIFAR batch is read as data only, and file-provided strings reach the
terminal escaped."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from reliability_helpers import data_copy, ln_run, run_cli  # noqa: F401 -- fixtures

REPO = Path(__file__).resolve().parents[1]





@pytest.fixture
def stimuli(tmp_path, data_copy) -> Path:
    from neurocode.data import load_recording

    path = tmp_path / "new.npy"
    np.save(path, load_recording(data_copy).stimuli[:2])
    return path


# ---------------------------------------------------------------- a lock on recording files
# Each process reads the NWB file, waits until both are ready, then imports; its write is slowed
# by 2 s, so without a lock both read the file before either writes it, and one group is lost.
_IMPORT = """
import sys, time
from pathlib import Path
import neurocode._io as io
from neurocode import cli

nwb, out, name, ready, other = sys.argv[1:]
slow = io.write_bytes
def write_bytes_slowly(*args, **kwargs):
    time.sleep(2.0)
    return slow(*args, **kwargs)
io.write_bytes = write_bytes_slowly
from neurocode.data.nwb import read_nwb
read_nwb(nwb)  # pynwb and the reader imported before the race starts
Path(ready).touch()
deadline = time.time() + 120
while not Path(other).exists() and time.time() < deadline:
    time.sleep(0.01)
sys.exit(cli.main(["data", "import", nwb, "--out", out, "--name", name]))
"""


def test_two_concurrent_imports_into_one_file_both_land(tmp_path, data_copy):
    from neurocode.data import list_recordings, load_recording
    from neurocode.data.nwb import write_nwb

    nwb = write_nwb(load_recording(data_copy).subset([0, 1, 2]), tmp_path / "small.nwb")
    out = tmp_path / "same.h5"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _IMPORT, str(nwb), str(out), name, str(tmp_path / f"{name}.ready"),
                               str(tmp_path / f"{other}.ready")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for name, other in (("first", "second"), ("second", "first"))]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert list_recordings(out) == ["first", "second"]
    for name in ("first", "second"):
        assert load_recording(out, name).n_stimuli == 3


def test_the_recording_file_lock_waits_and_then_times_out_with_a_clear_error(tmp_path):
    from filelock import FileLock

    from neurocode._io import FileBusy, file_lock

    target = tmp_path / "rec.h5"
    with file_lock(target):
        assert (tmp_path / ".rec.h5.lock").exists()
        with pytest.raises(FileBusy, match=r"rec\.h5: another neurocode process"):
            with file_lock(target, timeout=0.2):
                pass
    with FileLock(tmp_path / ".rec.h5.lock", timeout=0):  # released
        pass


# ---------------------------------------------------------------- predict --out never replaces what it must not
@pytest.mark.parametrize("name", ["config.json", "predictions.h5", "checkpoint.pt", "notes.txt"])
def test_predict_never_writes_a_file_of_a_run_folder(ln_run, stimuli, tmp_path, capsys, name):
    run = tmp_path / "run"
    shutil.copytree(ln_run, run)
    target = run / name
    before = target.read_bytes() if target.exists() else None
    for extra in ([], ["--overwrite"]):
        code, _, err = run_cli(["predict", run, "--stimuli", stimuli, "--out", target, *extra], capsys)
        assert code == 2 and "predict writes only predictions_<name>.h5" in err
        assert (target.read_bytes() if target.exists() else None) == before


def test_predict_never_replaces_a_recording_file(ln_run, stimuli, data_copy, tmp_path, capsys):
    recording = tmp_path / "recording.h5"
    shutil.copyfile(data_copy, recording)
    for extra in ([], ["--overwrite"]):
        code, _, err = run_cli(["predict", ln_run, "--stimuli", stimuli, "--out", recording, *extra], capsys)
        assert code == 2 and "is a recording file" in err
    assert recording.read_bytes() == data_copy.read_bytes()


def test_predict_replaces_an_existing_file_only_with_overwrite(ln_run, stimuli, tmp_path, capsys):
    import h5py

    out = tmp_path / "mine.h5"
    out.write_bytes(b"the user's own file")
    code, _, err = run_cli(["predict", ln_run, "--stimuli", stimuli, "--out", out], capsys)
    assert code == 2 and "exists; pass --overwrite" in err and out.read_bytes() == b"the user's own file"
    code, _, _ = run_cli(["predict", ln_run, "--stimuli", stimuli, "--out", out, "--overwrite"], capsys)
    assert code == 0
    with h5py.File(out, "r") as f:
        assert f["rates"].shape[0] == 2


def test_predict_into_the_run_folder_by_default_refuses_a_second_time(ln_run, stimuli, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(ln_run, run)
    assert run_cli(["predict", run, "--stimuli", stimuli], capsys)[0] == 0
    written = run / "predictions_new.h5"
    before = written.read_bytes()
    code, _, err = run_cli(["predict", run, "--stimuli", stimuli, "--trials", "2"], capsys)
    assert code == 2 and "exists; pass --overwrite" in err and written.read_bytes() == before


# ---------------------------------------------------------------- sweep --out takes only its own folder
@pytest.mark.parametrize("name", ["results.csv", "summary.csv", "notes.txt"])
def test_sweep_refuses_a_folder_holding_files_it_did_not_make(tmp_path, data_copy, name):
    from neurocode.sweep import SweepError, sweep

    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_text("the user's own table\n")
    with pytest.raises(SweepError, match=f"holds files a sweep did not make \\({name}\\)"):
        sweep(models="ln", out=out, data=data_copy, use_ray=False, figure=False, log=None)
    assert sorted(p.name for p in out.iterdir()) == [name]
    assert (out / name).read_text() == "the user's own table\n"


def test_a_folder_a_sweep_wrote_is_its_own(tmp_path):
    from neurocode.sweep._engine import check_sweep_folder

    out = tmp_path / "sweep"
    (out / "runs").mkdir(parents=True)
    (out / "tune").mkdir()
    check_sweep_folder(out)  # an interrupted sweep before its tables
    (out / "results.csv").write_text("model\n")
    with pytest.raises(ValueError, match="results.csv"):  # a table without the sweep's record
        check_sweep_folder(out)
    (out / "results.json").write_text(json.dumps({"protocol": {"mode": "grid"}, "runs": []}))
    check_sweep_folder(out)


# ---------------------------------------------------------------- a CIFAR batch is data, never code
class _Planted:
    """Unpickling it would create the file ``path`` (a batch that runs code)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _write_cifar10(root: Path, protocol: int, planted: Path | None = None) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"batch_label": f.encode(), b"labels": [int(v) for v in rng.integers(0, 10, 4)],
                 b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"filenames": [b"a.png"] * 4}
        if planted is not None and f == "data_batch_2":
            batch[b"filenames"] = _Planted(planted)
        with open(folder / f, "wb") as fh:
            pickle.dump(batch, fh, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 5])
def test_a_cifar_batch_of_arrays_lists_and_bytes_is_read(tmp_path, protocol):
    from neurocode.recognition.data import read_cifar_split

    _write_cifar10(tmp_path, protocol)
    x, y = read_cifar_split(tmp_path, "cifar10", train=True)
    assert x.shape == (20, 32, 32, 3) and x.dtype == np.uint8 and y.shape == (20,)


def test_a_cifar_batch_that_would_run_code_is_refused(tmp_path, capsys):
    from neurocode.recognition.data import read_cifar_split

    marker = tmp_path / "pwned"
    _write_cifar10(tmp_path / "data", 2, planted=marker)
    with pytest.raises(ValueError, match=r"data_batch_2: not a CIFAR python batch .*refused to load io\.open"):
        read_cifar_split(tmp_path / "data", "cifar10", train=True)
    assert not marker.exists()
    code, _, err = run_cli(["classify", "--dataset", "cifar10", "--model", "nsnn", "--data-dir", tmp_path / "data",
                             "--epochs", "1", "--threads", "1", "--out", tmp_path / "run"], capsys)
    assert code == 2 and "refused to load io.open" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()


# ---------------------------------------------------------------- file-provided strings reach the terminal escaped
def test_the_receptive_field_warning_escapes_the_recording_name(tmp_path, data_copy):
    from neurocode.data import load_recording
    from neurocode.data.receptive_fields import receptive_fields_for

    rec = load_recording(data_copy).subset([0, 1, 2, 3])
    rec.name = "red\x1b[31m\x07"
    rec.receptive_fields = None  # two training images and no stored RFs: the fallback warns
    rec.save(tmp_path / "hostile.h5")
    hostile = load_recording(tmp_path / "hostile.h5")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        receptive_fields_for(hostile, [0, 1], bin_size=0.01)
    texts = [str(w.message) for w in caught if "broad centred Gaussian" in str(w.message)]
    assert texts and all("\x1b" not in t and "\x07" not in t for t in texts)
    assert "red\\x1b[31m\\x07" in texts[0]


def test_printable_keeps_lines_and_escapes_controls():
    from neurocode._io import printable, printable_lines

    assert printable("a\x1b[2Jb\nc\u009b") == "a\\x1b[2Jb\\nc\\x9b"
    assert printable_lines("rec \x1b]0;x\x07\nnext") == "rec \\x1b]0;x\\x07\nnext"
    assert printable("Zürich 0.5 ± 0.1") == "Zürich 0.5 ± 0.1"
