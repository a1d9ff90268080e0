// neurocode's fused LIF time loop: torch operators neurocode::lif_forward, neurocode::lif_backward
// and neurocode::gauss_fill (CPU, float32/float64). Built on first use by
// torch.utils.cpp_extension.load (see neurocode/neurons/_kernels.py, which also registers the
// autograd formula and the fake-tensor shapes).
//
// Layout: every tensor is seen as [T, N] (time-major, all neurons flattened). Each thread owns a
// contiguous range of neurons and walks it in blocks of BLK neurons; for a block the time loop is
// outermost and the potentials stay in a small local array, so every step reads one row of x and
// writes one row of spikes and ubar (auto-vectorised over the block). The backward pass walks time
// backwards the same way, recomputing the spike-gradient density in-register and applying
//     c[t] = g[t] * gs[t] + gu[t] + tau * c[t+1] * (keep[t] - w[t] * g[t]).
//
// The arithmetic replicates the pure-torch path (neurocode/neurons/functional.py) operation by
// operation (same order, no implicit FMA contraction: -ffp-contract=off; an explicit fma where
// torch's add(alpha=) kernel uses one), so the forward outputs agree to the last bit and the
// gradients up to the exp implementations (libmvec vs torch's, a few ulp in the density).
//
// Threads are std::thread (at::get_num_threads() of them), not OpenMP, so that the process never
// holds a second OpenMP runtime next to torch's.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <optional>
#include <torch/library.h>

// Vector variants of exp/log/cos/sin from glibc's libmvec (declared by <math.h> only under
// -ffast-math, which we do not use: it would change the arithmetic). x86-64 glibc only (the build
// links -lmvec there); elsewhere (aarch64, macOS; or with -DNEUROCODE_NO_LIBMVEC) these loops call
// the scalar functions.
#if defined(__x86_64__) && defined(__GLIBC__) && !defined(NEUROCODE_NO_LIBMVEC)
#define NEUROCODE_LIBMVEC 1
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
#endif

// The instruction set this library was compiled for (neurocode.neurons._kernels builds one
// library per ISA: -march=x86-64-v4 / x86-64-v3 / x86-64-v2, or the compiler's default elsewhere).
#if defined(__AVX512F__)
#define NEUROCODE_ISA_NAME "avx512"
#elif defined(__AVX2__)
#define NEUROCODE_ISA_NAME "avx2"
#elif defined(__x86_64__)
#define NEUROCODE_ISA_NAME "scalar"
#else
#define NEUROCODE_ISA_NAME "generic"
#endif

// neurons/csrc/cpu_cache.cpp: the caching allocator is torch's CPU allocator within a scope.
namespace neurocode {
void cpu_cache_enter();
void cpu_cache_exit();
}  // namespace neurocode

namespace {

// For the op's call: what it allocates comes from the caching allocator, and the allocator
// that was installed before is back when it returns (or throws).
struct CacheScope {
    CacheScope() { neurocode::cpu_cache_enter(); }
    ~CacheScope() { neurocode::cpu_cache_exit(); }
    CacheScope(const CacheScope&) = delete;
    CacheScope& operator=(const CacheScope&) = delete;
};

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
        // Where the exponent is below log(FLT_MIN) + 1 the density is < 3e-38 p2: 0 here. The vector
        // exp leaves its fast path, lane by lane, for subnormal and zero results, and a trained
        // layer has many potentials that far from threshold: its backward pass ran up to 4x slower.
        // The bound goes on z and the 0 is a product: GCC turns exp(c ? a : b) into c ? exp(a) :
        // exp(b), and c ? exp(a) : 0 into a branch, which the AVX2 build then does not vectorise
        // (libmvec has no masked AVX2 exp). A NaN z stays NaN.
        const S zmax = std::sqrt((S(-1) - std::log(std::numeric_limits<S>::min())) / p1);
        const S z = clampz(d / p0);
        const S zc = z < -zmax ? -zmax : (z > zmax ? zmax : z);
        const S inside = (z < -zmax || z > zmax) ? S(0) : S(1);
        return (std::exp((-p1 * zc) * zc) * p2) * inside;
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

// Counter-based Gaussian noise: element i of step t is a function of (seeds[t], i) only. The same
// numbers, computed with torch operations, are neurocode.neurons.counter_rng.counter_normal (the path
// for CUDA, other dtypes and machines without a compiler): one random stream everywhere.
// Elements 2m and 2m+1 form pair m: uniforms (u1, u2) from SplitMix64 outputs of the stream
// seeded with seeds[t] (the (m+1)-th output in float32, outputs 2m+1 and 2m+2 in float64),
// then Box-Muller with both branches: z[2m] = r cos(2 pi u2), z[2m+1] = r sin(2 pi u2),
// r = sqrt(-2 log u1) -- two independent exact N(0, 1) samples per (log, sqrt, hash).
// float32: 24-bit uniforms u1 in (0, 1], u2 in [0, 1), like torch.normal's float path
// (|z| <= sqrt(48 ln 2) ~ 5.77); float64: 53-bit uniforms (|z| <= sqrt(106 ln 2) ~ 8.57).
// The hash's 64-bit multiplies (and float64's libmvec calls) run ~1.6x faster in 512-bit vectors
// where the CPU has them; GCC prefers 256-bit ones unless told.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define NEUROCODE_WIDE_VECTORS __attribute__((target("prefer-vector-width=512")))
#else
#define NEUROCODE_WIDE_VECTORS
#endif
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
constexpr uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL;

// ---- float32: the same numbers on every instruction set ----
// glibc's libmvec rounds log/cos/sin differently in its SSE, AVX2 and scalar versions (its AVX2
// and AVX-512 float versions agree on all 2^24 inputs of the stream, the SSE one differs on 2-11 %
// of them), so the float32 stream does not use it: log, cos and sin below are plain float
// operations (+ - * /, sqrt, integer bit operations; no fused multiply-add, no table, no call),
// which IEEE arithmetic rounds alike in a 512-, 256- or 128-bit lane and in scalar code. A draw is
// therefore the same bits whatever the build (avx512, avx2, scalar, another CPU) and wherever a
// vector loop's remainder falls. Each is tested on every input the stream can give it: the 2^24
// values u1 = k 2^-24 and the 2^24 angles 2 pi (k 2^-24) (tests/test_noise_isa.py; log within
// 1 ulp, cos and sin within 2 ulp of the float64 reference).
static inline uint32_t f32_bits(float x) { uint32_t u; std::memcpy(&u, &x, 4); return u; }
static inline float f32_from(uint32_t u) { float x; std::memcpy(&x, &u, 4); return x; }

// log x for normal x > 0 (the stream's u1 in [2^-24, 1]): fdlibm's logf (as in musl), without its
// branches for zero, negative, subnormal, inf and NaN arguments, which the stream never gives it.
static inline float nc_logf(float x) {
    uint32_t ix = f32_bits(x) + (0x3f800000u - 0x3f3504f3u);  // reduce x into [sqrt(2)/2, sqrt(2))
    const float dk = float(int32_t(ix >> 23) - 0x7f);
    const float f = f32_from((ix & 0x007fffffu) + 0x3f3504f3u) - 1.0f;
    const float s = f / (2.0f + f);
    const float z = s * s, w = z * z;
    const float t1 = w * (0xccce13.0p-25f + w * 0xf89e26.0p-26f);  // Lg2, Lg4
    const float t2 = z * (0xaaaaaa.0p-24f + w * 0x91e9ee.0p-25f);  // Lg1, Lg3
    const float R = t2 + t1;
    const float hfsq = 0.5f * f * f;
    return s * (hfsq + R) + dk * 9.0580006145e-06f - hfsq + f + dk * 6.9313812256e-01f;  // ln2_lo, ln2_hi
}

// cos a and sin a for a in [0, 2 pi]: Cody-Waite reduction by the nearest multiple n of pi/2
// (pi/2 in four parts, the first three short enough that n times them is exact for n <= 4), then
// Cephes' minimax polynomials of sinf and cosf on [-pi/4, pi/4] and the quadrant's swap and signs.
static inline void nc_sincosf(float a, float& c, float& s) {
    const int32_t n = int32_t(a * 0.636619772f + 0.5f);  // a >= 0: truncation is the floor
    const float fn = float(n);
    const float r = (((a - fn * 1.5703125f) - fn * 4.837512969970703125e-4f) - fn * 7.549533620476723e-08f) -
                    fn * 2.5633440682570896e-12f;
    const float z = r * r;
    const float sp = ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f) * z * r + r;
    const float cp = ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z + 4.166664568298827e-2f) * z * z -
                     0.5f * z + 1.0f;
    const bool odd = n & 1;
    const float cc = odd ? sp : cp, ss = odd ? cp : sp;
    c = ((n + 1) & 2) ? -cc : cc;  // quadrants 1, 2: cos < 0
    s = (n & 2) ? -ss : ss;        // quadrants 2, 3: sin < 0
}

