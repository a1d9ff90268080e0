"""Binning, image preprocessing, the split by image and neo conversion."""

import neo
import numpy as np
import pytest
import quantities as pq

from neurocode.data import ImageNormalizer, Recording, downsample, kfold_split, load_recording


@pytest.fixture(scope="module")
def natural():
    return load_recording()


def test_binned_shape_and_total(natural):
    counts = natural.binned(0.01)
    assert counts.shape == (60, 30, 30, 49)
    # half-open bins (elephant's rule): only the spikes at exactly t_stop = 300 ms are not counted
    at_stop = natural.spike_times_flat == 0.3
    assert 0 < at_stop.sum() < 1000
    assert counts.sum() == natural.n_spikes - at_stop.sum()
    # per-train totals are preserved up to those spikes
    in_window = natural.spike_counts() - np.diff(np.concatenate([[0], np.cumsum(at_stop)])[natural.spike_offsets]).reshape(60, 49, 30)
    np.testing.assert_array_equal(counts.sum(axis=1).transpose(0, 2, 1), in_window)


def test_binned_matches_integer_millisecond_reference(natural):
    # Times are integer ms: bin = ms // 10; a spike at 300 ms is past the last bin.
    ms = np.rint(natural.spike_times_flat * 1000).astype(np.int64)
    ref_bin = ms[ms < 300] // 10
    counts = natural.binned(0.01)
    per_bin = np.bincount(ref_bin, minlength=30)
    np.testing.assert_array_equal(counts.sum(axis=(0, 2, 3)), per_bin)
    assert per_bin[29] > 0


def test_binned_matches_elephant(natural):
    from elephant.conversion import BinnedSpikeTrain

    s, k = 7, 4
    trains = [neo.SpikeTrain(natural.spike_times[s][c][k], units="s", t_start=0, t_stop=0.3) for c in range(49)]
    ref = BinnedSpikeTrain(trains, bin_size=10 * pq.ms, t_start=0 * pq.s, t_stop=0.3 * pq.s).to_array()
    np.testing.assert_array_equal(natural.binned(0.01)[s, :, k, :].T, ref)


def test_bin_edges():
    rec = Recording.from_spike_times([[[np.array([0.0, 0.009, 0.01, 0.29, 0.3])]]], window=(0.0, 0.3))
    b = rec.binned(0.01)[0, :, 0, 0]
    assert b[0] == 2 and b[1] == 1 and b[29] == 1 and b.sum() == 4  # 0.3 = t_stop is not counted


def test_movie_binning():
    rec = load_recording(name="movie1")
    counts = rec.binned(0.5)
    assert counts.shape == (1, 36, 30, 49)
    assert counts.sum() == 76833 - (rec.spike_times_flat == 18.0).sum()


def test_downsample_area_average(natural):
    x = downsample(natural.stimuli, 64)
    assert x.shape == (60, 64, 64) and x.dtype == np.float32
    block = natural.stimuli[5, 8:12, 20:24].astype(np.float64)
    assert x[5, 2, 5] == pytest.approx(block.mean(), abs=1e-4)
    assert x.mean() == pytest.approx(natural.stimuli.astype(np.float64).mean(), rel=1e-6)


def test_downsample_any_size_is_area_weighted():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 600, 600), dtype=np.uint8)
    y = downsample(x, 64)
    assert y.shape == (3, 64, 64)
    # area weighting keeps the mean exactly and a constant image constant
    assert y.mean(axis=(1, 2)) == pytest.approx(x.mean(axis=(1, 2)), rel=1e-6)
    np.testing.assert_allclose(downsample(np.full((1, 250, 250), 7.0), 64), 7.0, rtol=1e-6)
    # output pixel (0, 0) covers 600/64 = 9.375 input px per side: 9 whole and a 0.375 fraction
    w = np.r_[np.ones(9), 0.375] / 9.375
    assert y[0, 0, 0] == pytest.approx(w @ x[0, :10, :10].astype(float) @ w, rel=1e-5)
    clips = rng.random((2, 5, 90, 90))
    np.testing.assert_allclose(downsample(clips, 30)[1, 3], downsample(clips[1], 30)[3], rtol=1e-6)


