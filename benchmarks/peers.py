"""neurocode's LIF layers against the peers, side by side in one run (CPU, forward + backward).

One LIF layer at each of the retina models' neuron-map shapes, T = 30 time steps, batch B,
input ``x [T, B, ...]`` and loss ``(spikes * R).sum()``; dynamics matched as far as each
library allows: leak factor 0.5 per step (``u = 0.5 u + x``), threshold 1, reset to 0:

* neurocode ``LIF`` (ERF surrogate) and ``NoisyLIF`` (Gaussian escape noise σ = 0.2, NDL);
* snnTorch 1.0 ``snn.Leaky(beta=0.5, reset_mechanism="zero")``, stepped in a Python loop;
* SpikingJelly 2.0 ``LIFNode(tau=2, decay_input=False, step_mode="m", backend="torch")``;
* Norse 1.1 ``LIFBoxCell`` (no synaptic current; ``dt·tau_mem_inv = 0.5``, input × 2), stepped.

Each (library, shape) runs in its own subprocess, so its peak memory is its own: the
reported memory is the peak resident size (VmHWM) minus the resident size after the input
was made. Times are medians of ``--repeat`` calls after two warm-up calls. The table gives
ratios to neurocode's LIF measured in the same run (absolute times drift on a shared
machine). Nothing is asserted.

Install the peers next to torch 2.13 without letting them pull another torch:
``pip install --no-deps -r benchmarks/requirements-peers.txt && pip install loguru``.

    OMP_NUM_THREADS=2 python benchmarks/peers.py [--threads 2] [--batch 16] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from _common import add_isa_argument, apply_isa, machine_line, rss_kb

SHAPES = {"16x40x40": (16, 40, 40), "32x30x30": (32, 30, 30), "64": (64,)}
LIBRARIES = ("neurocode LIF", "neurocode NoisyLIF", "snnTorch", "SpikingJelly", "Norse")
T = 30


def _layer(library: str):
    """A callable ``x [T, B, ...] -> spikes [T, B, ...]`` of the library's LIF layer."""
    import torch

    if library == "neurocode LIF":
        from neurocode.neurons import LIF
        from neurocode.noise import ERF

        return LIF(ERF(), tau=0.5, v_th=1.0)
    if library == "neurocode NoisyLIF":
        from neurocode.neurons import NoisyLIF
        from neurocode.noise import Gaussian

        return NoisyLIF(Gaussian(0.2), tau=0.5, v_th=1.0, generator=torch.Generator().manual_seed(0))
    if library == "snnTorch":
        import snntorch as snn
        from snntorch import surrogate

        leaky = snn.Leaky(beta=0.5, threshold=1.0, reset_mechanism="zero", spike_grad=surrogate.atan())

        def run(x):
            mem = leaky.init_leaky()
            out = []
            for t in range(x.shape[0]):
                spk, mem = leaky(x[t], mem)
                out.append(spk)
            return torch.stack(out)

        return run
    if library == "SpikingJelly":
        from spikingjelly.activation_based import functional, neuron

        node = neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=1.0, v_reset=0.0, step_mode="m")
        node.backend = "torch"

        def run(x):
            functional.reset_net(node)
            return node(x)

        return run
    if library == "Norse":
        import norse.torch as nt

        cell = nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(500.0), v_th=torch.tensor(1.0)), dt=0.001)

        def run(x):
            state, out = None, []
            for t in range(x.shape[0]):
                z, state = cell(2.0 * x[t], state)
                out.append(z)
            return torch.stack(out)

        return run
    raise ValueError(f"unknown library {library!r}")


def child(library: str, shape: str, batch: int, repeat: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    x = (torch.randn((T, batch) + SHAPES[shape], generator=g) * 0.6 + 0.45).requires_grad_(True)
    r = torch.randn(x.shape, generator=g)
    layer = _layer(library)
    base = rss_kb("VmRSS")

    def step():
        x.grad = None
        spikes = layer(x)
        (spikes * r).sum().backward()
        return spikes

    for _ in range(2):
        spikes = step()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"library": library, "shape": shape, "seconds": statistics.median(times),
            "peak_mb": (rss_kb("VmHWM") - base) / 1024, "rate": float(spikes.detach().float().mean())}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--libraries", nargs="+", default=list(LIBRARIES))
    p.add_argument("--child", nargs=2, metavar=("LIBRARY", "SHAPE"), help=argparse.SUPPRESS)
    add_isa_argument(p)
    a = p.parse_args(argv)
    apply_isa(a)
    if a.child:
        print(json.dumps(child(a.child[0], a.child[1], a.batch, a.repeat, a.threads)))
        return
    print(machine_line(a.threads), flush=True)
    rows = {}
    for shape in SHAPES:
        for lib in a.libraries:
            cmd = [sys.executable, __file__, "--child", lib, shape, "--batch", str(a.batch), "--repeat",
                   str(a.repeat), "--threads", str(a.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                last = (out.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{lib} {shape}: failed ({last})", flush=True)
                continue
            rows[(lib, shape)] = json.loads(out.stdout.strip().splitlines()[-1])
            res = rows[(lib, shape)]
            print(f"  {lib:<20} {shape:<9} {res['seconds'] * 1e3:8.1f} ms  {res['peak_mb']:8.1f} MB  "
                  f"rate {res['rate']:.3f}", flush=True)
    print(f"\nT = {T}, B = {a.batch}, {a.threads} threads; forward + backward of one LIF layer; ratios to "
          "neurocode LIF in this run (time, peak memory)")
    print(f"{'library':<20}" + "".join(f"{s:>22}" for s in SHAPES))
    for lib in a.libraries:
        cells = []
        for shape in SHAPES:
            ref, res = rows.get(("neurocode LIF", shape)), rows.get((lib, shape))
            if ref is None or res is None:
                cells.append(f"{'n/a':>22}")
                continue
            mem = res["peak_mb"] / ref["peak_mb"] if ref["peak_mb"] > 0 else float("nan")
            cells.append(f"{res['seconds'] / ref['seconds']:>11.2f}x {mem:>8.2f}x")
        print(f"{lib:<20}" + "".join(cells))


if __name__ == "__main__":
    main()