// The float32 stream's 24-bit integers of pair m: K = (h >> 40) + 1 in [1, 2^24] and A = (h >> 8) &
// 0xFFFFFF, h = mix64(seed + (m + 1) GOLDEN); u1 = K 2^-24 in (0, 1], u2 = A 2^-24 in [0, 1).
static inline void pair_integers(uint64_t seed, int64_t m, int32_t& K, int32_t& A) {
    const uint64_t h = mix64(seed + uint64_t(m + 1) * GOLDEN);
    K = int32_t(h >> 40) + 1;
    A = int32_t(h >> 8) & 0xFFFFFF;
}

// (u1, 2 pi u2) from (K, A) (the integers convert to float exactly)
static inline void uniforms(int32_t K, int32_t A, float& u1, float& a) {
    u1 = float(K) * 5.9604644775390625e-08f;
    a = 6.2831853071795865f * (float(A) * 5.9604644775390625e-08f);
}

static inline void pair_uniforms(uint64_t seed, int64_t m, float& u1, float& a) {
    int32_t K, A;
    pair_integers(seed, m, K, A);
    uniforms(K, A, u1, a);
}

#if defined(__AVX2__) && !defined(__AVX512DQ__)
// a * (hi 2^32 + lo) mod 2^64 in each 64-bit lane: AVX2 has no 64-bit multiply (AVX-512DQ's vpmullq),
// so three 32 x 32 -> 64-bit ones: lo(a) lo + ((lo(a) hi + hi(a) lo) << 32)
static inline __m256i mul64_const(__m256i a, __m256i lo, __m256i hi) {
    const __m256i p0 = _mm256_mul_epu32(a, lo);
    const __m256i p1 = _mm256_mul_epu32(a, hi);
    const __m256i p2 = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), lo);
    return _mm256_add_epi64(p0, _mm256_slli_epi64(_mm256_add_epi64(p1, p2), 32));
}
#endif

// K[j], A[j] of pairs m0 .. m0 + k - 1 (the counters seed + (m + 1) GOLDEN as an induction, not a
// multiply per pair). With AVX2 only, by hand: GCC's own 64-bit vector multiply is ~1.8x slower.
NEUROCODE_WIDE_VECTORS static void hash_block(uint64_t seed, int64_t m0, int64_t k, int32_t* __restrict K,
                                              int32_t* __restrict A) {
    const uint64_t c = seed + uint64_t(m0 + 1) * GOLDEN;
    int64_t j0 = 0;
#if defined(__AVX2__) && !defined(__AVX512DQ__)
    __m256i ctr0 = _mm256_setr_epi64x(int64_t(c), int64_t(c + GOLDEN), int64_t(c + 2 * GOLDEN), int64_t(c + 3 * GOLDEN));
    __m256i ctr1 = _mm256_add_epi64(ctr0, _mm256_set1_epi64x(int64_t(4 * GOLDEN)));
    const __m256i step = _mm256_set1_epi64x(int64_t(8 * GOLDEN));
    const __m256i m1l = _mm256_set1_epi64x(0x1CE4E5B9LL), m1h = _mm256_set1_epi64x(0xBF58476DLL);
    const __m256i m2l = _mm256_set1_epi64x(0x133111EBLL), m2h = _mm256_set1_epi64x(0x94D049BBLL);
    const __m256i perm = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7), one = _mm256_set1_epi32(1);
    for (; j0 + 8 <= k; j0 += 8) {
        __m256i z0 = ctr0, z1 = ctr1;
        z0 = mul64_const(_mm256_xor_si256(z0, _mm256_srli_epi64(z0, 30)), m1l, m1h);
        z1 = mul64_const(_mm256_xor_si256(z1, _mm256_srli_epi64(z1, 30)), m1l, m1h);
        z0 = mul64_const(_mm256_xor_si256(z0, _mm256_srli_epi64(z0, 27)), m2l, m2h);
        z1 = mul64_const(_mm256_xor_si256(z1, _mm256_srli_epi64(z1, 27)), m2l, m2h);
        z0 = _mm256_xor_si256(z0, _mm256_srli_epi64(z0, 31));
        z1 = _mm256_xor_si256(z1, _mm256_srli_epi64(z1, 31));
        // the low and the high 32 bits of the eight hashes, in order: h >> 40 = hi >> 8, (h >> 8) & 0xFFFFFF = lo >> 8
        const __m256i a0 = _mm256_permutevar8x32_epi32(z0, perm), a1 = _mm256_permutevar8x32_epi32(z1, perm);
        const __m256i lo = _mm256_permute2x128_si256(a0, a1, 0x20), hi = _mm256_permute2x128_si256(a0, a1, 0x31);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(K + j0), _mm256_add_epi32(_mm256_srli_epi32(hi, 8), one));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(A + j0), _mm256_srli_epi32(lo, 8));
        ctr0 = _mm256_add_epi64(ctr0, step);
        ctr1 = _mm256_add_epi64(ctr1, step);
    }
#endif
#pragma omp simd
    for (int64_t j = j0; j < k; ++j) {
        const uint64_t h = mix64(c + uint64_t(j) * GOLDEN);
        K[j] = int32_t(h >> 40) + 1;
        A[j] = int32_t(h >> 8) & 0xFFFFFF;
    }
}

// loc + sigma * (r cos a), loc + sigma * (r sin a) from (u1, a), r = sqrt(-2 log u1)
static inline void box_muller(float u1, float a, float loc, float sigma, float& zc, float& zs) {
    const float r = std::sqrt(-2.0f * nc_logf(u1));
    float c, s;
    nc_sincosf(a, c, s);
    zc = loc + sigma * (r * c);
    zs = loc + sigma * (r * s);
}

