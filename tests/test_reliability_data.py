"""Reliability of the data layer and the analyses (issue 13, items 3, 6, 8, 10, 13, 14).

Nothing lost (a failed write leaves the previous file and no temporary), nothing overwritten
(``data build`` refuses an existing --out), no silent wrong answer (lenient loaders, seconds
read as milliseconds, PSTH cut to a common window, unchecked analysis arguments).
"""

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import quantities as pq
import scipy.io
import torch

import neo
import neurocode._io as nio
from neurocode._io import WriteError, atomic_path, write_bytes, write_json, write_text
from elephant_reference import psth_elephant
from neurocode.analysis import (
    bin_spike_times,
    block_to_counts,
    fano_factor,
    instantaneous_rate,
    prediction_cosine_similarity,
    psth,
    spikes_to_spiketrains,
    spiketrains_to_counts,
)
from neurocode.data import DataFormatError, Recording, load_onken2016, load_recording

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "onken2016"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"original Onken 2016 files not present at {SHARED}")
needs_rlimit = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "win32",
                                  reason="RLIMIT_FSIZE fault injection needs a POSIX system")

pytestmark = pytest.mark.filterwarnings("ignore:Binning discarded:UserWarning")


def _recording(n_stim=4, n_cells=3, n_trials=2, n_spikes=5, seed=0, name="r", stimuli=False):
    rng = np.random.default_rng(seed)
    trains = [[[np.sort(rng.uniform(0, 0.3, n_spikes)) for _ in range(n_trials)] for _ in range(n_cells)]
              for _ in range(n_stim)]
    frames = rng.integers(0, 256, (n_stim, 8, 8), dtype=np.uint8) if stimuli else None
    return Recording.from_spike_times(trains, (0.0, 0.3), name=name, stimuli=frames, provenance={"seed": seed})


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    """Entries besides ``keep`` and their lock files (``.NAME.lock``, which stay, as run folders' do)."""
    keep = set(keep) | {f".{name}.lock" for name in keep}
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# ============================================================== item 3: disk full, write errors
@pytest.fixture
def disk_full(monkeypatch):
    """neurocode's low-level write writes 512 bytes, then fails as a full disk does (ENOSPC)."""
    real = nio._write
    calls = []

    def write(fd, data):
        calls.append(len(data))
        if len(calls) == 1 and len(data) > 512:
            real(fd, bytes(data[:512]))
            return 512
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(nio, "_write", write)
    return calls


def _check_write_error(exc: WriteError, path: Path):
    msg = str(exc)
    assert msg == f"cannot write {path}: {os.strerror(errno.ENOSPC)}"
    assert "\n" not in msg and exc.errno == errno.ENOSPC and exc.filename == str(path)
    assert isinstance(exc, OSError)


def test_disk_full_during_recording_save_keeps_the_previous_file(tmp_path, disk_full):
    path = tmp_path / "recs.h5"
    with pytest.MonkeyPatch.context() as mp:  # the first save succeeds
        mp.setattr(nio, "_write", os.write)
        _recording(name="a").save(path)
    before = path.read_bytes()
    with pytest.raises(WriteError) as info:
        _recording(seed=1, name="b", stimuli=True).save(path)
    _check_write_error(info.value, path)
    assert disk_full, "the fault was not injected"
    assert path.read_bytes() == before
    assert _leftovers(tmp_path, {"recs.h5"}) == []
    assert load_recording(path).name == "a"


def test_disk_full_during_predictions_write(tmp_path, disk_full):
    from neurocode.fitting import make_config
    from neurocode.runs import write_predictions

    path = tmp_path / "predictions.h5"
    path.write_bytes(b"previous complete file")
    cfg = make_config("nsnn")
    preds = np.zeros((2, 30, 4, 3), dtype=np.uint8)
    with pytest.raises(WriteError) as info:
        write_predictions(path, cfg, preds, preds.mean(2), np.arange(2))
    _check_write_error(info.value, path)
    assert path.read_bytes() == b"previous complete file"
    assert _leftovers(tmp_path, {"predictions.h5"}) == []


