"""Fused C++ kernels of the LIF time loop (CPU, float32/float64), built on first use.

:func:`neurocode.neurons.functional.lif_sequence` calls these when it can (CPU tensors,
float32/float64, a built-in spike-gradient family) and falls back to its pure-torch loop
otherwise. The source below is plain C++ with a C ABI, no torch headers: it compiles in
about a second with the system C++ compiler and is called through :mod:`ctypes` on the
tensors' data pointers. Threads are ``std::thread`` (``torch.get_num_threads()`` of
them), not OpenMP, so that the process never holds a second OpenMP runtime next to
torch's.

Layout: every tensor is seen as ``[T, N]`` (time-major, all neurons flattened). Each
thread owns a contiguous range of neurons and walks it in blocks of ``BLK`` neurons; for
a block the time loop is outermost and the potentials stay in a small local array, so
every step reads one row of ``x`` and writes one row of spikes and ``ubar``
(auto-vectorised over the block). The backward pass walks time backwards the same way,
recomputing the spike-gradient density in-register and applying the recurrence
``c[t] = g[t] * gs[t] + gu[t] + tau * c[t+1] * (keep[t] - w[t] * g[t])``.

The arithmetic replicates the torch path operation by operation (same order, no implicit
FMA contraction: ``-ffp-contract=off``; an explicit ``fma`` where torch's ``add(alpha=)``
kernel uses one) so the forward outputs agree to the last bit and the gradients up to the
exp/sigmoid implementations (libmvec vs torch's, a few ulp in the density).

The compiled library is cached under torch's extension directory
(``torch.utils.cpp_extension.get_default_build_root()`` or ``$TORCH_EXTENSIONS_DIR``),
keyed by a hash of the source, the flags and the CPU's feature flags (the code is built
with ``-march=native``). Set ``NEUROCODE_NO_KERNEL=1`` to disable the kernels.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import warnings

# Spike-gradient families understood by the kernel (``_kernel_spec()`` of the built-in
# noise models and surrogates returns one of these names and up to three parameters).
FAMILIES = {"gauss": 0, "logistic": 1, "sigmoid": 2, "box": 3, "triangle": 4}

_SOURCE = r"""
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>
#include <algorithm>
#include <sys/mman.h>

// Vector variants of exp from glibc's libmvec (declared by <math.h> only under -ffast-math,
// which we do not use: it would change the arithmetic).
extern "C" {
__attribute__((simd("notinbranch"))) double exp(double) noexcept;
__attribute__((simd("notinbranch"))) float expf(float) noexcept;
__attribute__((simd("notinbranch"))) double log(double) noexcept;
__attribute__((simd("notinbranch"))) float logf(float) noexcept;
__attribute__((simd("notinbranch"))) double cos(double) noexcept;
__attribute__((simd("notinbranch"))) float cosf(float) noexcept;
__attribute__((simd("notinbranch"))) double sin(double) noexcept;
__attribute__((simd("notinbranch"))) float sinf(float) noexcept;
}

