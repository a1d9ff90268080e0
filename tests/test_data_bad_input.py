"""Bad input gives a clear exception naming the file and the field, never a wrong recording."""

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from neurocode.data import DataFormatError, Recording, bundled_path, load_onken2016, load_recording

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "onken2016"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"original Onken 2016 files not present at {SHARED}")
SPIKE_FILE = SHARED / "NeuralData" / "Spikes" / "NaturalImages2.mat"
RF_FILE = SHARED / "NeuralData" / "ReceptiveFields" / "NaturalImages2.mat"
IMAGES = SHARED / "Stimuli" / "NaturalImages"


def _synthetic_spikes(n_stim=4, n_cells=3, n_trials=2):
    """A small flashed-stimulus Spikes cell array with one spike per train (int32 ms)."""
    spikes = np.empty((n_stim, 1), dtype=object)
    for s in range(n_stim):
        block = np.empty((n_cells, n_trials), dtype=object)
        for c in range(n_cells):
            for k in range(n_trials):
                block[c, k] = np.array([[100 + s + c + k]], dtype=np.int32)
        spikes[s, 0] = block
    return spikes


def test_missing_spike_file(tmp_path):
    path = tmp_path / "NaturalImages2.mat"
    with pytest.raises(FileNotFoundError, match="NaturalImages2.mat"):
        load_onken2016(path)


def test_wrong_variable_name(tmp_path):
    path = tmp_path / "NaturalImages9.mat"
    scipy.io.savemat(path, {"Spikez": _synthetic_spikes()})
    with pytest.raises(DataFormatError, match=r"NaturalImages9\.mat: variable 'Spikes' not found \(found: \['Spikez'\]\)"):
        load_onken2016(path)


@needs_shared
def test_truncated_mat(tmp_path):
    path = tmp_path / "NaturalImages2.mat"
    data = SPIKE_FILE.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=r"NaturalImages2\.mat: cannot read MATLAB file"):
        load_onken2016(path)


def test_corrupt_mat(tmp_path):
    path = tmp_path / "Movie1Exp2.mat"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(DataFormatError, match=r"Movie1Exp2\.mat"):
        load_onken2016(path)


@pytest.fixture
def image_dir(tmp_path):
    if not IMAGES.is_dir():
        pytest.skip(f"original Onken 2016 files not present at {SHARED}")
    d = tmp_path / "NaturalImages"
    shutil.copytree(IMAGES, d)
    return d


@needs_shared
def test_truncated_raw_not_square(image_dir):
    p = image_dir / "image007.raw"
    p.write_bytes(p.read_bytes()[:65535])
    with pytest.raises(DataFormatError, match=r"image007\.raw: 65535 bytes is not a square image"):
        load_onken2016(SPIKE_FILE, image_dir)


@needs_shared
def test_raw_of_other_square_size(image_dir):
    p = image_dir / "image012.raw"
    p.write_bytes(p.read_bytes()[: 128 * 128])
    with pytest.raises(DataFormatError, match=r"image012\.raw: frame is 128x128 but image001\.raw is 256x256"):
        load_onken2016(SPIKE_FILE, image_dir)


@needs_shared
def test_missing_frame(image_dir):
    (image_dir / "image033.raw").unlink()
    with pytest.raises(DataFormatError, match=r"NaturalImages: expected frame files numbered 1\.\.60.*missing \[33\]"):
        load_onken2016(SPIKE_FILE, image_dir)


def test_spike_time_outside_window(tmp_path):
    spikes = _synthetic_spikes(n_stim=5, n_cells=6, n_trials=3)
    spikes[3, 0][5, 2] = np.array([[120], [301]], dtype=np.int32)
    path = tmp_path / "NaturalImages2.mat"
    scipy.io.savemat(path, {"Spikes": spikes})
    with pytest.raises(DataFormatError, match=r"NaturalImages2\.mat: spike times outside the window \[0, 0\.3\] s in stimulus 3, cell 5, trial 2"):
        load_onken2016(path)


def test_negative_spike_time(tmp_path):
    spikes = _synthetic_spikes()
    spikes[1, 0][0, 1] = np.array([[-4]], dtype=np.int32)
    path = tmp_path / "Gratings.mat"
    scipy.io.savemat(path, {"Spikes": spikes})
    with pytest.raises(DataFormatError, match="stimulus 1, cell 0, trial 1"):
        load_onken2016(path)