// float64: libmvec's log/cos/sin in vector loops (53-bit uniforms; the AVX2 and AVX-512 versions of
// cos and sin agree, log may differ by an ulp, and the scalar build's SSE versions by an ulp more).
static inline void pair_uniforms(uint64_t seed, int64_t m, double& u1, double& a) {
    const uint64_t h1 = mix64(seed + uint64_t(2 * m + 1) * GOLDEN);
    const uint64_t h2 = mix64(seed + uint64_t(2 * m + 2) * GOLDEN);
    u1 = double((h1 >> 11) + 1) * 1.1102230246251565e-16;        // (0, 1]
    const double u2 = double(h2 >> 11) * 1.1102230246251565e-16;  // [0, 1)
    a = 6.283185307179586 * u2;
}

static inline double radius(double u1) { return std::sqrt(-2.0 * std::log(u1)); }

// out[k] = loc + sigma * z[i0 + k], k < n (any i0, n >= 0), pairs generated whole in chunks and
// interleaved. (Everything is a pure function of (seed, i): the blocking never changes the numbers.)
constexpr int64_t NBLK = 256;  // pairs per chunk

// float32: one loop for the hash and the uniforms (64-bit lanes), one for Box-Muller and the
// interleaving (32-bit lanes).
NEUROCODE_WIDE_VECTORS static void fill_normals(uint64_t seed, int64_t i0, int64_t n, float loc, float sigma,
                                                float* __restrict out) {
    if (n <= 0) return;
    if (i0 & 1) {  // odd start: the sine branch of pair (i0 - 1) / 2
        float u1, a, zc, zs;
        pair_uniforms(seed, i0 >> 1, u1, a);
        box_muller(u1, a, loc, sigma, zc, zs);
        out[0] = zs;
        ++i0; ++out; --n;
    }
    alignas(64) int32_t KK[NBLK];
    alignas(64) int32_t AA[NBLK];
    const int64_t m0 = i0 >> 1;
    const int64_t np = (n + 1) >> 1;
    for (int64_t j0 = 0; j0 < np; j0 += NBLK) {
        const int64_t k = std::min(NBLK, np - j0);
        hash_block(seed, m0 + j0, k, KK, AA);
        float* __restrict o = out + 2 * j0;
        const int64_t kk = std::min(k, (n >> 1) - j0);  // complete pairs in this chunk
#pragma omp simd
        for (int64_t j = 0; j < kk; ++j) {
            float u1, a, zc, zs;
            uniforms(KK[j], AA[j], u1, a);
            box_muller(u1, a, loc, sigma, zc, zs);
            o[2 * j] = zc;
            o[2 * j + 1] = zs;
        }
        if (kk < k) {  // odd end: cosine branch only
            float u1, a, zc, zs;
            uniforms(KK[kk], AA[kk], u1, a);
            box_muller(u1, a, loc, sigma, zc, zs);
            o[2 * kk] = zc;
        }
    }
}

// Element i of the float32 stream alone (the escape decision's exact fallback below).
static inline float exact_normal(uint64_t seed, int64_t i, float loc, float sigma) {
    float u1, a, zc, zs;
    pair_uniforms(seed, i >> 1, u1, a);
    box_muller(u1, a, loc, sigma, zc, zs);
    return (i & 1) ? zs : zc;
}

// ---- float32 escape noise: decide from an approximate draw, exactly where it could matter ----
// The forward pass needs a threshold only for its comparison with the potential. It takes
// th' = loc + sigma z' with z' a cheap approximation of the stream's z (no division, no table,
// short polynomials: approx_radius, approx_cos_sin), |z' - z| <= APPROX_Z for every (K, A)
// (tested on all 2^24 values of each); where |u - th'| <= the resulting bound on |th' - th| (see
// decision_margin) it draws z exactly (exact_normal) and compares with the exact th. So every
// decision is the exact stream's -- the same bits as gauss_fill's thresholds would give, in every
// build -- while ~0.1 % of the neurons pay for an exact draw.
constexpr float APPROX_Z = 4e-4f;

// a * b + c, fused where the build has FMA (the approximation need not round alike everywhere: its
// bound is tested in every build)
static inline float madd(float a, float b, float c) {
#if defined(__FMA__)
    return std::fma(a, b, c);
#else
    return a * b + c;
#endif
}

// sqrt(-2 ln u1) / sqrt(2), u1 = K 2^-24: ln through fdlibm's reduction to [sqrt(2)/2, sqrt(2))
// (of K itself: ln u1 = ln K - 24 ln 2) and a degree-5 fit of -2 ln(1 + f) (relative error 5e-5).
// The 1/sqrt(2) is the one of cos(pi/4 + x) and sin(pi/4 + x) below, taken here once per pair.
static inline float approx_radius(int32_t K) {
    const uint32_t ix = f32_bits(float(K)) + (0x3f800000u - 0x3f3504f3u);
    const float dk = float(int32_t(ix >> 23) - (0x7f + 24));
    const float f = f32_from((ix & 0x007fffffu) + 0x3f3504f3u) - 1.0f;
    const float p = madd(madd(madd(madd(f, -0.35315366f, 0.54187917f), f, -0.67277617f), f, 0.99890195f), f, -1.9999324f);
    const float L = madd(dk, -1.3862944f, f * p);
    const float half = L * 0.5f;  // (this order: GCC 12 leaves the loop scalar with the clamp first)
    return std::sqrt(half > 0.0f ? half : 0.0f);
}

// sqrt(2) cos and sqrt(2) sin of 2 pi A 2^-24: the quadrant from A's top two bits, then
// cos(pi/4 + x) = (cos x - sin x) / sqrt(2), sin(pi/4 + x) = (cos x + sin x) / sqrt(2), |x| <= pi/4,
// cos x and sin x from degree-4 and degree-5 fits (errors 3.4e-5, 3.2e-6), the quadrant's swap and
// signs as bit operations.
static inline void approx_cos_sin(int32_t A, float& c, float& s) {
    const float x = madd(float(A & 0x3FFFFF), 3.7450702e-07f, -0.78539816f);  // (pi/2) 2^-22, pi/4
    const float x2 = x * x;
    const float C = madd(x2, madd(x2, 0.040908779f, -0.5f), 1.0f);
    const float S = madd(x * x2, madd(x2, 0.0082227570f, -0.16666667f), x);
    const float c0 = C - S, s0 = C + S;
    const uint32_t q = uint32_t(A) >> 22;
    const uint32_t odd = 0u - (q & 1u);  // all ones in quadrants 1 and 3: swap
    const uint32_t bc = f32_bits(c0), bs = f32_bits(s0);
    const uint32_t cc = (bs & odd) | (bc & ~odd), ss = (bc & odd) | (bs & ~odd);
    c = f32_from(cc ^ (((q + 1u) << 30) & 0x80000000u));  // quadrants 1, 2: cos < 0
    s = f32_from(ss ^ ((q << 30) & 0x80000000u));         // quadrants 2, 3: sin < 0
}

