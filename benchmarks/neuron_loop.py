"""Forward + backward time of the neuron time loop at retina-model shapes (CPU).

Compares, in one run and on the same inputs:

(a) a *reference-style* implementation, as in the paper's reference code: [B, T, ...]
    layout, a Python loop over t slicing ``x[:, t]``, a per-step ``torch.autograd.Function``
    for the spike with a surrogate (ERF) backward, outputs ``torch.stack(dim=1)``; its noisy
    variant draws ``torch.randn`` per step and fires on ``u + eps >= v_th`` with the
    Gaussian density as backward (one draw per step, no ndtr/bernoulli);
(b) the fused :class:`neurocode.neurons.LIF` on time-major [T, B, ...];
(c) the fused :class:`neurocode.neurons.NoisyLIF` (escape, Gaussian sigma = 0.2);
(d) extra columns: (b) and (c) forced onto the pure-torch fallback loop (the C++ kernel
    disabled), drawing the same counter-based noise with torch operations.

Shapes: T = 30, B = 64 (``--quick``: B = 4), neuron maps 16x40x40, 32x30x30 and 64 units
(the three neuron layers of the retina CNN), each measured separately and summed.
Reports the median of ``--repeat`` runs after one warm-up; the fused LIF and NoisyLIF, whose
ratio is the noise overhead, alternate call by call (2 x repeat + 1 calls each), so that a
shared machine's load slows both alike. Nothing is asserted.

    OMP_NUM_THREADS=2 python benchmarks/neuron_loop.py [--threads 2] [--quick] [--isa avx2]
    OMP_NUM_THREADS=2 python benchmarks/neuron_loop.py --faults [--fault-batch 64]

``--output`` prints only the learnt-noise output neurons' forward pass without a gradient
(:class:`neurocode.neurons.LearnableNoisyLIF`, a sigma per neuron, at the Fano end calibration's
shape 90 substeps x 768 trials x 49 cells): the Python time loop that training runs, against the
fused kernel on thresholds formed once that prediction and calibration now run, on the same drawn
noise (their spikes are equal bit for bit, which the benchmark checks before timing), inside the
caching allocator's scope as in a fit.

    OMP_NUM_THREADS=2 python benchmarks/neuron_loop.py --output

The first line printed names the CPU, the kernel build (avx512 / avx2 / scalar; ``--isa`` or
NEUROCODE_ISA forces one the CPU runs) and the threads.

``--faults`` prints only the page faults and system time per call of one LIF layer at
16x90x90, the calls inside one caching-allocator scope as a fit's training steps are (see
``neurocode/memory.py``): with torch's and glibc's defaults, with torch's
transparent-huge-page allocations (``THP_MEM_ALLOC_ENABLE=1``, which neurocode no longer sets),
and with freed memory kept for reuse by neurocode's caching allocator as well, and with nothing
set, once with ``import neurocode`` first and once with ``import torch`` first.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import neurocode  # noqa: F401  -- before torch, as in the CLI
import torch
from _common import add_isa_argument, apply_isa, machine_line, rss_kb, timed, timed_interleaved

from neurocode.neurons import LIF, NoisyLIF, kernel_failure, kernel_library, pure_torch
from neurocode.noise import Gaussian

TAU, V_TH, SIGMA = 0.5, 1.0, 0.2
SHAPES = {"16x40x40": (16, 40, 40), "32x30x30": (32, 30, 30), "64": (64,)}
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)
_GAUSS_NORM = 1.0 / (SIGMA * math.sqrt(2 * math.pi))


# -- (a) reference style ------------------------------------------------------------------


class RefSpike(torch.autograd.Function):
    """Heaviside forward, ERF surrogate exp(-x^2)/sqrt(pi) backward."""

    @staticmethod
    def forward(ctx, u):
        ctx.save_for_backward(u)
        return (u >= V_TH).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        x = u - V_TH
        return grad * torch.exp(-x * x) * _INV_SQRT_PI


class RefNoisySpike(torch.autograd.Function):
    """Fires on u + eps >= v_th; backward: Gaussian density at the pre-noise potential."""

    @staticmethod
    def forward(ctx, u, eps):
        ctx.save_for_backward(u)
        return (u + eps >= V_TH).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        z = (u - V_TH) / SIGMA
        return grad * torch.exp(-0.5 * z * z) * _GAUSS_NORM, None


def ref_lif(x_bt: torch.Tensor, noisy: bool) -> torch.Tensor:
    """x_bt: [B, T, ...]; returns spikes [B, T, ...]."""
    u = torch.zeros_like(x_bt[:, 0])
    out = []
    for t in range(x_bt.shape[1]):
        u = TAU * u + x_bt[:, t]
        if noisy:
            o = RefNoisySpike.apply(u, torch.randn_like(u) * SIGMA)
        else:
            o = RefSpike.apply(u)
        u = u * (1 - o)
        out.append(o)
    return torch.stack(out, dim=1)


# -- timing ---------------------------------------------------------------------------------


def fault_probe(feat: tuple, B: int, T: int, repeat: int) -> dict:
    """Median per fwd+bwd of the fused LIF with loss ``(spikes * R).sum()``, after two
    warm-up calls, all in one caching-allocator scope as a fit's steps (the loss's tensors
    from the cache too, unless NEUROCODE_CACHING_ALLOCATOR=0): minor page faults, system and user
    CPU seconds, wall seconds; and the peak resident size over all calls above the resident input
    and R (measured from before the first call: memory kept for reuse between calls counts once,
    at its peak)."""
    import resource

    from neurocode.neurons._kernels import CachingScope

    x = (1.2 * torch.rand(T, B, *feat)).requires_grad_()
    R = torch.randn_like(x)
    lif = LIF()
    lif(torch.rand(2, 1, 16))  # loads the kernel: its code is not the layer's memory
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident size
    base_kb = rss_kb("VmRSS")
    rows = []
    with CachingScope():
        for i in range(repeat + 2):
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            x.grad = None
            (lif(x) * R).sum().backward()
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            if i >= 2:
                rows.append((r1.ru_minflt - r0.ru_minflt, r1.ru_stime - r0.ru_stime, r1.ru_utime - r0.ru_utime,
                             time.perf_counter() - t0))
    keys = ("faults", "sys_s", "user_s", "wall_s")
    out = {k: statistics.median(r[i] for r in rows) for i, k in enumerate(keys)}
    out["peak_added_x"] = (rss_kb("VmHWM") - base_kb) * 1024 / (x.numel() * x.element_size())
    return out


def faults_table(args) -> None:
    """The fault probe at 16x90x90 under three allocator settings and both import orders, each in its own process
    (torch reads THP_MEM_ALLOC_ENABLE once, neurocode NEUROCODE_CACHING_ALLOCATOR at the extension's load; neurocode
    sets neither)."""
    import json
    import os
    import subprocess
    import sys

    print(f"\npage faults, fused LIF fwd+bwd at 16x90x90, T={args.steps}, B={args.fault_batch}, loss (spikes * R).sum(),"
          f" median of {args.repeat or 3} after 2 warm-ups:")
    print(f"{'allocations':<34}{'minor faults':>14}{'sys s':>9}{'user s':>9}{'wall s':>9}{'peak added / input':>20}")
    # None: the variable unset, as a user has it; the last two rows are import neurocode's defaults
    # in both import orders (torch first is what most scripts and notebooks do)
    settings = [("4-KB pages, torch's allocator", "0", "0", False), ("huge pages, torch's allocator", "1", "0", False),
                ("huge pages, caching allocator", "1", "1", False),
                ("defaults, neurocode imported first", None, None, False),
                ("defaults, torch imported first", None, None, True)]
    probe = ["--probe", "--threads", str(args.threads), "--steps", str(args.steps), "--fault-batch",
             str(args.fault_batch), "--repeat", str(args.repeat or 3)]
    for label, thp, caching, torch_first in settings:
        env = dict(os.environ)
        for name, value in (("THP_MEM_ALLOC_ENABLE", thp), ("NEUROCODE_CACHING_ALLOCATOR", caching)):
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        if torch_first:
            torch_then_script = ("import os, sys, runpy, torch; sys.argv = sys.argv[1:]; "
                                 "sys.path.insert(0, os.path.dirname(sys.argv[0])); "
                                 "runpy.run_path(sys.argv[0], run_name='__main__')")
            cmd = [sys.executable, "-c", torch_then_script, __file__, *probe]
        else:
            cmd = [sys.executable, __file__, *probe]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"{label:<34}{r['faults']:>14,.0f}{r['sys_s']:>9.2f}{r['user_s']:>9.2f}{r['wall_s']:>9.2f}"
              f"{r['peak_added_x']:>19.2f}x")
    print("peak added = peak resident size over all calls above the resident input and R (the input's gradient"
          " included); the last two rows set nothing: import neurocode's defaults, in either import order")


def fwd_bwd(model, x: torch.Tensor):
    def run():
        x.grad = None
        out = model(x)
        out.sum().backward()
    return run


def torch_path(fn):
    """Run ``fn`` with the fused kernel disabled (pure-torch loop, the noise stream in torch ops)."""
    def run():
        with pure_torch("disabled by the benchmark"):
            fn()
    return run


def output_table(repeat: int) -> None:
    """The learnt-noise output neurons without a gradient: Python loop against the fused path (``--output``)."""
    from neurocode.memory import caching_allocator
    from neurocode.neurons import LearnableNoisyLIF
    from neurocode.neurons.learnable_noise_lif import _LearnableNoiseSequence

    g = torch.Generator().manual_seed(0)
    neuron = LearnableNoisyLIF(49, sigma=0.35)
    with torch.no_grad():
        neuron.log_sigma.copy_(torch.log(0.15 + 0.5 * torch.rand(49, generator=g)))
    x = 0.6 * torch.randn(90, 768, 49, generator=g) + 0.4
    z = neuron.draw_noise(x, torch.Generator().manual_seed(1))

    def loop():
        return _LearnableNoiseSequence.apply(x, None, z, neuron.log_sigma, neuron.tau, neuron.v_th, False, False)[0]

    def fused():
        return neuron(x, noise=z)

    with torch.no_grad(), caching_allocator():  # as inside a fit
        if not torch.equal(loop(), fused()):
            raise SystemExit("the fused path's spikes differ from the Python loop's")
        t_loop, t_fused = timed_interleaved([loop, fused], 2 * repeat + 1)
    print(f"\nLearnableNoisyLIF forward without a gradient, [T, B, N] = {tuple(x.shape)}, float32 (same spikes):"
          f"\n  Python loop {t_loop * 1e3:8.2f} ms   fused kernel {t_fused * 1e3:8.2f} ms   "
          f"loop / fused = {t_loop / t_fused:.1f}x")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="smoke run: B = 4, 2 repeats")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--faults", action="store_true", help="only the page-fault table (16x90x90)")
    ap.add_argument("--fault-batch", type=int, default=64, help="batch of the page-fault table (default 64)")
    ap.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES),
                    help="neuron maps to measure (default: all three)")
    ap.add_argument("--output", action="store_true",
                    help="only the learnt-noise output neurons' forward without a gradient (loop vs fused)")
    ap.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    add_isa_argument(ap)
    args = ap.parse_args(argv)
    apply_isa(args)
    torch.set_num_threads(args.threads)
    if args.probe:
        import json
        print(json.dumps(fault_probe((16, 90, 90), args.fault_batch, args.steps, args.repeat or 3)))
        return
    if args.faults:
        print(machine_line())
        faults_table(args)
        return
    if args.output:
        print(machine_line())
        output_table(args.repeat or 5)
        return
    B = args.batch or (4 if args.quick else 64)
    T = args.steps
    repeat = args.repeat or (2 if args.quick else 5)
    lib = kernel_library()
    print(machine_line())
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, T={T}, B={B}, median of {repeat}"
          f" after 1 warm-up, forward+backward, float32; fused kernel: "
          f"{'yes' if lib is not None else 'NO (' + str(kernel_failure()) + ')'}")

    lif, nlif = LIF(), NoisyLIF(Gaussian(SIGMA), placement="escape")
    noise = Gaussian(SIGMA)
    cols = ["ref LIF", "fused LIF", "ref noisy", "fused noisy", "noise.sample", "torch LIF", "torch noisy"]
    rows = {}
    for name, feat in SHAPES.items():
        if name not in args.shapes:
            continue
        g = torch.Generator().manual_seed(0)
        x_tb = (1.2 * torch.rand(T, B, *feat, generator=g)).requires_grad_()
        x_bt = x_tb.detach().transpose(0, 1).contiguous().requires_grad_()
        shape = x_tb.shape
        # the fused pair alternates call by call: their ratio is the noise overhead
        fused_lif, fused_noisy = timed_interleaved([fwd_bwd(lif, x_tb), fwd_bwd(nlif, x_tb)], 2 * repeat + 1)
        rows[name] = [
            timed(fwd_bwd(lambda x: ref_lif(x, noisy=False), x_bt), repeat),
            fused_lif,
            timed(fwd_bwd(lambda x: ref_lif(x, noisy=True), x_bt), repeat),
            fused_noisy,
            timed(lambda: noise.sample(shape, loc=V_TH), repeat),
            timed(torch_path(fwd_bwd(lif, x_tb)), repeat),
            timed(torch_path(fwd_bwd(nlif, x_tb)), repeat),
        ]
        del x_tb, x_bt
    rows["total"] = [sum(r[i] for r in rows.values()) for i in range(len(cols))]

    w = max(len(n) for n in rows) + 2
    print(f"\n{'shape':<{w}}" + "".join(f"{c:>13}" for c in cols) + "   (seconds)")
    for name, r in rows.items():
        print(f"{name:<{w}}" + "".join(f"{v:13.4f}" for v in r))
    print(f"\n{'shape':<{w}}{'LIF speed-up':>14}{'noisy speed-up':>16}{'noisy/LIF':>11}{'extra cost':>12}"
          f"{'sample share':>14}")
    for name, (ref_l, f_l, ref_n, f_n, samp, *_) in rows.items():
        extra = f_n - f_l
        share = f"{samp / extra:13.0%}" if extra > 0 else f"{'n/a':>13}"
        print(f"{name:<{w}}{ref_l / f_l:13.2f}x{ref_n / f_n:15.2f}x{f_n / f_l:11.3f}{extra:12.4f} {share}")
    print("\nLIF speed-up = ref LIF / fused LIF; noisy speed-up = ref noisy / fused noisy;"
          "\nnoisy/LIF = fused NoisyLIF / fused LIF; extra cost = fused NoisyLIF - fused LIF (s);"
          "\nsample share = noise.sample alone (one [T, B, ...] torch Gaussian draw, which the kernel path"
          "\n  no longer makes: it draws the thresholds in-register) / extra cost;"
          "\ntorch LIF / torch noisy = the same modules on the pure-torch fallback loop.")
    if not args.quick:
        faults_table(args)


if __name__ == "__main__":
    main()