namespace {

// Fresh output buffers are page-faulted in as they are first written; ask for transparent
// huge pages (THP "madvise" mode) so that this costs ~512x fewer faults. Harmless elsewhere.
static void advise_huge(void* p, size_t bytes) {
#ifdef MADV_HUGEPAGE
    const uintptr_t H = uintptr_t(1) << 21;
    uintptr_t a = (reinterpret_cast<uintptr_t>(p) + H - 1) & ~(H - 1);
    uintptr_t b = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(H - 1);
    if (b > a) madvise(reinterpret_cast<void*>(a), b - a, MADV_HUGEPAGE);
#endif
}

constexpr int64_t BLK = 512;

template <typename S>
static inline S clampz(S z) {
    const S m = S(1e4);
    return z < -m ? -m : (z > m ? m : z);
}

template <typename S>
static inline S sigm(S z) { return S(1) / (S(1) + std::exp(-z)); }

// Spike-gradient density at d = ubar - v_th, operation for operation as in neurocode.noise.
template <typename S, int FAM>
static inline S density(S d, S p0, S p1, S p2) {
    if (FAM == 0) {            // gauss: exp((-p1 * z) * z) * p2, z = clamp(d / p0)
        S z = clampz(d / p0);
        return std::exp((-p1 * z) * z) * p2;
    } else if (FAM == 1) {     // logistic noise: sig(z) * sig(-z) / p0, z = clamp(d / p0)
        S z = clampz(d / p0);
        return (sigm(z) * sigm(-z)) / p0;
    } else if (FAM == 2) {     // sigmoid surrogate: (p0 * sig(z)) * sig(-z), z = clamp(d * p0)
        S z = clampz(d * p0);
        return (p0 * sigm(z)) * sigm(-z);
    } else if (FAM == 3) {     // box: 1[|d| <= p0] / p1
        return (std::fabs(d) <= p0 ? S(1) : S(0)) / p1;
    } else {                   // triangle: max(1 - |d| / p0, 0) / p0
        S r = S(1) - std::fabs(d) / p0;
        return (r < S(0) ? S(0) : r) / p0;
    }
}

// Counter-based Gaussian noise: element i of step t is a function of (seeds[t], i) only.
// Elements 2m and 2m+1 form pair m: uniforms (u1, u2) from SplitMix64 outputs of the stream
// seeded with seeds[t] (the (m+1)-th output in float32, outputs 2m+1 and 2m+2 in float64),
// then Box-Muller with both branches: z[2m] = r cos(2 pi u2), z[2m+1] = r sin(2 pi u2),
// r = sqrt(-2 log u1) -- two independent exact N(0, 1) samples per (log, sqrt, hash).
// float32: 24-bit uniforms u1 in (0, 1], u2 in [0, 1), like torch.normal's float path
// (|z| <= sqrt(48 ln 2) ~ 5.77); float64: 53-bit uniforms (|z| <= sqrt(106 ln 2) ~ 8.57).
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
constexpr uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL;

// (u1, 2 pi u2) of pair m; r = sqrt(-2 log u1) is taken in a separate float-only loop (in a
// loop that also holds the 64-bit hash GCC calls the scalar log, not libmvec's).
static inline void pair_uniforms(uint64_t seed, int64_t m, float& u1, float& a) {
    const uint64_t h = mix64(seed + uint64_t(m + 1) * GOLDEN);
    u1 = float(uint32_t(h >> 40) + 1u) * 5.9604644775390625e-08f;                   // (0, 1]
    const float u2 = float(uint32_t(h >> 8) & 0xFFFFFFu) * 5.9604644775390625e-08f;  // [0, 1)
    a = 6.2831853071795865f * u2;
}

static inline void pair_uniforms(uint64_t seed, int64_t m, double& u1, double& a) {
    const uint64_t h1 = mix64(seed + uint64_t(2 * m + 1) * GOLDEN);
    const uint64_t h2 = mix64(seed + uint64_t(2 * m + 2) * GOLDEN);
    u1 = double((h1 >> 11) + 1) * 1.1102230246251565e-16;        // (0, 1]
    const double u2 = double(h2 >> 11) * 1.1102230246251565e-16;  // [0, 1)
    a = 6.283185307179586 * u2;
}

template <typename S>
static inline S radius(S u1) { return std::sqrt(S(-2) * std::log(u1)); }

// out[k] = loc + sigma * z[i0 + k], k < n (any i0, n >= 0): pairs are generated whole, in
// vectorised loops over pairs (libmvec log/cos/sin), then interleaved. cos and sin run in
// separate loops on reloaded angles: GCC would otherwise fuse them into a scalar sincos call.
// (Everything is a pure function of (seed, i): the blocking never changes the numbers.)
constexpr int64_t NBLK = 256;  // pairs per chunk
template <typename S>
static inline void fill_normals(uint64_t seed, int64_t i0, int64_t n, S loc, S sigma, S* __restrict out) {
    if (n <= 0) return;
    if (i0 & 1) {  // odd start: the sine branch of pair (i0 - 1) / 2
        S u1, a;
        pair_uniforms(seed, i0 >> 1, u1, a);
        out[0] = loc + sigma * (radius(u1) * std::sin(a));
        ++i0; ++out; --n;
    }
    alignas(64) S rr[NBLK];
    alignas(64) S aa[NBLK];
    alignas(64) S zc[NBLK];
    alignas(64) S zs[NBLK];
    const int64_t m0 = i0 >> 1;
    const int64_t np = (n + 1) >> 1;
    for (int64_t j0 = 0; j0 < np; j0 += NBLK) {
        const int64_t k = std::min(NBLK, np - j0);
#pragma omp simd
        for (int64_t j = 0; j < k; ++j) pair_uniforms(seed, m0 + j0 + j, rr[j], aa[j]);
#pragma omp simd
        for (int64_t j = 0; j < k; ++j) rr[j] = radius(rr[j]);
#pragma omp simd
        for (int64_t j = 0; j < k; ++j) zc[j] = loc + sigma * (rr[j] * std::cos(aa[j]));
#pragma omp simd
        for (int64_t j = 0; j < k; ++j) zs[j] = loc + sigma * (rr[j] * std::sin(aa[j]));
        S* o = out + 2 * j0;
        const int64_t kk = std::min(k, (n >> 1) - j0);  // complete pairs in this chunk
        for (int64_t j = 0; j < kk; ++j) { o[2 * j] = zc[j]; o[2 * j + 1] = zs[j]; }
        if (kk < k) o[2 * kk] = zc[kk];  // odd end: cosine branch only
    }
}

template <typename F>
static void run_threads(int64_t N, int nthreads, F&& body) {
    // Split [0, N) into nthreads contiguous ranges aligned to 16 neurons.
    int64_t nt = std::max<int64_t>(1, std::min<int64_t>(nthreads, (N + 4095) / 4096));
    if (nt <= 1) { body(0, N); return; }
    int64_t chunk = ((N + nt - 1) / nt + 15) / 16 * 16;
    std::vector<std::thread> pool;
    for (int64_t k = 1; k < nt; ++k) {
        int64_t a = k * chunk, b = std::min(N, a + chunk);
        if (a < b) pool.emplace_back([&body, a, b] { body(a, b); });
    }
    body(0, std::min(N, chunk));
    for (auto& th : pool) th.join();
}

// mode: 0 deterministic (threshold v_th), 1 escape (per-step thresholds thr), 2 membrane (eps),
// 3 escape with Gaussian thresholds v_th + sigma * z drawn here from seeds[t] (see fill_normals)
template <typename S>
static void forward(const S* x, int64_t sx, const S* u0, const S* thr, const S* eps, S* spikes, S* ubar,
                    S* ulast, int64_t T, int64_t N, double tau_, double vth_, int mode, int nthreads,
                    const int64_t* seeds, double sigma_) {
    const S tau = S(tau_), vth = S(vth_), sigma = S(sigma_);
    advise_huge(spikes, sizeof(S) * T * N);
    advise_huge(ubar, sizeof(S) * T * N);
    run_threads(N, nthreads, [&](int64_t lo, int64_t hi) {
        alignas(64) S w[BLK];
        alignas(64) S keep[BLK];
        alignas(64) S th[BLK];
        for (int64_t b0 = lo; b0 < hi; b0 += BLK) {
            const int64_t n = std::min(BLK, hi - b0);
            for (int64_t t = 0; t < T; ++t) {
                const S* xt = x + t * sx + b0;
                S* ut = ubar + t * N + b0;
                S* st = spikes + t * N + b0;
                if (t == 0) {
                    // torch.add(x, u0, alpha=tau) is a fused multiply-add in torch's CPU kernel
                    if (u0) { for (int64_t i = 0; i < n; ++i) ut[i] = std::fma(tau, u0[b0 + i], xt[i]); }
                    else { for (int64_t i = 0; i < n; ++i) ut[i] = xt[i]; }
                } else {
                    // torch.addcmul(x, w, keep, value=tau): x + (tau * w) * keep
                    for (int64_t i = 0; i < n; ++i) ut[i] = xt[i] + (tau * w[i]) * keep[i];
                }
                if (mode == 0) {
                    for (int64_t i = 0; i < n; ++i) {
                        S k = ut[i] < vth ? S(1) : S(0);
                        keep[i] = k; w[i] = ut[i]; st[i] = S(1) - k;
                    }
                } else if (mode == 1) {
                    const S* tht = thr + t * N + b0;
                    for (int64_t i = 0; i < n; ++i) {
                        S k = ut[i] < tht[i] ? S(1) : S(0);
                        keep[i] = k; w[i] = ut[i]; st[i] = S(1) - k;
                    }
                } else if (mode == 3) {
                    fill_normals(uint64_t(seeds[t]), b0, n, vth, sigma, th);
                    for (int64_t i = 0; i < n; ++i) {
                        S k = ut[i] < th[i] ? S(1) : S(0);
                        keep[i] = k; w[i] = ut[i]; st[i] = S(1) - k;
                    }
                } else {
                    const S* et = eps + t * N + b0;
                    for (int64_t i = 0; i < n; ++i) {
                        S ww = ut[i] + et[i];
                        S k = ww < vth ? S(1) : S(0);
                        keep[i] = k; w[i] = ww; st[i] = S(1) - k;
                    }
                }
            }
            for (int64_t i = 0; i < n; ++i) ulast[b0 + i] = w[i] * keep[i];
        }
    });
}

// gs/gu: upstream gradients of spikes/ubar viewed as [T, N] with strides (s*t, s*n), s*n in {0, 1};
// null when absent. gl: upstream gradient of u_last [N] or null. Every inner loop is a
// plain elementwise loop over the block so that it vectorises (exp through libmvec).
template <typename S, int FAM>
static void backward(const S* ubar, const S* spikes, const S* eps, const S* gs, int64_t sgt, int64_t sgn,
                     const S* gu, int64_t sut, int64_t sun, const S* gl, S* c, int64_t T, int64_t N,
                     double tau_, double vth_, double p0_, double p1_, double p2_, int detach, int nthreads) {
    const S tau = S(tau_), vth = S(vth_), p0 = S(p0_), p1 = S(p1_), p2 = S(p2_);
    advise_huge(c, sizeof(S) * T * N);
    run_threads(N, nthreads, [&](int64_t lo, int64_t hi) {
        alignas(64) S cn[BLK];
        alignas(64) S g[BLK];
        alignas(64) S dr[BLK];
        alignas(64) S v[BLK];
        for (int64_t b0 = lo; b0 < hi; b0 += BLK) {
            const int64_t n = std::min(BLK, hi - b0);
            for (int64_t t = T - 1; t >= 0; --t) {
                const S* __restrict ut = ubar + t * N + b0;
                const S* __restrict st = spikes + t * N + b0;
                S* __restrict ct = c + t * N + b0;
#pragma omp simd
                for (int64_t i = 0; i < n; ++i) g[i] = density<S, FAM>(ut[i] - vth, p0, p1, p2);
                if (detach) {
                    for (int64_t i = 0; i < n; ++i) dr[i] = S(1) - st[i];
                } else if (eps) {
                    const S* __restrict et = eps + t * N + b0;
                    for (int64_t i = 0; i < n; ++i) dr[i] = (S(1) - st[i]) + S(-1) * ((ut[i] + et[i]) * g[i]);
                } else {
                    for (int64_t i = 0; i < n; ++i) dr[i] = (S(1) - st[i]) + S(-1) * (ut[i] * g[i]);
                }
                if (gs) {
                    const S* __restrict gst = gs + t * sgt + b0 * sgn;
                    if (sgn) { for (int64_t i = 0; i < n; ++i) v[i] = g[i] * gst[i]; }
                    else { const S a = gst[0]; for (int64_t i = 0; i < n; ++i) v[i] = g[i] * a; }
                } else {
                    for (int64_t i = 0; i < n; ++i) v[i] = S(0);
                }
                if (gu) {
                    const S* __restrict gut = gu + t * sut + b0 * sun;
                    if (sun) { for (int64_t i = 0; i < n; ++i) v[i] = v[i] + gut[i]; }
                    else { const S a = gut[0]; for (int64_t i = 0; i < n; ++i) v[i] = v[i] + a; }
                }
                if (t == T - 1) {
                    if (gl) { for (int64_t i = 0; i < n; ++i) v[i] = v[i] + gl[b0 + i] * dr[i]; }
                } else {
                    for (int64_t i = 0; i < n; ++i) v[i] = v[i] + (tau * cn[i]) * dr[i];
                }
                for (int64_t i = 0; i < n; ++i) { cn[i] = v[i]; ct[i] = v[i]; }
            }
        }
    });
}

template <typename S>
static int backward_dispatch(int fam, const S* ubar, const S* spikes, const S* eps, const S* gs, int64_t sgt,
                             int64_t sgn, const S* gu, int64_t sut, int64_t sun, const S* gl, S* c, int64_t T,
                             int64_t N, double tau, double vth, double p0, double p1, double p2, int detach,
                             int nthreads) {
#define NC_BWD(F) backward<S, F>(ubar, spikes, eps, gs, sgt, sgn, gu, sut, sun, gl, c, T, N, tau, vth, p0, p1, p2, detach, nthreads)
    switch (fam) {
        case 0: NC_BWD(0); return 0;
        case 1: NC_BWD(1); return 0;
        case 2: NC_BWD(2); return 0;
        case 3: NC_BWD(3); return 0;
        case 4: NC_BWD(4); return 0;
        default: return 1;
    }
#undef NC_BWD
}

template <typename S>
static void gauss_fill(const int64_t* seeds, int64_t T, int64_t N, double loc_, double sigma_, S* out, int nthreads) {
    const S loc = S(loc_), sigma = S(sigma_);
    advise_huge(out, sizeof(S) * T * N);
    run_threads(N, nthreads, [&](int64_t lo, int64_t hi) {
        for (int64_t t = 0; t < T; ++t) {
            fill_normals(uint64_t(seeds[t]), lo, hi - lo, loc, sigma, out + t * N + lo);
        }
    });
}

}  // namespace

