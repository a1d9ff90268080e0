"""Held-out scores of the single-trial response distribution (neurocode.analysis.distribution)."""

import math

import numpy as np
import pytest

from neurocode.analysis.statistics import MIN_CORRELATION_POINTS
from neurocode.analysis.distribution import (
    distribution_scores,
    fano_scores,
    format_distribution,
    gaussian_mmd2,
    model_single_trials,
    noise_correlation_scores,
    noise_correlations,
    peak_fidelity,
    recorded_bandwidth,
    split_half_mmd2,
)

E = math.exp(-0.5)


def _alternating(n=2, T=10, R=30, N=1, spike_bin=3):
    """Recorded trials: even trials silent, odd trials one spike at ``spike_bin``."""
    rec = np.zeros((n, T, R, N))
    rec[:, spike_bin, 1::2, :] = 1
    return rec


# --------------------------------------------------------------------------- MMD²
def test_split_half_floor_and_mmd2_on_a_hand_computed_case():
    """Two kinds of trials, d apart: 210 pairs at 0 and 225 at d, so the median bandwidth is d and
    every kernel value is 1 (same kind) or e^-1/2 (other kind), whatever d is."""
    rec = _alternating()
    # even trials (all silent) against odd trials (all spiking): 1 + 1 - 2 e^-1/2
    np.testing.assert_allclose(split_half_mmd2(rec), 2 - 2 * E)
    np.testing.assert_allclose(split_half_mmd2(rec, per_cell=True), [[2 - 2 * E]] * 2)
    # a model that is always silent: k_xx = 1, k_yy = (420 + 450 e) / 870, k_xy = (1 + e) / 2
    silent = np.zeros((2, 10, 8, 1))
    np.testing.assert_allclose(gaussian_mmd2(silent, rec), 14 / 29 * (1 - E))
    # the bandwidth is the distance of the two kinds: the PSP (tau_s = 2) of one spike, time-weighted
    T, s = 10, 3
    d2 = sum((T - t) / T * 0.5 ** (2 * (t - s + 1)) for t in range(s, T))
    np.testing.assert_allclose(recorded_bandwidth(rec), [math.sqrt(d2)] * 2)


def test_mmd2_of_identical_distributions_is_zero_within_its_sampling_error_and_positive_for_other_rates():
    rng = np.random.default_rng(0)
    n, T, R, K, N = 40, 20, 20, 30, 3
    rec = rng.poisson(0.2, (n, T, R, N)).astype(float)
    same = rng.poisson(0.2, (n, T, K, N)).astype(float)
    other = rng.poisson(0.4, (n, T, K, N)).astype(float)
    for per_cell in (False, True):
        h = recorded_bandwidth(rec, per_cell=per_cell)
        m_same = gaussian_mmd2(same, rec, h, per_cell=per_cell).ravel()
        m_other = gaussian_mmd2(other, rec, h, per_cell=per_cell).ravel()
        # independent estimates per stimulus (and cell): their mean is within 4 standard errors of 0
        se = m_same.std(ddof=1) / math.sqrt(m_same.size)
        assert abs(m_same.mean()) < 4 * se
        assert m_other.mean() > 4 * m_other.std(ddof=1) / math.sqrt(m_other.size)


def test_per_cell_mmd2_is_each_cell_scored_alone():
    rng = np.random.default_rng(1)
    rec = rng.poisson(0.3, (3, 12, 10, 4)).astype(float)
    mod = rng.poisson(np.linspace(0.1, 0.6, 4), (3, 12, 6, 4)).astype(float)
    per_cell = gaussian_mmd2(mod, rec, per_cell=True)
    assert per_cell.shape == (3, 4)
    for c in range(4):
        np.testing.assert_allclose(per_cell[:, c], gaussian_mmd2(mod[..., c:c + 1], rec[..., c:c + 1]), rtol=1e-12)


def test_mmd2_bad_input_names_the_argument():
    rec = np.zeros((2, 10, 6, 3))
    with pytest.raises(ValueError, match="model_trials must be"):
        gaussian_mmd2(np.zeros((2, 10, 3)), rec)
    with pytest.raises(ValueError, match="agree in stimuli, T and cells"):
        gaussian_mmd2(np.zeros((2, 10, 6, 4)), rec)
    with pytest.raises(ValueError, match="bandwidth must have shape"):
        gaussian_mmd2(rec, rec, bandwidth=np.ones(3))
    with pytest.raises(ValueError, match="at least 4 recorded trials"):
        split_half_mmd2(rec[:, :, :3])


