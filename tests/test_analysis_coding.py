"""Fig. 4B coding analysis (model and recorded data) and variability reproduction."""

import numpy as np
import pytest
import torch
from torch import nn

from neurocode.analysis import (
    CodingResult,
    coding_analysis,
    fano_factor,
    model_coding_analysis,
    prediction_cosine_similarity,
    recorded_coding_analysis,
    variability_reproduction,
)


class BernoulliSpiker(nn.Module):
    """Spikes [T, B, units] ~ Bernoulli(sigmoid(W x)); deterministic threshold if noise=False."""

    def __init__(self, d_in=5, units=12, T=8, noise=True):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fc = nn.Linear(d_in, units)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(units, d_in, generator=g))
        self.act = nn.Identity()
        self.readout = nn.Linear(units, 3)
        self.T, self.noise = T, noise

    def forward(self, x):
        p = torch.sigmoid(self.fc(x)).expand(self.T, *x.shape[:-1], -1)
        s = torch.bernoulli(p) if self.noise else (p > 0.5).float()
        s = self.act(s)
        return self.readout(s)  # [T, B, 3] class scores per step


def test_coding_analysis_shapes_and_known_cases():
    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.uniform(0.5, 5, size=(20, 1, 15)), size=(20, 10, 15))
    res = coding_analysis(counts)
    assert isinstance(res, CodingResult)
    assert res.mean_fano.shape == (20,) and res.cosine.shape == (20,)
    np.testing.assert_allclose(res.mean_fano, np.nanmean(fano_factor(counts, axis_trials=1), axis=1))
    np.testing.assert_allclose(res.cosine, prediction_cosine_similarity(counts, axis_trials=1))
    assert -1 <= res.r <= 1 and 0 <= res.p <= 1 and res.n_valid == 20
    # identical trials: FF = 0 and cosine = 1 for every stimulus
    same = np.repeat(counts[:, :1], 6, axis=1)
    res0 = coding_analysis(same)
    np.testing.assert_allclose(res0.mean_fano, 0.0)
    np.testing.assert_allclose(res0.cosine, 1.0)
    assert np.isnan(res0.r)  # constant inputs


def test_model_coding_analysis_noisy_and_deterministic():
    x = torch.randn(30, 5, generator=torch.Generator().manual_seed(1))
    noisy = BernoulliSpiker()
    res = model_coding_analysis(noisy, x, n_trials=6, code_layer=noisy.act,
                                prediction_fn=lambda out: out.mean(0), batch_size=7, seed=0)
    assert res.mean_fano.shape == (30,) and np.all(res.mean_fano > 0)
    assert np.all(res.cosine < 1) and np.isfinite(res.r)
    det = BernoulliSpiker(noise=False)
    res_d = model_coding_analysis(det, x, n_trials=4, code_layer=det.act,
                                  prediction_fn=lambda out: out.mean(0))
    fin = np.isfinite(res_d.mean_fano)
    np.testing.assert_allclose(res_d.mean_fano[fin], 0.0)
    np.testing.assert_allclose(res_d.cosine, 1.0, atol=1e-6)
    # default: neural code and prediction are the model's own spike output
    spiker = nn.Sequential()
    spiker.forward = lambda xb: torch.bernoulli(torch.full((5, xb.shape[0], 9), 0.3))
    res_s = model_coding_analysis(spiker, x, n_trials=5, seed=2)
    assert res_s.cosine.shape == (30,)


@pytest.fixture(scope="module")
def recorded(natural_recording):
    return natural_recording.binned(bin_size=0.01)  # [60, 30, 30, 49]


def test_recorded_coding_analysis(recorded):
    res = recorded_coding_analysis(recorded)
    assert res.mean_fano.shape == (60,) and res.cosine.shape == (60,)
    assert np.all(np.isfinite(res.mean_fano)) and np.all((res.cosine > 0) & (res.cosine <= 1))
    assert np.isfinite(res.r) and np.isfinite(res.p)
    direct = coding_analysis(recorded.sum(axis=1))
    np.testing.assert_allclose(res.mean_fano, direct.mean_fano)


def test_variability_reproduction(recorded):
    counts = recorded.sum(axis=1)  # [60, 30, 49]
    rng = np.random.default_rng(3)
    mean = counts.mean(axis=1, keepdims=True)
    poisson = rng.poisson(np.broadcast_to(mean, (60, 200, 49)))
    deterministic = np.broadcast_to(np.rint(mean), (60, 10, 49))
    res_p = variability_reproduction(counts, poisson)
    res_d = variability_reproduction(counts, deterministic)
    assert res_p.ff_recorded.shape == (49,) and res_p.ff_model.shape == (49,)
    fin = np.isfinite(res_d.ff_model)
    np.testing.assert_allclose(res_d.ff_model[fin], 0.0)  # a DSNN has FF = 0
    ok = np.isfinite(res_p.ff_model)
    assert abs(np.mean(res_p.ff_model[ok]) - 1) < 0.1
    np.testing.assert_allclose(res_p.ff_recorded, res_d.ff_recorded)


def test_variability_reproduction_movie():
    from neurocode.data import load_recording

    movie = load_recording(name="movie1")
    counts = movie.binned(bin_size=1.0)[0]  # [n_windows=18, trials, cells]
    rng = np.random.default_rng(4)
    model = rng.poisson(np.broadcast_to(counts.mean(axis=1, keepdims=True), counts.shape))
    res = variability_reproduction(counts, model)
    assert res.ff_recorded.shape == (counts.shape[-1],)
    assert np.isfinite(res.r)