def test_downsample_refuses_to_squash_and_pad_letterboxes():
    from neurocode.data.preprocessing import pad_to_square

    frames = np.zeros((2, 256, 320), np.uint8)
    with pytest.raises(ValueError, match="not square"):
        downsample(frames, 64)
    frames[:, 0, 0] = 255
    padded, (top, left) = pad_to_square(frames, fill=128)
    assert padded.shape == (2, 320, 320) and (top, left) == (32, 0)
    assert padded[0, 32, 0] == 255 and padded[0, 0, 0] == 128 and padded[0, -1, -1] == 128


def test_normalizer_fitted_on_train_only(natural):
    x = downsample(natural.stimuli, 64)
    train, test = kfold_split(60, 5, fold=0, seed=0)
    norm = ImageNormalizer().fit(x[train])
    assert norm.mean_ == pytest.approx(x[train].astype(np.float64).mean())
    z = norm.transform(x)
    assert z.dtype == np.float32
    assert z[train].mean() == pytest.approx(0.0, abs=1e-5)
    assert z[train].std() == pytest.approx(1.0, abs=1e-5)
    assert abs(z[test].mean()) > 1e-3  # test images were not used in the fit
    with pytest.raises(RuntimeError):
        ImageNormalizer().transform(x)
    with pytest.raises(ValueError):
        ImageNormalizer().fit(np.ones((2, 4, 4)))


def test_kfold_split():
    tests = []
    for fold in range(5):
        train, test = kfold_split(60, 5, fold=fold, seed=0)
        assert train.size == 48 and test.size == 12
        assert np.intersect1d(train, test).size == 0
        np.testing.assert_array_equal(np.union1d(train, test), np.arange(60))
        assert np.all(np.diff(test) > 0) and np.all(np.diff(train) > 0)
        tests.append(test)
    np.testing.assert_array_equal(np.sort(np.concatenate(tests)), np.arange(60))
    np.testing.assert_array_equal(kfold_split(60, 5, 2, seed=0)[1], tests[2])
    assert not np.array_equal(kfold_split(60, 5, 2, seed=1)[1], tests[2])
    with pytest.raises(ValueError, match="fold"):
        kfold_split(60, 5, fold=5)


def test_subset(natural):
    sub = natural.subset([7, 3])
    assert sub.shape == (2, 49, 30)
    np.testing.assert_array_equal(sub.stimuli[0], natural.stimuli[7])
    np.testing.assert_array_equal(sub.spike_times[1][5][2], natural.spike_times[3][5][2])
    assert sub.n_spikes == natural.spike_counts()[[7, 3]].sum()


def _assert_same(a, b):
    assert a.shape == b.shape and a.window == b.window and a.name == b.name
    np.testing.assert_array_equal(a.spike_times_flat, b.spike_times_flat)
    np.testing.assert_array_equal(a.spike_offsets, b.spike_offsets)
    assert (a.stimuli is None) == (b.stimuli is None)
    if a.stimuli is not None:
        np.testing.assert_array_equal(a.stimuli, b.stimuli)
    np.testing.assert_array_equal(a.receptive_fields, b.receptive_fields)
    assert a.provenance == b.provenance


def test_neo_structure_and_round_trip_movie():
    rec = load_recording(name="movie1")
    block = rec.to_neo()
    assert len(block.segments) == 30
    seg = block.segments[4]
    assert seg.annotations["stimulus"] == 0 and seg.annotations["trial"] == 4
    assert len(seg.spiketrains) == 49
    st = seg.spiketrains[11]
    assert st.units == pq.s and st.t_start == 0 * pq.s and st.t_stop == 18.0 * pq.s
    assert st.annotations == {"cell": 11, "stimulus": 0, "trial": 4}
    np.testing.assert_array_equal(st.magnitude, rec.spike_times[0][11][4])
    assert sum(len(s) for g in block.segments for s in g.spiketrains) == 76833
    _assert_same(Recording.from_neo(block), rec)


def test_neo_round_trip_natural_subset(natural):
    sub = natural.subset(np.arange(0, 60, 12))
    block = sub.to_neo()
    assert len(block.segments) == 5 * 30
    _assert_same(Recording.from_neo(block), sub)


def test_one_binning_rule_at_float_edges():
    from neurocode.data.binning import bin_index, n_bins

    # quotients a hair below an integer count as that integer, and no more
    assert n_bins(0.3, 0.01) == 30 and n_bins(0.3 - 0.1, 0.05) == 4 and n_bins(1.0, 0.033) == 30
    assert bin_index(np.array([0.29, 0.3 - 1e-12, 0.0099]), 0.0, 0.01).tolist() == [29, 30, 0]