# --------------------------------------------------------------------------- Fano factors
def test_deterministic_model_scores_fano_factor_zero():
    rng = np.random.default_rng(2)
    rec = rng.poisson(2.0, (8, 30, 6)).astype(float)  # [n, R, N] window counts
    mod = np.repeat(rng.integers(1, 5, (8, 1, 6)), 16, axis=1).astype(float)  # identical trials
    s = fano_scores(rec, mod)
    np.testing.assert_array_equal(s["model_ff_active"], 0.0)
    assert s["ff_model"] == 0.0
    assert s["ff_abs_diff"] == pytest.approx(np.mean(s["recorded_ff_active"]))
    assert s["ff_corr"] is None  # a constant model FF has no correlation
    assert s["ff_n_cells"] == 6 and s["ff_n_pairs"] == 48


def test_poisson_model_scores_fano_factor_one_within_its_sampling_error():
    n, N, T, K, lam = 20, 10, 25, 64, 5.0  # lam: mean count in the window
    rates = np.full((n, T, N), lam / T)
    trials = model_single_trials(rates, "poisson", n_trials=K, seed=3)
    rec = np.random.default_rng(4).poisson(lam, (n, 30, N)).astype(float)
    s = fano_scores(rec, trials.sum(axis=1))
    # FF with the population variance has mean (K-1)/K; for Poisson counts Var(FF) ~ (2 + 1/lam)/(K-1)
    sd = math.sqrt((2 + 1 / lam) / (K - 1) / (n * N))
    assert abs(s["ff_model"] - (K - 1) / K) < 4 * sd
    assert s["ff_n_pairs"] == n * N


def test_fano_counting_rule_and_minimum_points():
    rec = np.array([[[0, 1, 2, 1], [0, 0, 0, 1]],  # stimulus 0: cell 0 mean 1 (counts), cell 1 mean 0.25
                    [[1, 1, 1, 1], [2, 0, 2, 0]]], float).transpose(0, 2, 1)  # -> [n=2, R=4, N=2]
    mod = np.array([[[1, 3, 1, 3], [1, 1, 1, 1]],
                    [[0, 0, 0, 0], [1, 1, 3, 3]]], float).transpose(0, 2, 1)
    s = fano_scores(rec, mod)
    # counted: (0, cell 0) FF rec 0.5/1, mod 1/2; (1, cell 1) FF rec 1/1, mod 1/2. (1, cell 0): model silent
    np.testing.assert_allclose(s["recorded_ff_active"], [0.5, 1.0])
    np.testing.assert_allclose(s["model_ff_active"], [0.5, 0.5])
    assert s["ff_abs_diff"] == pytest.approx(0.25)
    assert (s["ff_n_cells"], s["ff_n_pairs"], s["ff_n_active_pairs"]) == (2, 2, 3)
    assert s["ff_corr"] is None and s["ff_n_cells"] < MIN_CORRELATION_POINTS


def test_fano_factor_per_pair_equals_elephant():
    import neo
    import quantities as pq

    from elephant_reference import fano_factor_elephant

    rng = np.random.default_rng(5)
    counts = rng.poisson(1.5, (1, 7, 4)).astype(float)  # one stimulus, 7 trials, 4 cells
    counts[0, :, 3] += 1  # every cell active
    trains = [[neo.SpikeTrain(np.linspace(0.01, 0.29, int(c)) * pq.s, t_stop=0.3 * pq.s) for c in trial]
              for trial in counts[0]]
    s = fano_scores(counts, counts)
    np.testing.assert_allclose(s["recorded_ff_active"], fano_factor_elephant(trains), rtol=1e-12)


# --------------------------------------------------------------------------- noise correlations
def test_noise_correlation_of_a_constructed_correlated_pair():
    """Cells 0, 1 share a Poisson term (r = 2 / 4 = 0.5); cell 2 is independent (r = 0)."""
    rng = np.random.default_rng(6)
    n, R = 40, 30
    mean = rng.uniform(1, 4, (n, 1, 1))  # stimulus-driven means: the residuals remove them
    shared = rng.poisson(2.0, (n, R, 1))
    counts = np.concatenate([rng.poisson(2.0, (n, R, 1)) + shared + np.round(mean),
                             rng.poisson(2.0, (n, R, 1)) + shared + np.round(mean),
                             rng.poisson(np.broadcast_to(mean, (n, R, 1)))], axis=2).astype(float)
    nc = noise_correlations(counts)  # pairs (0,1), (0,2), (1,2)
    points = n * R
    assert abs(nc[0] - 0.5) < 4 * (1 - 0.5**2) / math.sqrt(points)
    assert abs(nc[1]) < 4 / math.sqrt(points) and abs(nc[2]) < 4 / math.sqrt(points)
    s = noise_correlation_scores(counts, counts, n_shuffles=50, seed=0)
    # shuffled trials: the SD of a pair value is ~ 1/sqrt(n (R - 1)) (residuals lose one dof per stimulus);
    # 150 null values estimate it within ~ 4 / sqrt(2 * 150) relative
    assert s["noise_corr_null_sd"] == pytest.approx(1 / math.sqrt(n * (R - 1)), rel=4 / math.sqrt(300))
    assert s["noise_corr_n_resolvable"] == 1  # only the correlated pair is beyond 2 null SDs
    assert s["noise_corr_r"] is None and s["noise_corr_n_pairs"] == 3  # 3 pairs < MIN_CORRELATION_POINTS


