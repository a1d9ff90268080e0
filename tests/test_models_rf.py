"""RF-aware retina models: RF features, Gaussian readout, LN ridge, RF-SNN (NSNN/DSNN), RF-CNN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neurocode.data.receptive_fields import ReceptiveFields
from neurocode.models import (
    GaussianReadout,
    RetinaModel,
    RFConfig,
    RFFeatures,
    calibrate_spiking,
    parameter_count,
    rf_model_spec,
)
from neurocode.models.retina import start_rates

S, N, T = 16, 5, 12


def _rfs(n=N, size=S, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(4, size - 4, (n, 2))
    cov = np.stack([np.diag(rng.uniform(1.0, 3.0, 2)) for _ in range(n)])
    return ReceptiveFields(centres=centres, covariances=cov, image_shape=(size, size), source="stored",
                           method="synthetic")


def RetinaLN(config, rfs):
    return RetinaModel(rf_model_spec(config, None, "rectified"), rfs)


def RetinaRFSNN(config, rfs, generator=None):
    return RetinaModel(rf_model_spec(config, "spiking", "noisy_lif" if config.noisy else "lif_population"), rfs,
                       generator)


def RetinaRFCNN(config, rfs):
    return RetinaModel(rf_model_spec(config, "relu", "softplus_poisson"), rfs)


def _config(**kw):
    base = dict(input_size=S, core_pool=2, channels=(2, 3), kernel_sizes=(3, 3), n_cells=N, n_steps=T)
    base.update(kw)
    return RFConfig(**base)


def test_config_validation():
    with pytest.raises(ValueError, match="kernel_sizes"):
        _config(kernel_sizes=(4, 3))
    with pytest.raises(ValueError, match="core_pool"):
        _config(core_pool=3)
    with pytest.raises(ValueError, match="surround_scale"):
        _config(surround_scale=0.5)
    with pytest.raises(ValueError, match="n_cells=7"):
        RetinaLN(_config(n_cells=7), _rfs())


def test_rf_features_follow_on_and_off_contrast():
    rfs = _rfs()
    feats = RFFeatures(rfs.masks(), rfs.masks(scale=2.0))
    img = torch.zeros(2, 1, S, S)
    cx, cy = (int(v) for v in rfs.centres[0])
    img[0, 0, cy, cx] = 1.0  # a bright pixel in cell 0's centre
    img[1, 0, cy, cx] = -1.0  # a dark one
    f = feats.raw(img)  # [2, N, 6]
    w = float(rfs.masks()[0, cy, cx])
    assert f[0, 0, 0] == pytest.approx(w, rel=1e-5) and f[0, 0, 1] == 0  # centre ON only
    assert f[1, 0, 1] == pytest.approx(w, rel=1e-5) and f[1, 0, 0] == 0  # centre OFF only
    assert f[0, 0, 4] == pytest.approx(w, rel=1e-5) and f[0, 0, 5] == 0  # rectified linear halves
    assert f[1, 0, 5] == pytest.approx(w, rel=1e-5) and f[1, 0, 4] == 0
    # z-scoring with training statistics
    x = torch.randn(20, 1, S, S, generator=torch.Generator().manual_seed(0))
    feats.fit_normalization(x)
    z = feats(x)
    assert torch.allclose(z.mean(0), torch.zeros(N, 6), atol=1e-5)
    assert torch.allclose(z.std(0), torch.ones(N, 6), atol=1e-4)


def test_gaussian_readout_starts_at_the_rf_and_is_differentiable():
    rfs = _rfs()
    ro = GaussianReadout(rfs.centres, rfs.covariances, (S, S), channels=3)
    w = ro.windows()
    assert torch.allclose(w.sum((1, 2)), torch.ones(N), atol=1e-5)
    ys, xs = torch.meshgrid(torch.arange(S) + 0.5, torch.arange(S) + 0.5, indexing="ij")
    com = torch.stack([(w * xs).sum((1, 2)), (w * ys).sum((1, 2))], 1)
    assert torch.allclose(com, torch.tensor(rfs.centres, dtype=torch.float32), atol=0.1)
    x = torch.randn(4, 3, S, S)
    assert torch.count_nonzero(ro(x)) == 0  # zero-initialised feature weights
    ro.weight.data.normal_()
    ro(x).sum().backward()
    assert ro.mu.grad.abs().sum() > 0 and ro.log_scale.grad.abs().sum() > 0


def test_ln_ridge_recovers_a_linear_model():
    rfs = _rfs()
    ln = RetinaLN(_config(), rfs)
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(200, 1, S, S, generator=gen)
    ln.front_end.prepare(images)
    f = ln.front_end.features(images)  # [n, N, 6]
    true_b = torch.rand(T, N, 6, generator=gen) * 0.02
    true_a = 0.2 + torch.rand(T, N, generator=gen) * 0.1
    psth = true_a[None] + torch.einsum("tnk,bnk->btn", true_b, f)  # [n, T, N], all positive
    assert psth.min() > 0
    ln.front_end.fit_ridge(images, psth, ridge=0.0)
    # the six features are linearly dependent (ON - OFF = linear), so compare predictions
    out = ln(images)
    assert out.shape == (T, 200, N) and torch.allclose(out, psth.transpose(0, 1), atol=1e-4)
    # a ridge penalty shrinks the feature weights, never the time bias
    ln.front_end.fit_ridge(images, psth, ridge=1e4)
    assert ln.front_end.feature_weights.abs().sum() < 0.2 * true_b.abs().sum()
    assert parameter_count(ln) == T * N * 7  # time bias + six feature weights per (t, cell)


@pytest.mark.parametrize("noisy,units", [(True, 1), (False, 8)])
def test_rf_snn_shapes_and_outputs(noisy, units):
    torch.manual_seed(0)
    model = RetinaRFSNN(_config(noisy=noisy, readout_units=units), _rfs(),
                        generator=torch.Generator().manual_seed(0))
    images = torch.randn(3, 1, S, S)
    out, layers = model(images, n_trials=4, return_all=True)
    assert out.shape == (T, 4, 3, N) and len(layers) == 3
    levels = torch.unique(out * units)
    assert torch.all(levels == levels.round()) and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="images must be"):
        model(torch.randn(3, 1, S + 1, S + 1))


def test_dsnn_unit_offsets_are_the_noise_quantiles():
    model = RetinaRFSNN(_config(noisy=False, readout_units=4, noise_sigma=0.2), _rfs())
    q = torch.distributions.Normal(0.0, 0.2).icdf(torch.tensor([0.125, 0.375, 0.625, 0.875]))
    assert torch.allclose(model.output.unit_offsets[:4], q, atol=1e-6)
    assert torch.allclose(model.output.unit_offsets.view(N, 4).mean(1), torch.zeros(N), atol=1e-6)


def test_firing_probability_is_an_unbiased_rate():
    """The mean of the per-trial firing probabilities estimates the same PSTH as the spike
    average: over K trials their difference is a mean of K independent zero-mean terms."""
    torch.manual_seed(0)
    model = RetinaRFSNN(_config(), _rfs(), generator=torch.Generator().manual_seed(3))
    images = torch.randn(2, 1, S, S, generator=torch.Generator().manual_seed(1))
    model.front_end.prepare(images)
    with torch.no_grad():
        model.front_end.time_bias.fill_(0.9)  # output near threshold: probabilities well inside (0, 1)
        K = 4000
        spikes, p = model(images, n_trials=K, return_probability=True)  # [T, K, B, N]
    assert p.shape == spikes.shape and p.min() >= 0 and p.max() <= 1
    assert 0.05 < float(p.mean()) < 0.95
    diff = (spikes - p).mean(1)  # [T, B, N]
    se = torch.sqrt((p * (1 - p)).mean(1) / K)
    assert torch.all(diff.abs() <= 4.5 * se + 1e-6)
    with pytest.raises(ValueError, match="return_probability"):
        RetinaRFSNN(_config(noisy=False, readout_units=4), _rfs())(images, return_probability=True)


def test_probability_gradient_is_the_ndl_gradient():
    """d p / d current at a step without history is the noise density F'(ubar - v_th)."""
    model = RetinaRFSNN(_config(), _rfs(), generator=torch.Generator().manual_seed(0))
    neuron = model.neurons[-1]
    current = torch.linspace(0.5, 1.5, 7).requires_grad_()
    _, ubar = neuron(current.view(1, 1, 7), return_potential=True)
    neuron.noise.cdf(ubar - neuron.v_th).sum().backward()
    assert torch.allclose(current.grad, neuron.noise.pdf(current.detach() - 1.0), atol=1e-6)


