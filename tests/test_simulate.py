"""In-silico recordings (neurocode.simulate): stimuli, LNP ground truth, Poisson spikes, recordings.

Tolerances come from the sample sizes: a mean of N independent Bernoulli(1/2) or Poisson
variables is compared with its expectation within 5 standard errors.
"""

import time
import tracemalloc

import numpy as np
import pytest

from neurocode.data import ContinuousRecording, Recording
from neurocode.simulate import (
    LNPoisson,
    flashes,
    gratings,
    natural_movie,
    poisson_spike_times,
    recording_from_spikes,
    simulate_continuous,
    simulate_flashes,
    simulate_from_rates,
    truth_rate_cc,
    white_noise,
    white_noise_experiment,
)


# ---------------------------------------------------------------------- stimuli
def test_white_noise_is_binary_and_balanced():
    frames = white_noise(500, (40, 40), seed=0)
    assert frames.dtype == np.uint8 and frames.shape == (500, 40, 40)
    assert set(np.unique(frames).tolist()) == {0, 255}
    on = frames == 255
    n = on.size
    assert abs(on.mean() - 0.5) < 5 * 0.5 / np.sqrt(n)
    # per pixel over time, and per frame over space: no pixel or frame is stuck
    assert abs(on.mean(axis=0) - 0.5).max() < 5 * 0.5 / np.sqrt(500)
    assert np.array_equal(frames, white_noise(500, (40, 40), seed=0))
    assert not np.array_equal(frames, white_noise(500, (40, 40), seed=1))


def test_gratings_drift_and_range():
    g = gratings(31, shape=(20, 50), period_px=25.0, frame_rate=30.0, speed_hz=2.0, contrast=1.0)
    assert g.dtype == np.uint8 and g.shape == (31, 20, 50)
    assert g.min() <= 1 and g.max() >= 254
    g16 = g.astype(np.int16)  # values at exactly 127.5 may round either way: compare within 1 level
    assert np.abs(g16[0] - g16[15]).max() <= 1  # one temporal period = 15 frames at 2 Hz, 30 Hz
    assert np.abs(g16[0, :, :25] - g16[0, :, 25:]).max() <= 1  # spatial period 25 px
    assert np.abs(g16[0] - g16[7]).max() > 100  # it moves
    assert np.all(g[0] == g[0, :1])  # orientation 0: vertical bars (constant down columns)
    half = gratings(4, shape=(8, 8), contrast=0.5)
    assert half.min() >= 63 and half.max() <= 192
    blocks = gratings(8, shape=(16, 16), orientation_deg=[0, 90], block_seconds=4 / 30)
    assert np.all(blocks[0] == blocks[0, :1]) and np.all(blocks[4] == blocks[4, :, :1])


def test_natural_stimuli_are_smooth_uint8():
    mov = natural_movie(40, (30, 30), seed=0, correlation_px=3.0, correlation_frames=2.0)
    assert mov.dtype == np.uint8 and mov.shape == (40, 30, 30)
    z = mov.astype(float) - mov.mean()
    r_space = np.corrcoef(z[:, :, :-1].ravel(), z[:, :, 1:].ravel())[0, 1]
    r_time = np.corrcoef(z[:-1].ravel(), z[1:].ravel())[0, 1]
    assert r_space > 0.8 and r_time > 0.7
    assert 20 < mov.std() < 60  # RMS contrast ~1/3 of 127.5
    im = flashes(5, (32, 32), seed=0)
    assert im.dtype == np.uint8 and im.shape == (5, 32, 32)
    assert np.corrcoef(im[:, :, :-1].ravel().astype(float), im[:, :, 1:].ravel().astype(float))[0, 1] > 0.8


