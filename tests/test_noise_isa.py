"""The kernel's builds per instruction set (avx512 / avx2 / scalar): how one is chosen, and that
every build the machine can run draws the same noise stream and gives the same spikes.

The float32 stream's log/cos/sin (csrc/lif.cpp: nc_logf, nc_sincosf) are plain float arithmetic,
so they round alike in every build; they are tested here on every input the stream can give them
(2^24 each), as is the bound on the approximate draw from which the forward pass decides (exactly
where the bound leaves the decision open).
"""

import math
import os
import subprocess
import sys

import pytest
import torch

from neurocode.neurons import _kernels

needs_kernel = pytest.mark.skipif(_kernels.get_library() is None, reason=f"no kernel: {_kernels.failure()}")


# ----------------------------------------------------------------------------------------
# choosing the build
# ----------------------------------------------------------------------------------------


def test_the_best_build_the_cpu_runs_is_the_default(monkeypatch):
    monkeypatch.delenv(_kernels.ISA_VARIABLE, raising=False)
    supported = _kernels.supported_isas()
    assert supported and _kernels.isa() == supported[0]
    if _kernels._is_x86_64():
        assert set(supported) <= set(_kernels.ISAS)
        assert "scalar" in supported


@needs_kernel
def test_the_loaded_library_is_the_build_isa_names():
    assert _kernels.get_library().isa() == _kernels.isa()
    assert _kernels.isa() in _kernels.build_directory().name


def test_neurocode_isa_names_a_build_or_is_an_error(monkeypatch):
    if not _kernels._is_x86_64():
        pytest.skip("x86-64 builds only")
    monkeypatch.setenv(_kernels.ISA_VARIABLE, "sse9")
    with pytest.raises(ValueError, match=r"NEUROCODE_ISA='sse9'.*avx512, avx2, scalar"):
        _kernels.isa()
    monkeypatch.setenv(_kernels.ISA_VARIABLE, "AVX2 ")
    if "avx2" in _kernels.supported_isas():
        assert _kernels.isa() == "avx2"
    # a CPU without AVX-512 (its flags line without the avx512 ones) cannot run that build
    flags = "flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt avx avx2 fma bmi1 bmi2 f16c movbe\n"
    monkeypatch.setattr(_kernels, "_cpu_key", lambda: flags)
    assert _kernels.supported_isas() == ("avx2", "scalar")
    monkeypatch.setenv(_kernels.ISA_VARIABLE, "avx512")
    with pytest.raises(ValueError, match="NEUROCODE_ISA=avx512: this CPU .* cannot run that build; it runs avx2, scalar"):
        _kernels.isa()
    monkeypatch.delenv(_kernels.ISA_VARIABLE)
    assert _kernels.isa() == "avx2"
    # each build has its own directory
    assert len({_kernels.build_directory(name).name for name in _kernels.ISAS}) == 3


# ----------------------------------------------------------------------------------------
# the float32 stream's functions, on all their inputs
# ----------------------------------------------------------------------------------------


