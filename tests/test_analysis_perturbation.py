"""SpikeFlip hook and perturb_spikes context manager."""

import numpy as np
import pytest
import torch
from torch import nn

from neurocode.analysis import SpikeFlip, flip_spikes, perturb_spikes


class Spiker(nn.Module):
    """Deterministic threshold unit returning (spikes, potentials)."""

    def __init__(self, tuple_out=False):
        super().__init__()
        self.tuple_out = tuple_out

    def forward(self, x):
        s = (x > 0).float()
        return (s, x) if self.tuple_out else s


def test_flip_rate_matches_beta():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(200, 500, generator=g) < 0.3).float()
    beta = 0.1
    y = flip_spikes(x, beta, generator=g)
    assert y.dtype == x.dtype and set(torch.unique(y).tolist()) <= {0.0, 1.0}
    flipped = (y != x).float()
    n = x.numel()
    tol = 5 * np.sqrt(beta * (1 - beta) / n)
    assert abs(flipped.mean().item() - beta) < tol
    # both directions are flipped at rate beta
    n1 = x.sum().item()
    assert abs(flipped[x == 1].mean().item() - beta) < 5 * np.sqrt(beta * (1 - beta) / n1)
    assert abs(flipped[x == 0].mean().item() - beta) < 5 * np.sqrt(beta * (1 - beta) / (n - n1))
    assert torch.equal(flip_spikes(x, 0.0), x)
    assert torch.equal(flip_spikes(x, 1.0), 1 - x)


def test_forward_hook_and_tuple_output():
    layer = Spiker(tuple_out=True)
    h = layer.register_forward_hook(SpikeFlip(1.0))
    x = torch.randn(10, 3)
    s, v = layer(x)
    assert torch.equal(s, (x <= 0).float()) and torch.equal(v, x)
    h.remove()
    s, _ = layer(x)
    assert torch.equal(s, (x > 0).float())
    with pytest.raises(ValueError):
        SpikeFlip(1.5)


def test_perturb_spikes_context_manager():
    model = nn.Sequential(nn.Linear(4, 4), Spiker(), nn.Linear(4, 4), Spiker())
    x = torch.randn(8, 4)
    clean = model(x)
    with perturb_spikes(model, 1.0, layer_types=("Spiker",)) as mods:
        assert len(mods) == 2
        pert = model(x)
    assert not torch.equal(pert, clean)
    assert torch.equal(model(x), clean)  # hooks removed
    with perturb_spikes(model, 1.0, layer_types=(Spiker,)) as mods:
        assert len(mods) == 2
        # last layer output flipped exactly
        y = model(x)
        expected = 1 - (model[2](1 - (model[0](x) > 0).float()) > 0).float()
        assert torch.equal(y, expected)
    with pytest.raises(ValueError):
        with perturb_spikes(model, 0.1, layer_types=()):
            pass


def test_perturb_spikes_reproducible():
    model = nn.Sequential(Spiker())
    x = torch.randn(100, 20)
    outs = []
    for _ in range(2):
        with perturb_spikes(model, 0.2, layer_types=(Spiker,), generator=torch.Generator().manual_seed(3)):
            outs.append(model(x))
    assert torch.equal(outs[0], outs[1])
