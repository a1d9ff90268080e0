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


# The register-tiled kernels take output-channel counts that are a multiple of the SIMD width
# (16 and 32 channels: 1, 2 or 4 vectors of float32/float64); the shapes above (3, 5, 7 channels)
# take the scatter form. These cover the tiles' ragged right and bottom edges (outputs not a
# multiple of the tile), windows wider than 16 columns (kernels of 13 and 15), rows wider than
# 64 columns, padding and a kernel larger than the input.
TILED_SHAPES = [(3, 4, 13, 11, 16, 3, 0), (2, 3, 17, 19, 32, 5, 2), (2, 2, 6, 6, 32, 7, 3), (2, 2, 16, 18, 16, 13, 1),
                (2, 2, 20, 20, 32, 15, 0), (2, 3, 9, 70, 16, 3, 1), (4, 16, 40, 40, 32, 11, 0)]


def sparse_input(B, C, H, W, dtype, values, density=0.15, seed=11):
    mask = torch.rand(B, C, H, W, generator=gen(seed)) < density
    if values == "binary":
        return mask.to(dtype)
    x = mask * torch.randn(B, C, H, W, generator=gen(seed + 1), dtype=dtype)
    if values == "mixed":  # per sample: spikes, graded, spikes, ... (each sample takes its own path)
        x[::2] = mask[::2].to(dtype)
    return x


@needs_kernel
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("shape", TILED_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("values", ["binary", "graded", "mixed"])
def test_tiled_event_conv_equals_dense_conv(shape, values, dtype, tol):
    B, C, H, W, O, K, P = shape
    x = sparse_input(B, C, H, W, dtype, values)
    w = torch.randn(O, C, K, K, generator=gen(12), dtype=dtype)
    ref = F.conv2d(x, w, padding=P)
    out = event_conv2d(x, w, None, P)
    # channels-first: BatchNorm and the LIF kernel after it run fastest on it (no copy in between)
    assert out.shape == ref.shape and out.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol * 10)
    b = torch.randn(O, generator=gen(14), dtype=dtype)
    torch.testing.assert_close(event_conv2d(x, w, b, P), F.conv2d(x, w, b, padding=P), rtol=tol, atol=tol * 10)
    gout = torch.randn(ref.shape, generator=gen(13), dtype=dtype)
    dw_ref = torch.nn.grad.conv2d_weight(x, w.shape, gout, padding=P)
    # the output gradient in any layout: contiguous, channels-last, a strided view
    for g in (gout, gout.contiguous(memory_format=torch.channels_last),
              torch.stack([gout, -gout], -1)[..., 0]):
        dw = torch.ops.neurocode.event_conv2d_weight(x, g, list(w.shape), P)
        torch.testing.assert_close(dw, dw_ref, rtol=tol, atol=tol * 100)


@needs_kernel
@pytest.mark.parametrize("O", [16, 32, 5])
def test_event_conv_is_the_same_on_two_threads(O):
    """Samples split over threads (an odd batch: unequal ranges), weight-gradient partial sums
    added at the end: the same values as on one thread, the dense convolution's."""
    x = sparse_input(5, 3, 12, 12, torch.float64, "mixed")
    w = torch.randn(O, 3, 5, 5, generator=gen(14), dtype=torch.float64)
    gout = torch.randn(5, O, 10, 10, generator=gen(15), dtype=torch.float64)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        out2 = event_conv2d(x, w, None, 1)
        dw2 = torch.ops.neurocode.event_conv2d_weight(x, gout, list(w.shape), 1)
        torch.set_num_threads(1)
        out1 = event_conv2d(x, w, None, 1)
        dw1 = torch.ops.neurocode.event_conv2d_weight(x, gout, list(w.shape), 1)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(out2, out1, rtol=0, atol=0)  # each sample on one thread: same order
    torch.testing.assert_close(out1, F.conv2d(x, w, padding=1), rtol=1e-12, atol=1e-12)
    dw_ref = torch.nn.grad.conv2d_weight(x, w.shape, gout, padding=1)
    torch.testing.assert_close(dw1, dw_ref, rtol=1e-12, atol=1e-11)
    torch.testing.assert_close(dw2, dw_ref, rtol=1e-12, atol=1e-11)


@needs_kernel
def test_tiled_event_conv_propagates_nan_and_inf():
    """A NaN or inf input is not a spike: that sample takes the multiplying path, as the dense
    convolution does."""
    x = sparse_input(2, 2, 8, 8, torch.float32, "binary")
    x[0, 0, 3, 3] = float("nan")
    x[1, 1, 2, 5] = float("inf")
    w = torch.randn(16, 2, 3, 3, generator=gen(16))
    ref, out = F.conv2d(x, w), event_conv2d(x, w)
    torch.testing.assert_close(out, ref, equal_nan=True)
    gout = torch.randn(ref.shape, generator=gen(17))
    torch.testing.assert_close(torch.ops.neurocode.event_conv2d_weight(x, gout, list(w.shape), 0),
                               torch.nn.grad.conv2d_weight(x, w.shape, gout), equal_nan=True)


@needs_kernel
@pytest.mark.parametrize("model", ["paper", "rf"])
def test_spiking_retina_models_convolve_their_spikes_event_by_event(model, monkeypatch):
    """The second convolution of the spiking retina models takes the event path on sparse spike
    maps, and gives the dense convolution's currents."""
    from neurocode.models import RetinaModel, RFConfig, SNNConfig, paper_snn_spec, rf_model_spec

    torch.manual_seed(0)
    if model == "paper":
        snn = SNNConfig(input_size=24, channels=(4, 16), kernel_sizes=(5, 3), hidden=(8,), n_cells=3, n_steps=5)
        net = RetinaModel(paper_snn_spec(snn), generator=gen(11))
    else:
        rf = RFConfig(input_size=24, channels=(4, 16), kernel_sizes=(3, 3), n_cells=3, n_steps=5)
        net = RetinaModel(rf_model_spec(rf, "spiking", "noisy_lif"), generator=gen(11))
    conv2 = net.core.conv2
    assert isinstance(conv2, SpikeConv2d)
    calls = []
    real = torch.ops.neurocode.event_conv2d
    monkeypatch.setattr("neurocode.models.event_conv.event_conv2d", lambda *a: calls.append(a[0]) or real(*a))
    spikes = (torch.rand(10, 4, 20, 20, generator=gen(12)) < 0.1).float()
    with torch.no_grad():
        out = conv2(spikes)
        dense = F.conv2d(spikes, conv2.weight, conv2.bias, conv2.stride, conv2.padding)
    torch.testing.assert_close(out, dense, rtol=2e-5, atol=2e-5)
    images = torch.randn(2, 1, 24, 24, generator=gen(13))
    net(images, n_trials=2)
    assert len(calls) >= 2 and all(set(x.unique().tolist()) <= {0.0, 1.0} for x in calls[1:])
