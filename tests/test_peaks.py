"""The peak diagnosis (neurocode.analysis.peaks): hand-computed cases and the selection ceiling."""

import numpy as np
import pytest

from neurocode.analysis.distribution import peak_fidelity
from neurocode.analysis.peaks import calibration, image_profile, peak_diagnosis, peak_windows, selection_ceiling


def _one(x):
    return np.asarray(x, float)[None, :, None]  # [1 stimulus, T, 1 cell]


def test_a_late_model_peak_is_a_lag_not_an_amplitude():
    rec = _one([0, 0, 1, 2, 1, 0, 0])
    mod = _one([0, 0, 0, 1, 2, 1, 0])  # the same peak one bin later
    d = peak_windows(rec, mod, threshold=0.5, half_widths=(0, 1))
    # peak bins t = 2, 3, 4: 0/1, 1/2, 2/1; windows 1/3, 3/4, 4/3
    assert d["n_peak_bins"] == 3
    assert d["window_ratio_w0"] == pytest.approx((0 + 0.5 + 2) / 3)
    assert d["window_sum_ratio_w0"] == pytest.approx(3 / 4)
    assert d["window_ratio_w1"] == pytest.approx((1 / 3 + 3 / 4 + 4 / 3) / 3)
    assert d["window_ratio_w0"] == pytest.approx(peak_fidelity(rec, mod)["peak_ratio"])
    assert d["n_maxima"] == 1 and d["lag_mean"] == 1 and d["lag_counts"][1] == 1
    assert d["max_ratio_at_peak"] == pytest.approx(0.5)
    assert d["max_ratio_near_peak"] == pytest.approx(1.0)
    assert d["flank_ratio"] == pytest.approx((0 / 1 + 2 / 1) / 2)


def test_a_low_model_peak_stays_low_in_every_window():
    rng = np.random.default_rng(0)
    rec = rng.gamma(1.0, 0.5, size=(3, 20, 4))
    d = peak_windows(rec, 0.8 * rec, threshold=0.5, half_widths=(0, 1, 2))
    for w in (0, 1, 2):
        assert d[f"window_ratio_w{w}"] == pytest.approx(0.8)
    assert d["lag_mean"] == 0 and d["max_ratio_near_peak"] == pytest.approx(0.8)


def test_a_noiseless_recording_has_no_selection_ceiling():
    rec = np.repeat(np.random.default_rng(1).gamma(1.0, 0.6, size=(2, 15, 1, 3)), 6, axis=2)
    d = selection_ceiling(rec, threshold=0.5, n_boot=10)
    assert d["ceiling"] == pytest.approx(1.0) and d["ceiling_sd"] == pytest.approx(0.0)


def test_the_ceiling_is_what_the_true_rate_scores_against_noisy_trials():
    # Poisson trials of known rates: the true rate's own peak ratio against the 30-trial PSTH is
    # below 1 (bins pushed over the threshold by noise); the bootstrap, which never sees the true
    # rate, estimates it. Over 10 recordings the true ratio's SD was 0.004 and the bootstrap's 0.001.
    rng = np.random.default_rng(1)
    lam = rng.gamma(0.6, 0.5, size=(8, 30, 1, 20))
    rec = rng.poisson(np.broadcast_to(lam, (8, 30, 30, 20)))
    true = peak_windows(rec.mean(axis=2), lam[:, :, 0], threshold=0.5, half_widths=(0,))["window_ratio_w0"]
    d = selection_ceiling(rec, threshold=0.5, n_boot=50, seed=0)
    assert true < 0.98 and d["ceiling"] < 0.98
    assert d["ceiling"] == pytest.approx(true, abs=0.015)


def test_calibration_slopes_and_the_regression_line_on_a_linear_model():
    rng = np.random.default_rng(2)
    rec = rng.gamma(1.0, 0.5, size=(4, 10, 5))
    mod = 0.1 + 0.6 * rec  # exactly on a line of slope 0.6
    d = calibration(rec, mod, threshold=0.5)
    assert d["slope_model_on_recorded"] == pytest.approx(0.6)
    assert d["slope_recorded_on_model"] == pytest.approx(1 / 0.6)
    peaks = rec > 0.5
    assert d["regression_peak_ratio"] == pytest.approx((mod[peaks] / rec[peaks]).mean())
    assert d["model_peak_ratio"] == pytest.approx((rec[mod > 0.5] / mod[mod > 0.5]).mean())


def test_image_profile_separates_the_shared_profile_from_the_spread_across_images():
    rng = np.random.default_rng(3)
    psth = rng.gamma(2.0, 0.3, size=(6, 12, 4))
    rec = np.repeat(psth[:, :, None], 4, axis=2)  # noiseless trials
    same = image_profile(rec, psth)
    assert same["profile_peak_ratio"] == pytest.approx(1.0) and same["spread_ratio"] == pytest.approx(1.0)
    flat = image_profile(rec, np.broadcast_to(psth.mean(axis=0), psth.shape))  # every image its mean
    assert flat["profile_peak_ratio"] == pytest.approx(1.0) and flat["spread_ratio"] == pytest.approx(0.0)
    assert flat["profile_peak_lag"] == 0
    late = image_profile(rec, 0.5 * psth)["time_ratio"]
    assert late == pytest.approx([0.5] * 12)
    silent = rec.copy()
    silent[:, 0] = 0
    assert image_profile(silent, psth)["time_ratio"][0] is None


def test_peak_diagnosis_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="model_psth"):
        peak_diagnosis(np.zeros((2, 5, 3, 4)), np.zeros((2, 5, 3)))