def test_predictions_written_from_memory_read_back(tmp_path):
    from neurocode.fitting import make_config
    from neurocode.runs import read_predictions, write_predictions

    rng = np.random.default_rng(0)
    cfg = make_config("nsnn")
    preds = rng.integers(0, 2, (2, 30, 4, 3)).astype(np.uint8)
    rates = rng.random((2, 30, 3)).astype(np.float32)
    write_predictions(tmp_path / "p.h5", cfg, preds, rates, np.array([3, 7]))
    back, r, test = read_predictions(tmp_path / "p.h5", cfg, 30)
    np.testing.assert_array_equal(back, preds)
    np.testing.assert_array_equal(r, rates)
    assert test.tolist() == [3, 7]


def test_provenance_text_hdf5_cannot_hold_as_an_attribute_still_saves(tmp_path):
    prov = {"doi": "a\x00b", "citation": "\udc80x", "licence": "CC0"}
    rec = Recording.from_spike_times([[[np.array([0.1])]]], (0.0, 0.3), name="r", provenance=prov)
    rec.save(tmp_path / "p.h5")
    assert load_recording(tmp_path / "p.h5").provenance == prov
    with pytest.raises(ValueError, match="invalid recording name"):
        rec.save(tmp_path / "p.h5", "a\x00b")


def test_disk_full_during_nwb_and_json_writes(tmp_path, disk_full):
    pytest.importorskip("pynwb")
    rec = _recording(stimuli=True)
    for path, write in ((tmp_path / "r.nwb", lambda p: rec.to_nwb(p)),
                        (tmp_path / "m.json", lambda p: write_json(p, {"x": list(range(500))})),
                        (tmp_path / "s.csv", lambda p: write_text(p, "a,b\n" * 500))):
        with pytest.raises(WriteError) as info:
            write(path)
        _check_write_error(info.value, path)
        assert not path.exists()
    assert _leftovers(tmp_path, set()) == []


def test_atomic_path_turns_write_errors_into_one_line(tmp_path):
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"old")
    with pytest.raises(WriteError, match=r"^cannot write .*checkpoint\.pt: No space left on device$"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert target.read_bytes() == b"old" and _leftovers(tmp_path, {"checkpoint.pt"}) == []
    # an unwritable folder: the error names the target too
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WriteError, match=r"cannot write .*file/sub/x\.json: Not a directory"):
        write_json(blocker / "sub" / "x.json", {})
    # errors that are not about writing pass through unchanged
    with pytest.raises(KeyError):
        with atomic_path(target):
            raise KeyError("x")
    assert _leftovers(tmp_path, {"checkpoint.pt", "file"}) == []


def _run_limited(tmp_path: Path, body: str, limit: int) -> subprocess.CompletedProcess:
    """Run ``body`` in a fresh interpreter whose files may not grow past ``limit`` bytes (EFBIG)."""
    script = textwrap.dedent(f"""
        import os, resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        tmp = sys.argv[1]
        def limit():
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, hard))
    """) + textwrap.dedent(body)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, env=env)


@needs_rlimit
def test_hdf5_write_past_the_file_size_limit_does_not_crash(tmp_path):
    """h5py writing straight to disk segfaults at exit after a failed close; ours is an error."""
    res = _run_limited(tmp_path, """
        import numpy as np
        from neurocode._io import WriteError
        from neurocode.data import Recording
        rng = np.random.default_rng(0)
        def rec(name, n):
            trains = [[[np.sort(rng.uniform(0, 0.3, n)) for _ in range(3)] for _ in range(4)] for _ in range(5)]
            return Recording.from_spike_times(trains, (0.0, 0.3), name=name)
        path = os.path.join(tmp, "recs.h5")
        rec("small", 3).save(path)
        limit()
        try:
            rec("big", 4000).save(path)
        except WriteError as e:
            print("ERROR:", e)
    """, limit=100_000)
    assert res.returncode == 0, f"crashed with {res.returncode}: {res.stderr[-2000:]}"
    assert f"ERROR: cannot write {tmp_path / 'recs.h5'}: File too large" in res.stdout, res.stdout + res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".recs.h5.lock", "recs.h5"]
    assert load_recording(tmp_path / "recs.h5").name == "small"


