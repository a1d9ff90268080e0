"""Statistics: fast paths equal elephant / scipy; known cases."""

import warnings

import numpy as np
import pytest
import quantities as pq
import scipy.spatial.distance
import scipy.stats
import torch

from elephant.statistics import fanofactor, instantaneous_rate as el_instantaneous_rate
from elephant.kernels import GaussianKernel
from elephant_reference import fano_factor_elephant, psth_elephant
from neurocode.analysis import (
    count_cc_per_cell,
    fano_factor,
    instantaneous_rate,
    pearson,
    prediction_cosine_similarity,
    psth,
    rate_cc_per_cell,
    spikes_to_spiketrains,
    split_half_reliability,
)


pytestmark = pytest.mark.filterwarnings("ignore:Binning discarded:UserWarning")


# --------------------------------------------------------------------------- Fano factor
def test_fano_matches_elephant_random():
    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.uniform(0, 3, size=(1, 1, 12)), size=(20, 15, 12))  # [T, trials, cells]
    counts[:, :, 0] = 0  # silent cell -> NaN like elephant
    trains = spikes_to_spiketrains(counts, dt=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = fano_factor_elephant(trains)
    fast = fano_factor(counts, time_axis=0)
    assert np.isnan(ref[0]) and np.isnan(fast[0])
    np.testing.assert_allclose(fast, ref, rtol=1e-12, equal_nan=True)
    # neo inputs: single cell's trials -> float, nested -> per cell
    assert fano_factor([row[3] for row in trains]) == pytest.approx(fanofactor([row[3] for row in trains]))
    np.testing.assert_allclose(fano_factor(trains), ref, equal_nan=True)
    # torch input, summed counts
    np.testing.assert_allclose(fano_factor(torch.as_tensor(counts.sum(0))), ref, equal_nan=True)


def test_fano_matches_elephant_real(recording_subset):
    times, trains = recording_subset
    counts = np.array([[[len(t) for t in row] for row in stim] for stim in times])  # [S, trials, cells]
    fast = fano_factor(counts)  # [S, cells]
    for s in range(len(trains)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = fano_factor_elephant(trains[s])
        np.testing.assert_allclose(fast[s], ref, rtol=1e-12, equal_nan=True)


def test_fano_ddof_and_axes():
    rng = np.random.default_rng(1)
    x = rng.poisson(4, size=(9, 7)).astype(float)  # [trials, cells]
    np.testing.assert_allclose(fano_factor(x, ddof=1), x.var(0, ddof=1) / x.mean(0))
    np.testing.assert_allclose(fano_factor(x.T, axis_trials=1), x.var(0) / x.mean(0))
    y = rng.poisson(1, size=(5, 9, 7))  # [T, trials, cells]
    np.testing.assert_allclose(fano_factor(y, time_axis=0), fano_factor(y.sum(0)))
    np.testing.assert_allclose(fano_factor(np.moveaxis(y, 0, 2), axis_trials=0, time_axis=2),
                               fano_factor(y.sum(0)))


def test_poisson_fano_is_one():
    rng = np.random.default_rng(2)
    n_trials = 200
    ff = fano_factor(rng.poisson(5.0, size=(n_trials, 400)))
    # per-cell standard error ~ sqrt(2/(n-1)); mean of 400 cells -> /20
    se = np.sqrt(2 / (n_trials - 1))
    assert abs(ff.mean() - 1) < 4 * se / np.sqrt(400)
    assert np.all(np.abs(ff - 1) < 5 * se)


def test_identical_trials_fano_zero_cosine_one():
    rng = np.random.default_rng(3)
    one = rng.poisson(2, size=(1, 10)) + 1
    x = np.repeat(one, 8, axis=0)  # [trials, cells]
    np.testing.assert_array_equal(fano_factor(x), 0.0)
    assert prediction_cosine_similarity(x, axis_trials=0) == pytest.approx(1.0, abs=1e-12)


# --------------------------------------------------------------------------- cosine
def test_cosine_matches_pairwise_reference():
    rng = np.random.default_rng(4)
    p = rng.normal(size=(6, 11, 9))  # [stimuli, trials, features]
    p[2, 3] = 0.0  # zero vector: excluded from pairs
    fast = prediction_cosine_similarity(torch.as_tensor(p), axis_trials=1)
    for s in range(6):
        v = p[s][np.linalg.norm(p[s], axis=1) > 0]
        ref = np.mean(1 - scipy.spatial.distance.pdist(v, "cosine"))
        assert fast[s] == pytest.approx(ref, abs=1e-12)
    assert np.isnan(prediction_cosine_similarity(np.zeros((4, 3)), axis_trials=0))


# --------------------------------------------------------------------------- correlations
def test_pearson_and_cc_per_cell():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=50), rng.normal(size=50)
    y = y + 0.5 * x
    r, p = pearson(x, y)
    ref = scipy.stats.pearsonr(x, y)
    assert r == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    assert np.isnan(pearson(x, np.ones(50))[0])
    a, b = rng.normal(size=(40, 7)), rng.normal(size=(40, 7))
    b = b + a
    b[:, 1] = 3.0  # zero-variance model cell -> NaN
    cc = rate_cc_per_cell(a, b)
    for c in range(7):
        if c == 1:
            assert np.isnan(cc[c])
        else:
            assert cc[c] == pytest.approx(scipy.stats.pearsonr(a[:, c], b[:, c]).statistic)
    np.testing.assert_allclose(count_cc_per_cell(a, 2 * a + 1), 1.0)


def test_pearson_p_value_matches_scipy_at_every_sample_size():
    rng = np.random.default_rng(11)
    for n in (2, 3, 5, 12, 200):
        x = rng.normal(size=n)
        y = rng.normal(size=n) + 0.3 * x
        r, p = pearson(x, y)
        ref = scipy.stats.pearsonr(x, y)
        assert r == pytest.approx(ref.statistic, abs=1e-12)
        assert p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)
        # a perfect line: p is 0 up to the rounding of r (scipy's r is 1 - 1e-16 here, p ~1e-8 at n = 3)
        r, p = pearson(x, -2 * x + 1)
        assert r == pytest.approx(-1.0, abs=1e-12)
        assert p == pytest.approx(scipy.stats.pearsonr(x, -2 * x + 1).pvalue, abs=1e-6)