def test_noise_correlation_r_between_model_and_recorded_pairs():
    rng = np.random.default_rng(7)
    n, R, N = 30, 20, 8
    shared = rng.poisson(1.0, (n, R, 1))
    loading = np.arange(N) % 2  # even cells independent, odd cells share a term
    rec = (rng.poisson(1.0, (n, R, N)) + shared * loading).astype(float)
    mod = (rng.poisson(1.0, (n, 40, N)) + rng.poisson(1.0, (n, 40, 1)) * loading).astype(float)
    s = noise_correlation_scores(rec, mod)
    assert s["noise_corr_n_pairs"] == N * (N - 1) // 2
    assert s["noise_corr_r"] > 0.8 and s["noise_corr_split_half_r"] > 0.5
    det = noise_correlation_scores(rec, np.repeat(mod[:, :1], 4, axis=1))  # deterministic: no residuals
    assert det["noise_corr_r"] is None and det["noise_corr_n_pairs"] == 0 and det["noise_corr_model_mean"] is None


# --------------------------------------------------------------------------- peaks
def test_peak_fidelity_hand_case():
    rec = np.array([[[0.2, 1.0], [2.0, 0.6]]])  # [n=1, T=2, N=2] spikes per bin
    mod = np.array([[[0.9, 0.5], [1.0, 0.6]]])
    p = peak_fidelity(rec, mod)
    # bins above 0.5: 1.0 -> 0.5, 2.0 -> 1.0, 0.6 -> 0.6: ratios 0.5, 0.5, 1
    assert p["peak_ratio"] == pytest.approx(2 / 3) and p["peak_n_bins"] == 3
    assert p["peak_max_ratio"] == pytest.approx(0.5)
    assert peak_fidelity(rec * 0.1, mod)["peak_ratio"] is None


# --------------------------------------------------------------------------- single trials and the whole
def test_model_single_trials_samples_each_model_from_its_own_likelihood():
    spikes = np.random.default_rng(8).integers(0, 2, (2, 5, 4, 3))
    np.testing.assert_array_equal(model_single_trials(spikes, "trials", n_trials=99), spikes)
    rates = np.array([0.1, 1.0, 3.0])[None, None, :] * np.ones((4, 50, 1))
    draws = model_single_trials(rates, "poisson", n_trials=200, seed=1)
    assert draws.shape == (4, 50, 200, 3)
    np.testing.assert_array_equal(draws, model_single_trials(rates, "poisson", n_trials=200, seed=1))
    m = draws.mean(axis=(0, 1, 2))
    # 40,000 Poisson draws per cell: mean within 4 SE of the rate; variance / mean = 1 within 4 SE
    # (Var of a sample variance of Poisson counts ~ (lam + 2 lam^2) / n)
    np.testing.assert_allclose(m, [0.1, 1.0, 3.0], atol=4 * math.sqrt(3.0 / 40000))
    np.testing.assert_allclose(draws.var(axis=(0, 1, 2)) / m, 1.0, atol=4 * math.sqrt((1 / 0.1 + 2) / 40000))
    det = model_single_trials(rates * 0.25, "deterministic", n_trials=5)  # a DSNN's population readout
    assert det.shape == (4, 50, 5, 3) and (det == det[:, :, :1]).all()
    np.testing.assert_array_equal(det[:, :, 0], rates * 0.25)
    assert fano_scores(np.ones((4, 3, 3)), det.sum(axis=1) + 1)["ff_model"] == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        model_single_trials(-rates, "poisson", n_trials=2)
    with pytest.raises(ValueError, match=r"\[n_test, T, K, cells\]"):
        model_single_trials(rates, "trials", n_trials=2)
    with pytest.raises(ValueError, match="sampling must be one of"):
        model_single_trials(rates, "gaussian", n_trials=2)


