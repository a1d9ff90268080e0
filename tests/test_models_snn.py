"""The paper's spiking network (NSNN / DSNN) composed of parts: shapes, parameter counts, static input, calibration."""

import pytest
import torch

from neurocode.models import RetinaModel, SNNConfig, calibrate_dense, parameter_count, paper_snn_spec
from neurocode.neurons import LIF, NoisyLIF

def RetinaSNN(config=None, generator=None):
    return RetinaModel(paper_snn_spec(config or SNNConfig()), None, generator)


calibrate_rates = calibrate_dense
TINY = dict(input_size=16, channels=(2, 4), kernel_sizes=(5, 3), hidden=(8,), n_cells=5, n_steps=6)


def test_paper_default_parameter_count():
    m = RetinaSNN()
    conv1 = 16 * 25 * 25 + 16
    profile = 2 * 30 * 16  # temporal gain and offset of conv1's current
    conv2 = 32 * 16 * 11 * 11 + 32
    fc = (32 * 30 * 30 * 64 + 64) + 2 * (64 * 64 + 64) + (64 * 49 + 49)
    time_bias = 30 * 49
    assert parameter_count(m) == conv1 + profile + conv2 + fc + time_bias == 1_929_199


@pytest.mark.parametrize("noisy, neuron", [(True, NoisyLIF), (False, LIF)])
def test_output_shape_and_neurons(noisy, neuron):
    m = RetinaSNN(SNNConfig(noisy=noisy, **TINY))
    x = torch.randn(3, 1, 16, 16)
    s, layers = m(x, n_trials=4, return_all=True)
    assert s.shape == (6, 4, 3, 5)
    assert set(torch.unique(s).tolist()) <= {0.0, 1.0}
    assert len(layers) == 2 + 2  # conv1, conv2, fc8, fc_out
    assert all(isinstance(n, neuron) for n in m.neurons)
    assert layers[0].shape == (6, 12, 2, 12, 12)


def test_dsnn_trials_identical_nsnn_trials_differ():
    x = torch.randn(2, 1, 16, 16)
    torch.manual_seed(0)
    d = RetinaSNN(SNNConfig(noisy=False, **TINY))
    calibrate_rates(d, x, hidden_rate=0.3, output_rate=0.3, n_trials=1)
    s = d(x, n_trials=3)
    assert torch.equal(s[:, 0], s[:, 1]) and torch.equal(s[:, 1], s[:, 2])
    n = RetinaSNN(SNNConfig(noisy=True, **TINY), generator=torch.Generator().manual_seed(1))
    calibrate_rates(n, x, hidden_rate=0.3, output_rate=0.3)
    _, layers = n(x, n_trials=3, return_all=True)
    first = layers[0].view(6, 3, 2, -1)
    assert not torch.equal(first[:, 0], first[:, 1])


def test_static_input_computes_conv1_once():
    m = RetinaSNN(SNNConfig(**TINY))
    calls = []
    m.front_end.conv1.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape))
    m(torch.randn(3, 1, 16, 16), n_trials=5)
    assert calls == [torch.Size([3, 1, 16, 16])]


def test_same_generator_seed_same_spikes():
    x = torch.randn(2, 1, 16, 16)
    torch.manual_seed(0)
    m = RetinaSNN(SNNConfig(**TINY))
    m.generator = torch.Generator().manual_seed(5)
    a = m(x, n_trials=2)
    m.generator = torch.Generator().manual_seed(5)
    b = m(x, n_trials=2)
    m.generator = torch.Generator().manual_seed(6)
    c = m(x, n_trials=2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c) or a.sum() == 0


def test_calibration_hits_target_rates():
    torch.manual_seed(0)
    cfg = SNNConfig(input_size=32, channels=(4, 8), kernel_sizes=(9, 5), hidden=(32, 32), n_cells=7, n_steps=10)
    m = RetinaSNN(cfg, generator=torch.Generator().manual_seed(0))
    x = torch.randn(8, 1, 32, 32)
    target = torch.linspace(0.02, 0.3, 10)[:, None].expand(10, 7)
    rates = calibrate_rates(m, x, hidden_rate=0.15, output_rate=target, n_trials=16)
    assert len(rates) == 5
    for r in rates[:-1]:
        assert abs(r - 0.15) < 0.03
    out = m(x, n_trials=64).mean((1, 2))  # [T, cells]
    # 8 images x 64 trials per (t, cell): binomial SE <= sqrt(.25/512) ~ 0.022, plus bisection error
    assert (out - target).abs().mean() < 0.04


def test_gradients_reach_every_parameter():
    m = RetinaSNN(SNNConfig(**TINY))
    x = torch.randn(2, 1, 16, 16)
    calibrate_rates(m, x, hidden_rate=0.3, output_rate=0.3)
    m(x, n_trials=2).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("bad", [dict(kernel_sizes=(40, 3)), dict(channels=(0, 4)), dict(hidden=(0,)), dict(noise_sigma=0.0)])
def test_invalid_config(bad):
    with pytest.raises(ValueError):
        RetinaSNN(SNNConfig(**{**TINY, **bad}))


def test_wrong_image_shape():
    m = RetinaSNN(SNNConfig(**TINY))
    with pytest.raises(ValueError, match=r"images must be \[B, 1, 16, 16\]"):
        m(torch.randn(2, 16, 16))
