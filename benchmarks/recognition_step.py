"""Seconds per training step of the paper's CIFAR networks (CIFARNet, ResNet-18) at T = 2.

One step = forward of a CIFAR batch (32x32, static input presented for T steps), the STBP loss,
backward and an Adam update; NSNN (noisy LIF, noise-driven learning) and DSNN (LIF, ERF
surrogate). Prints the median of ``--repeats`` timed steps after ``--warmup`` untimed ones, and the
NSNN/DSNN ratio. On a GPU (``--device cuda``) each step is synchronised before the clock stops.

    python benchmarks/recognition_step.py                      # CPU, batch 16, 1 thread
    python benchmarks/recognition_step.py --device cuda --batch 256
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from neurocode.recognition import METHODS, NeuronSpec, build_classifier


def step_seconds(arch: str, model: str, batch: int, T: int, device: str, repeats: int, warmup: int) -> float:
    torch.manual_seed(0)
    gen = torch.Generator(device=device).manual_seed(0)
    net = build_classifier(arch, neuron=NeuronSpec(model), n_steps=T, generator=gen).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    loss_fn = METHODS["stbp"].loss_fn
    times = []
    for i in range(warmup + repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--timesteps", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--archs", nargs="*", default=["cifarnet", "resnet18"])
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    print(f"device {args.device}, batch {args.batch}, T = {args.timesteps}, {args.threads} thread(s), "
          f"torch {torch.__version__}")
    for arch in args.archs:
        res = {m: step_seconds(arch, m, args.batch, args.timesteps, args.device, args.repeats, args.warmup)
               for m in ("dsnn", "nsnn")}
        print(f"{arch:9s} DSNN {res['dsnn']:.3f} s/step  NSNN {res['nsnn']:.3f} s/step  "
              f"NSNN/DSNN {res['nsnn'] / res['dsnn']:.2f}  ({res['nsnn'] / args.batch * 1e3:.1f} ms/image NSNN)")


if __name__ == "__main__":
    main()
