"""Time per training step / epoch and peak memory of a retina fit (paper or quick preset, CPU).

For NSNN, DSNN and CNN on the bundled recording (fold 0), each configuration runs in a
fresh subprocess (so its peak resident memory is its own) and reports the median time of a
training step (forward, loss, backward, Adam) after one warm-up step, the implied epoch
time, and the peak RSS. In the same run it measures a *straightforward baseline* of the
spiking models -- what a direct implementation of the paper does:

* the neuron loop on the pure-torch path (``NEUROCODE_NO_KERNEL=1``);
* the first layer's current recomputed at every time step (no static-input reuse);
* one model sample per recorded trial (K = 30 instead of the set-level MMD's K = 8);
* the second convolution dense (``torch.nn.functional.conv2d``) instead of event-driven;

and prints our/baseline ratios. ``before-34`` is our step as it was before the main job's speed
issue (34): BatchNorm on conv2's channels-last output against a channels-first gradient (torch's
slow mixed-layout backward), the learnt-noise output neurons as a per-step autograd graph, and
Adam's per-tensor loop instead of its fused pass, on today's kernels (the kernels' own changes since:
``--against REV``). Levers alone: ``dense-conv2`` is our step with only the
second convolution dense; ``torch-allocator`` is our step with torch's own CPU allocator instead
of neurocode's caching allocator (``NEUROCODE_CACHING_ALLOCATOR=0``: every step's large buffers
are mapped and faulted in afresh; see ``neurocode/memory.py``; the other variants run each step
inside the allocator's scope, as a fit does). ``--profile`` adds a breakdown of one step of each of our
configurations by operator category (convolutions, neuron loops, random numbers, linear
layers, loss, other) from ``torch.profiler``.

    python benchmarks/fit_step.py [--preset paper] [--threads 2] [--steps 3] [--models nsnn dsnn cnn] [--profile]

``--preset quick`` is the main job's network (``neurocode fit --model nsnn``). ``--trained N`` takes
N training steps before the timed ones: a fit's core starts with zero gradient (the readout's
feature weights start at 0), so a step just after the start is not a step in mid-fit (its
potentials spread, its gradients nonzero). ``--against REV`` adds the row ``REV``: our step as
the commit REV has it (a temporary git worktree of REV, its own kernel build), for a before/after
ratio in the same run.

Nothing is asserted; absolute times drift on a shared machine, ratios within one run less so.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import add_isa_argument, apply_isa, machine_line

CATEGORIES = [
    ("convolution", ("conv",)),
    ("normalisation", ("batch_norm",)),
    ("optimiser", ("adam",)),
    ("neuron loop", ("lifsequence", "_lif", "lif_", "kernel")),
    ("random numbers", ("normal", "rand", "bernoulli")),
    ("linear", ("addmm", "linear", "::mm", "bmm", "matmul")),
    ("loss", ("loss",)),
]


def _before_34() -> None:
    """Our step as it was before issue 34 (module docstring): patched in, this child process only."""
    import torch

    from neurocode.models.parts.cores import SpikingCore
    from neurocode.neurons import LearnableNoisyLIF
    from neurocode.neurons.counter_rng import SeededGaussian, draw_seeds

    own_current = SpikingCore.layer_current

    def mixed_layout_current(self, i, x, n_trials):
        if i != 1:
            return own_current(self, i, x, n_trials)
        # channels-last into BatchNorm, as the event conv wrote its output then
        y = self.conv2(self.pool(x.flatten(0, 1))).contiguous(memory_format=torch.channels_last)
        y = self.pool(self.norm(y))
        return y.view(x.shape[0], -1, *y.shape[1:])

    def per_step_graph(self, x, state=None, *, generator=None, return_potential=False, return_state=False):
        g = generator if generator is not None else self.generator
        z = SeededGaussian(draw_seeds(x.shape[0], g), 0.0, 1.0).materialize(x.shape, x.dtype, x.device)
        sigma, u, spikes, ubars = self.log_sigma.exp(), self._initial_state(x, state), [], []
        for t in range(x.shape[0]):
            ubar = x[t] if u is None else x[t] + self.tau * u
            p = torch.special.ndtr((ubar - self.v_th) / sigma)
            o = (ubar >= self.v_th + sigma.detach() * z[t]).to(x.dtype) + (p - p.detach())
            u = ubar * (1 - o)
            spikes.append(o)
            ubars.append(ubar)
        return self._finish(torch.stack(spikes), torch.stack(ubars) if return_potential else None, u,
                            return_potential, return_state)

    SpikingCore.layer_current = mixed_layout_current
    LearnableNoisyLIF.forward = per_step_graph


def _child(model: str, variant: str, steps: int, threads: int, profile: bool, preset: str = "paper",
           trained: int = 0) -> dict:
    import resource
    import statistics
    import time

    import torch

    from neurocode.fitting import build_model, make_config, prepare_data, steps_per_epoch
    from neurocode.models import calibrate_dense
    from neurocode.models.retina import calibrate_spiking
    from neurocode.neurons._kernels import caching_scope

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # as neurocode.fitting.train does
    torch.manual_seed(0)
    overrides = {"model_trials": 30, "loss": "paired"} if variant == "baseline" else {}
    if variant == "before-34":
        _before_34()
    config = make_config(model, preset, threads=threads, **overrides)
    data = prepare_data(config)
    gen = torch.Generator().manual_seed(0)
    m = build_model(config, data.n_cells, generator=gen if model == "nsnn" else None)
    spiking = m.spec.core == "spiking"  # the paper's NSNN / DSNN
    if variant == "baseline" and spiking:
        front = m.front_end

        def every_step(images, _front=front):
            conv1, T = _front.conv1, _front.gain.shape[0]
            drive = conv1(images.repeat(T, 1, 1, 1)).view(T, images.shape[0], *conv1(images[:1]).shape[1:])
            return torch.addcmul(_front.offset[:, None, :, None, None], _front.gain[:, None, :, None, None], drive)

        front.drive = every_step
    if variant in ("baseline", "dense-conv2") and spiking:
        m.core.conv2.max_density = 0.0  # torch's dense convolution of the spike maps
    if spiking:  # the fit's start: the layers' rates calibrated (the values matter for the spike densities)
        with torch.no_grad():
            images = data.images[torch.as_tensor(data.train_idx[:4])]
            if m.spec.readout == "dense":
                calibrate_dense(m, images, iterations=6, n_trials=1)
            else:
                calibrate_spiking(m, images, hidden_rate=config.hidden_rate, output_rate=torch.full((data.n_cells,), 0.07), n_trials=1)
    opt = torch.optim.Adam(m.parameters(), lr=config.lr, fused=variant != "before-34")  # as neurocode.fitting.train
    items, batch = config.kind.training_items(config, data)
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(1))

    # "same shapes": a DSNN stepped like the NSNN, computing K = 8 (identical) trials
    step_config = dataclasses.replace(config, model="nsnn") if variant == "same-shapes" else config

    @caching_scope  # as a fit's steps: inside neurocode's caching-allocator scope (neurocode/memory.py)
    def step(i):
        b = order[(i * batch) % len(items):][:batch]
        loss = step_config.kind.loss(step_config, m, data, items[b], torch.device("cpu"), gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(trained + 1):
        step(i)
    times, system = [], []
    for i in range(trained + 1, trained + steps + 1):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_stime, time.perf_counter()
        step(i)
        times.append(time.perf_counter() - t0)
        system.append(resource.getrusage(resource.RUSAGE_SELF).ru_stime - r0)
    out = {
        "step_s": statistics.median(times),
        "system_s": statistics.median(system),
        "steps_per_epoch": steps_per_epoch(config, data),
        "epochs": config.epochs,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    }
    out["epoch_s"] = out["step_s"] * out["steps_per_epoch"]
    if profile:
        from torch.profiler import ProfilerActivity, profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            step(trained + steps + 1)
        shares = {name: 0.0 for name, _ in CATEGORIES}
        shares["other"] = 0.0
        total = 0.0
        for evt in prof.key_averages():
            if evt.key.startswith("ProfilerStep") or evt.key.startswith("Optimizer"):
                continue
            t = evt.self_cpu_time_total
            total += t
            key = evt.key.lower()
            for name, needles in CATEGORIES:
                if any(n in key for n in needles):
                    shares[name] += t
                    break
            else:
                shares["other"] += t
        out["profile"] = {k: v / total for k, v in shares.items()} if total else {}
    return out


def _run(model, variant, steps, threads, profile, preset="paper", trained=0, checkout=None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if checkout is not None:  # another commit's neurocode, this file's measurement
        env["PYTHONPATH"] = os.pathsep.join([str(checkout)] + env.get("PYTHONPATH", "").split(os.pathsep))
    if variant == "baseline":
        env["NEUROCODE_NO_KERNEL"] = "1"
    if variant == "torch-allocator":
        env["NEUROCODE_CACHING_ALLOCATOR"] = "0"
    cmd = [sys.executable, __file__, "--child", model, variant, str(steps), str(threads), str(int(profile)), preset,
           str(trained)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{model}/{variant} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--models", nargs="+", default=["nsnn", "dsnn", "cnn"])
    p.add_argument("--profile", action="store_true")
    p.add_argument("--preset", choices=("paper", "quick"), default="paper")
    p.add_argument("--trained", type=int, default=0, metavar="N", help="training steps before the timed ones")
    p.add_argument("--against", metavar="REV", help="also time our step as the commit REV has it")
    p.add_argument("--child", nargs=7, help=argparse.SUPPRESS)
    add_isa_argument(p)
    args = p.parse_args(argv)
    apply_isa(args)
    if args.child:
        model, variant, steps, threads, profile, preset, trained = args.child
        print(json.dumps(_child(model, variant, int(steps), int(threads), bool(int(profile)), preset, int(trained))))
        return
    print(machine_line(args.threads), flush=True)
    with contextlib.ExitStack() as stack:
        checkout = stack.enter_context(_worktree(args.against)) if args.against else None
        rows = _measure(args, checkout)
    _report(args, rows)


@contextlib.contextmanager
def _worktree(rev: str):
    """A temporary detached git worktree of ``rev`` (removed afterwards)."""
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="fit_step-") as tmp:
        path = Path(tmp) / "checkout"
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(path), rev], check=True,
                       capture_output=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(path)], capture_output=True)


def _measure(args, checkout) -> dict:
    rows = {}
    run = functools.partial(_run, threads=args.threads, preset=args.preset, trained=args.trained)
    for model in args.models:
        rows[(model, "ours")] = run(model, "ours", args.steps, profile=args.profile)
        if checkout is not None:
            rows[(model, args.against)] = run(model, "ours", args.steps, profile=args.profile, checkout=checkout)
        if model == "nsnn":
            rows[(model, "before-34")] = run(model, "before-34", args.steps, profile=args.profile)
        if model != "cnn" and args.preset == "paper":  # the straightforward baseline is the paper's network
            rows[(model, "baseline")] = run(model, "baseline", max(1, args.steps - 1), profile=False)
        if model != "cnn":
            rows[(model, "dense-conv2")] = run(model, "dense-conv2", args.steps, profile=False)
        rows[(model, "torch-allocator")] = run(model, "torch-allocator", args.steps, profile=False)
        if model == "dsnn":
            rows[(model, "same-shapes")] = run(model, "same-shapes", args.steps, profile=False)
    return rows


def _report(args, rows: dict) -> None:
    trained = f" after {args.trained} training steps" if args.trained else ""
    print(f"{args.preset} preset, CPU, {args.threads} threads; median of {args.steps} steps after a warm-up{trained}\n")
    print(f"{'model':6} {'variant':15} {'step s':>8} {'system s':>9} {'steps/ep':>9} {'epoch s':>9} {'epochs':>7}"
          f" {'train min':>10} {'peak GB':>8}")
    for (model, variant), r in rows.items():
        print(f"{model:6} {variant:15} {r['step_s']:8.3f} {r['system_s']:9.3f} {r['steps_per_epoch']:9d} "
              f"{r['epoch_s']:9.1f} {r['epochs']:7d} {r['epoch_s'] * r['epochs'] / 60:10.2f} {r['peak_rss_gb']:8.2f}")
    print()
    for model in args.models:
        if (model, args.against) in rows:
            ratio = rows[(model, args.against)]["step_s"] / rows[(model, "ours")]["step_s"]
            print(f"{model}: step at {args.against} / our step = {ratio:.2f}x")
        if (model, "before-34") in rows:
            ratio = rows[(model, "before-34")]["step_s"] / rows[(model, "ours")]["step_s"]
            print(f"{model}: step before issue 34 / our step = {ratio:.2f}x")
        if (model, "baseline") in rows:
            ratio = rows[(model, "baseline")]["step_s"] / rows[(model, "ours")]["step_s"]
            print(f"{model}: baseline step / our step = {ratio:.1f}x")
        if (model, "dense-conv2") in rows:
            ratio = rows[(model, "dense-conv2")]["step_s"] / rows[(model, "ours")]["step_s"]
            print(f"{model}: step with a dense conv2 / our step (event-driven conv2) = {ratio:.2f}x")
        if (model, "torch-allocator") in rows:
            ratio = rows[(model, "torch-allocator")]["step_s"] / rows[(model, "ours")]["step_s"]
            print(f"{model}: step with torch's allocator / our step (caching allocator) = {ratio:.2f}x")
    if ("nsnn", "ours") in rows and ("dsnn", "same-shapes") in rows:
        print("NSNN step / DSNN step at the same shapes (both K = 8 trials per image): "
              f"{rows[('nsnn', 'ours')]['step_s'] / rows[('dsnn', 'same-shapes')]['step_s']:.2f}")
        print("NSNN step / DSNN step as fitted (a DSNN's trials are identical, it computes one): "
              f"{rows[('nsnn', 'ours')]['step_s'] / rows[('dsnn', 'ours')]['step_s']:.2f}")
    if args.profile:
        print("\nprofile of one step (share of CPU self time):")
        for (model, variant), r in rows.items():
            if "profile" in r:
                shares = ", ".join(f"{k} {v:.0%} ({v * r['step_s'] * 1e3:.0f} ms)" for k, v in r["profile"].items())
                print(f"  {model} {variant}: {shares}")


if __name__ == "__main__":
    main()