// A bound on |th' - th|: sigma APPROX_Z, plus the roundings of loc + sigma (r c) in both (each at
// most an ulp of |loc| + 6 |sigma|; 4x that).
static inline float decision_margin(float loc, float sigma) {
    return std::fabs(sigma) * APPROX_Z + 9.5367431640625e-07f * (std::fabs(loc) + 12.0f * std::fabs(sigma));
}

// out[k] = loc + sigma * z'[i0 + k], k < n, i0 even (the forward pass's pieces start at multiples of 16).
constexpr int64_t APPROX_PAIRS = 128;
NEUROCODE_WIDE_VECTORS static void approx_normals(uint64_t seed, int64_t i0, int64_t n, float loc, float sigma,
                                                  float* __restrict out) {
    alignas(64) int32_t KK[APPROX_PAIRS];
    alignas(64) int32_t AA[APPROX_PAIRS];
    const int64_t np = (n + 1) >> 1;
    for (int64_t j0 = 0; j0 < np; j0 += APPROX_PAIRS) {
        const int64_t k = std::min(APPROX_PAIRS, np - j0);
        hash_block(seed, (i0 >> 1) + j0, k, KK, AA);
        float* __restrict o = out + 2 * j0;
        const int64_t kk = std::min(k, (n >> 1) - j0);
#pragma omp simd
        for (int64_t j = 0; j < kk; ++j) {
            const float r = approx_radius(KK[j]);
            float c, s;
            approx_cos_sin(AA[j], c, s);
            o[2 * j] = madd(sigma, r * c, loc);
            o[2 * j + 1] = madd(sigma, r * s, loc);
        }
        if (kk < k) {
            float c, s;
            approx_cos_sin(AA[kk], c, s);
            o[2 * kk] = madd(sigma, approx_radius(KK[kk]) * c, loc);
        }
    }
}

NEUROCODE_WIDE_VECTORS static void fill_normals(uint64_t seed, int64_t i0, int64_t n, double loc, double sigma,
                                                double* __restrict out) {
    using S = double;
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
        // (in a loop that also holds the 64-bit hash GCC calls the scalar log, not libmvec's; cos
        // and sin in separate loops on reloaded angles: GCC would otherwise fuse them into a scalar
        // sincos call)
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

// The spike 1 - keep, and NaN where the potential or the threshold is NaN (neither below nor at
// or above the threshold): a NaN input propagates as it does through torch's own operations
// instead of reading as "fire" (the pure-torch loop does the same).
template <typename S>
static inline S fired(S u, S thr, S keep) {
    return (keep == S(0) && !(u >= thr)) ? std::numeric_limits<S>::quiet_NaN() : S(1) - keep;
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

// The firing decisions of modes 1 and 3 (their thresholds are not kept) as bits for the backward
// pass: bit i % 8 of byte i / 8 of row t is keep[t, i] (1: no spike). Thread ranges and blocks start
// at multiples of 16 neurons, so every byte belongs to one thread. With AVX-512 a vector compare
// yields 16 (float) or 8 (double) bits at once, and a masked move turns them back into 0/1 values
// (AVX2: movemask of a compare, and a compare of each lane's bit of the broadcast byte);
// bit by bit, packing and unpacking took ~0.5 ns per neuron and step, 40 % of a noise draw.
template <typename S>
static inline void pack_keep(const S* keep, int64_t n, uint8_t* out) {
    int64_t i = 0;
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<S, float>) {
        for (; i + 16 <= n; i += 16) {
            const __mmask16 m = _mm512_cmp_ps_mask(_mm512_loadu_ps(keep + i), _mm512_setzero_ps(), _CMP_NEQ_UQ);
            std::memcpy(out + i / 8, &m, 2);
        }
    } else {
        for (; i + 8 <= n; i += 8) {
            out[i / 8] = uint8_t(_mm512_cmp_pd_mask(_mm512_loadu_pd(keep + i), _mm512_setzero_pd(), _CMP_NEQ_UQ));
        }
    }
#elif defined(__AVX2__)
    // the compare's sign bits: 8 (float) or 4 (double) per 256-bit vector
    if constexpr (std::is_same_v<S, float>) {
        const __m256 zero = _mm256_setzero_ps();
        for (; i + 16 <= n; i += 16) {
            const unsigned lo = unsigned(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(keep + i), zero, _CMP_NEQ_UQ)));
            const unsigned hi = unsigned(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(keep + i + 8), zero, _CMP_NEQ_UQ)));
            const uint16_t m = uint16_t(lo | (hi << 8));
            std::memcpy(out + i / 8, &m, 2);
        }
    } else {
        const __m256d zero = _mm256_setzero_pd();
        for (; i + 8 <= n; i += 8) {
            const unsigned lo = unsigned(_mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(keep + i), zero, _CMP_NEQ_UQ)));
            const unsigned hi = unsigned(_mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(keep + i + 4), zero, _CMP_NEQ_UQ)));
            out[i / 8] = uint8_t(lo | (hi << 4));
        }
    }
#endif
    for (; i < n; i += 8) {
        unsigned b = 0;
        for (int64_t k = 0; k < std::min<int64_t>(8, n - i); ++k) b |= unsigned(keep[i + k] != S(0)) << k;
        out[i / 8] = uint8_t(b);
    }
}

template <typename S>
static inline void unpack_keep(const uint8_t* bits, int64_t n, S* keep) {
    int64_t i = 0;
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<S, float>) {
        const __m512 one = _mm512_set1_ps(1.0f);
        for (; i + 16 <= n; i += 16) {
            __mmask16 m;
            std::memcpy(&m, bits + i / 8, 2);
            _mm512_storeu_ps(keep + i, _mm512_maskz_mov_ps(m, one));
        }
    } else {
        const __m512d one = _mm512_set1_pd(1.0);
        for (; i + 8 <= n; i += 8) _mm512_storeu_pd(keep + i, _mm512_maskz_mov_pd(__mmask8(bits[i / 8]), one));
    }
#elif defined(__AVX2__)
    // each lane tests its own bit of the broadcast byte, the all-ones compare selects 1.0
    if constexpr (std::is_same_v<S, float>) {
        // 32 neurons per broadcast of four bytes: lane k of group j tests bit 8 j + k
        const __m256 one = _mm256_set1_ps(1.0f);
        const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        for (; i + 32 <= n; i += 32) {
            int32_t word;
            std::memcpy(&word, bits + i / 8, 4);
            const __m256i w = _mm256_set1_epi32(word);
            for (int j = 0; j < 4; ++j) {
                const __m256i sj = _mm256_slli_epi32(sel, 8 * j);
                const __m256i m = _mm256_cmpeq_epi32(_mm256_and_si256(w, sj), sj);
                _mm256_storeu_ps(keep + i + 8 * j, _mm256_and_ps(_mm256_castsi256_ps(m), one));
            }
        }
        for (; i + 8 <= n; i += 8) {
            const __m256i b = _mm256_and_si256(_mm256_set1_epi32(bits[i / 8]), sel);
            _mm256_storeu_ps(keep + i, _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(b, sel)), one));
        }
    } else {
        const __m256d one = _mm256_set1_pd(1.0);
        const __m256i sel_lo = _mm256_setr_epi64x(1, 2, 4, 8), sel_hi = _mm256_setr_epi64x(16, 32, 64, 128);
        for (; i + 8 <= n; i += 8) {
            const __m256i v = _mm256_set1_epi64x(bits[i / 8]);
            const __m256i lo = _mm256_cmpeq_epi64(_mm256_and_si256(v, sel_lo), sel_lo);
            const __m256i hi = _mm256_cmpeq_epi64(_mm256_and_si256(v, sel_hi), sel_hi);
            _mm256_storeu_pd(keep + i, _mm256_and_pd(_mm256_castsi256_pd(lo), one));
            _mm256_storeu_pd(keep + i + 4, _mm256_and_pd(_mm256_castsi256_pd(hi), one));
        }
    }
