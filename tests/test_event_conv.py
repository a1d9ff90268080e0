"""Event-driven convolution of spike maps: the dense convolution's values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neurocode.models.event_conv import SpikeConv2d, event_conv2d
from neurocode.neurons import kernel_failure, kernel_library

needs_kernel = pytest.mark.skipif(kernel_library() is None, reason=f"no kernel: {kernel_failure()}")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@needs_kernel
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("shape", [(3, 4, 13, 11, 5, 3, 0), (2, 3, 9, 9, 7, 5, 2), (2, 2, 6, 6, 3, 7, 3)],
                         ids=["valid", "same", "kernel-larger-than-input"])
@pytest.mark.parametrize("values", ["binary", "graded"])
def test_event_conv_equals_dense_conv(shape, values, dtype, tol):
    """Forward, input, weight and bias gradients equal F.conv2d's (any sparse values, padding,
    ragged borders) up to the order of the additions."""
    B, C, H, W, O, K, P = shape
    mask = torch.rand(B, C, H, W, generator=gen(1)) < 0.2
    x = mask.to(dtype) if values == "binary" else mask * torch.randn(B, C, H, W, generator=gen(2), dtype=dtype)
    x.requires_grad_()
    w = torch.randn(O, C, K, K, generator=gen(3), dtype=dtype, requires_grad=True)
    b = torch.randn(O, generator=gen(4), dtype=dtype, requires_grad=True)
    ref = F.conv2d(x, w, b, padding=P)
    out = event_conv2d(x, w, b, P)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)
    gout = torch.randn(ref.shape, generator=gen(5), dtype=dtype)
    for a, r in zip(torch.autograd.grad(out, [x, w, b], gout), torch.autograd.grad(ref, [x, w, b], gout)):
        torch.testing.assert_close(a, r, rtol=tol, atol=tol * 10)


@needs_kernel
def test_event_conv_passes_opcheck():
    x = (torch.rand(2, 3, 8, 8, generator=gen(6)) < 0.3).float().requires_grad_()
    w = torch.randn(4, 3, 3, 3, generator=gen(7), requires_grad=True)
    torch.library.opcheck(torch.ops.neurocode.event_conv2d.default, (x, w, None, 1))
    torch.library.opcheck(torch.ops.neurocode.event_conv2d_weight.default,
                          (x.detach(), torch.randn(2, 4, 8, 8, generator=gen(8)), [4, 3, 3, 3], 1))


@needs_kernel
def test_spike_conv2d_takes_the_event_path_only_where_it_applies(monkeypatch):
    conv = SpikeConv2d(3, 4, 3, padding=1, max_density=0.3)
    sparse = (torch.rand(2, 3, 8, 8, generator=gen(9)) < 0.1).float()
    dense = torch.rand(2, 3, 8, 8, generator=gen(10))
    calls = []
    real = torch.ops.neurocode.event_conv2d

    monkeypatch.setattr("neurocode.models.event_conv.event_conv2d",
                        lambda *a: calls.append(1) or real(*a))
    torch.testing.assert_close(conv(sparse), F.conv2d(sparse, conv.weight, conv.bias, padding=1))
    assert calls == [1]
    conv(dense)  # 100 % nonzero: the dense path
    SpikeConv2d(3, 4, 3, stride=2)(sparse)  # strided: the dense path
    assert calls == [1]
    assert set(conv.state_dict()) == set(torch.nn.Conv2d(3, 4, 3).state_dict())


@needs_kernel
def test_event_conv_checks_its_inputs():
    x = torch.zeros(2, 3, 8, 8)
    with pytest.raises(RuntimeError, match=r"weight must be \[O, 3, KH, KW\]"):
        event_conv2d(x, torch.zeros(4, 2, 3, 3))
    with pytest.raises(RuntimeError, match="larger than the padded input"):
        event_conv2d(x, torch.zeros(4, 3, 9, 9))
    with pytest.raises(RuntimeError, match="input must be"):
        event_conv2d(x[0], torch.zeros(4, 3, 3, 3))
