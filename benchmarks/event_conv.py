"""Event-driven vs dense convolution of spike maps at the spiking models' second-layer shapes (CPU).

For each input density, on the same random binary input: the forward pass and the weight
gradient of ``neurocode::event_conv2d`` (nonzero inputs scatter their kernel columns) against
``torch.nn.functional.conv2d`` (contiguous and channels-last input) and
``torch.nn.grad.conv2d_weight``; the speed-up is dense time / event time in the same run, and
the largest difference to the dense result is printed (the same sums in another order).
Nothing is asserted.

    OMP_NUM_THREADS=2 python benchmarks/event_conv.py [--threads 2] [--repeat 5]
"""

from __future__ import annotations

import argparse

import neurocode  # noqa: F401  -- before torch, as in the CLI: huge-page allocations (neurocode/__init__.py)
import torch
import torch.nn.functional as F
from _common import timed

from neurocode.models.event_conv import event_conv2d

# (name, samples = T x K x images, in channels, side, out channels, kernel, padding)
SHAPES = [("paper conv2", 480, 16, 40, 32, 11, 0), ("quick conv2", 256, 8, 32, 16, 5, 2)]
DENSITIES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, threads={args.threads}, median of {args.repeat}, float32")
    print(f"{'shape':<12}{'density':>8}{'dense ms':>10}{'dense cl ms':>12}{'event ms':>10}{'fwd x':>7}"
          f"{'dW dense ms':>12}{'dW event ms':>12}{'dW x':>7}{'max |diff|':>12}")
    for name, B, C, H, O, K, P in SHAPES:
        w = 0.1 * torch.randn(O, C, K, K, generator=g)
        for density in DENSITIES:
            x = (torch.rand(B, C, H, H, generator=g) < density).float()
            x_cl = x.contiguous(memory_format=torch.channels_last)
            gout = torch.randn(B, O, H + 2 * P - K + 1, H + 2 * P - K + 1, generator=g)
            diff = (F.conv2d(x, w, padding=P) - event_conv2d(x, w, None, P)).abs().max().item()
            dense = timed(lambda: F.conv2d(x, w, padding=P), args.repeat)
            dense_cl = timed(lambda: F.conv2d(x_cl, w, padding=P), args.repeat)
            event = timed(lambda: event_conv2d(x, w, None, P), args.repeat)
            dw_dense = timed(lambda: torch.nn.grad.conv2d_weight(x, w.shape, gout, padding=P), args.repeat)
            dw_event = timed(lambda: torch.ops.neurocode.event_conv2d_weight(x, gout, list(w.shape), P), args.repeat)
            print(f"{name:<12}{density:>8.2f}{dense * 1e3:>10.1f}{dense_cl * 1e3:>12.1f}{event * 1e3:>10.1f}"
                  f"{min(dense, dense_cl) / event:>7.2f}{dw_dense * 1e3:>12.1f}{dw_event * 1e3:>12.1f}"
                  f"{dw_dense / dw_event:>7.2f}{diff:>12.1e}")
    print("fwd x = the faster dense layout / event; dW x = dense weight gradient / event weight gradient")


if __name__ == "__main__":
    main()