@needs_rlimit
def test_checkpoint_write_past_the_file_size_limit_is_one_line(tmp_path):
    """torch.save to a path reports a failed write as a RuntimeError of its zip writer."""
    res = _run_limited(tmp_path, """
        import torch
        from neurocode._io import WriteError, atomic_path
        path = os.path.join(tmp, "checkpoint.pt")
        with atomic_path(path) as t:
            torch.save({"w": torch.zeros(4)}, t)
        limit()
        try:
            with atomic_path(path) as t:
                torch.save({"w": torch.zeros(200_000)}, t)
        except WriteError as e:
            print("ERROR:", e)
    """, limit=100_000)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"ERROR: cannot write {tmp_path / 'checkpoint.pt'}: File too large" in res.stdout, res.stdout + res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["w"].shape == (4,)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 256-KiB tmpfs (needs root and a system that allows mounting; skipped otherwise)."""
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root on Linux")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_on_a_real_tmpfs(tiny_tmpfs, tmp_path):
    res = _run_limited(tmp_path, f"""
        import numpy as np
        from neurocode._io import WriteError
        from neurocode.data import Recording
        rng = np.random.default_rng(0)
        trains = [[[np.sort(rng.uniform(0, 0.3, n)) for _ in range(3)] for _ in range(4)] for n in (3, 4000)]
        path = os.path.join({str(tiny_tmpfs)!r}, "recs.h5")
        Recording.from_spike_times(trains[:1], (0.0, 0.3), name="small").save(path)
        try:
            Recording.from_spike_times(trains, (0.0, 0.3), name="big").save(path)
        except WriteError as e:
            print("ERROR:", e)
    """, limit=resource_unlimited())
    assert res.returncode == 0, f"crashed with {res.returncode}: {res.stderr[-2000:]}"
    assert f"ERROR: cannot write {tiny_tmpfs / 'recs.h5'}: No space left on device" in res.stdout, res.stdout
    assert sorted(p.name for p in tiny_tmpfs.iterdir()) == [".recs.h5.lock", "recs.h5"]
    assert load_recording(tiny_tmpfs / "recs.h5").name == "small"


def resource_unlimited() -> int:
    import resource

    return resource.RLIM_INFINITY


# ============================================================== item 10: build --out, permissions
def _recipe():
    import runpy

    return runpy.run_path(str(REPO / "datasets" / "build_onken2016.py"))


def test_build_refuses_an_existing_out(tmp_path):
    out = tmp_path / "mine.h5"
    out.write_bytes(b"a file the user made")
    with pytest.raises(FileExistsError, match=r"mine\.h5: file exists; pass --overwrite \(overwrite=True\)"):
        _recipe()["build"](tmp_path / "no-source-needed", out)  # refused before any source is read
    assert out.read_bytes() == b"a file the user made"
    with pytest.raises(FileNotFoundError):  # with overwrite it goes on (and here finds no sources)
        _recipe()["build"](tmp_path / "no-source", out, overwrite=True)
    assert out.read_bytes() == b"a file the user made"


@needs_shared
def test_build_overwrite_replaces_and_keeps_umask_permissions(tmp_path):
    out = tmp_path / "rebuilt.h5"
    out.write_bytes(b"old")
    old = os.umask(0o027)
    try:
        _recipe()["build"](SHARED, out, overwrite=True)
    finally:
        os.umask(old)
    assert (out.stat().st_mode & 0o777) == 0o640
    assert load_recording(out, "movie1").shape == (1, 49, 30)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rebuilt.h5"]


def test_saved_files_get_the_umask_permissions(tmp_path, monkeypatch):
    from neurocode.fitting import make_config
    from neurocode.runs import write_predictions

    def no_umask_change(*args):  # reading the umask by setting it races with other threads
        raise AssertionError("os.umask called while writing")

    rec = _recording(stimuli=True)
    old = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", no_umask_change)
        rec.save(tmp_path / "r.h5")
        write_predictions(tmp_path / "p.h5", make_config("cnn"), np.zeros((2, 30, 3)), np.zeros((2, 30, 3)),
                          np.arange(2))
        write_json(tmp_path / "m.json", {"a": 1})
        write_text(tmp_path / "s.csv", "a\n")
        write_bytes(tmp_path / "b.bin", b"x")
        with atomic_path(tmp_path / "c.pt") as t:
            torch.save({"w": torch.zeros(2)}, t)
        if _has_pynwb():
            rec.to_nwb(tmp_path / "r.nwb")
    finally:
        monkeypatch.undo()
        os.umask(old)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()}
    assert set(modes.values()) == {oct(0o640)}, modes


def _has_pynwb() -> bool:
    try:
        import pynwb  # noqa: F401
    except ImportError:
        return False
    return True


def test_atomic_path_without_overwrite(tmp_path):
    target = tmp_path / "x.txt"
    write_bytes(target, b"1", overwrite=False)
    with pytest.raises(FileExistsError, match=r"x\.txt: file exists"):
        write_bytes(target, b"2", overwrite=False)
    assert target.read_bytes() == b"1" and _leftovers(tmp_path, {"x.txt"}) == []


# ============================================================== item 13: loader leniency
@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "case.h5"
    _recording(n_stim=4, n_cells=2, n_trials=3).save(path)
    return path


def _set_attr(path, where, key, value):
    with h5py.File(path, "a") as f:
        f[where].attrs[key] = value


@pytest.mark.parametrize("where,value", [
    ("/", np.array([1, 2])), ("/", 1.7), ("/", 1.0), ("/", "1"), ("/", True),
    ("r", np.array([2])), ("r", 1.7), ("r", 2.0), ("r", "2"), ("r", np.bool_(True)),
])
def test_schema_version_must_be_an_integer_we_read(saved, where, value):
    _set_attr(saved, where, "schema_version", value)
    field = "root attribute 'schema_version'" if where == "/" else "attribute 'r.attrs['schema_version']'"
    with pytest.raises(DataFormatError, match=rf"case\.h5: {field.replace('[', '.').replace(']', '.')} is .*"
                                              r"expected one of the integers \[1, 2\]"):
        load_recording(saved, "r")


@pytest.mark.parametrize("value,what", [
    (json.dumps([1, 2]), "is a JSON list, expected a JSON object"),
    ("3", "is a JSON int, expected a JSON object"),
    ("null", "is a JSON NoneType, expected a JSON object"),
    (np.int64(5), r"is 5 \(int64\), expected a JSON object as text"),
    ("{x", "is not valid JSON"),
])
def test_provenance_must_be_a_json_object(saved, value, what):
    _set_attr(saved, "r", "provenance", value)
    with pytest.raises(DataFormatError, match=rf"case\.h5: attribute 'r.attrs\['provenance'\]' {what}"):
        load_recording(saved, "r")


@pytest.mark.parametrize("value", [np.array([4.5, 2, 3]), np.array([4.0, 2.0, 3.0]), np.array([4, 2]),
                                   np.array([[4, 2, 3]]), "abc", np.array([True, True, True])])
def test_shape_must_be_three_integers(saved, value):
    _set_attr(saved, "r", "shape", value)
    with pytest.raises(DataFormatError, match=r"case\.h5: attribute 'r.attrs\['shape'\]' is .* expected 3 integers "
                                              r"\(n_stimuli, n_cells, n_trials\)"):
        load_recording(saved, "r")


def test_float_shape_is_not_truncated_in_memory_either():
    with pytest.raises(DataFormatError, match=r"shape must be whole numbers .* got \(4\.5, 2\.0, 3\.0\)"):
        Recording(name="x", spike_times_flat=np.zeros(0), spike_offsets=np.zeros(25, dtype=np.int64),
                  shape=(4.5, 2, 3), window=(0.0, 0.3))


def _replace(path, key, data):
    with h5py.File(path, "a") as f:
        del f[f"r/{key}"]
        f[f"r/{key}"] = data


def test_offsets_error_names_the_real_fault(saved):
    rec = load_recording(saved, "r")
    off = rec.spike_offsets.copy()
    off[5], off[6] = off[6], off[5] - 1  # a decrease in the middle; first and last stay right
    _replace(saved, "spike_offsets", off)
    with pytest.raises(DataFormatError, match=rf"case\.h5:r: spike_offsets must rise from 0 to n_spikes=120, but "
                                              rf"decrease from {off[5]} to {off[6]} at entry 6 \(after stimulus 0, "
                                              r"cell 1, trial 2\)"):
        load_recording(saved, "r")
    # a wrong 'shape' shows up as too few offsets: the message names shape and trial counts too
    _replace(saved, "spike_offsets", rec.spike_offsets)
    _set_attr(saved, "r", "shape", np.array([5, 2, 3]))
    with h5py.File(saved, "a") as f:
        del f["r/trial_counts"]
    with pytest.raises(DataFormatError, match=r"spike_offsets has 25 entries but shape \(5, 2, 3\) with trial counts "
                                              r"\[3, 3, 3, 3, 3\] gives 30 trains .* \(fields 'spike_offsets', "
                                              r"'shape', 'trial_counts'\)"):
        load_recording(saved, "r")


def test_float32_spike_times_reported_with_enough_digits(saved):
    rec = load_recording(saved, "r")
    t = rec.spike_times_flat.astype(np.float32)
    t[4] = np.float32(0.3)  # the last spike of train 0 at the window's end, rounded up by float32
    _replace(saved, "spike_times", t)
    with pytest.raises(DataFormatError, match=r"outside the window \[0, 0\.3\] s in stimulus 0, cell 0, trial 0 "
                                              r"\(t = 0\.30000001192092896 s; the spike times are stored as float32"):
        load_recording(saved, "r")
    t[4] = np.float32(0.29)  # float32 times inside the window are fine
    _replace(saved, "spike_times", t)
    assert load_recording(saved, "r").spike_times_flat.dtype == np.float64


def test_non_numeric_stimulus_timing_attributes(tmp_path):
    rng = np.random.default_rng(0)
    trains = [[[np.array([0.1])]] for _ in range(2)]
    rec = Recording.from_spike_times(trains, (0.0, 0.3), name="r", stimuli=rng.random((2, 4, 3, 3)),
                                     frame_interval=0.1)
    rec.save(tmp_path / "c.h5")
    with h5py.File(tmp_path / "c.h5", "a") as f:
        f["r/stimuli"].attrs["frame_interval"] = np.array([0.1, 0.2])
    with pytest.raises(DataFormatError, match=r"c\.h5: attribute 'r/stimuli.attrs\['frame_interval'\]' is \[0\.1, "
                                              r"0\.2\] .* expected one finite number"):
        load_recording(tmp_path / "c.h5", "r")


# ============================================================== item 6: .mat in seconds
def _spikes_mat(path, times_of, n_stim=3, n_cells=2, n_trials=2, kind="flashed"):
    """A Spikes cell array in the package's layout with ``times_of(s, c, k)`` per train."""
    def block(s):
        b = np.empty((n_cells, n_trials), dtype=object)
        for c in range(n_cells):
            for k in range(n_trials):
                b[c, k] = np.asarray(times_of(s, c, k), dtype=float).reshape(-1, 1)
        return b

    if kind == "movie":
        spikes = block(0)
    else:
        spikes = np.empty((n_stim, 1), dtype=object)
        for s in range(n_stim):
            spikes[s, 0] = block(s)
    scipy.io.savemat(path, {"Spikes": spikes})
    return path