def test_calibration_reaches_the_target_rates():
    torch.manual_seed(0)
    model = RetinaRFSNN(_config(), _rfs(), generator=torch.Generator().manual_seed(0))
    images = torch.randn(16, 1, S, S, generator=torch.Generator().manual_seed(1))
    model.front_end.prepare(images)
    target = torch.linspace(0.02, 0.3, T)[:, None].expand(T, N)
    rates = calibrate_spiking(model, images, hidden_rate=0.1, output_rate=target, n_trials=32)
    assert rates[0] == pytest.approx(0.1, abs=0.02) and rates[1] == pytest.approx(0.1, abs=0.02)
    with torch.no_grad():
        out = model(images, n_trials=64).mean((1, 2))  # [T, N]
    # 16 images x 64 trials = 1024 draws per (t, cell): binomial SE <= 0.015
    assert torch.all((out - target).abs() < 0.08)
    assert (out - target).abs().mean() < 0.03


def test_rf_cnn_starts_at_the_mean_psth_and_trains():
    torch.manual_seed(0)
    model = RetinaRFCNN(_config(), _rfs())
    images = torch.randn(6, 1, S, S)
    model.front_end.prepare(images)
    psth = torch.rand(T, N) * 0.3 + 0.01
    start_rates(model, psth)
    model.eval()
    out = model(images)
    assert out.shape == (T, 6, N)
    assert torch.allclose(out, psth[:, None].expand_as(out), atol=1e-4)  # zero feature weights at start
    model.train()
    model(images).sum().backward()
    assert model.readout.gaussian.weight.grad.abs().sum() > 0


def test_rf_models_scale_with_the_recording():
    """Cell count and T come from the config, nothing is tied to retina 2's 49 cells."""
    for n in (1, 7):
        model = RetinaRFSNN(_config(n_cells=n), _rfs(n=n))
        assert model(torch.randn(2, 1, S, S)).shape == (T, 1, 2, n)
        with torch.no_grad():
            assert math.isfinite(float(RetinaRFCNN(_config(n_cells=n), _rfs(n=n)).eval()(torch.randn(2, 1, S, S)).sum()))