# ---------------------------------------------------------------------- model
def test_lnpoisson_filters():
    m = LNPoisson.random(6, (40, 40), seed=1)
    sf = m.spatial_filters()
    assert sf.shape == (6, 40, 40) and sf.dtype == np.float64
    np.testing.assert_allclose(np.sqrt((sf**2).sum(axis=(1, 2))), 1.0, rtol=1e-9)
    # centre sign = polarity
    for c in range(6):
        x, y = m.rfs.centres[c]
        assert np.sign(sf[c, int(y), int(x)]) == m.polarity[c]
    tf = m.temporal_filter(m.n_lags(1 / 30), 1 / 30)
    assert tf.shape == (6, m.n_lags(1 / 30))
    np.testing.assert_allclose(np.sqrt((tf**2).sum(axis=1)), 1.0, rtol=1e-9)
    assert np.all((m.peak_time() > 0.06) & (m.peak_time() < 0.1))
    assert np.all(tf.min(axis=1) < -0.1)  # biphasic
    # a picture and its 2x upsampled copy give (nearly) the same drive
    img = flashes(3, (40, 40), seed=2)
    up = np.repeat(np.repeat(img, 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(m.project(up), m.project(img), atol=0.05 * np.abs(m.project(img)).max())


def test_flash_rates_are_the_step_response_of_the_clip_rates():
    m = LNPoisson.random(3, (24, 24), seed=4)
    img = flashes(2, (24, 24), seed=5)
    dt, T = 0.01, 40
    rf = m.rates_for_flashes(img, (0.0, T * dt), dt)  # [2, T, 3]
    for i in range(2):
        clip = np.repeat(((img[i].astype(float) - 127.5) / 127.5)[None], T, axis=0)
        np.testing.assert_allclose(rf[i], m.rates_for_clip(clip, dt), rtol=1e-9, atol=1e-12)
    # grey before the flash: baseline rate, then a response after the latency
    pre = m.rates_for_flashes(img, (-0.1, 0.2), dt)
    base = m.gain * np.logaddexp(0, m.offset) * dt
    np.testing.assert_allclose(pre[:, :10], np.broadcast_to(base, pre[:, :10].shape), rtol=1e-9)


def test_sta_recovers_spatial_filters():
    """STA of a 10-min, 4-cell white-noise recording matches the true spatial filter at the peak lag.

    Pixels far from the RF carry only noise (~1/sqrt(n_spikes) each), so the comparison is made
    on a 13 x 13 px window around each true centre (covering the centre and near surround).
    """
    n_frames, shape = 18000, (40, 40)
    m = LNPoisson.random(4, shape, seed=3)
    frames = white_noise(n_frames, shape, seed=11)
    rec, truth = simulate_continuous(m, frames, frame_rate=30.0, seed=12)
    counts = rec.binned(truth.dt).astype(np.float32)  # [T, 4]
    z = (frames.reshape(n_frames, -1).astype(np.float32) - 127.5) / 127.5
    true_sf = m.spatial_filters()
    peak_lag_true = np.argmax(np.abs(truth.temporal_filters), axis=1)
    for c in range(4):
        n = counts[:, c]
        sta = np.stack([n[lag:] @ z[: n_frames - lag] / n[lag:].sum() for lag in range(8)]).reshape(8, *shape)
        pk = int(np.argmax((sta**2).sum(axis=(1, 2))))
        assert pk == peak_lag_true[c]
        j, i = (int(v) for v in m.rfs.centres[c])
        win = (slice(max(i - 6, 0), i + 7), slice(max(j - 6, 0), j + 7))
        r = np.corrcoef(sta[pk][win].ravel(), true_sf[c][win].ravel())[0, 1]
        assert r > 0.8, (c, r)


# ---------------------------------------------------------------------- headline experiment
@pytest.fixture(scope="module")
def headline():
    tracemalloc.start()
    t = time.perf_counter()
    rec, truth, model = white_noise_experiment()  # 20 cells, 10 min 40x40 at 30 Hz, 10-s repeat x 20
    wall = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return rec, truth, model, wall, peak


def test_headline_experiment_runs_fast_and_small(headline):
    rec, truth, model, wall, peak = headline
    print(f"\nwhite_noise_experiment(): {wall:.2f} s wall (under tracemalloc), peak traced memory "
          f"{peak / 2**20:.0f} MiB, {rec.n_spikes} spikes")
    assert wall < 20.0
    assert peak < 2 * 2**30
    assert isinstance(rec, ContinuousRecording)
    assert rec.n_cells == 20 and rec.frame_shape == (40, 40)
    assert rec.n_frames == 18000 + 20 * 300 and rec.n_repeats == 20
    assert rec.session == pytest.approx((0.0, 800.0))
    assert truth.rates.shape == (24000, 20) and truth.repeat_rates.shape == (300, 20)
    mean_hz = truth.rates.mean(axis=0) / truth.dt
    assert np.all((mean_hz > 5) & (mean_hz < 15))
    assert np.all(truth.rates.std(axis=0) / truth.rates.mean(axis=0) > 0.5)  # clearly stimulus-modulated


def test_repeats_really_repeat(headline):
    rec, truth, model, _, _ = headline
    np.testing.assert_allclose(rec.repeats[:, 0], truth.repeat_starts)
    fi = truth.frame_interval
    first = rec.frame_index(rec.repeats[0, 0] + 0.5 * fi)
    for start in rec.repeats[:, 0]:
        i = rec.frame_index(start + 0.5 * fi)
        assert np.array_equal(rec.frames[i: i + 300], rec.frames[first: first + 300])
    # repeats are interleaved with unique stimulus, not back to back
    assert np.all(np.diff(rec.repeats[:, 0]) > truth.repeat_duration + 1.0)
    # the true rates of every repeat agree with repeat_rates once the history is forgotten
    skip = int(np.ceil(model.filter_duration / truth.dt))
    for start in truth.repeat_starts:
        b = int(round(start / truth.dt))
        np.testing.assert_allclose(truth.rates[b + skip: b + 300], truth.repeat_rates[skip:], rtol=1e-9)


def test_truth_rate_cc(headline):
    rec, truth, model, _, _ = headline
    cc = truth_rate_cc(rec, truth, bin_size=truth.frame_interval)
    print(f"\ntruth_rate_cc (33-ms bins): median {np.median(cc):.3f}, range {cc.min():.3f}-{cc.max():.3f}")
    assert cc.shape == (20,)
    assert np.all((cc > 0.5) & (cc <= 1.0))
    cc_skip = truth_rate_cc(rec, truth, skip=model.filter_duration)
    assert np.all((cc_skip > 0.5) & (cc_skip <= 1.0))
    cc_100 = truth_rate_cc(rec, truth, bin_size=0.1)  # coarser bins average out more noise
    assert np.median(cc_100) > np.median(cc)


def test_poisson_counts_match_true_rates(headline):
    """Per cell and per quintile of the true rate, the mean count per bin matches the mean rate.

    Given the rates, the counts are independent Poisson, so the standard error of the mean
    count over a set of bins is sqrt(sum of rates) / n_bins.
    """
    rec, truth, _, _, _ = headline
    counts = rec.binned(truth.dt)  # [T, n_cells], bins aligned with the simulation grid
    assert counts.shape == truth.rates.shape
    assert counts.sum() == rec.n_spikes  # no spike lost at bin edges
    for c in range(rec.n_cells):
        lam, n = truth.rates[:, c], counts[:, c]
        for group in np.array_split(np.argsort(lam), 5):
            se = np.sqrt(lam[group].sum()) / group.size
            assert abs(n[group].mean() - lam[group].mean()) < 5 * se


def test_finer_grid_gives_the_same_rates():
    m = LNPoisson.random(3, (16, 16), seed=6)
    frames = white_noise(600, (16, 16), seed=7)
    _, t1 = simulate_continuous(m, frames, frame_rate=30.0)
    rec3, t3 = simulate_continuous(m, frames, frame_rate=30.0, dt=1 / 90)
    assert t3.dt == pytest.approx(1 / 90) and t3.rates.shape == (1800, 3)
    per_frame = t3.rates.reshape(600, 3, 3).sum(axis=1)
    assert np.corrcoef(per_frame.ravel(), t1.rates.ravel())[0, 1] > 0.99
    np.testing.assert_allclose(per_frame.sum(axis=0), t1.rates.sum(axis=0), rtol=0.02)
    with pytest.raises(ValueError, match="divide"):
        simulate_continuous(m, frames, dt=0.02)


# ---------------------------------------------------------------------- trial recordings
def test_simulate_flashes_ragged():
    m = LNPoisson.random(3, (32, 32), seed=8)
    img = flashes(6, (32, 32), seed=9)
    counts = [3, 5, 1, 4, 2, 6]
    rec = simulate_flashes(m, img, window=(0.0, 0.3), dt=0.01, seed=1, trial_counts=counts)
    assert isinstance(rec, Recording)
    assert rec.trial_counts.tolist() == counts and rec.shape == (6, 3, 6)
    assert np.array_equal(rec.stimuli, img) and rec.window == (0.0, 0.3)
    assert rec.provenance["simulated"]["model"]["model"] == "LNPoisson"
    assert rec.n_spikes > 0
    eq = simulate_flashes(m, img, n_trials=4, seed=1)
    assert eq.equal_trials and eq.shape == (6, 3, 4)
    assert eq.binned(0.01).shape == (6, 30, 4, 3)


def test_simulate_from_rates_reproduces_rates():
    rng = np.random.default_rng(0)
    rates = rng.uniform(0.05, 0.5, size=(5, 30, 3))  # expected spikes per 10-ms bin
    n_trials = 400
    stim = rng.integers(0, 256, size=(5, 8, 8), dtype=np.uint8)
    rec = simulate_from_rates(rates, 0.01, n_trials, stimuli=stim, seed=2)
    assert rec.shape == (5, 3, n_trials) and rec.window == pytest.approx((0.0, 0.3))
    psth = rec.psth(0.01)  # [5, 30, 3]
    z = (psth - rates) / np.sqrt(rates / n_trials)
    assert np.abs(z).max() < 5
    assert abs(z.mean()) < 5 / np.sqrt(z.size)
    # ragged trials and a window with an offset
    rag = simulate_from_rates(rates, 0.01, [2, 3, 4, 5, 6], window=(-0.05, 0.3), seed=3)
    assert rag.trial_counts.tolist() == [2, 3, 4, 5, 6] and rag.window == (-0.05, 0.3)
    assert rag.spike_times_flat.min() >= -0.05 and rag.spike_times_flat.max() < 0.25
    with pytest.raises(ValueError, match="fit"):
        simulate_from_rates(rates, 0.01, 2, window=(0.0, 0.2))


def test_recording_from_spikes_round_trip():
    rng = np.random.default_rng(1)
    spikes = rng.poisson(0.3, size=(3, 20, 4, 2)).astype(np.uint8)
    rec = recording_from_spikes(spikes, 0.01, t_start=0.1)
    assert rec.window == pytest.approx((0.1, 0.3))
    assert np.array_equal(rec.binned(0.01), spikes)
    rec_b = recording_from_spikes(spikes > 0, 0.01, stimuli=np.zeros((3, 4, 4), np.uint8))
    assert np.array_equal(rec_b.binned(0.01), (spikes > 0).astype(int))


def test_poisson_spike_times_sorted_in_bins():
    rates = np.full((1000, 2), 0.5)
    trains = poisson_spike_times(rates, 0.01, t_start=2.0, seed=0)
    for t in trains:
        assert np.all(np.diff(t) >= 0) and t.min() >= 2.0 and t.max() < 12.0
        assert abs(t.size - 500) < 5 * np.sqrt(500)