#endif
    for (; i < n; ++i) keep[i] = S((bits[i >> 3] >> (i & 7)) & 1u);
}

// A block's row of the next time step lies N values away from this step's: too far for the
// hardware prefetcher, which follows a stream within a page. Fetching it while this step computes
// hides the memory latency at the start of every step (~5 % of a LIF layer's forward pass).
template <bool Write, typename S>
static inline void prefetch_row(const S* p, int64_t n) {
    const char* b = reinterpret_cast<const char*>(p);
    for (int64_t off = 0; off < n * int64_t(sizeof(S)); off += 64) __builtin_prefetch(b + off, Write ? 1 : 0, 3);
}

// Values per piece of the escape-noise draw that the forward pass interleaves with its prefetches:
// 4 pieces per block measured best (8 alike; at 16 the calls' overhead shows).
constexpr int64_t DRAW_PIECE = BLK / 4;

// The escape thresholds of a piece: float32 approximately (decided exactly by decide_exactly),
// float64 exactly.
static inline void draw_thresholds(uint64_t seed, int64_t i0, int64_t n, float loc, float sigma, float* out) {
    approx_normals(seed, i0, n, loc, sigma, out);
}
static inline void draw_thresholds(uint64_t seed, int64_t i0, int64_t n, double loc, double sigma, double* out) {
    fill_normals(seed, i0, n, loc, sigma, out);
}

// The decisions of the block's neurons whose potential lies within margin of the approximate
// threshold th, again, against the exact threshold (near: room for the block's flags).
static void decide_exactly(uint64_t seed, int64_t b0, int64_t n, const float* ut, const float* th, float margin,
                           float loc, float sigma, float* keep, float* st, float* near) {
    for (int64_t i = 0; i < n; ++i) near[i] = std::fabs(ut[i] - th[i]) <= margin ? 1.0f : 0.0f;
    alignas(8) uint8_t flags[BLK / 8 + 8] = {};
    pack_keep(near, n, flags);
    for (int64_t w0 = 0; w0 < n; w0 += 64) {
        uint64_t m;
        std::memcpy(&m, flags + w0 / 8, 8);
        if (n - w0 < 64) m &= (uint64_t(1) << (n - w0)) - 1;
        for (; m; m &= m - 1) {
            const int64_t i = w0 + __builtin_ctzll(m);
            const float thr = exact_normal(seed, b0 + i, loc, sigma);
            const float k = ut[i] < thr ? 1.0f : 0.0f;
            keep[i] = k;
            st[i] = fired(ut[i], thr, k);
        }
    }
}

// mode: 0 deterministic (threshold v_th), 1 escape (per-step thresholds thr), 2 membrane (eps),
// 3 escape with Gaussian thresholds v_th + sigma * z drawn here from seeds[t] (see fill_normals).
// ubar may be null (the potentials are not wanted: the backward pass recomputes them); bits
// (modes 1 and 3) receives the decisions as bits, [T, ceil(N / 8)].
template <typename S>
static void forward(const S* x, int64_t sx, const S* u0, const S* thr, const S* eps, S* spikes, S* ubar,
                    S* ulast, uint8_t* bits, int64_t T, int64_t N, double tau_, double vth_, int mode, int nthreads,
                    const int64_t* seeds, double sigma_) {
    const S tau = S(tau_), vth = S(vth_), sigma = S(sigma_);
    const int64_t NB = (N + 7) / 8;
    run_threads(N, nthreads, [&](int64_t lo, int64_t hi) {
        alignas(64) S w[BLK];
        alignas(64) S keep[BLK];
        alignas(64) S th[BLK];
        alignas(64) S ub[BLK];
        alignas(64) float near[std::is_same_v<S, float> ? BLK : 1];
        for (int64_t b0 = lo; b0 < hi; b0 += BLK) {
            const int64_t n = std::min(BLK, hi - b0);
            for (int64_t t = 0; t < T; ++t) {
                const S* xt = x + t * sx + b0;
                S* ut = ubar ? ubar + t * N + b0 : ub;
                S* st = spikes + t * N + b0;
                if (mode == 3) {
                    // The draw needs no potential, so it comes first, in pieces, each after the
                    // prefetches of its part of the next step's rows: the memory then works while
                    // the draw computes. Issued all at once, the prefetches fill the line-fill
                    // buffers and the draw waits for them (its cost per forward call at 16x40x40,
                    // B = 64, 2 threads: 0.024 s that way, 0.015 s in pieces).
                    for (int64_t a = 0; a < n; a += DRAW_PIECE) {
                        const int64_t m = std::min(DRAW_PIECE, n - a);
                        if (t + 1 < T) {
                            prefetch_row<false>(xt + sx + a, m);
                            prefetch_row<true>(st + N + a, m);
                            if (a == 0 && bits) prefetch_row<true>(bits + (t + 1) * NB + b0 / 8, (n + 7) / 8);
                        }
                        draw_thresholds(uint64_t(seeds[t]), b0 + a, m, vth, sigma, th + a);
                    }
                } else if (t + 1 < T) {
                    prefetch_row<false>(xt + sx, n);
                    prefetch_row<true>(st + N, n);
                    if (eps) prefetch_row<false>(eps + (t + 1) * N + b0, n);
                }
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
                        keep[i] = k; w[i] = ut[i]; st[i] = fired(ut[i], vth, k);
                    }
                } else if (mode == 1) {
                    const S* tht = thr + t * N + b0;
                    for (int64_t i = 0; i < n; ++i) {
                        S k = ut[i] < tht[i] ? S(1) : S(0);
                        keep[i] = k; w[i] = ut[i]; st[i] = fired(ut[i], tht[i], k);
                    }
                } else if (mode == 3) {
                    if constexpr (std::is_same_v<S, float>) {  // th: the approximate thresholds
                        const float margin = decision_margin(vth, sigma);
                        int any = 0;  // (an OR over the block: in ~7 % of blocks at 1.5e-4 per neuron)
                        for (int64_t i = 0; i < n; ++i) {
                            S k = ut[i] < th[i] ? S(1) : S(0);
                            keep[i] = k; w[i] = ut[i]; st[i] = fired(ut[i], th[i], k);
                            any |= int(std::fabs(ut[i] - th[i]) <= margin);
                        }
                        if (any) decide_exactly(uint64_t(seeds[t]), b0, n, ut, th, margin, vth, sigma, keep, st, near);
                    } else {
                        for (int64_t i = 0; i < n; ++i) {
                            S k = ut[i] < th[i] ? S(1) : S(0);
                            keep[i] = k; w[i] = ut[i]; st[i] = fired(ut[i], th[i], k);
                        }
                    }
                } else {
                    const S* et = eps + t * N + b0;
                    for (int64_t i = 0; i < n; ++i) {
                        S ww = ut[i] + et[i];
                        S k = ww < vth ? S(1) : S(0);
                        keep[i] = k; w[i] = ww; st[i] = fired(ww, vth, k);
                    }
                }
                if (bits) pack_keep(keep, n, bits + t * NB + b0 / 8);
            }
            if (ulast) { for (int64_t i = 0; i < n; ++i) ulast[b0 + i] = w[i] * keep[i]; }
        }
    });
}