def test_mat_spike_times_in_seconds_are_refused(tmp_path):
    ms = _spikes_mat(tmp_path / "NaturalImages2.mat", lambda s, c, k: [12.5 + s, 140.25 + c, 290.0 + k])
    sec = _spikes_mat(tmp_path / "NaturalImages3.mat", lambda s, c, k: [0.0125 + s / 1e3, 0.14025 + c / 1e3,
                                                                         0.29 + k / 1e3])
    good = load_onken2016(ms)  # fractional milliseconds are still milliseconds
    assert good.spike_times[1][0][1][0] == pytest.approx(0.0135)
    with pytest.raises(DataFormatError, match=r"NaturalImages3\.mat: variable 'Spikes' holds non-integer spike times "
                                              r"\(at most 0\.291\) that fit the 0\.3-s response window of a flash in "
                                              r"seconds: they look like seconds.*milliseconds.*time_unit='s'"):
        load_onken2016(sec)
    as_s = load_onken2016(sec, time_unit="s")
    np.testing.assert_allclose(as_s.spike_times_flat, good.spike_times_flat, rtol=1e-12)
    assert as_s.provenance["spike_time_units_in_source"] == "s"
    with pytest.raises(ValueError, match="time_unit must be"):
        load_onken2016(sec, time_unit="us")


