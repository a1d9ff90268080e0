"""Reliability of the scores (issue 32, group 1): no score drops what it cannot score.

A cell the model does not predict counts against it (r = 0), every mean says how many cells it
is over, a correlation over too few points is n/a, tolerances are scale-free, and counts that
cannot be counts are refused.
"""

import json

import numpy as np
import pytest
import scipy.stats

from neurocode.analysis import MIN_CORRELATION_POINTS, fano_factor, psth, rate_cc_per_cell, variability_reproduction
from neurocode.analysis import coding_analysis, count_cc_per_cell, split_half_reliability
from neurocode.analysis.scores import compute_metrics, format_metrics


def _population(seed=0, n=8, T=30, trials=20, cells=12, n_train=10):
    """Recorded Poisson counts of ``cells`` cells with stimulus-dependent rates, and the rates."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(2.0, 0.1, size=(n + n_train, T, 1, cells))
    counts = rng.poisson(lam, size=(n + n_train, T, trials, cells)).astype(float)
    return counts[:n], counts[n:], lam[:n, :, 0, :]


# --------------------------------------------------------------------------- a cell not predicted
def test_a_model_that_predicts_one_cell_does_not_outscore_one_that_predicts_all():
    rec, train, lam = _population()
    n_cells = rec.shape[-1]
    noisy = lam + np.random.default_rng(1).normal(0.0, 0.1, lam.shape) * lam.mean()
    every = compute_metrics(rec, noisy, train, spiking=False)
    one = lam.copy()
    one[..., 1:] = lam[..., 1:].mean()  # a constant for every other cell
    only_one = compute_metrics(rec, one, train, spiking=False)
    # the rule: a constant prediction of a varying recorded response scores r = 0
    assert np.all(only_one["per_cell"]["rate_cc"][1:] == 0.0)
    assert np.all(only_one["per_cell"]["count_cc"][1:] == 0.0)
    assert only_one["n_averaged"]["rate_cc"] == only_one["n_averaged"]["count_cc"] == n_cells
    assert only_one["rate_cc"] == pytest.approx(only_one["per_cell"]["rate_cc"][0] / n_cells)
    assert only_one["rate_cc"] < every["rate_cc"]
    assert only_one["rate_cc"] < only_one["ceiling_rate_cc"]


def test_a_silent_or_nan_model_cell_scores_zero_and_a_constant_recording_is_left_out_and_counted():
    rec, train, lam = _population(2)
    n_cells = rec.shape[-1]
    rec[..., 3] = 0.0  # a cell silent on every test stimulus: no model can be scored on it
    model = lam.copy()
    model[..., 5] = 0.0  # silent model cell
    model[..., 6] = np.nan  # a prediction that is not a number
    m = compute_metrics(rec, model, train, spiking=False)
    rate = m["per_cell"]["rate_cc"]
    assert np.isnan(rate[3]) and rate[5] == 0.0 and rate[6] == 0.0
    assert m["n_averaged"]["rate_cc"] == n_cells - 1
    assert m["rate_cc"] == pytest.approx(np.nanmean(rate))
    text = format_metrics({**m, "n_cells": n_cells, "model": "cnn"})
    assert f"({n_cells - 1})" in text  # the printed mean says how many cells it is over
    assert f"1 of {n_cells} cells have a constant recorded response" in text


def test_every_mean_stores_how_many_cells_it_is_over():
    rec, train, _ = _population(3, cells=7)
    model = (np.random.default_rng(4).random(rec.shape[:2] + (5, rec.shape[-1])) < 0.15).astype(float)
    model[..., 2] = 0.0  # the model's cell 2 never spikes: no Fano factor
    m = compute_metrics(rec, model, train, spiking=True)
    n = m["n_averaged"]
    for key in ("rate_cc", "count_cc", "baseline_rate_cc", "ceiling_rate_cc", "recorded_ff", "model_ff"):
        assert n[key] == int(np.isfinite(m["per_cell"][key]).sum()), key
    assert n["model_ff"] == 6 and n["fano_corr"] == 6
    finite = np.isfinite(m["per_cell"]["model_ff"])
    r = scipy.stats.pearsonr(m["per_cell"]["recorded_ff"][finite], m["per_cell"]["model_ff"][finite])[0]
    assert m["fano_corr"] == pytest.approx(r)
    assert "over 6 cells" in format_metrics(m)


# --------------------------------------------------------------------------- too few points
def test_fano_corr_over_two_cells_is_na_not_one():
    rec, train, _ = _population(5, cells=2)
    model = (np.random.default_rng(6).random(rec.shape[:2] + (6, 2)) < 0.2).astype(float)
    m = compute_metrics(rec, model, train, spiking=True)
    assert m["n_averaged"]["fano_corr"] == 2
    assert m["fano_corr"] is None
    text = format_metrics(m)
    assert f"n/a (2 cells with a Fano factor; a correlation needs {MIN_CORRELATION_POINTS})" in text
    assert json.loads(json.dumps({"fano_corr": m["fano_corr"]}))["fano_corr"] is None


def test_correlations_across_cells_and_stimuli_need_the_minimum():
    rng = np.random.default_rng(7)
    few = MIN_CORRELATION_POINTS - 1
    rec = rng.poisson(2.0, size=(6, 10, few)).astype(float)
    mod = rng.poisson(2.0, size=(6, 8, few)).astype(float)
    assert np.isnan(variability_reproduction(rec, mod).r)
    res = variability_reproduction(np.concatenate([rec, rec[..., :1]], -1), np.concatenate([mod, mod[..., :1]], -1))
    assert np.isfinite(res.r) and res.n_valid == MIN_CORRELATION_POINTS
    counts = rng.poisson(rng.uniform(0.5, 5, size=(few, 1, 9)), size=(few, 10, 9))
    assert np.isnan(coding_analysis(counts).r)


# --------------------------------------------------------------------------- scale-free tolerance
@pytest.mark.parametrize("scale", [1e-13, 1e-200, 1.0, 1e12])
def test_rate_cc_is_scale_free_as_scipy(scale):
    rng = np.random.default_rng(8)
    x = rng.random((100, 3)) * scale
    y = 2.0 * x + rng.random((100, 3)) * scale
    want = [scipy.stats.pearsonr(x[:, c] / scale, y[:, c] / scale)[0] for c in range(3)]
    np.testing.assert_allclose(rate_cc_per_cell(x, y), want, rtol=1e-10)
    np.testing.assert_allclose(rate_cc_per_cell(x, 2 * x), 1.0, rtol=1e-12)
    np.testing.assert_allclose(count_cc_per_cell(x, 2 * x), 1.0, rtol=1e-12)


def test_constant_columns_are_still_found_at_any_scale():
    for level in (1e-13, 0.1, 3e8):
        x = np.random.default_rng(9).random((50, 2))
        x[:, 1] = level
        assert np.isnan(rate_cc_per_cell(x, x)[1])
        assert np.isnan(rate_cc_per_cell(x[:, ::-1], x)[0])
    # the split-half ceiling of a cell whose trials never vary in time
    counts = np.ones((3, 10, 4, 2))
    counts[..., 0] = np.random.default_rng(10).poisson(1.0, counts[..., 0].shape)
    r = split_half_reliability(counts)
    assert np.isfinite(r[0]) and np.isnan(r[1])


# --------------------------------------------------------------------------- invalid counts
@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf])
def test_count_statistics_refuse_counts_that_are_not_counts(bad):
    counts = np.random.default_rng(11).poisson(2.0, size=(6, 4)).astype(float)
    counts[3, 2] = bad
    with pytest.raises(ValueError, match=r"data must be spike counts \(finite, >= 0\).*index \(3, 2\)"):
        fano_factor(counts)
    with pytest.raises(ValueError, match="data must be spike counts"):
        psth(counts[None, :, :, None].repeat(2, axis=0), dt=0.01)
    with pytest.raises(ValueError, match=r"counts must be spike counts \(finite, >= 0\).*index \(0, 3, 2\)"):
        split_half_reliability(counts[None])


def test_fano_factor_of_negative_counts_is_refused_not_2_67():
    with pytest.raises(ValueError, match="-1.0"):
        fano_factor(np.array([[-1.0], [-3.0], [-5.0]]))


# --------------------------------------------------------------------------- the run folder
@pytest.fixture(scope="module")
def ln_run(tmp_path_factory):
    from neurocode.pipeline import fit

    return fit("ln", out=tmp_path_factory.mktemp("runs") / "ln", progress=False, epochs=1, input_size=16, threads=1)


@pytest.mark.slow
def test_evaluate_of_a_model_predicting_one_cell_scores_the_others_zero(ln_run, tmp_path, capsys):
    import shutil

    import h5py

    from neurocode.cli import main

    run = tmp_path / "run"
    shutil.copytree(ln_run.run_dir, run)
    every = ln_run.metrics
    best = int(np.nanargmax(np.array(every["per_cell"]["rate_cc"], dtype=float)))
    with h5py.File(run / "predictions.h5", "r+") as f:
        rates = f["rates"][()]
        rates[..., np.arange(rates.shape[-1]) != best] = rates.mean()  # a constant for every other cell
        del f["rates"]
        f["rates"] = rates
    assert main(["evaluate", str(run)]) == 0
    printed = capsys.readouterr().out
    m = json.loads((run / "metrics.json").read_text())
    n_cells = m["n_cells"]
    # the held-out recording of every cell varies, so every cell is scored
    assert m["n_averaged"]["rate_cc"] == m["n_averaged"]["count_cc"] == n_cells == 49
    assert m["rate_cc"] == pytest.approx(every["per_cell"]["rate_cc"][best] / n_cells)
    assert m["rate_cc"] < every["rate_cc"]
    rows = (run / "per_cell_scores.csv").read_text().splitlines()[1:]
    zero = [r for r in rows if r.split(",")[1] == "0"]
    assert len(zero) == n_cells - 1
    assert f"{m['rate_cc']:.3f} ± {m['sem']['rate_cc']:.3f} ({n_cells})" in printed


def test_the_validation_score_also_counts_a_cell_not_predicted(monkeypatch):
    """The epoch (and the LN ridge) kept is chosen on the same rule as the held-out score."""
    from types import SimpleNamespace

    import torch

    import neurocode.fitting as fitting

    rec, _, lam = _population(12, n=6, cells=8)
    psth_rec = rec.mean(axis=2)  # [n, T, cells] trial-averaged counts
    one = lam.copy()
    one[..., 1:] = 0.0  # the model predicts cell 0 and is silent for the others
    monkeypatch.setattr(fitting, "predict", lambda *a, **k: (None, one))
    data = SimpleNamespace(val_idx=np.arange(6), psth=lambda idx: torch.as_tensor(psth_rec[idx]))
    config = SimpleNamespace(val_trials=2, seed=0)
    score = fitting._validation_rate_cc(config, None, data)
    r0 = scipy.stats.pearsonr(psth_rec[..., 0].ravel(), lam[..., 0].ravel())[0]
    assert score == pytest.approx(r0 / 8)