// Backward pass. Nothing of the forward pass is kept but its inputs (x, u0, eps) and, for modes
// 1 and 3, the decisions as bits: for each block of neurons the potentials are recomputed forward
// in time into c (the same operations as the forward pass, so bit for bit the same values), then
// the reverse recurrence overwrites them with the gradient, step by step, while the block stays in
// cache. gs/gu: upstream gradients of spikes/ubar viewed as [T, N] with strides (s*t, s*n), s*n in
// {0, 1}; null when absent. gl: upstream gradient of u_last [N] or null. Every inner loop is a
// plain elementwise loop over the block so that it vectorises (exp through libmvec).
template <typename S>
static inline void decisions(const S* ut, const S* et, const uint8_t* kt, S vth, int64_t n, S* keep, S* w) {
    if (kt) {  // the forward pass's decisions (bits)
        unpack_keep(kt, n, keep);
        for (int64_t i = 0; i < n; ++i) w[i] = ut[i];
    } else if (et) {
        for (int64_t i = 0; i < n; ++i) { S ww = ut[i] + et[i]; keep[i] = ww < vth ? S(1) : S(0); w[i] = ww; }
    } else {
        for (int64_t i = 0; i < n; ++i) { keep[i] = ut[i] < vth ? S(1) : S(0); w[i] = ut[i]; }
    }
}