# --------------------------------------------------------------------------- PSTH / rates
def test_psth_matches_time_histogram_random():
    rng = np.random.default_rng(6)
    counts = rng.poisson(0.4, size=(30, 10, 3))
    trains = spikes_to_spiketrains(counts, dt=0.01)
    for bin_size in (0.01, 0.03):
        ref = psth_elephant(trains, bin_size)
        np.testing.assert_allclose(psth(trains, bin_size=bin_size), ref)
        np.testing.assert_allclose(psth(counts, dt=0.01, bin_size=bin_size), ref)
    one = [row[0] for row in trains]
    np.testing.assert_allclose(psth(one, bin_size=0.02), psth_elephant(one, 0.02))
    # 4-D recording layout [S, T, trials, cells] -> [S, T, cells]
    rec = rng.poisson(0.4, size=(2, 30, 10, 3))
    np.testing.assert_allclose(psth(rec, dt=0.01)[1], rec[1].mean(1) / 0.01)


def test_psth_matches_time_histogram_real(recording_subset):
    times, trains = recording_subset
    for s in range(2):
        ref = psth_elephant(trains[s], 0.01, 0.0, 0.3)
        np.testing.assert_allclose(psth(trains[s], bin_size=0.01, t_start=0.0, t_stop=0.3), ref)


def test_instantaneous_rate_matches_elephant():
    rng = np.random.default_rng(7)
    counts = rng.poisson(0.3, size=(50, 6, 2))
    trains = spikes_to_spiketrains(counts, dt=0.002)
    rate = instantaneous_rate(trains, 0.002, sigma=0.01)
    assert rate.shape == (50, 2)
    for c in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            per = el_instantaneous_rate([row[c] for row in trains], 0.002 * pq.s,
                                        kernel=GaussianKernel(0.01 * pq.s))
        ref = per.rescale("Hz").magnitude.mean(axis=1)
        np.testing.assert_allclose(rate[:, c], ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(instantaneous_rate(counts, 0.002, sigma=0.01, dt=0.002), rate)


# --------------------------------------------------------------------------- reliability
def test_split_half_reliability():
    rng = np.random.default_rng(8)
    rate = rng.gamma(2.0, 1.0, size=(5, 20, 1, 4))  # [S, T, 1, cells]
    counts = rng.poisson(np.broadcast_to(rate, (5, 20, 30, 4)))
    r = split_half_reliability(counts)
    even = counts[:, :, 0::2].mean(2).reshape(-1, 4)
    odd = counts[:, :, 1::2].mean(2).reshape(-1, 4)
    for c in range(4):
        assert r[c] == pytest.approx(scipy.stats.pearsonr(even[:, c], odd[:, c]).statistic)
    assert np.all(r > 0.5)
    same = np.repeat(counts[:, :, :1], 4, axis=2)
    np.testing.assert_allclose(split_half_reliability(same), 1.0)
    sb = split_half_reliability(counts, spearman_brown=True)
    np.testing.assert_allclose(sb, 2 * r / (1 + r))


# --------------------------------------------------------------------------- real data

