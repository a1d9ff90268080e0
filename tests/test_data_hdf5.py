"""Canonical HDF5 format: bundled file facts, exact round trip, atomic writes, rebuild."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from neurocode.data import Recording, bundled_path, list_recordings, load_recording
from neurocode.data import hdf5
from neurocode.data.hdf5 import SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "onken2016"


def test_bundled_path_and_names():
    assert bundled_path() == REPO / "datasets" / "onken2016_retina2.h5"
    assert list_recordings() == ["movie1", "movie2", "natural_images"]


def test_bundled_natural_images_facts():
    rec = load_recording()
    assert rec.name == "natural_images"
    assert rec.shape == (60, 49, 30)
    assert rec.stimuli.shape == (60, 256, 256) and rec.stimuli.dtype == np.uint8
    assert rec.window == (0.0, 0.3)
    assert rec.n_spikes == 181542
    assert rec.receptive_fields.shape == (49, 2, 1000)
    assert rec.spike_times[3][5][2].dtype == np.float64
    assert rec.provenance["doi"] == "10.5061/dryad.4ch10" and rec.provenance["licence"] == "CC0 1.0"


@pytest.mark.parametrize("name,n_spikes", [("movie1", 76833), ("movie2", 76128)])
def test_bundled_movies(name, n_spikes):
    rec = load_recording(name=name)
    assert rec.shape == (1, 49, 30) and rec.window == (0.0, 18.0)
    assert rec.stimuli is None and rec.n_spikes == n_spikes


def test_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROCODE_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="build_onken2016.py"):
        bundled_path()
    rec = load_recording(REPO / "datasets" / "onken2016_retina2.h5", "movie2")
    rec.save(tmp_path / "onken2016_retina2.h5", "movie2")
    assert bundled_path() == tmp_path / "onken2016_retina2.h5"
    assert list_recordings() == ["movie2"]
    assert load_recording().name == "movie2"  # the only recording is the default


def _assert_same(a, b):
    assert a.name == b.name and a.shape == b.shape and a.window == b.window
    for key in ("spike_times_flat", "spike_offsets", "stimuli", "receptive_fields"):
        x, y = getattr(a, key), getattr(b, key)
        assert (x is None) == (y is None)
        if x is not None:
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)
    assert a.provenance == b.provenance


def test_round_trip_is_exact(tmp_path):
    nat, mov = load_recording(), load_recording(name="movie1")
    path = tmp_path / "two.h5"
    nat.save(path, "natural_images")
    mov.save(path, "movie1")  # appending keeps the first group
    assert list_recordings(path) == ["movie1", "natural_images"]
    _assert_same(load_recording(path, "natural_images"), nat)
    _assert_same(load_recording(path, "movie1"), mov)
    # arbitrary float times (not whole ms) survive bit for bit
    rng = np.random.default_rng(0)
    trains = [[[np.sort(rng.uniform(0, 1.5, rng.integers(0, 6))) for _ in range(3)] for _ in range(4)] for _ in range(2)]
    rec = Recording.from_spike_times(trains, (0.0, 1.5), name="synthetic", provenance={"note": "x"})
    rec.save(path)
    _assert_same(load_recording(path, "synthetic"), rec)


def test_spike_times_stored_flat(tmp_path):
    # the bundled file is a version-1 file (equal trials, no 'kind'); this reader still loads it
    with h5py.File(bundled_path(), "r") as f:
        assert f.attrs["schema_version"] == 1 and SCHEMA_VERSION == 2
        g = f["natural_images"]
        assert sorted(g.keys()) == ["receptive_fields", "spike_offsets", "spike_times", "stimuli"]
        assert g["spike_times"].shape == (181542,) and g["spike_offsets"].shape == (60 * 49 * 30 + 1,)
    assert bundled_path().stat().st_size < 10e6


def test_duplicate_name_and_overwrite(tmp_path):
    mov = load_recording(name="movie1")
    path = tmp_path / "f.h5"
    mov.save(path, "a")
    with pytest.raises(ValueError, match="already exists"):
        mov.save(path, "a")
    sub = load_recording().subset([0, 1])
    sub.save(path, "a", overwrite=True)
    assert load_recording(path, "a").shape == (2, 49, 30)


def test_interrupted_append_leaves_file_intact(tmp_path, monkeypatch):
    mov = load_recording(name="movie1")
    path = tmp_path / "f.h5"
    mov.save(path, "movie1")
    before = path.read_bytes()

    def boom(rec, g, name):
        g.create_dataset("spike_times", data=rec.spike_times_flat)
        raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(hdf5, "_write_recording_group", boom)
    with pytest.raises(KeyboardInterrupt):
        mov.save(path, "movie1_copy")
    assert path.read_bytes() == before
    # no temporary left behind (the lock file of neurocode._io.file_lock stays, empty, as run folders' do)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".f.h5.lock", "f.h5"]


def _content(path):
    out = {}
    with h5py.File(path, "r") as f:
        out["/"] = {k: np.asarray(v).tolist() for k, v in f.attrs.items()}

        def visit(name, obj):
            attrs = {k: (v if isinstance(v, str) else np.asarray(v).tolist()) for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                out[name] = (attrs, obj.dtype.str, obj[()].tobytes())
            else:
                out[name] = attrs

        f.visititems(visit)
    return out


def test_rebuild_from_original_is_identical(tmp_path):
    if not SHARED.is_dir():
        pytest.skip(f"original Onken 2016 files not present at {SHARED}")
    import runpy

    build = runpy.run_path(str(REPO / "datasets" / "build_onken2016.py"))["build"]
    out = build(SHARED, tmp_path / "rebuilt.h5")
    # the rebuild is written in the current schema: same recordings, field for field
    assert list_recordings(out) == list_recordings()
    for name in list_recordings():
        _assert_same(load_recording(out, name), load_recording(name=name))
    # and byte-reproducible
    again = build(SHARED, tmp_path / "again.h5")
    assert _content(out) == _content(again)


def test_version_2_round_trip_of_ragged_trials_and_clips(tmp_path):
    rng = np.random.default_rng(1)
    trains = [[[np.sort(rng.uniform(0, 0.5, rng.integers(0, 5))) for _ in range(n_t)] for _ in range(3)]
              for n_t in (1, 4, 2)]
    clips = rng.integers(0, 256, (3, 7, 6, 10), dtype=np.uint8)
    rec = Recording.from_spike_times(trains, (0.0, 0.5), name="ragged", stimuli=clips, frame_interval=0.1,
                                     stimulus_start=-0.2, test_stimuli=[1])
    rec.save(tmp_path / "r.h5")
    back = load_recording(tmp_path / "r.h5", "ragged")
    _assert_same(back, rec)
    assert back.trial_counts.tolist() == [1, 4, 2] and back.test_stimuli.tolist() == [1]
    assert back.frame_interval == 0.1 and back.stimulus_start == -0.2
    for s in range(3):
        for c in range(3):
            for k in range(rec.trial_counts[s]):
                np.testing.assert_array_equal(back.spike_times[s][c][k], trains[s][c][k])