def test_mat_movie_in_seconds_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    # an 18-s movie in seconds, like the package's Movie1Exp2 at 1/1000 of its values
    sec = _spikes_mat(tmp_path / "Movie1Exp2.mat", lambda s, c, k: np.sort(rng.uniform(0, 18, 100)), kind="movie")
    with pytest.raises(DataFormatError, match=r"Movie1Exp2\.mat: .* that fit the first 60 s of a movie in seconds"):
        load_onken2016(sec)
    rec = load_onken2016(sec, time_unit="s")
    assert rec.window == (0.0, 18.0)
    # a 5-minute movie in seconds: read as ms the cells would fire at over 1 kHz
    long = _spikes_mat(tmp_path / "Movie2Exp9.mat", lambda s, c, k: np.sort(rng.uniform(0, 300, 3000)), kind="movie")
    with pytest.raises(DataFormatError, match=r"median inter-spike interval of 0\.\d+ \(over 1 kHz as ms\)"):
        load_onken2016(long)
    # fractional milliseconds of a long movie are milliseconds
    ms = _spikes_mat(tmp_path / "Movie3Exp9.mat", lambda s, c, k: np.sort(rng.uniform(0, 18000, 100)), kind="movie")
    assert load_onken2016(ms).window == (0.0, 18.0)
    # integer milliseconds, as in the package, load as before
    ms = _spikes_mat(tmp_path / "Movie2Exp2.mat", lambda s, c, k: [5, 900, 17999], kind="movie")
    assert load_onken2016(ms).window == (0.0, 18.0)


