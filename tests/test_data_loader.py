"""Loader for the original Onken et al. 2016 layout, checked against the raw files."""

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from neurocode.data import load_onken2016

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "onken2016"
if not SHARED.is_dir():
    pytest.skip(f"original Onken 2016 files not present at {SHARED}", allow_module_level=True)

SPIKES = SHARED / "NeuralData" / "Spikes"
RFS = SHARED / "NeuralData" / "ReceptiveFields"
IMAGES = SHARED / "Stimuli" / "NaturalImages"


@pytest.fixture(scope="module")
def natural():
    return load_onken2016(SPIKES / "NaturalImages2.mat", IMAGES, RFS / "NaturalImages2.mat")


def test_natural_image_facts(natural):
    assert (natural.n_stimuli, natural.n_cells, natural.n_trials) == (60, 49, 30)
    assert natural.stimuli.shape == (60, 256, 256) and natural.stimuli.dtype == np.uint8
    assert natural.window == (0.0, 0.3)
    assert natural.n_spikes == 181542
    t = natural.spike_times_flat
    assert t.dtype == np.float64 and t.min() == 0.001 and t.max() == 0.3


def test_spike_times_are_mat_milliseconds_in_seconds(natural):
    raw = scipy.io.loadmat(SPIKES / "NaturalImages2.mat")["Spikes"]
    checked = 0
    nonzero = np.argwhere(natural.spike_counts() > 0)
    picks = [(0, 0, 0), (3, 5, 2), (59, 48, 29)] + [tuple(x) for x in nonzero[:: len(nonzero) // 5]]
    for s, c, k in picks:
        ms = raw[s, 0][c, k].ravel()
        got = natural.spike_times[s][c][k]
        np.testing.assert_array_equal(got, np.sort(ms) / 1000.0)
        assert np.all(np.diff(got) >= 0)
        checked += ms.size
    assert checked > 20


def test_image_pairing_and_orientation(natural):
    for nnn in (1, 7, 60):
        flat = np.fromfile(IMAGES / f"image{nnn:03d}.raw", dtype=np.uint8)
        expected = flat.reshape(256, 256).T  # column-major file -> .T of the row-major reshape
        np.testing.assert_array_equal(natural.stimuli[nnn - 1], expected)
        assert not np.array_equal(natural.stimuli[nnn - 1], flat.reshape(256, 256))
    assert natural.provenance["stimulus_pairing"] == "stimuli[i] is imageNNN.raw with NNN = i + 1"


def test_receptive_fields(natural):
    raw = scipy.io.loadmat(RFS / "NaturalImages2.mat")["ReceptiveFields"]
    assert natural.receptive_fields.shape == (49, 2, 1000)
    np.testing.assert_array_equal(natural.receptive_fields[10], raw[0, 10])


def test_provenance_checksums_match_package(natural):
    sums = {}
    for line in (SHARED / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split(maxsplit=1)
        sums[rel.strip().removeprefix("./")] = digest
    files = natural.provenance["source_files_sha256"]
    assert len(files) == 62  # spike file + RF file + 60 frames
    assert files["Stimuli/NaturalImages/image042.raw"] == sums["Stimuli/NaturalImages/image042.raw"]
    assert files["NeuralData/Spikes/NaturalImages2.mat"] == sums["NeuralData/Spikes/NaturalImages2.mat"]
    assert natural.provenance["doi"] == "10.5061/dryad.4ch10"
    assert natural.provenance["licence"] == "CC0 1.0"
    assert "Onken" in natural.provenance["citation"]


@pytest.mark.parametrize("stem,n_spikes", [("Movie1Exp2", 76833), ("Movie2Exp2", 76128)])
def test_movie_recordings(stem, n_spikes):
    rec = load_onken2016(SPIKES / f"{stem}.mat", receptive_field_file=RFS / f"{stem}.mat")
    assert (rec.n_stimuli, rec.n_cells, rec.n_trials) == (1, 49, 30)
    assert rec.stimuli is None
    assert rec.window == (0.0, 18.0)
    assert rec.n_spikes == n_spikes
    assert rec.spike_times_flat.max() <= 18.0
    assert rec.provenance["stimulus_kind"] == "movie"


def test_movie2_first_trial_is_almost_silent():
    rec = load_onken2016(SPIKES / "Movie2Exp2.mat")
    assert rec.spike_counts()[0, :, 0].sum() == 68


def test_movie_frames_are_refused():
    with pytest.raises(ValueError, match="timing"):
        load_onken2016(SPIKES / "Movie1Exp2.mat", stimulus_dir=IMAGES)


def test_shifted_image_layout(tmp_path):
    # Synthetic Shifts file: (n_shifts=2, n_images=3) of (4 cells, 5 trials), spike at
    # 10*(shift*3+image)+cell+1 ms, so the flattening order can be read back from the times.
    spikes = np.empty((2, 3), dtype=object)
    for i in range(2):
        for j in range(3):
            block = np.empty((4, 5), dtype=object)
            for c in range(4):
                for k in range(5):
                    block[c, k] = np.array([[10 * (i * 3 + j) + c + 1]], dtype=np.int32)
            spikes[i, j] = block
    path = tmp_path / "Shifts2.mat"
    scipy.io.savemat(path, {"Spikes": spikes})
    rec = load_onken2016(path)
    assert rec.shape == (6, 4, 5)
    assert rec.provenance["stimulus_grid_shape"] == [2, 3]
    assert rec.spike_times[4][2][3][0] == pytest.approx((10 * 4 + 2 + 1) / 1000.0)  # shift 1, image 1