def test_distribution_scores_of_the_recording_against_itself():
    rng = np.random.default_rng(9)
    rec = rng.poisson(rng.gamma(2.0, 0.1, (6, 20, 1, 7)), (6, 20, 16, 7)).astype(float)
    s = distribution_scores(rec, rec)
    assert s["ff_abs_diff"] == 0.0 and s["peak_ratio"] == 1.0 and s["peak_max_ratio"] == 1.0
    assert s["noise_corr_r"] == pytest.approx(1.0)
    assert s["mmd2"] <= 0  # identical sets: the unbiased estimate is minus the diagonal's excess
    assert s["mmd2_n_stimuli"] == 6 and s["mmd2_n_cells"] == 7
    assert set(s["per_cell"]) == {"mmd2", "mmd2_floor", "recorded_ff_active", "model_ff_active"}
    assert all(v.shape == (7,) for v in s["per_cell"].values())
    text = "\n".join(format_distribution(s))
    assert "MMD²" in text and "floor (split half)" in text and "Fano factor" in text and "noise corr" in text
    single = distribution_scores(rec[:, :, :1], rec)  # one recorded trial: no MMD², no FF, no split half
    assert "mmd2" not in single and single["ff_n_pairs"] == 0 and single["ff_corr"] is None


# --------------------------------------------------------------------------- the comparison table
def test_comparison_table_counts_wins_by_each_scores_direction():
    import sys
    from pathlib import Path

    analyses = str(Path(__file__).resolve().parents[1] / "analyses")
    sys.path.insert(0, analyses)
    try:
        import retina_fit_comparison as cmp
    finally:
        sys.path.remove(analyses)

    def run(model, fold, **scores):
        return {"model": model, "fold": fold, "seed": 0, "parameter_count": 10, "rate_cc": 0.7, "count_cc": 0.7,
                "ceiling_rate_cc": 0.9, "mmd2_floor": 0.001 * fold, "noise_corr_split_half_r": 0.5, **scores}

    # NSNN: lower MMD² in 2 of 3 splits, peak ratio closer to 1 in all 3, higher FF correlation in 1
    runs = [run("nsnn", f, mmd2=m, peak_ratio=p, ff_corr=c) for f, (m, p, c) in
            enumerate([(0.10, 0.95, 0.5), (0.12, 1.10, 0.4), (0.30, 0.90, 0.3)])]
    runs += [run("cnn", f, mmd2=m, peak_ratio=p, ff_corr=c) for f, (m, p, c) in
             enumerate([(0.20, 0.70, 0.6), (0.20, 1.30, 0.5), (0.25, 0.50, 0.1)])]
    diff = {r["score"]: r for r in cmp.paired_differences(runs) if r["pair"] == "NSNN - CNN"}
    assert (diff["mmd2"]["wins"], diff["mmd2"]["better"]) == (2, "lower")
    assert diff["mmd2"]["mean"] == pytest.approx((-0.10 - 0.08 + 0.05) / 3)
    assert (diff["peak_ratio"]["wins"], diff["peak_ratio"]["better"]) == (3, "closer to 1")
    assert (diff["ff_corr"]["wins"], diff["ff_corr"]["better"]) == (1, "higher")
    assert "noise_corr_r" not in diff  # no run has it: no row
    rows = {r["model"]: r for r in cmp.summarise(runs)}
    assert rows["NSNN"]["mmd2_mean"] == pytest.approx(0.52 / 3)
    # the ceiling row is the recording's split half: the MMD² floor and the noise-correlation reliability
    assert rows["ceiling"]["mmd2_mean"] == pytest.approx(0.001) and rows["ceiling"]["noise_corr_r_mean"] == 0.5
    assert math.isnan(rows["baseline"]["mmd2_mean"])
    assert "mmd2" in cmp.format_distribution_table(list(rows.values()))
    # best of all models per split: a third model that is best on split 2's MMD² takes that split
    runs += [run("cnn_cmp", f, mmd2=m, peak_ratio=p, ff_corr=c) for f, (m, p, c) in
             enumerate([(0.15, 1.0, 0.5), (0.25, 1.3, 0.6), (0.20, 1.05, 0.3)])]
    best = {r["score"]: r for r in cmp.best_per_split(runs)}
    assert best["mmd2"]["best_splits"] == {"CNN": 0, "CNN_CMP": 1, "NSNN": 2} and best["mmd2"]["n_splits"] == 3
    assert best["peak_ratio"]["best_splits"] == {"CNN": 0, "CNN_CMP": 2, "NSNN": 1}
    # a tie for the best counts for each tied model (split 2's FF r: NSNN and CNN_CMP at 0.3)
    assert best["ff_corr"]["best_splits"] == {"CNN": 1, "CNN_CMP": 2, "NSNN": 1}
    assert best["rate_cc"]["best_splits"] == {"CNN": 3, "CNN_CMP": 3, "NSNN": 3}
    # a split missing one model's score does not count
    del runs[-1]["mmd2"]
    assert {r["score"]: r for r in cmp.best_per_split(runs)}["mmd2"]["n_splits"] == 2