def test_nan_spike_time(tmp_path):
    spikes = _synthetic_spikes()
    spikes[2, 0][1, 0] = np.array([[150.0], [np.nan]])
    path = tmp_path / "NaturalImages2.mat"
    scipy.io.savemat(path, {"Spikes": spikes})
    with pytest.raises(DataFormatError, match=r"NaturalImages2\.mat: variable 'Spikes' stimulus 2, cell 1, trial 0: NaN"):
        load_onken2016(path)


def test_ragged_cell_counts_between_stimuli(tmp_path):
    spikes = _synthetic_spikes()
    spikes[2, 0] = spikes[2, 0][:2]
    path = tmp_path / "NaturalImages2.mat"
    scipy.io.savemat(path, {"Spikes": spikes})
    with pytest.raises(DataFormatError, match=r"stimulus 2: 2 cells x 2 trials, stimulus 0 has 3 x 2"):
        load_onken2016(path)


@needs_shared
def test_receptive_field_cell_count_mismatch(tmp_path):
    rf = scipy.io.loadmat(RF_FILE)["ReceptiveFields"][:, :48]
    path = tmp_path / "rf48.mat"
    scipy.io.savemat(path, {"ReceptiveFields": rf})
    with pytest.raises(DataFormatError, match=r"48 cells in receptive-field file .*rf48\.mat but 49 in spike file .*NaturalImages2\.mat"):
        load_onken2016(SPIKE_FILE, receptive_field_file=path)


def test_unsorted_train_in_recording():
    with pytest.raises(DataFormatError, match="not sorted in stimulus 0, cell 1, trial 0"):
        Recording.from_spike_times([[[np.array([0.1])], [np.array([0.2, 0.1])]]], (0.0, 0.3), source="x.h5")


# ---------------------------------------------------------------------- HDF5
def test_hdf5_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.h5"):
        load_recording(tmp_path / "nothere.h5")


def test_hdf5_not_hdf5(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("this is not HDF5\n" * 100)
    with pytest.raises(DataFormatError, match=r"text\.h5: not a readable HDF5 file"):
        load_recording(path)


def test_hdf5_truncated(tmp_path):
    path = tmp_path / "trunc.h5"
    data = bundled_path().read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=r"trunc\.h5"):
        load_recording(path, "natural_images")


def _copy_bundled(tmp_path):
    path = tmp_path / "copy.h5"
    shutil.copy(bundled_path(), path)
    return path


def test_hdf5_missing_dataset(tmp_path):
    path = _copy_bundled(tmp_path)
    with h5py.File(path, "a") as f:
        del f["movie1/spike_offsets"]
    with pytest.raises(DataFormatError, match=r"copy\.h5: dataset 'movie1/spike_offsets' missing"):
        load_recording(path, "movie1")


def test_hdf5_wrong_schema_version(tmp_path):
    path = _copy_bundled(tmp_path)
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(DataFormatError, match=r"copy\.h5: root attribute 'schema_version' is 99"):
        load_recording(path)


def test_hdf5_inconsistent_offsets(tmp_path):
    path = _copy_bundled(tmp_path)
    with h5py.File(path, "a") as f:
        f["movie2/spike_offsets"][-1] = 5  # no longer ends at n_spikes
    with pytest.raises(DataFormatError, match=r"copy\.h5:movie2: spike_offsets must rise from 0 to n_spikes"):
        load_recording(path, "movie2")


def test_hdf5_unknown_recording(tmp_path):
    with pytest.raises(KeyError, match="movie3"):
        load_recording(bundled_path(), "movie3")


@needs_shared
def test_recipe_checksum_mismatch(tmp_path):
    import runpy

    ns = runpy.run_path(str(REPO / "datasets" / "build_onken2016.py"))
    src = tmp_path / "pkg"
    shutil.copytree(SHARED, src)
    (src / "Stimuli/NaturalImages/image021.raw").chmod(0o644)
    with open(src / "Stimuli/NaturalImages/image021.raw", "r+b") as f:
        f.write(b"\x00")
    with pytest.raises(ns["ChecksumError"], match=r"image021\.raw: SHA-256 mismatch"):
        ns["build"](src, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()