template <typename S, int FAM>
static void backward(const S* x, int64_t sx, const S* u0, const S* eps, const uint8_t* bits, const S* gs,
                     int64_t sgt, int64_t sgn, const S* gu, int64_t sut, int64_t sun, const S* gl, S* c, int64_t T,
                     int64_t N, double tau_, double vth_, double p0_, double p1_, double p2_, int detach,
                     int nthreads) {
    const S tau = S(tau_), vth = S(vth_), p0 = S(p0_), p1 = S(p1_), p2 = S(p2_);
    const int64_t NB = (N + 7) / 8;
    run_threads(N, nthreads, [&](int64_t lo, int64_t hi) {
        alignas(64) S cn[BLK];
        alignas(64) S g[BLK];
        alignas(64) S dr[BLK];
        alignas(64) S v[BLK];
        alignas(64) S keep[BLK];
        alignas(64) S w[BLK];
        for (int64_t b0 = lo; b0 < hi; b0 += BLK) {
            const int64_t n = std::min(BLK, hi - b0);
            for (int64_t t = 0; t < T; ++t) {  // the potentials, into c
                const S* xt = x + t * sx + b0;
                S* ut = c + t * N + b0;
                if (t + 1 < T) {
                    prefetch_row<false>(xt + sx, n);
                    prefetch_row<true>(ut + N, n);
                    if (eps) prefetch_row<false>(eps + (t + 1) * N + b0, n);
                    if (bits) prefetch_row<false>(bits + (t + 1) * NB + b0 / 8, (n + 7) / 8);
                }
                if (t == 0) {
                    if (u0) { for (int64_t i = 0; i < n; ++i) ut[i] = std::fma(tau, u0[b0 + i], xt[i]); }
                    else { for (int64_t i = 0; i < n; ++i) ut[i] = xt[i]; }
                } else {
                    for (int64_t i = 0; i < n; ++i) ut[i] = xt[i] + (tau * w[i]) * keep[i];
                }
                decisions(ut, eps ? eps + t * N + b0 : nullptr, bits ? bits + t * NB + b0 / 8 : nullptr, vth, n, keep,
                          w);
            }
            for (int64_t t = T - 1; t >= 0; --t) {  // the gradient, over them
                S* __restrict ct = c + t * N + b0;
                if (t > 0) {
                    prefetch_row<true>(ct - N, n);
                    if (gs && sgn) prefetch_row<false>(gs + (t - 1) * sgt + b0, n);
                    if (gu && sun) prefetch_row<false>(gu + (t - 1) * sut + b0, n);
                    if (eps) prefetch_row<false>(eps + (t - 1) * N + b0, n);
                    if (bits) prefetch_row<false>(bits + (t - 1) * NB + b0 / 8, (n + 7) / 8);
                }
                decisions(ct, eps ? eps + t * N + b0 : nullptr, bits ? bits + t * NB + b0 / 8 : nullptr, vth, n, keep,
                          w);
#pragma omp simd
                for (int64_t i = 0; i < n; ++i) g[i] = density<S, FAM>(ct[i] - vth, p0, p1, p2);
                if (detach) {
                    for (int64_t i = 0; i < n; ++i) dr[i] = keep[i];
                } else {
                    for (int64_t i = 0; i < n; ++i) dr[i] = keep[i] + S(-1) * (w[i] * g[i]);
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
static void backward_family(int fam, const S* x, int64_t sx, const S* u0, const S* eps, const uint8_t* bits,
                            const S* gs, int64_t sgt, int64_t sgn, const S* gu, int64_t sut, int64_t sun, const S* gl,
                            S* c, int64_t T, int64_t N, double tau, double vth, double p0, double p1, double p2,
                            int detach, int nthreads) {
#define NC_ARGS x, sx, u0, eps, bits, gs, sgt, sgn, gu, sut, sun, gl, c, T, N, tau, vth, p0, p1, p2, detach, nthreads
    switch (fam) {
        case 0: backward<S, 0>(NC_ARGS); break;
        case 1: backward<S, 1>(NC_ARGS); break;
        case 2: backward<S, 2>(NC_ARGS); break;
        case 3: backward<S, 3>(NC_ARGS); break;
        default: backward<S, 4>(NC_ARGS); break;
    }
#undef NC_ARGS
}

template <typename S>
static void gauss_fill(const int64_t* seeds, int64_t T, int64_t N, double loc_, double sigma_, S* out, int nthreads) {
    const S loc = S(loc_), sigma = S(sigma_);
    run_threads(N, nthreads, [&](int64_t lo, int64_t hi) {
        for (int64_t t = 0; t < T; ++t) {
            fill_normals(uint64_t(seeds[t]), lo, hi - lo, loc, sigma, out + t * N + lo);
        }
    });
}

}  // namespace


// ---------------------------------------------------------------------------------------------
// torch operators

using at::Tensor;
using std::optional;

constexpr const char* FAMILY_NAMES = "0 gauss, 1 logistic, 2 sigmoid, 3 box, 4 triangle";

// t viewed as [T, N] with a unit (or, when broadcast_ok, zero) neuron stride and a row stride of N
// or 0 (a static input or a broadcast gradient), copying otherwise.
static Tensor as_rows(const Tensor& t, int64_t T, int64_t N, bool broadcast_ok) {
    Tensor r = t.reshape({T, N});
    const bool col_ok = N <= 1 || r.stride(1) == 1 || (broadcast_ok && r.stride(1) == 0);
    const bool row_ok = T <= 1 || r.stride(0) == N || r.stride(0) == 0;
    return (col_ok && row_ok) ? r : r.contiguous();
}

static void check_like(const Tensor& t, const Tensor& x, const char* op, const char* name, bool same_shape) {
    TORCH_CHECK(t.device().is_cpu(), op, ": ", name, " must be a CPU tensor, got device ", t.device());
    TORCH_CHECK(t.scalar_type() == x.scalar_type(), op, ": ", name, " has dtype ", t.scalar_type(),
                ", expected ", x.scalar_type(), " (the dtype of x)");
    if (same_shape) {
        TORCH_CHECK(t.sizes() == x.sizes(), op, ": ", name, " has shape ", t.sizes(), ", expected ", x.sizes());
    }
}

static int64_t check_family(int64_t family) {
    TORCH_CHECK(family >= 0 && family <= 4, "neurocode::lif: family must be one of ", FAMILY_NAMES, ", got ",
                family);
    return family;
}

// Forward of the LIF sequence. At most one noise input: threshold [T, ...] (escape noise as per-step
// thresholds), eps [T, ...] (membrane noise) or seeds [T] int64 (escape noise with Gaussian thresholds
// v_th + sigma * z drawn here). Returns spikes, ubar (empty unless return_potential), u_last (empty
// unless return_state), and the decisions as bits for the backward pass (modes with threshold or
// seeds; empty otherwise).
// family/p0..p2/detach_reset describe the backward and are unused here.
std::tuple<Tensor, Tensor, Tensor, Tensor> op_lif_forward(
    const Tensor& x, const optional<Tensor>& u0, const optional<Tensor>& threshold, const optional<Tensor>& eps,
    const optional<Tensor>& seeds, double tau, double v_th, double sigma, int64_t family, double p0, double p1,
    double p2, bool detach_reset, bool return_potential, bool return_state) {
    const CacheScope scope;
    const char* op = "neurocode::lif_forward";
    TORCH_CHECK(x.dim() >= 2 && x.size(0) >= 1, op, ": x must be time-major [T, B, ...] with T >= 1, got shape ",
                x.sizes());
    TORCH_CHECK(x.device().is_cpu(), op, ": x must be a CPU tensor, got device ", x.device());
    TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
                ": x must be float32 or float64, got ", x.scalar_type());
    TORCH_CHECK(int(threshold.has_value()) + int(eps.has_value()) + int(seeds.has_value()) <= 1, op,
                ": give at most one of threshold, eps and seeds");
    TORCH_CHECK(std::isfinite(tau) && std::isfinite(v_th) && std::isfinite(sigma), op,
                ": tau, v_th and sigma must be finite, got ", tau, ", ", v_th, ", ", sigma);
    check_family(family);
    (void)p0; (void)p1; (void)p2; (void)detach_reset;
    const int64_t T = x.size(0);
    const int64_t N = x.numel() / T;
    Tensor xr = as_rows(x, T, N, false);
    Tensor u0r, extra, seeds_c;
    int mode = 0;
    if (u0.has_value()) {
        check_like(*u0, x, op, "u0", false);
        TORCH_CHECK(u0->numel() == N, op, ": u0 must have ", N, " elements (x[0]), got shape ", u0->sizes());
        u0r = u0->reshape({N}).contiguous();
    }
    if (threshold.has_value()) {
        check_like(*threshold, x, op, "threshold", true);
        mode = 1;
        extra = threshold->reshape({T, N}).contiguous();
    } else if (eps.has_value()) {
        check_like(*eps, x, op, "eps", true);
        mode = 2;
        extra = eps->reshape({T, N}).contiguous();
    } else if (seeds.has_value()) {
        TORCH_CHECK(seeds->device().is_cpu() && seeds->scalar_type() == at::kLong && seeds->dim() == 1 &&
                        seeds->size(0) == T,
                    op, ": seeds must be a CPU int64 tensor of shape [", T, "], got ", seeds->scalar_type(), " ",
                    seeds->sizes(), " on ", seeds->device());
        mode = 3;
        seeds_c = seeds->contiguous();
    }
    auto opts = x.options().memory_format(at::MemoryFormat::Contiguous);
    Tensor spikes = at::empty(x.sizes(), opts);
    Tensor ubar = return_potential ? at::empty(x.sizes(), opts) : at::empty({0}, opts);
    Tensor u_last = return_state ? at::empty(x.sizes().slice(1), opts) : at::empty({0}, opts);
    const bool keep_bits = mode == 1 || mode == 3;
    Tensor bits = at::empty(keep_bits ? std::vector<int64_t>{T, (N + 7) / 8} : std::vector<int64_t>{0},
                            x.options().dtype(at::kByte));
    const int nthreads = at::get_num_threads();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "neurocode::lif_forward", [&] {
        forward<scalar_t>(xr.const_data_ptr<scalar_t>(), T > 1 ? xr.stride(0) : N,
                          u0r.defined() ? u0r.const_data_ptr<scalar_t>() : nullptr,
                          mode == 1 ? extra.const_data_ptr<scalar_t>() : nullptr,
                          mode == 2 ? extra.const_data_ptr<scalar_t>() : nullptr, spikes.mutable_data_ptr<scalar_t>(),
                          return_potential ? ubar.mutable_data_ptr<scalar_t>() : nullptr,
                          return_state ? u_last.mutable_data_ptr<scalar_t>() : nullptr, keep_bits ? bits.mutable_data_ptr<uint8_t>() : nullptr,
                          T, N, tau, v_th, mode, nthreads, mode == 3 ? seeds_c.const_data_ptr<int64_t>() : nullptr,
                          sigma);
    });
    return {spikes, ubar, u_last, bits};
}

// Gradient with respect to x of the LIF sequence (grad_u0 is tau * c[0]), from the forward pass's
// inputs: x, u0, eps (membrane noise) and the decisions as bits (escape noise; absent: recomputed
// from the potentials and v_th).
Tensor op_lif_backward(const Tensor& x, const optional<Tensor>& u0, const optional<Tensor>& eps,
                       const optional<Tensor>& keep_bits, const optional<Tensor>& grad_spikes,
                       const optional<Tensor>& grad_ubar, const optional<Tensor>& grad_u_last, double tau, double v_th,
                       int64_t family, double p0, double p1, double p2, bool detach_reset) {
    const CacheScope scope;
    const char* op = "neurocode::lif_backward";
    TORCH_CHECK(x.dim() >= 2 && x.size(0) >= 1, op, ": x must be [T, B, ...] with T >= 1, got shape ", x.sizes());
    TORCH_CHECK(x.device().is_cpu(), op, ": x must be a CPU tensor, got device ", x.device());
    TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
                ": x must be float32 or float64, got ", x.scalar_type());
    const int fam = int(check_family(family));
    const int64_t T = x.size(0);
    const int64_t N = x.numel() / T;
    Tensor xr = as_rows(x, T, N, false);
    Tensor u0r, eps_c, bits_c, gs, gu, gl;
    if (u0.has_value()) {
        check_like(*u0, x, op, "u0", false);
        TORCH_CHECK(u0->numel() == N, op, ": u0 must have ", N, " elements (x[0]), got shape ", u0->sizes());
        u0r = u0->reshape({N}).contiguous();
    }
    if (eps.has_value()) { check_like(*eps, x, op, "eps", true); eps_c = eps->reshape({T, N}).contiguous(); }
    if (keep_bits.has_value()) {
        TORCH_CHECK(keep_bits->device().is_cpu() && keep_bits->scalar_type() == at::kByte &&
                        keep_bits->dim() == 2 && keep_bits->size(0) == T && keep_bits->size(1) == (N + 7) / 8,
                    op, ": keep_bits must be a CPU uint8 tensor of shape [", T, ", ", (N + 7) / 8, "], got ",
                    keep_bits->scalar_type(), " ", keep_bits->sizes());
        TORCH_CHECK(!eps.has_value(), op, ": give eps (membrane noise) or keep_bits (escape noise), not both");
        bits_c = keep_bits->contiguous();
    }
    if (grad_spikes.has_value()) {
        check_like(*grad_spikes, x, op, "grad_spikes", true);
        gs = as_rows(*grad_spikes, T, N, true);
    }
    if (grad_ubar.has_value()) {
        check_like(*grad_ubar, x, op, "grad_ubar", true);
        gu = as_rows(*grad_ubar, T, N, true);
    }
    if (grad_u_last.has_value()) {
        check_like(*grad_u_last, x, op, "grad_u_last", false);
        TORCH_CHECK(grad_u_last->numel() == N, op, ": grad_u_last must have ", N, " elements, got shape ",
                    grad_u_last->sizes());
        gl = grad_u_last->reshape({N}).contiguous();
    }
    Tensor c = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
    const int nthreads = at::get_num_threads();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "neurocode::lif_backward", [&] {
        using S = scalar_t;
        backward_family<S>(fam, xr.const_data_ptr<S>(), T > 1 ? xr.stride(0) : N,
                           u0r.defined() ? u0r.const_data_ptr<S>() : nullptr,
                           eps_c.defined() ? eps_c.const_data_ptr<S>() : nullptr,
                           bits_c.defined() ? bits_c.const_data_ptr<uint8_t>() : nullptr,
                           gs.defined() ? gs.const_data_ptr<S>() : nullptr, gs.defined() ? gs.stride(0) : 0,
                           gs.defined() ? gs.stride(1) : 0, gu.defined() ? gu.const_data_ptr<S>() : nullptr,
                           gu.defined() ? gu.stride(0) : 0, gu.defined() ? gu.stride(1) : 0,
                           gl.defined() ? gl.const_data_ptr<S>() : nullptr, c.mutable_data_ptr<S>(), T, N, tau,
                           v_th, p0, p1, p2, int(detach_reset), nthreads);
    });
    return c;
}

// Which build this is: "avx512", "avx2", "scalar" (x86-64 without AVX2) or "generic" (other CPUs).
std::string op_isa() { return NEUROCODE_ISA_NAME; }

// The float32 stream's functions, elementwise, for their exhaustive tests (tests/test_noise_isa.py):
// which = 0: log x, 1: cos x, 2: sin x; from u1 = K 2^-24 (x): 3 approx_radius, 4 the exact radius
// sqrt(-2 log u1); from u2 = A 2^-24 (x): 5, 6 approx_cos_sin's cos and sin, 7, 8 the exact cos and
// sin of 2 pi u2 (the stream's rounded angle); 9: APPROX_Z (x ignored, one value).
Tensor op_stream_math(const Tensor& x, int64_t which) {
    TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat, "neurocode::stream_math: x must be a CPU float32 tensor");
    TORCH_CHECK(which >= 0 && which <= 9, "neurocode::stream_math: which must be in 0..9, got ", which);
    if (which == 9) return at::full({1}, double(APPROX_Z), x.options());
    Tensor xc = x.contiguous();
    Tensor out = at::empty(xc.sizes(), xc.options());
    const float* p = xc.const_data_ptr<float>();
    float* o = out.mutable_data_ptr<float>();
    const int64_t n = xc.numel();
    for (int64_t i = 0; i < n; ++i) {
        const float v = p[i];
        const int32_t k = int32_t(v * 16777216.0f);  // K or A
        float c, s, u1, a;
        switch (which) {
            case 0: o[i] = nc_logf(v); break;
            case 1: nc_sincosf(v, c, s); o[i] = c; break;
            case 2: nc_sincosf(v, c, s); o[i] = s; break;
            case 3: o[i] = approx_radius(k); break;
            case 4: o[i] = std::sqrt(-2.0f * nc_logf(v)); break;
            case 5: approx_cos_sin(k, c, s); o[i] = c; break;
            case 6: approx_cos_sin(k, c, s); o[i] = s; break;
            default: uniforms(1, k, u1, a); nc_sincosf(a, c, s); o[i] = which == 7 ? c : s; break;
        }
    }
    return out;
}