def _ulps(got: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """|got - ref| in float32 ulps of ref (ref in float64)."""
    e = torch.frexp(ref.float())[1]
    ulp = torch.ldexp(torch.ones_like(ref), e - 24).clamp_min(2.0 ** -149)
    return (got.double() - ref).abs() / ulp


def _all_uniforms():
    k = torch.arange(1, (1 << 24) + 1, dtype=torch.int64)
    u1 = k.float() * 2.0 ** -24  # K 2^-24, K = 1 .. 2^24: (0, 1]
    u2 = (k - 1).float() * 2.0 ** -24  # A 2^-24, A = 0 .. 2^24 - 1: [0, 1)
    return u1, u2


def _approx_bound(ops, u1, u2) -> float:
    """max |z' - z| over all (K, A), from the separate maxima: z' = r' c' with r' = approx r / sqrt 2,
    c' = approx sqrt 2 cos (and sin); plus the roundings of both products."""
    s2 = math.sqrt(2.0)
    er = (ops.stream_math(u1, 3).double() - ops.stream_math(u1, 4).double() / s2).abs().max().item()
    ec = max((ops.stream_math(u2, 5).double() - s2 * ops.stream_math(u2, 7).double()).abs().max().item(),
             (ops.stream_math(u2, 6).double() - s2 * ops.stream_math(u2, 8).double()).abs().max().item())
    r_max = math.sqrt(-2.0 * math.log(2.0 ** -24))
    return er * (s2 + ec) + r_max / s2 * ec + 2 * 2.0 ** -21


@needs_kernel
def test_stream_log_cos_sin_on_every_input_they_get():
    """log within 1 ulp on the 2^24 values of u1, cos and sin within 2 ulp on the 2^24 angles
    (float64 references); and the approximate draw within APPROX_Z of the exact one."""
    ops = _kernels.get_library()
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        u1, u2 = _all_uniforms()
        a = 6.2831853071795865 * u2  # the stream's rounded angles
        assert _ulps(ops.stream_math(u1, 0), u1.double().log()).max() <= 1.0
        assert _ulps(ops.stream_math(a, 1), a.double().cos()).max() <= 2.0
        assert _ulps(ops.stream_math(a, 2), a.double().sin()).max() <= 2.0
        # the radius: the correctly rounded sqrt of -2 log u1 (float64's sqrt rounded to float32 is;
        # torch's float32 sqrt here is not, on 0.7 % of these)
        assert torch.equal(ops.stream_math(u1, 4), (-2.0 * ops.stream_math(u1, 0).double()).sqrt().float())
        assert _approx_bound(ops, u1, u2) <= ops.stream_math(u1[:1], 9).item()
    finally:
        torch.set_num_threads(old)


# ----------------------------------------------------------------------------------------
# every build: the same numbers, spikes and gradients
# ----------------------------------------------------------------------------------------

_RUN_ONE_BUILD = r"""
import math, sys, torch
from neurocode.neurons import NoisyLIF, _kernels
from neurocode.noise import Gaussian
sys.path.insert(0, sys.argv[3])
import test_noise_isa as t

ops = _kernels.get_library()
assert ops is not None, _kernels.failure()
assert ops.isa() == sys.argv[1], (ops.isa(), sys.argv[1])
torch.set_num_threads(2)
out = {"isa": ops.isa()}
seeds = torch.randint(-2**63, 2**63 - 1, (3,), generator=torch.Generator().manual_seed(5))
for dt in (torch.float32, torch.float64):
    out[f"fill_{dt}"] = ops.gauss_fill(seeds, 1_000_003, 0.25, 0.7, dt)
    for placement in ("escape", "membrane"):
        g = torch.Generator().manual_seed(7)
        x = (1.3 * torch.rand(20, 8, 3001, generator=g, dtype=dt)).requires_grad_()
        R = torch.randn(20, 8, 3001, generator=g, dtype=dt)
        s = NoisyLIF(Gaussian(0.2), placement=placement)(x, generator=torch.Generator().manual_seed(8))
        (s * R).sum().backward()
        out[f"spikes_{dt}_{placement}"], out[f"grad_{dt}_{placement}"] = s.detach(), x.grad
torch.set_num_threads(1)
u1, u2 = t._all_uniforms()
out["approx_bound"] = t._approx_bound(ops, u1, u2)
out["APPROX_Z"] = ops.stream_math(u1[:1], 9).item()
torch.save(out, sys.argv[2])
"""


@needs_kernel
def test_every_build_draws_the_same_stream_and_spikes(tmp_path):
    """Each build this CPU runs (NEUROCODE_ISA, a fresh process each, 2 threads): float32 draws
    and spikes bit for bit the same in all of them, and float32 gradients too between avx512 and
    avx2 (the scalar build's differ by ~1e-6: the backward pass's exp is libmvec's, whose SSE
    version rounds unlike the AVX2 and AVX-512 ones); float64 draws within 2 ulp (libmvec's
    float64 log rounds differently in its three versions), spikes the same, gradients within
    float64 rounding; the approximate float32 draw within its bound in each build (FMA or not)."""
    builds = _kernels.supported_isas()
    if len(builds) < 2:
        pytest.skip(f"this CPU runs one build only: {builds}")
    res = {}
    env = {k: v for k, v in os.environ.items() if k != _kernels.ISA_VARIABLE}
    for name in builds:
        path = tmp_path / f"{name}.pt"
        p = subprocess.run([sys.executable, "-c", _RUN_ONE_BUILD, name, str(path), os.path.dirname(__file__)],
                           env={**env, _kernels.ISA_VARIABLE: name}, capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, p.stderr[-3000:]
        res[name] = torch.load(path)
    ref = res[builds[0]]
    for name in builds:
        r = res[name]
        assert r["approx_bound"] <= r["APPROX_Z"], name
        assert torch.equal(r["fill_torch.float32"], ref["fill_torch.float32"]), name
        f64 = r["fill_torch.float64"]
        assert (f64 - ref["fill_torch.float64"]).abs().max() <= 2 * torch.finfo(torch.float64).eps * (1 + f64.abs().max())
        for dt in ("torch.float32", "torch.float64"):
            for placement in ("escape", "membrane"):
                key = f"{dt}_{placement}"
                assert 0.1 < ref[f"spikes_{key}"].mean() < 0.6
                assert torch.equal(r[f"spikes_{key}"], ref[f"spikes_{key}"]), (name, key)
                grad, want = r[f"grad_{key}"], ref[f"grad_{key}"]
                if dt == "torch.float64":  # libmvec's float64 exp and log: an ulp here and there
                    torch.testing.assert_close(grad, want, rtol=1e-9, atol=1e-12)
                elif "scalar" in (name, builds[0]):  # libmvec's SSE expf rounds unlike its AVX2 one
                    torch.testing.assert_close(grad, want, rtol=1e-4, atol=4e-6)  # measured: 1e-6 abs
                else:  # the AVX2 and AVX-512 expf round alike: the same bits
                    assert torch.equal(grad, want), (name, key)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_decisions_from_the_approximate_draw_are_the_exact_streams(dtype):
    """The kernel's escape decisions (float32: from the approximate draw, exactly where it could
    matter) equal those against the exact thresholds (gauss_fill, through the torch loop), at odd
    sizes, several threads, and noise scales of 0 and 1e6."""
    from neurocode.neurons.counter_rng import SeededGaussian
    from neurocode.neurons.functional import lif_sequence
    from neurocode.noise import Gaussian

    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for n in (1, 17, 7007, 3 * 4097 + 5):
            g = torch.Generator().manual_seed(n)
            x = 1.4 * torch.rand(9, n, generator=g, dtype=dtype)
            seeds = torch.randint(-2**63, 2**63 - 1, (9,), generator=g)
            for sigma in (0.3, 0.0, 1e6):
                thr = SeededGaussian(seeds, 1.0, sigma)
                k, t = (lif_sequence(x, tau=0.6, v_th=1.0, spike_grad=Gaussian(0.3).pdf, threshold=thr, backend=b)[0]
                        for b in ("kernel", "torch"))
                assert torch.equal(k, t), (n, sigma)
            # potentials at the exact thresholds and one ulp below: every decision is a near one
            th = SeededGaussian(seeds, 1.0, 0.3).materialize((9, n), dtype)
            for x0, fire in ((th, 1.0), (torch.nextafter(th, torch.full_like(th, -1.0)), 0.0)):
                k = lif_sequence(x0, tau=0.6, v_th=1.0, spike_grad=Gaussian(0.3).pdf,
                                 threshold=SeededGaussian(seeds, 1.0, 0.3), backend="kernel")[0]
                assert (k[0] == fire).all(), (n, fire)
    finally:
        torch.set_num_threads(old)