def test_damaged_mat_file_is_an_error_not_a_crash(tmp_path):
    """scipy's reader crashes (SIGSEGV) on a numeric array flagged complex without imaginary data."""
    path = _spikes_mat(tmp_path / "NaturalImages2.mat", lambda s, c, k: [100.0, 200.0])
    raw = bytearray(path.read_bytes())
    i = raw.index(bytes.fromhex("0600000008000000" "06"))  # array flags of the first double array
    raw[i + 9] |= 0x08  # "complex"
    path.write_bytes(bytes(raw))
    res = subprocess.run([sys.executable, "-c", "import sys\nfrom neurocode.data import load_onken2016\n"
                          "try:\n    load_onken2016(sys.argv[1])\nexcept ValueError as e:\n    print(e)",
                          str(path)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, f"crashed with {res.returncode}: {res.stderr[-1000:]}"
    assert "NaturalImages2.mat: cannot read MATLAB file (damaged MATLAB 5/7 structure: " in res.stdout


# ============================================================== item 8: PSTH of unequal windows
def test_psth_of_unequal_t_stop_raises_like_elephant():
    from elephant.statistics import time_histogram

    a = neo.SpikeTrain([0.1, 0.2], t_stop=0.5, units="s")
    b = neo.SpikeTrain([0.1, 0.35], t_stop=0.4, units="s")
    with pytest.raises(ValueError, match="same t_stop"):
        time_histogram([a, b], bin_size=0.1 * pq.s, output="rate")
    with pytest.raises(ValueError, match=r"different t_stop \(0\.4 s for train 1, 0\.5 s for train 0\); pass t_stop "
                                         "explicitly"):
        psth([a, b], bin_size=0.1)
    with pytest.raises(ValueError, match="different t_stop"):
        spiketrains_to_counts([[a], [b]], 0.1)
    c = neo.SpikeTrain([0.1, 0.35], t_start=0.05, t_stop=0.5, units="s")
    with pytest.raises(ValueError, match=r"different t_start"):
        psth([a, c], bin_size=0.1)
    # an explicit shared window is what elephant then bins, and so do we
    np.testing.assert_allclose(psth([a, b], bin_size=0.1, t_start=0.0, t_stop=0.4),
                               psth_elephant([a, b], 0.1, 0.0, 0.4))


# ============================================================== item 14: analysis inputs
def test_fano_factor_of_a_single_trial_is_nan_with_a_warning():
    from elephant.statistics import fanofactor

    one = [neo.SpikeTrain([0.1, 0.2], t_stop=0.3, units="s")]
    assert fanofactor(one) == 0.0  # elephant: 0, as if the cell were perfectly reliable
    with pytest.warns(RuntimeWarning, match=r"1 trial\(s\) along the trial axis.*Fano factor is NaN"):
        assert np.isnan(fano_factor(one))
    with pytest.warns(RuntimeWarning):
        ff = fano_factor(np.ones((1, 5)))
    assert ff.shape == (5,) and np.isnan(ff).all()
    with pytest.warns(RuntimeWarning, match=r"2 trial\(s\).*ddof=1"):
        assert np.isnan(fano_factor(np.ones((2, 3)), ddof=1)).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(fano_factor(np.array([[1.0], [3.0]])), [0.5])


def test_coding_analysis_arguments():
    from neurocode.analysis import coding_analysis, model_coding_analysis

    with pytest.raises(ValueError, match=r"^n_trials must be a positive integer, got 0"):
        model_coding_analysis(torch.nn.Identity(), torch.zeros(2, 3), n_trials=0)
    with pytest.raises(ValueError, match=r"^counts is empty"):
        coding_analysis(np.zeros((0, 3, 2)))
    with pytest.warns(RuntimeWarning, match="Fano factor is NaN"):
        res = coding_analysis(np.ones((4, 1, 3)))  # one trial per stimulus: nothing to compare
    assert np.isnan(res.mean_fano).all() and np.isnan(res.cosine).all()


@pytest.mark.parametrize("bad", [0.0, -0.01, float("nan"), float("inf")])
def test_bin_size_and_dt_must_be_positive(bad):
    counts = np.ones((30, 4, 2))
    with pytest.raises(ValueError, match=r"^dt must be a positive number of seconds"):
        psth(counts, dt=bad)
    with pytest.raises(ValueError, match=r"^bin_size must be a positive number of seconds"):
        psth(counts, dt=0.01, bin_size=bad)
    trains = spikes_to_spiketrains(counts, 0.01)
    with pytest.raises(ValueError, match=r"^bin_size must be a positive number of seconds"):
        psth(trains, bin_size=bad)
    with pytest.raises(ValueError, match=r"^bin_size must be a positive number of seconds"):
        bin_spike_times([[np.array([0.1])]], bad, 0.0, 0.3)
    with pytest.raises(ValueError, match=r"^dt must be a positive number of seconds"):
        spikes_to_spiketrains(counts, bad)
    with pytest.raises(ValueError, match=r"^sampling_period must be a positive number of seconds"):
        instantaneous_rate(trains, bad)


def test_bin_size_longer_than_the_window():
    counts = np.ones((30, 4, 2))  # 0.3 s at dt = 0.01
    with pytest.raises(ValueError, match=r"bin_size=0\.5 s is longer than the window of 0\.3 s"):
        psth(counts, dt=0.01, bin_size=0.5)
    with pytest.raises(ValueError, match=r"bin_size=0\.5 s is longer than the window of 0\.3 s"):
        psth(spikes_to_spiketrains(counts, 0.01), bin_size=0.5)
    with pytest.raises(ValueError, match=r"bin_size=1 s is longer than the window of 0\.3 s"):
        bin_spike_times([np.array([0.1])], 1.0, 0.0, 0.3)
    with pytest.raises(ValueError, match=r"t_stop must be greater than t_start"):
        bin_spike_times([np.array([0.1])], 0.01, 0.3, 0.3)


@pytest.mark.parametrize("call", [
    lambda: fano_factor([]),
    lambda: fano_factor(np.zeros((0, 4))),
    lambda: psth([], bin_size=0.01),
    lambda: psth(np.zeros((0, 3, 2)), dt=0.01),
    lambda: prediction_cosine_similarity(np.zeros((0, 3))),
    lambda: spiketrains_to_counts([], 0.01),
    lambda: spikes_to_spiketrains(np.zeros((0, 2, 2)), 0.01),
    lambda: block_to_counts(neo.Block(), 0.01),
], ids=["fano-list", "fano-array", "psth-list", "psth-array", "cosine", "spiketrains_to_counts",
        "spikes_to_spiketrains", "block"])
def test_empty_input_is_a_clear_value_error(call):
    with pytest.raises(ValueError, match=r"^(\w+ is empty|block .* holds no spike trains)"):
        call()


def test_bfloat16_is_accepted():
    g = torch.Generator().manual_seed(0)
    counts = torch.poisson(torch.full((20, 6, 3), 0.5), generator=g)
    ref32 = counts.float()
    b16 = counts.to(torch.bfloat16)  # small integers are exact in bfloat16
    np.testing.assert_array_equal(fano_factor(b16, time_axis=0), fano_factor(ref32, time_axis=0))
    np.testing.assert_array_equal(psth(b16, dt=0.01), psth(ref32, dt=0.01))
    np.testing.assert_array_equal(prediction_cosine_similarity(b16[0]), prediction_cosine_similarity(ref32[0]))
    trains = spikes_to_spiketrains(b16, 0.01)
    np.testing.assert_array_equal(spiketrains_to_counts(trains, 0.01), counts.numpy())


def test_nan_spike_times_are_refused():
    with pytest.raises(ValueError, match=r"spike_times contains NaN or infinite spike times \(train \(1, 0\)\)"):
        bin_spike_times([[np.array([0.1])], [np.array([0.2, np.nan])]], 0.01, 0.0, 0.3)
    st = neo.SpikeTrain(np.array([0.1, np.nan]), t_stop=0.3, units="s")
    with pytest.raises(ValueError, match="NaN"):
        psth([st, neo.SpikeTrain([0.2], t_stop=0.3, units="s")], bin_size=0.1)
    with pytest.raises(ValueError, match="predictions contains NaN"):
        prediction_cosine_similarity(np.array([[1.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="spikes contains NaN"):
        spikes_to_spiketrains(np.array([[[np.nan]]]), 0.01)