extern "C" {

int nc_abi_version() { return 2; }

int nc_lif_forward_f32(const float* x, int64_t sx, const float* u0, const float* thr, const float* eps, float* spikes,
                       float* ubar, float* ulast, int64_t T, int64_t N, double tau, double vth, int mode, int nthreads,
                       const int64_t* seeds, double sigma) {
    forward<float>(x, sx, u0, thr, eps, spikes, ubar, ulast, T, N, tau, vth, mode, nthreads, seeds, sigma);
    return 0;
}

int nc_lif_forward_f64(const double* x, int64_t sx, const double* u0, const double* thr, const double* eps,
                       double* spikes, double* ubar, double* ulast, int64_t T, int64_t N, double tau, double vth,
                       int mode, int nthreads, const int64_t* seeds, double sigma) {
    forward<double>(x, sx, u0, thr, eps, spikes, ubar, ulast, T, N, tau, vth, mode, nthreads, seeds, sigma);
    return 0;
}

int nc_gauss_fill_f32(const int64_t* seeds, int64_t T, int64_t N, double loc, double sigma, float* out, int nthreads) {
    gauss_fill<float>(seeds, T, N, loc, sigma, out, nthreads);
    return 0;
}

int nc_gauss_fill_f64(const int64_t* seeds, int64_t T, int64_t N, double loc, double sigma, double* out, int nthreads) {
    gauss_fill<double>(seeds, T, N, loc, sigma, out, nthreads);
    return 0;
}

int nc_lif_backward_f32(int fam, const float* ubar, const float* spikes, const float* eps, const float* gs,
                        int64_t sgt, int64_t sgn, const float* gu, int64_t sut, int64_t sun, const float* gl, float* c,
                        int64_t T, int64_t N, double tau, double vth, double p0, double p1, double p2, int detach,
                        int nthreads) {
    return backward_dispatch<float>(fam, ubar, spikes, eps, gs, sgt, sgn, gu, sut, sun, gl, c, T, N, tau, vth, p0, p1,
                                    p2, detach, nthreads);
}

int nc_lif_backward_f64(int fam, const double* ubar, const double* spikes, const double* eps, const double* gs,
                        int64_t sgt, int64_t sgn, const double* gu, int64_t sut, int64_t sun, const double* gl,
                        double* c, int64_t T, int64_t N, double tau, double vth, double p0, double p1, double p2,
                        int detach, int nthreads) {
    return backward_dispatch<double>(fam, ubar, spikes, eps, gs, sgt, sgn, gu, sut, sun, gl, c, T, N, tau, vth, p0, p1,
                                     p2, detach, nthreads);
}

}  // extern "C"
"""

_FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fopenmp-simd", "-std=c++17", "-shared",
          "-fPIC", "-pthread"]
_LIBS = ["-lmvec"]

_lock = threading.Lock()
_lib = None
_failed: str | None = None


def _cpu_key() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    import platform
    return platform.processor() + platform.machine()


def _build_dir() -> str:
    from torch.utils.cpp_extension import get_default_build_root
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
    return os.path.join(root, "neurocode_lif")


def _compile() -> ctypes.CDLL:
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX)")
    key = hashlib.sha256("\0".join([_SOURCE, cxx, *_FLAGS, *_LIBS, _cpu_key()]).encode()).hexdigest()[:16]
    out_dir = _build_dir()
    path = os.path.join(out_dir, f"lif_kernel_{key}.so")
    if not os.path.exists(path):
        os.makedirs(out_dir, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
            src = os.path.join(tmp, "lif_kernel.cpp")
            with open(src, "w") as f:
                f.write(_SOURCE)
            tmp_so = os.path.join(tmp, "lif_kernel.so")
            proc = subprocess.run([cxx, *_FLAGS, src, "-o", tmp_so, *_LIBS], capture_output=True, text=True, timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"compiling the LIF kernel failed:\n{proc.stderr[-2000:]}")
            os.replace(tmp_so, path)  # atomic: concurrent builders race harmlessly
    lib = ctypes.CDLL(path)
    if lib.nc_abi_version() != 2:
        raise RuntimeError("stale LIF kernel library")
    i64, dbl, ci, vp = ctypes.c_int64, ctypes.c_double, ctypes.c_int, ctypes.c_void_p
    for name in ("nc_lif_forward_f32", "nc_lif_forward_f64"):
        fn = getattr(lib, name)
        fn.argtypes = [vp, i64, vp, vp, vp, vp, vp, vp, i64, i64, dbl, dbl, ci, ci, vp, dbl]
        fn.restype = ci
    for name in ("nc_gauss_fill_f32", "nc_gauss_fill_f64"):
        fn = getattr(lib, name)
        fn.argtypes = [vp, i64, i64, dbl, dbl, vp, ci]
        fn.restype = ci
    for name in ("nc_lif_backward_f32", "nc_lif_backward_f64"):
        fn = getattr(lib, name)
        fn.argtypes = [ci, vp, vp, vp, vp, i64, i64, vp, i64, i64, vp, vp, i64, i64, dbl, dbl, dbl, dbl, dbl, ci, ci]
        fn.restype = ci
    return lib


def get_library() -> ctypes.CDLL | None:
    """The compiled kernel library, or None when disabled or when building it failed.

    Built once per process (and cached on disk across processes); a failure warns once and
    makes every later call use the pure-torch path.
    """
    global _lib, _failed
    if _lib is not None:
        return _lib
    if _failed is not None or os.environ.get("NEUROCODE_NO_KERNEL", "") not in ("", "0"):
        return None
    with _lock:
        if _lib is None and _failed is None:
            try:
                _lib = _compile()
            except Exception as exc:  # noqa: BLE001 -- any failure means: use the torch path
                _failed = f"{type(exc).__name__}: {exc}"
                warnings.warn(f"neurocode: fused LIF kernel unavailable, using the pure-torch loop ({_failed})",
                              RuntimeWarning, stacklevel=3)
    return _lib


@contextlib.contextmanager
def pure_torch(reason: str = "disabled by the caller"):
    """Within the block, every neuron runs the pure-torch loop (torch.normal noise), not the kernel.

    For comparisons of the two paths (benchmarks, tests); the kernel is back afterwards.
    """
    global _lib, _failed
    with _lock:
        saved = _lib, _failed
        _lib, _failed = None, reason
    try:
        yield
    finally:
        with _lock:
            _lib, _failed = saved


def failure() -> str | None:
    """Why the kernel library could not be built (None if it was or has not been tried)."""
    return _failed


def gauss_sample(lib: ctypes.CDLL, seeds, shape, loc: float, sigma: float, dtype):
    """``loc + sigma * z`` [T, ...] with z the kernel's counter-based N(0, 1) of step t drawn
    from ``seeds[t]`` (the same numbers the fused escape loop draws in-register)."""
    import torch
    T = int(seeds.numel())
    out = torch.empty(tuple(shape), dtype=dtype)
    N = out[0].numel() if T else 0
    seeds = seeds.contiguous()
    fill = lib.nc_gauss_fill_f32 if dtype == torch.float32 else lib.nc_gauss_fill_f64
    fill(seeds.data_ptr(), T, N, float(loc), float(sigma), out.data_ptr(), torch.get_num_threads())
    return out
