"""Tests for the CNN baseline (neurocode.models.cnn) and model utils."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from neurocode.losses import poisson_nll
from neurocode.models import CNNConfig, PSoftplus, RetinaModel, paper_cnn_spec, parameter_count
from neurocode.models.utils import conv_output_size

def RetinaCNN(config=None):
    return RetinaModel(paper_cnn_spec(config or CNNConfig()))


SMALL = CNNConfig(input_size=20, channels=(4, 3), kernel_sizes=(5, 3), n_cells=6, n_steps=7)


def test_default_output_shape_and_nonnegative():
    torch.manual_seed(0)
    model = RetinaCNN()
    rates = model(torch.randn(3, 1, 64, 64))
    assert rates.shape == (30, 3, 49)
    assert (rates >= 0).all() and torch.isfinite(rates).all()


def test_default_parameter_count_by_hand():
    # conv1: 32·1·25·25 (no bias: BN follows) ; BN: γ, β per channel
    conv1, bn1 = 32 * 1 * 25 * 25, 2 * 32
    conv2, bn2 = 16 * 32 * 11 * 11, 2 * 16
    side = (64 - 25 + 1) - 11 + 1  # 40 -> 30
    assert side == 30
    n_out = 49 * 30
    fc, bn3, psp = 16 * side * side * n_out, 2 * n_out, 2 * n_out  # PSoftplus: α, β
    expected = conv1 + bn1 + conv2 + bn2 + fc + bn3 + psp
    assert expected == 21_255_928
    assert parameter_count(RetinaCNN()) == expected


def test_parameter_count_with_pool_and_stride():
    cfg = CNNConfig(input_size=32, channels=(5, 2), kernel_sizes=(5, 3), strides=(2, 1), pool=2,
                    n_cells=3, n_steps=4)
    # conv1: (32-5)//2+1 = 14 -> pool 7 ; conv2: 7-3+1 = 5 -> pool 2
    assert cfg.feature_sizes() == (7, 2)
    n_out = 12
    expected = 5 * 25 + 10 + 2 * 5 * 9 + 4 + 2 * 2 * 2 * n_out + 4 * n_out
    model = RetinaCNN(cfg)
    assert parameter_count(model) == expected
    model.eval()
    assert model(torch.randn(1, 1, 32, 32)).shape == (4, 1, 3)


def test_parameter_count_skips_frozen_and_buffers():
    m = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    assert parameter_count(m) == 3 * 2 + 2 + 2 * 2  # running stats are buffers
    m[0].weight.requires_grad_(False)
    assert parameter_count(m) == 2 + 4


def test_time_major_layout_matches_fc_output():
    """rates[t, b, c] is FC unit t·n_cells + c of image b (read as [B, T, n_cells])."""
    torch.manual_seed(1)
    model = RetinaCNN(SMALL).eval()
    x = torch.randn(2, 1, 20, 20)
    features, _ = model.core(model.front_end.drive(x))
    fc = model.readout.norm(model.readout.linear(features.flatten(1)))  # [B, T·n_cells]
    flat = model.output.alpha.abs() * torch.nn.functional.softplus(model.output.beta * fc)
    rates = model(x)
    t, b, c = 5, 1, 4
    torch.testing.assert_close(rates[t, b, c], flat[b, t * SMALL.n_cells + c])


def test_psoftplus_math():
    torch.manual_seed(2)
    act = PSoftplus(3)
    torch.testing.assert_close(act.alpha, torch.ones(3))
    torch.testing.assert_close(act.beta, torch.ones(3))
    with torch.no_grad():
        act.alpha.copy_(torch.tensor([0.5, 2.0, 1.0]))
        act.beta.copy_(torch.tensor([1.0, 3.0, 0.1]))
    x = torch.tensor([[-1.0, 0.0, 2.0], [50.0, -50.0, 0.3]], dtype=torch.float64)
    got = act.double()(x)
    a = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    b = torch.tensor([1.0, 3.0, 0.1], dtype=torch.float64)
    ref = a * torch.log1p(torch.exp(b * x))
    torch.testing.assert_close(got, ref)
    assert got[0, 1].item() == pytest.approx(2.0 * math.log(2.0))  # α·log 2 at x = 0
    # large β·x: no overflow, linear regime α·β·x
    assert got[1, 0].item() == pytest.approx(0.5 * 50.0)


def test_psoftplus_nonnegative_even_with_negative_alpha_and_has_gradients():
    act = PSoftplus(4)
    with torch.no_grad():
        act.alpha.fill_(-0.7)
    x = torch.randn(5, 4)
    out = act(x)
    assert (out >= 0).all()
    out.sum().backward()
    assert act.alpha.grad.abs().sum() > 0 and act.beta.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(input_size=20), "conv1"),  # 25x25 kernel on a 20x20 image
        (dict(input_size=30), "conv2"),  # 30-25+1 = 6 < 11
        (dict(pool=8), "conv2"),  # 40 // 8 = 5 < 11
        (dict(input_size=64, kernel_sizes=(5, 3), pool=64), "conv1"),  # pool > 60
        (dict(channels=(32,)), "channels"),
        (dict(strides=(0, 1)), "strides"),
        (dict(n_cells=0), "n_cells"),
        (dict(n_steps=2.5), "n_steps"),
    ],
)
def test_invalid_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RetinaCNN(CNNConfig(**kwargs))


def test_conv_output_size():
    assert conv_output_size(64, 25) == 40
    assert conv_output_size(40, 11) == 30
    assert conv_output_size(64, 25, stride=2) == 20  # floor(39/2)+1
    assert conv_output_size(64, 25, stride=3, pool=2) == 7  # 14 // 2
    assert conv_output_size(5, 5) == 1
    with pytest.raises(ValueError, match="layerX.*vanish"):
        conv_output_size(4, 5, name="layerX")
    with pytest.raises(ValueError, match="stride"):
        conv_output_size(10, 3, stride=0)


def test_wrong_input_shape():
    model = RetinaCNN(SMALL)
    with pytest.raises(ValueError, match=r"\[B, 1, 20, 20\]"):
        model(torch.randn(2, 1, 21, 21))
    with pytest.raises(ValueError, match=r"\[B, 1, 20, 20\]"):
        model(torch.randn(2, 20, 20))


def test_gradients_flow_and_training_reduces_poisson_loss():
    torch.manual_seed(3)
    model = RetinaCNN(SMALL)
    x = torch.randn(8, 1, 20, 20)
    counts = torch.poisson(torch.full((SMALL.n_steps, 8, SMALL.n_cells), 0.3))
    loss = poisson_nll(model(x), counts)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = loss.item()
    for _ in range(30):
        opt.zero_grad()
        loss = poisson_nll(model(x), counts)
        loss.backward()
        opt.step()
    assert loss.item() < first - 0.1


def test_config_accepts_lists_and_module_exports():
    cfg = CNNConfig(channels=[8, 4], kernel_sizes=[5, 3], strides=[1, 1], input_size=16)
    assert cfg.channels == (8, 4)
    import neurocode.models as nm

    for name in ("paper_cnn_spec", "CNNConfig", "PSoftplus", "parameter_count"):
        assert hasattr(nm, name)