// [T, n]: loc + sigma * z with z[t, i] the counter-based N(0, 1) of element i drawn from seeds[t].
Tensor op_gauss_fill(const Tensor& seeds, int64_t n, double loc, double sigma, at::ScalarType dtype) {
    const CacheScope scope;
    const char* op = "neurocode::gauss_fill";
    TORCH_CHECK(seeds.device().is_cpu() && seeds.scalar_type() == at::kLong && seeds.dim() == 1, op,
                ": seeds must be a 1-D CPU int64 tensor, got ", seeds.scalar_type(), " ", seeds.sizes(), " on ",
                seeds.device());
    TORCH_CHECK(n >= 0, op, ": n must be >= 0, got ", n);
    TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, op, ": dtype must be float32 or float64, got ", dtype);
    const int64_t T = seeds.size(0);
    Tensor s = seeds.contiguous();
    Tensor out = at::empty({T, n}, seeds.options().dtype(dtype));
    const int nthreads = at::get_num_threads();
    AT_DISPATCH_FLOATING_TYPES(dtype, "neurocode::gauss_fill", [&] {
        gauss_fill<scalar_t>(s.const_data_ptr<int64_t>(), T, n, loc, sigma, out.mutable_data_ptr<scalar_t>(),
                             nthreads);
    });
    return out;
}

TORCH_LIBRARY(neurocode, m) {
    m.def("lif_forward(Tensor x, Tensor? u0, Tensor? threshold, Tensor? eps, Tensor? seeds, float tau, float v_th, "
          "float sigma, int family, float p0, float p1, float p2, bool detach_reset, bool return_potential, "
          "bool return_state) "
          "-> (Tensor, Tensor, Tensor, Tensor)");
    m.def("lif_backward(Tensor x, Tensor? u0, Tensor? eps, Tensor? keep_bits, Tensor? grad_spikes, "
          "Tensor? grad_ubar, Tensor? grad_u_last, float tau, float v_th, int family, float p0, float p1, float p2, "
          "bool detach_reset) -> Tensor");
    m.def("gauss_fill(Tensor seeds, int n, float loc, float sigma, ScalarType dtype) -> Tensor");
    m.def("isa() -> str", &op_isa);
    m.def("stream_math(Tensor x, int which) -> Tensor");
}

TORCH_LIBRARY_IMPL(neurocode, CPU, m) {
    m.impl("lif_forward", &op_lif_forward);
    m.impl("lif_backward", &op_lif_backward);
    m.impl("gauss_fill", &op_gauss_fill);
    m.impl("stream_math", &op_stream_math);
}
