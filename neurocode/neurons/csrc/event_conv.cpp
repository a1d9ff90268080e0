// Event-driven 2-D convolution for sparse inputs (spike maps): torch operators
// neurocode::event_conv2d and neurocode::event_conv2d_weight (CPU, float32/float64).
//
// A dense convolution multiplies every input position with every kernel tap; a spike map is
// mostly zeros, so here the work follows the nonzero inputs. Both operators are the
// convolution's exact sums (only the order of the additions differs from torch's dense kernels).
// Stride 1, zero padding, no dilation, one group: the spiking models' second layers.
//
// Forward, when the output channels are a multiple of the SIMD width (the fast path): a tile of
// R output rows by T output columns, all O channels, is held in vector registers (3 x 4 pixels
// of 32 float32 channels: 24 zmm). The nonzero inputs reaching it lie, for each input channel
// c, in a window of R + KH - 1 input rows by T + KW - 1 columns. A bitmask of every (padded)
// input row is made once per sample, and every row's window at every tile column is listed
// once per sample (its set bits compressed into column numbers: AVX-512 vpcompressd, or with AVX2
// a table permutation per byte of the mask; no branch per input); a tile offsets its rows' lists into one list of weight offsets. Each listed input
// at window position (u, d) adds W[c, u - i, d - j, :] to tile pixel (i, j) for all (i, j) at
// once: the weights are stored with R - 1 zero rows and T - 1 zero columns around every
// channel's kernel, so the R T adds need no bounds test (an add of zero changes no sum). A tap
// then costs the load of its weight vector and an add into a register, instead of a load, an
// add and a store of the output (the scatter form, which is bound by the stores). Input
// channels are taken in blocks whose padded weights fit in L1 (the outputs are loaded and
// stored once per block). When every nonzero of a sample is 1 (spikes) the multiply is
// skipped; graded values take the same walk with the multiply.
//
// Weight gradient dW[c, ky, kx, :] = sum of x[b, c, iy, ix] * gout[b, iy + P - ky, ix + P - kx, :]:
// for one (c, ky) a block of KT kernel columns, all O channels, is held in registers while the
// nonzero inputs of a few input rows are walked (a precomputed list per sample, row by row, so
// a block of rows is one contiguous range of it); each input adds KT consecutive output-gradient
// pixels, read from a per-sample channels-last copy padded with zero columns (no bounds test).
// The rows are blocked so that the output-gradient rows they touch stay in L1.
//
// Other channel counts take the scatter form: each nonzero input adds v * W[:, c, ky, kx] into
// an L1-resident tile of channels-last outputs (the weight gradient gathers the same way); so
// do the samples with an inf or NaN input (see Values).

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <thread>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
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

using at::Tensor;

template <typename F>
void parallel_ranges(int64_t n, int nthreads, F&& body) {
    const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(nthreads, n));
    if (nt <= 1) { body(0, n, 0); return; }
    std::vector<std::thread> pool;
    const int64_t chunk = (n + nt - 1) / nt;
    for (int64_t k = 1; k < nt; ++k) {
        const int64_t a = k * chunk, b = std::min(n, a + chunk);
        if (a < b) pool.emplace_back([&body, a, b, k] { body(a, b, int(k)); });
    }
    body(0, std::min(n, chunk), 0);
    for (auto& th : pool) th.join();
}

// The weight gradient summed over samples split across threads: body(b0, b1, acc) adds samples
// [b0, b1) into acc, which is dwt itself for the first thread and a zeroed copy for the others;
// the copies are added into dwt at the end.
template <typename S, typename F>
void summed_over_threads(int64_t B, int nthreads, S* dwt, int64_t wsize, F&& body) {
    const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(nthreads, B));
    std::vector<std::vector<S>> partial(static_cast<size_t>(nt));
    parallel_ranges(B, int(nt), [&](int64_t b0, int64_t b1, int tid) {
        S* acc = dwt;
        if (tid > 0) { partial[tid].assign(size_t(wsize), S(0)); acc = partial[tid].data(); }
        body(b0, b1, acc);
    });
    for (int64_t t = 1; t < nt; ++t) {
        if (partial[t].empty()) continue;
        const S* p = partial[t].data();
        for (int64_t i = 0; i < wsize; ++i) dwt[i] += p[i];
    }
}

struct Geometry {
    int64_t B, C, H, W, O, KH, KW, P, OH, OW;
};

// out_cl [B, OH, OW, O] += sum over nonzero x[b, c, iy, ix] of x * wt[c, ky, kx, :]. The outputs are
// accumulated in tiles of ROWS output rows (a few KB: they stay in L1 while every input row that
// reaches them scatters into them); the nonzero inputs of each row are listed once per sample.
template <typename S>
void scatter_forward(const S* x, const S* wt, S* out_cl, const Geometry& g, int nthreads) {
    const int64_t rows = std::max<int64_t>(1, (16 * 1024 / int64_t(sizeof(S))) / std::max<int64_t>(1, g.OW * g.O));
    parallel_ranges(g.B, nthreads, [&](int64_t b0, int64_t b1, int) {
        std::vector<int32_t> col(size_t(g.C * g.H * g.W));  // the nonzero columns of each input row
        std::vector<int64_t> start(size_t(g.C * g.H + 1));
        for (int64_t b = b0; b < b1; ++b) {
            const S* xb = x + b * g.C * g.H * g.W;
            int64_t n = 0;
            for (int64_t r = 0; r < g.C * g.H; ++r) {
                start[r] = n;
                const S* row = xb + r * g.W;
                for (int64_t ix = 0; ix < g.W; ++ix) {
                    if (row[ix] != S(0)) col[n++] = int32_t(ix);
                }
            }
            start[g.C * g.H] = n;
            S* ob = out_cl + b * g.OH * g.OW * g.O;
            for (int64_t oy0 = 0; oy0 < g.OH; oy0 += rows) {
                const int64_t oy1 = std::min(g.OH, oy0 + rows);
                for (int64_t c = 0; c < g.C; ++c) {
                    // input rows iy reach output rows iy + P - ky, ky in [0, KH)
                    const int64_t iy_lo = std::max<int64_t>(0, oy0 - g.P);
                    const int64_t iy_hi = std::min<int64_t>(g.H - 1, oy1 - 1 + g.KH - 1 - g.P);
                    for (int64_t iy = iy_lo; iy <= iy_hi; ++iy) {
                        const int64_t r = c * g.H + iy;
                        const int64_t ky0 = std::max<int64_t>(0, iy + g.P - (oy1 - 1));
                        const int64_t ky1 = std::min<int64_t>(g.KH - 1, iy + g.P - oy0);
                        for (int64_t e = start[r]; e < start[r + 1]; ++e) {
                            const int64_t ix = col[e];
                            const S v = xb[r * g.W + ix];
                            const int64_t kx0 = std::max<int64_t>(0, ix + g.P - (g.OW - 1));
                            const int64_t kx1 = std::min<int64_t>(g.KW - 1, ix + g.P);
                            for (int64_t ky = ky0; ky <= ky1; ++ky) {
                                const int64_t oy = iy + g.P - ky;
                                S* orow = ob + (oy * g.OW + ix + g.P) * g.O;
                                const S* wrow = wt + ((c * g.KH + ky) * g.KW) * g.O;
                                for (int64_t kx = kx0; kx <= kx1; ++kx) {
                                    S* __restrict o = orow - kx * g.O;
                                    const S* __restrict w = wrow + kx * g.O;
#pragma omp simd
                                    for (int64_t k = 0; k < g.O; ++k) o[k] += v * w[k];
                                }
                            }
                        }
                    }
                }
            }
        }
    });
}

// dwt [C, KH, KW, O] = sum over nonzero x[b, c, iy, ix] of x * gout_cl[b, oy, ox, :]
template <typename S>
void gather_weight(const S* x, const S* gout_cl, S* dwt, const Geometry& g, int nthreads) {
    summed_over_threads(g.B, nthreads, dwt, g.C * g.KH * g.KW * g.O, [&](int64_t b0, int64_t b1, S* acc) {
        for (int64_t b = b0; b < b1; ++b) {
            const S* gb = gout_cl + b * g.OH * g.OW * g.O;
            for (int64_t c = 0; c < g.C; ++c) {
                const S* xc = x + (b * g.C + c) * g.H * g.W;
                for (int64_t iy = 0; iy < g.H; ++iy) {
                    const int64_t ky0 = std::max<int64_t>(0, iy + g.P - (g.OH - 1));
                    const int64_t ky1 = std::min<int64_t>(g.KH - 1, iy + g.P);
                    for (int64_t ix = 0; ix < g.W; ++ix) {
                        const S v = xc[iy * g.W + ix];
                        if (v == S(0)) continue;
                        const int64_t kx0 = std::max<int64_t>(0, ix + g.P - (g.OW - 1));
                        const int64_t kx1 = std::min<int64_t>(g.KW - 1, ix + g.P);
                        for (int64_t ky = ky0; ky <= ky1; ++ky) {
                            const int64_t oy = iy + g.P - ky;
                            for (int64_t kx = kx0; kx <= kx1; ++kx) {
                                const int64_t ox = ix + g.P - kx;
                                const S* __restrict go = gb + (oy * g.OW + ox) * g.O;
                                S* __restrict w = acc + ((c * g.KH + ky) * g.KW + kx) * g.O;
#pragma omp simd
                                for (int64_t k = 0; k < g.O; ++k) w[k] += v * go[k];
                            }
                        }
                    }
                }
            }
        }
    });
}

// ---- The register-tiled fast path (output channels a multiple of the SIMD width) ----

#if defined(__AVX512F__)
constexpr int kVecBytes = 64, kVecRegs = 32;
#elif defined(__AVX__)
constexpr int kVecBytes = 32, kVecRegs = 16;
#else
constexpr int kVecBytes = 16, kVecRegs = 16;
#endif
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "RowBits::window16 reads the bitmasks as little-endian words");

template <typename S>
struct Vec {
    typedef S type __attribute__((vector_size(kVecBytes)));  // GCC/Clang vector: one SIMD register
    static constexpr int64_t N = kVecBytes / int64_t(sizeof(S));
};

typedef int32_t I16 __attribute__((vector_size(64)));  // 16 list entries (whatever the SIMD width)
typedef uint8_t U16 __attribute__((vector_size(16)));  // 16 window columns

template <typename V, typename S>
inline V vload(const S* p) {
    V v;
    std::memcpy(&v, p, sizeof v);  // an unaligned vector load
    return v;
}

template <typename V, typename S>
inline void vstore(S* p, const V& v) {
    std::memcpy(p, &v, sizeof v);
}

// d = the 16 bytes at p as int32 (an out parameter: a 64-byte vector return changes the ABI
// without AVX-512, which GCC warns about)
inline void widen16(const uint8_t* p, I16& d) {
#if defined(__AVX512F__)
    // (GCC 12 makes __builtin_convertvector of these a chain of inserts)
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    std::memcpy(&d, &v, sizeof d);
#else
    d = __builtin_convertvector(vload<U16>(p), I16);
#endif
}

inline void narrow16(const int32_t* src, uint8_t* dst) {
#if defined(__AVX512F__)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm512_cvtepi32_epi8(_mm512_loadu_si512(src)));
#else
    for (int k = 0; k < 16; ++k) dst[k] = uint8_t(src[k]);
#endif
}

// Bitmasks of one sample's input rows: row r = c * H + iy, bit P + ix set where x[c, iy, ix] != 0
// (the padding is the P zero bits in front; windows may run past the row into zero words).
struct RowBits {
    int64_t words = 0;  // uint64 per row
    std::vector<uint64_t> bits;

    // bits pos .. pos + 15 of row r (bit i of the result = padded column pos + i)
    uint32_t window16(int64_t r, int64_t pos) const {
        uint64_t w;
        std::memcpy(&w, reinterpret_cast<const unsigned char*>(bits.data() + r * words) + (pos >> 3), 8);
        return uint32_t(w >> (pos & 7)) & 0xffffu;
    }
};

// What a sample's nonzero inputs are: all 1 (spikes: the adds need no multiply), finite, or
// not all finite. The tiles add zero weights (forward) or zero output-gradient columns (weight
// gradient) times the input where a term is outside the kernel; an inf or NaN input times zero
// would spread NaN there, so such a sample takes the scatter form, which touches only its terms.
enum class Values { spikes, finite, nonfinite };

// Fills rb from the sample xb [C, H, W]; reach: how many columns past the padded row the
// windows read.
template <typename S>
Values row_bits(const S* xb, const Geometry& g, int64_t reach, RowBits& rb) {
    rb.words = (g.W + 2 * g.P + reach + 80 + 63) / 64;
    rb.bits.assign(size_t(g.C * g.H * rb.words), 0);
    bool spikes = true, finite = true;
    for (int64_t r = 0; r < g.C * g.H; ++r) {
        const S* row = xb + r * g.W;
        uint64_t* rw = rb.bits.data() + r * rb.words;
        int64_t ix = 0;
#if defined(__AVX512F__)
        if constexpr (std::is_same_v<S, float>) {  // 16 columns per compare, not a branch per column
            for (; ix < g.W; ix += 16) {
                const __mmask16 in = __mmask16(g.W - ix >= 16 ? 0xffffu : (1u << (g.W - ix)) - 1u);
                const __m512 v = _mm512_maskz_loadu_ps(in, row + ix);
                const __mmask16 nz = _mm512_mask_cmp_ps_mask(in, v, _mm512_setzero_ps(), _CMP_NEQ_UQ);
                spikes &= _mm512_mask_cmp_ps_mask(nz, v, _mm512_set1_ps(1.f), _CMP_NEQ_UQ) == 0;
                // v - v is 0 for a finite v, NaN for inf and NaN
                finite &= _mm512_mask_cmp_ps_mask(nz, _mm512_sub_ps(v, v), _mm512_setzero_ps(), _CMP_NEQ_UQ) == 0;
                const int64_t pos = g.P + ix;
                rw[pos >> 6] |= uint64_t(nz) << (pos & 63);
                if ((pos & 63) > 48) rw[(pos >> 6) + 1] |= uint64_t(nz) >> (64 - (pos & 63));
            }
        }
#elif defined(__AVX2__)
        if constexpr (std::is_same_v<S, float>) {  // 8 columns per compare (the sign bits of the masks)
            const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.f);
            for (; ix + 8 <= g.W; ix += 8) {
                const __m256 v = _mm256_loadu_ps(row + ix);
                const unsigned nz = unsigned(_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_NEQ_UQ)));
                spikes &= (unsigned(_mm256_movemask_ps(_mm256_cmp_ps(v, one, _CMP_NEQ_UQ))) & nz) == 0;
                // v - v is 0 for a finite v, NaN for inf and NaN
                finite &= (unsigned(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_sub_ps(v, v), zero, _CMP_NEQ_UQ))) & nz) == 0;
                const int64_t pos = g.P + ix;
                rw[pos >> 6] |= uint64_t(nz) << (pos & 63);
                if ((pos & 63) > 56) rw[(pos >> 6) + 1] |= uint64_t(nz) >> (64 - (pos & 63));
            }
        }
#endif
        for (; ix < g.W; ++ix) {
            const S v = row[ix];
            const int64_t pos = g.P + ix;
            rw[pos >> 6] |= uint64_t(v != S(0)) << (pos & 63);
            spikes &= (v == S(0)) | (v == S(1));
            finite &= v - v == S(0);
        }
    }
    return spikes ? Values::spikes : finite ? Values::finite : Values::nonfinite;
}

// Writes base + step * i for every set bit i of a 16-bit mask, in order, to out (which has room
// for 16 entries); returns how many.
#if defined(__AVX2__) && !defined(__AVX512F__)
// For each byte b: the positions of its set bits, in order, as 8 bytes (the rest 0): the
// permutation that compresses 8 lanes by the mask b (AVX2 has no vpcompressd).
struct CompressTable {
    alignas(64) uint8_t idx[256][8];
    CompressTable() {
        for (int b = 0; b < 256; ++b) {
            int n = 0;
            for (int k = 0; k < 8; ++k) idx[b][k] = 0;
            for (int k = 0; k < 8; ++k) if (b >> k & 1) idx[b][n++] = uint8_t(k);
        }
    }
};
static const CompressTable kCompress;
#endif

struct BitLister {
    int32_t step;
#if defined(__AVX512F__)
    __m512i steps;
#elif defined(__AVX2__)
    __m256i steps;  // step * (0..7)
#endif
    explicit BitLister(int32_t s) : step(s) {
#if defined(__AVX512F__)
        steps = _mm512_mullo_epi32(_mm512_set1_epi32(s),
                                   _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
#elif defined(__AVX2__)
        steps = _mm256_mullo_epi32(_mm256_set1_epi32(s), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
#endif
    }
    int64_t operator()(uint32_t m, int32_t base, int32_t* out) const {
#if defined(__AVX512F__)
        // no branch per input: a loop over the set bits mispredicts its exit at every window
        _mm512_storeu_si512(out, _mm512_maskz_compress_epi32(__mmask16(m), _mm512_add_epi32(_mm512_set1_epi32(base), steps)));
        return __builtin_popcount(m);
#elif defined(__AVX2__)
        // the same without a branch per input: each byte of the mask permutes 8 lanes by a table
        // entry; the second byte's 8 entries are stored right after the first's set ones (out has
        // room for 16)
        const uint32_t lo = m & 0xffu, hi = (m >> 8) & 0xffu;
        const __m256i v0 = _mm256_add_epi32(_mm256_set1_epi32(base), steps);
        const __m256i v1 = _mm256_add_epi32(v0, _mm256_set1_epi32(8 * step));
        const __m256i p0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(kCompress.idx[lo])));
        const __m256i p1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(kCompress.idx[hi])));
        const int64_t n0 = __builtin_popcount(lo);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm256_permutevar8x32_epi32(v0, p0));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + n0), _mm256_permutevar8x32_epi32(v1, p1));
        return n0 + __builtin_popcount(hi);
#else
        int64_t n = 0;
        for (; m; m &= m - 1) out[n++] = base + step * __builtin_ctz(m);
        return n;
#endif
    }
};

// The taps of one tile, R rows by TT columns (TT <= the layout's T), of which nr by nj are
// outputs: o (the tile's first pixel, rows ostep apart) += the n listed inputs' weights. first:
// the first channel block (the accumulators start at zero, not at o).
template <typename S, int NV, int TT, int R, bool Binary>
inline void tile_taps(const int32_t* woff, const int32_t* xoff, const S* xpad, int64_t n, const S* wp, int64_t rstep,
                      S* o, int64_t ostep, int64_t nr, int64_t nj, bool first) {
    using V = typename Vec<S>::type;
    constexpr int64_t VN = Vec<S>::N, O = NV * VN;
    // (the tile loops are unrolled: a runtime index would put the accumulators in memory)
    const bool full = nr == R && nj == TT;
    V acc[R * TT * NV];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
#pragma GCC unroll 16
        for (int j = 0; j < TT; ++j) {
#pragma GCC unroll 8
            for (int k = 0; k < NV; ++k) {
                acc[(i * TT + j) * NV + k] = (!first && (full || (i < nr && j < nj)))
                                                 ? vload<V>(o + i * ostep + j * O + k * VN) : V{};
            }
        }
    }
    for (int64_t e = 0; e < n; ++e) {
        const S* w = wp + woff[e];
        S v = S(1);
        if constexpr (!Binary) v = xpad[xoff[e]];
#pragma GCC unroll 8
        for (int i = 0; i < R; ++i) {
            const S* wi = w - i * rstep;
            // one register per tile row, constant displacements for the columns
            // (otherwise GCC materialises an index per load and spills them)
            asm("" : "+r"(wi));
#pragma GCC unroll 16
            for (int j = 0; j < TT; ++j) {
#pragma GCC unroll 8
                for (int k = 0; k < NV; ++k) {
                    const V wv = vload<V>(wi - j * O + k * VN);
                    if constexpr (Binary) acc[(i * TT + j) * NV + k] += wv;
                    else acc[(i * TT + j) * NV + k] += v * wv;
                }
            }
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
#pragma GCC unroll 16
        for (int j = 0; j < TT; ++j) {
            if (!(full || (i < nr && j < nj))) continue;
#pragma GCC unroll 8
            for (int k = 0; k < NV; ++k) vstore(o + i * ostep + j * O + k * VN, acc[(i * TT + j) * NV + k]);
        }
    }
}

// One sample of the forward pass: ob [OH, OW, O] = the convolution of the sample whose row
// bitmasks are rb (and, graded, whose padded rows are xpad [C * H, XW]) with the padded weights
// wp [C, KHP = KH + 2 (R - 1), KWP = KW + 2 (T - 1), O]: wp[c, ky + R - 1, kx + T - 1, :] =
// W[:, c, ky, kx], zero around. The tile is R output rows by T output columns.
template <typename S, int NV, int T, int R, bool Binary>
void tiled_forward_sample(const RowBits& rb, const uint8_t* wins, const uint8_t* counts, const S* xpad, int64_t XW,
                          const S* wp, S* ob, int32_t* woff, int32_t* xoff, const Geometry& g, int64_t cblock) {
    constexpr int64_t O = NV * Vec<S>::N;  // == g.O (the plan): the tile's offsets are constants
    const int64_t KWP = g.KW + 2 * (T - 1), KHP = g.KH + 2 * (R - 1), WIN = T + g.KW - 1;
    const int64_t rstep = KWP * O;  // one padded kernel row
    const int64_t ntx = (g.OW + T - 1) / T;
    const BitLister wlist{int32_t(O)}, xlist{1};
    for (int64_t c0 = 0; c0 < g.C; c0 += cblock) {  // a block of input channels: its weights stay in L1
        const int64_t c1 = std::min(g.C, c0 + cblock);
        for (int64_t oy0 = 0; oy0 < g.OH; oy0 += R) {
            // input rows oy0 - P + u, u < KH + R - 1, reach the tile's rows (those inside the input)
            const int64_t u0 = std::max<int64_t>(0, g.P - oy0), u1 = std::min<int64_t>(g.KH + R - 1, g.H + g.P - oy0);
            const int64_t nr = std::min<int64_t>(R, g.OH - oy0);
            for (int64_t ox0 = 0; ox0 < g.OW; ox0 += T) {
                // the nonzero inputs reaching the tile: padded columns ox0 + d, d < WIN, of those
                // rows; an input at (u, d) adds W[c, u - i, d - j, :] to tile pixel (i, j), at
                // wp + woff[e] - i rstep - j O (zero where (u - i, d - j) is outside the kernel)
                int64_t n = 0;
                for (int64_t c = c0; c < c1; ++c) {
                    const int64_t r0 = c * g.H + oy0 - g.P;
                    const int32_t wb0 = int32_t(((c * KHP + R - 1) * KWP + T - 1) * O);
                    if (wins != nullptr) {  // the rows' windows, listed once per sample: offset them
                        for (int64_t u = u0; u < u1; ++u) {
                            const int64_t at = (r0 + u) * ntx + ox0 / T;
                            I16 d;
                            widen16(wins + at * 16, d);
                            vstore(woff + n, d * int32_t(O) + (wb0 + int32_t(u * rstep)));
                            if constexpr (!Binary) vstore(xoff + n, d + int32_t((r0 + u) * XW + ox0));
                            n += counts[at];
                        }
                        continue;
                    }
                    for (int64_t u = u0; u < u1; ++u) {
                        for (int64_t d0 = 0; d0 < WIN; d0 += 16) {
                            uint32_t m = rb.window16(r0 + u, ox0 + d0);
                            if (WIN - d0 < 16) m &= (1u << (WIN - d0)) - 1u;
                            if constexpr (!Binary) xlist(m, int32_t((r0 + u) * XW + ox0 + d0), xoff + n);
                            n += wlist(m, wb0 + int32_t(u * rstep + d0 * O), woff + n);
                        }
                    }
                }
                const int64_t nj = std::min<int64_t>(T, g.OW - ox0);
                const bool first = c0 == 0;
                S* o = ob + (oy0 * g.OW + ox0) * O;
                // the last tile of a row may be narrower: fewer columns of accumulators
                if (nj == T) tile_taps<S, NV, T, R, Binary>(woff, xoff, xpad, n, wp, rstep, o, g.OW * O, nr, nj, first);
                else if (nj <= T / 4) tile_taps<S, NV, std::max(1, T / 4), R, Binary>(woff, xoff, xpad, n, wp, rstep, o, g.OW * O, nr, nj, first);
                else if (nj <= T / 2) tile_taps<S, NV, std::max(1, T / 2), R, Binary>(woff, xoff, xpad, n, wp, rstep, o, g.OW * O, nr, nj, first);
                else tile_taps<S, NV, T, R, Binary>(woff, xoff, xpad, n, wp, rstep, o, g.OW * O, nr, nj, first);
            }
        }
    }
}

// dst [O, npix] = src [npix, O] transposed, plus bias [O] unless null (the same sum as adding the
// bias to the channels-last result).
template <typename S>
static void to_channels_first(const S* src, const S* bias, S* dst, int64_t npix, int64_t O) {
    constexpr int64_t PB = 64;  // pixels per block: O rows of PB outputs stay in L1
    for (int64_t p0 = 0; p0 < npix; p0 += PB) {
        const int64_t np = std::min(PB, npix - p0);
        for (int64_t o = 0; o < O; ++o) {
            S* d = dst + o * npix + p0;
            const S* sp = src + p0 * O + o;
            if (bias) {
                const S bo = bias[o];
                for (int64_t p = 0; p < np; ++p) d[p] = sp[p * O] + bo;
            } else {
                for (int64_t p = 0; p < np; ++p) d[p] = sp[p * O];
            }
        }
    }
}

template <typename S, int NV, int T, int R>
// out [B, O, OH, OW] contiguous (+ bias [O] unless null): each sample is computed channels-last into
// the thread's buffer (the tiles' natural order) and transposed out while it is still in cache, so
// the layers after the convolution get the layout they run fastest on without another pass.
void tiled_forward(const S* x, const S* wt, const S* wp, const S* bias, S* out, const Geometry& g, int nthreads) {
    const int64_t WIN = T + g.KW - 1, WINr = (WIN + 15) / 16 * 16;
    const int64_t KWP = g.KW + 2 * (T - 1), KHP = g.KH + 2 * (R - 1);
    const int64_t XW = g.W + 2 * g.P + WINr + 16;
    const int64_t cblock = std::clamp<int64_t>(int64_t(32 * 1024) / (KHP * KWP * g.O * int64_t(sizeof(S))), 1, g.C);
    parallel_ranges(g.B, nthreads, [&](int64_t b0, int64_t b1, int) {
        RowBits rb;
        std::vector<S> xpad;
        std::vector<int32_t> woff(size_t(cblock * (g.KH + R) * WINr + 32)), xoff(woff.size());
        // windows of at most 16 columns: each row's windows (one per tile column) listed once
        // per sample as column numbers d, instead of once per tile row that reads them
        const int64_t ntx = (g.OW + T - 1) / T;
        // (as bytes: a sample's windows stay in L1 next to a channel's weights)
        std::vector<uint8_t> wins(WIN <= 16 ? size_t(g.C * g.H * ntx * 16) : 0);
        int32_t listed[32] = {};
        std::vector<uint8_t> counts(WIN <= 16 ? size_t(g.C * g.H * ntx) : 0);
        const BitLister dlist{1};
        const int64_t npix = g.OH * g.OW;
        std::vector<S> obuf(size_t(npix * g.O));
        S* ob = obuf.data();
        for (int64_t b = b0; b < b1; ++b) {
            const S* xb = x + b * g.C * g.H * g.W;
            const Values values = row_bits(xb, g, WINr, rb);
            if (values == Values::nonfinite) {
                Geometry g1 = g;
                g1.B = 1;
                std::fill_n(ob, npix * g.O, S(0));
                scatter_forward(xb, wt, ob, g1, 1);
                to_channels_first(ob, bias, out + b * g.O * npix, npix, g.O);
                continue;
            }
            if (WIN <= 16) {
                const uint32_t wmask = (uint32_t(1) << WIN) - 1u;
                for (int64_t r = 0; r < g.C * g.H; ++r) {
                    for (int64_t tx = 0; tx < ntx; ++tx) {
                        const int64_t at = r * ntx + tx;
                        counts[at] = uint8_t(dlist(rb.window16(r, tx * T) & wmask, 0, listed));
                        narrow16(listed, wins.data() + at * 16);
                    }
                }
            }
            const uint8_t* wl = WIN <= 16 ? wins.data() : nullptr;
            if (values == Values::spikes) {
                tiled_forward_sample<S, NV, T, R, true>(rb, wl, counts.data(), nullptr, XW, wp, ob, woff.data(),
                                                        xoff.data(), g, cblock);
            } else {
                xpad.assign(size_t(g.C * g.H * XW), S(0));
                for (int64_t r = 0; r < g.C * g.H; ++r) std::copy_n(xb + r * g.W, g.W, xpad.data() + r * XW + g.P);
                tiled_forward_sample<S, NV, T, R, false>(rb, wl, counts.data(), xpad.data(), XW, wp, ob, woff.data(),
                                                         xoff.data(), g, cblock);
            }
            to_channels_first(ob, bias, out + b * g.O * npix, npix, g.O);
        }
    });
}

// One sample of the weight gradient: acc [C, KH, KW, O] += its terms. pos/val: the sample's
// nonzero inputs row by row ((iy * OWP + ix) * O, and the value when graded), start: where each
// row r = c * H + iy begins in them; gp [OH, OWP, O]: the output gradient, columns shifted by L.
template <typename S, int NV, int KT, bool Binary>
void tiled_weight_sample(const int32_t* pos, const S* val, const int64_t* start, const S* gp, int64_t OWP,
                         int64_t L, S* acc, const Geometry& g, int64_t rblock) {
    using V = typename Vec<S>::type;
    constexpr int64_t VN = Vec<S>::N, O = NV * VN;  // == g.O
    for (int64_t iy0 = 0; iy0 < g.H; iy0 += rblock) {  // a block of input rows: the rows of gp they reach stay in L1
        const int64_t iy1 = std::min(g.H, iy0 + rblock);
        for (int64_t ky = 0; ky < g.KH; ++ky) {
            // input rows iy reach output row iy + P - ky
            const int64_t lo = std::max(iy0, ky - g.P), hi = std::min(iy1, ky - g.P + g.OH);
            if (lo >= hi) continue;
            for (int64_t c = 0; c < g.C; ++c) {
                const int64_t e0 = start[c * g.H + lo], e1 = start[c * g.H + hi];
                if (e0 == e1) continue;
                for (int64_t kx0 = 0; kx0 < g.KW; kx0 += KT) {
                    const int64_t nk = std::min<int64_t>(KT, g.KW - kx0);
                    S* dst = acc + ((c * g.KH + ky) * g.KW + kx0) * O;
                    V a[KT * NV];
#pragma GCC unroll 32
                    for (int i = 0; i < KT * NV; ++i) a[i] = V{};
                    for (int64_t t = 0; t < nk; ++t) {
#pragma GCC unroll 8
                        for (int k = 0; k < NV; ++k) a[t * NV + k] = vload<V>(dst + t * O + k * VN);
                    }
                    // gout[iy + P - ky, ix + P - kx0 - t, :] for t < KT: KT consecutive pixels, read backwards
                    const int64_t base = ((g.P - ky) * OWP + L + g.P - kx0) * O;
                    for (int64_t e = e0; e < e1; ++e) {
                        const S* p = gp + (base + pos[e]);
                        S v = S(1);
                        if constexpr (!Binary) v = val[e];
#pragma GCC unroll 32
                        for (int t = 0; t < KT; ++t) {
#pragma GCC unroll 8
                            for (int k = 0; k < NV; ++k) {
                                const V gv = vload<V>(p - t * O + k * VN);
                                if constexpr (Binary) a[t * NV + k] += gv;
                                else a[t * NV + k] += v * gv;
                            }
                        }
                    }
                    for (int64_t t = 0; t < nk; ++t) {
#pragma GCC unroll 8
                        for (int k = 0; k < NV; ++k) vstore(dst + t * O + k * VN, a[t * NV + k]);
                    }
                }
            }
        }
    }
}

// dwt [C, KH, KW, O] = the weight gradient; gout [B, O, OH, OW] with strides gs.
template <typename S, int NV, int KT>
void tiled_weight(const S* x, const S* gout, const int64_t* gs, S* dwt, const Geometry& g, int nthreads) {
    const int64_t nkb = (g.KW + KT - 1) / KT;
    // zero columns around the output gradient: ix + P - kx runs from P - (nkb KT - 1) to W - 1 + P
    const int64_t L = std::max<int64_t>(0, nkb * KT - 1 - g.P), R = std::max<int64_t>(0, g.KW - 1 - g.P);
    const int64_t OWP = L + g.OW + R;
    const int64_t rblock = std::clamp<int64_t>(int64_t(24 * 1024) / (OWP * g.O * int64_t(sizeof(S))), 1, g.H);
    summed_over_threads(g.B, nthreads, dwt, g.C * g.KH * g.KW * g.O, [&](int64_t b0, int64_t b1, S* acc) {
        std::vector<S> gp(size_t(g.OH * OWP * g.O), S(0));  // the zero columns stay zero
        RowBits rb;
        std::vector<int32_t> pos;
        std::vector<S> val;
        std::vector<int64_t> start(size_t(g.C * g.H + 1));
        for (int64_t b = b0; b < b1; ++b) {
            const S* xb = x + b * g.C * g.H * g.W;
            const Values values = row_bits(xb, g, 0, rb);
            const bool binary = values == Values::spikes;
            pos.clear();
            val.clear();
            for (int64_t r = 0; r < g.C * g.H; ++r) {
                start[r] = int64_t(pos.size());
                const uint64_t* rw = rb.bits.data() + r * rb.words;
                const int64_t iy = r % g.H;
                for (int64_t wi = 0; wi < rb.words; ++wi) {
                    for (uint64_t m = rw[wi]; m; m &= m - 1) {
                        const int64_t ix = wi * 64 + __builtin_ctzll(m) - g.P;
                        pos.push_back(int32_t((iy * OWP + ix) * g.O));
                        if (!binary) val.push_back(xb[r * g.W + ix]);
                    }
                }
            }
            start[g.C * g.H] = int64_t(pos.size());
            // the sample's output gradient, channels-last, between the zero columns
            const S* gb = gout + b * gs[0];
            for (int64_t oy = 0; oy < g.OH; ++oy) {
                S* dst = gp.data() + (oy * OWP + L) * g.O;
                if (gs[1] == 1) {
                    for (int64_t ox = 0; ox < g.OW; ++ox)
                        std::copy_n(gb + oy * gs[2] + ox * gs[3], g.O, dst + ox * g.O);
                } else {
                    for (int64_t o = 0; o < g.O; ++o) {
                        const S* src = gb + o * gs[1] + oy * gs[2];
                        for (int64_t ox = 0; ox < g.OW; ++ox) dst[ox * g.O + o] = src[ox * gs[3]];
                    }
                }
            }
            if (values == Values::nonfinite) {  // the scatter form's walk, on the unpadded output gradient
                std::vector<S> gcl(size_t(g.OH * g.OW * g.O));
                for (int64_t oy = 0; oy < g.OH; ++oy)
                    std::copy_n(gp.data() + (oy * OWP + L) * g.O, g.OW * g.O, gcl.data() + oy * g.OW * g.O);
                Geometry g1 = g;
                g1.B = 1;
                gather_weight(xb, gcl.data(), acc, g1, 1);
            } else if (binary)
                tiled_weight_sample<S, NV, KT, true>(pos.data(), nullptr, start.data(), gp.data(), OWP, L, acc, g, rblock);
            else
                tiled_weight_sample<S, NV, KT, false>(pos.data(), val.data(), start.data(), gp.data(), OWP, L, acc, g, rblock);
        }
    });
}

// The fast path's shape parameters, or nv = 0 where it does not apply (the scatter form then).
struct TilePlan {
    int nv = 0, t = 0, r = 0, kt = 0;
};

template <typename S>
TilePlan tile_plan(const Geometry& g) {
    TilePlan p;
    const int64_t VN = Vec<S>::N;
    if (g.O % VN != 0) return p;
    const int64_t nv = g.O / VN;
    if (nv != 1 && nv != 2 && nv != 4) return p;
    // int32 offsets into the padded weights, the padded input rows and a sample's output gradient
    const int64_t lim = int64_t(1) << 30;
    if (g.C * g.KH * (g.KW + 16) * g.O >= lim || g.C * g.H * (g.W + 2 * g.P + 64) >= lim ||
        (g.OH + g.KH) * (g.OW + 2 * g.KW + 32) * g.O >= lim)
        return p;
    p.nv = int(nv);
    // the forward tile, R T NV accumulators: T NV = 8 keeps enough adds in flight; R rows share
    // their input rows (listed once for R output rows), as many as the registers hold
    // (measured at the benchmark's shapes: 3 x 4 beat 4 x 3, 2 x 5 and 2 x 4 for two vectors, 2 x 8
    // beat 3 x 8 and 4 x 6 for one)
    p.t = nv == 1 ? 8 : nv == 2 ? 4 : 2;
    p.r = kVecRegs < 32 ? 1 : nv == 1 ? 2 : 3;
    // the weight gradient's KT NV accumulators: up to 3/4 of the vector registers, in as few
    // kernel-column blocks as that allows, as even as the compiled widths allow
    const int64_t ktmax = (kVecRegs * 3 / 4) / nv;
    const int64_t nkb = (g.KW + ktmax - 1) / ktmax, need = (g.KW + nkb - 1) / nkb;
    for (int kt : {2, 3, 4, 6, 8, 12, 16, 24}) {
        if (kt >= need && kt <= ktmax) { p.kt = kt; break; }
    }
    if (p.kt == 0) p.nv = 0;
    return p;
}

// The compiled tiles (R rows by T columns of NV vectors): see tile_plan.
#define NEUROCODE_TILES(X) X(1, 1, 8) X(1, 2, 8) X(2, 1, 4) X(2, 3, 4) X(4, 1, 2) X(4, 3, 2)

template <typename S, int NV>
void tiled_forward_nv(const S* x, const S* wt, const S* wp, const S* bias, S* out, const Geometry& g, int nthreads,
                      int t, int r) {
#define NEUROCODE_TILE(NV_, R_, T_)                                                      \
    if constexpr (NV == NV_ && R_ * T_ * NV_ <= kVecRegs * 3 / 4) {                      \
        if (r == R_ && t == T_) return tiled_forward<S, NV_, T_, R_>(x, wt, wp, bias, out, g, nthreads); \
    }
    NEUROCODE_TILES(NEUROCODE_TILE)
#undef NEUROCODE_TILE
    TORCH_CHECK(false, "neurocode::event_conv2d: no ", r, "x", t, " tile for ", NV, " vectors");
}

template <typename S, int NV>
void tiled_weight_nv(const S* x, const S* gout, const int64_t* gs, S* dwt, const Geometry& g, int nthreads, int kt) {
    constexpr int ktmax = (kVecRegs * 3 / 4) / NV;
    switch (kt) {
#define NEUROCODE_KT(K) \
    case K: if constexpr (K <= ktmax) return tiled_weight<S, NV, K>(x, gout, gs, dwt, g, nthreads); break;
        NEUROCODE_KT(2) NEUROCODE_KT(3) NEUROCODE_KT(4) NEUROCODE_KT(6) NEUROCODE_KT(8) NEUROCODE_KT(12)
        NEUROCODE_KT(16) NEUROCODE_KT(24)
#undef NEUROCODE_KT
    }
    TORCH_CHECK(false, "neurocode::event_conv2d_weight: no kernel-column block ", kt, " for ", NV, " vectors");
}

Geometry geometry(const Tensor& x, at::IntArrayRef wshape, int64_t padding, const char* op) {
    TORCH_CHECK(x.dim() == 4, op, ": input must be [B, C, H, W], got shape ", x.sizes());
    TORCH_CHECK(x.device().is_cpu(), op, ": input must be a CPU tensor, got device ", x.device());
    TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
                ": input must be float32 or float64, got ", x.scalar_type());
    TORCH_CHECK(wshape.size() == 4 && wshape[1] == x.size(1), op, ": weight must be [O, ", x.size(1),
                ", KH, KW], got shape ", wshape);
    TORCH_CHECK(padding >= 0, op, ": padding must be >= 0, got ", padding);
    Geometry g{x.size(0), x.size(1), x.size(2), x.size(3), wshape[0], wshape[2], wshape[3], padding, 0, 0};
    g.OH = g.H + 2 * g.P - g.KH + 1;
    g.OW = g.W + 2 * g.P - g.KW + 1;
    TORCH_CHECK(g.OH >= 1 && g.OW >= 1, op, ": kernel ", g.KH, "x", g.KW, " larger than the padded input ",
                g.H + 2 * g.P, "x", g.W + 2 * g.P);
    return g;
}

// [B, O, OH, OW], contiguous.
Tensor op_event_conv2d(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias,
                       int64_t padding) {
    const CacheScope scope;
    const char* op = "neurocode::event_conv2d";
    const Geometry g = geometry(input, weight.sizes(), padding, op);
    TORCH_CHECK(weight.scalar_type() == input.scalar_type() && weight.device().is_cpu(), op,
                ": weight must be a CPU tensor of the input's dtype ", input.scalar_type());
    Tensor bias_c;
    if (bias.has_value()) {
        TORCH_CHECK(bias->dim() == 1 && bias->size(0) == g.O, op, ": bias must be [", g.O, "], got ", bias->sizes());
        bias_c = bias->to(input.scalar_type()).contiguous();
    }
    Tensor x = input.contiguous();
    Tensor wt = weight.permute({1, 2, 3, 0}).contiguous();  // [C, KH, KW, O]
    Tensor out;
    AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "neurocode::event_conv2d", [&] {
        const TilePlan plan = tile_plan<scalar_t>(g);
        const scalar_t* bp = bias_c.defined() ? bias_c.const_data_ptr<scalar_t>() : nullptr;
        if (plan.nv > 0) {
            // T - 1 zero kernel columns on both sides: the tile's adds need no bounds test
            Tensor wp = at::zeros({g.C, g.KH + 2 * (plan.r - 1), g.KW + 2 * (plan.t - 1), g.O}, input.options());
            wp.narrow(1, plan.r - 1, g.KH).narrow(2, plan.t - 1, g.KW).copy_(wt);
            out = at::empty({g.B, g.O, g.OH, g.OW}, input.options());
            const scalar_t* xp = x.const_data_ptr<scalar_t>();
            scalar_t* op_ = out.mutable_data_ptr<scalar_t>();
            const scalar_t* wpp = wp.const_data_ptr<scalar_t>();
            const scalar_t* wtp = wt.const_data_ptr<scalar_t>();
            const int nt = at::get_num_threads();
            if (plan.nv == 1) tiled_forward_nv<scalar_t, 1>(xp, wtp, wpp, bp, op_, g, nt, plan.t, plan.r);
            else if (plan.nv == 2) tiled_forward_nv<scalar_t, 2>(xp, wtp, wpp, bp, op_, g, nt, plan.t, plan.r);
            else tiled_forward_nv<scalar_t, 4>(xp, wtp, wpp, bp, op_, g, nt, plan.t, plan.r);
        } else {
            Tensor out_cl = at::zeros({g.B, g.OH, g.OW, g.O}, input.options());
            scatter_forward<scalar_t>(x.const_data_ptr<scalar_t>(), wt.const_data_ptr<scalar_t>(),
                                      out_cl.mutable_data_ptr<scalar_t>(), g, at::get_num_threads());
            if (bias_c.defined()) out_cl.add_(bias_c);
            out = out_cl.permute({0, 3, 1, 2}).contiguous();
        }
    });
    return out;
}

// The weight gradient [O, C, KH, KW] from the (sparse) input and the output gradient.
Tensor op_event_conv2d_weight(const Tensor& input, const Tensor& grad_output, at::IntArrayRef weight_shape,
                              int64_t padding) {
    const CacheScope scope;
    const char* op = "neurocode::event_conv2d_weight";
    const Geometry g = geometry(input, weight_shape, padding, op);
    TORCH_CHECK(grad_output.dim() == 4 && grad_output.size(0) == g.B && grad_output.size(1) == g.O &&
                    grad_output.size(2) == g.OH && grad_output.size(3) == g.OW,
                op, ": grad_output must be [", g.B, ", ", g.O, ", ", g.OH, ", ", g.OW, "], got ", grad_output.sizes());
    Tensor x = input.contiguous();
    Tensor dwt = at::zeros({g.C, g.KH, g.KW, g.O}, input.options());
    AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "neurocode::event_conv2d_weight", [&] {
        const TilePlan plan = tile_plan<scalar_t>(g);
        const int nt = at::get_num_threads();
        if (plan.nv > 0) {
            // any strides: each sample is copied into a padded channels-last buffer anyway
            Tensor gout = grad_output.to(input.scalar_type());
            const int64_t gs[4] = {gout.stride(0), gout.stride(1), gout.stride(2), gout.stride(3)};
            const scalar_t* xp = x.const_data_ptr<scalar_t>();
            const scalar_t* gp = gout.const_data_ptr<scalar_t>();
            scalar_t* dp = dwt.mutable_data_ptr<scalar_t>();
            if (plan.nv == 1) tiled_weight_nv<scalar_t, 1>(xp, gp, gs, dp, g, nt, plan.kt);
            else if (plan.nv == 2) tiled_weight_nv<scalar_t, 2>(xp, gp, gs, dp, g, nt, plan.kt);
            else tiled_weight_nv<scalar_t, 4>(xp, gp, gs, dp, g, nt, plan.kt);
        } else {
            Tensor gout_cl = grad_output.to(input.scalar_type()).permute({0, 2, 3, 1}).contiguous();  // [B, OH, OW, O]
            gather_weight<scalar_t>(x.const_data_ptr<scalar_t>(), gout_cl.const_data_ptr<scalar_t>(),
                                    dwt.mutable_data_ptr<scalar_t>(), g, nt);
        }
    });
    return dwt.permute({3, 0, 1, 2}).contiguous();
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(neurocode, m) {
    m.def("event_conv2d(Tensor input, Tensor weight, Tensor? bias, int padding) -> Tensor");
    m.def("event_conv2d_weight(Tensor input, Tensor grad_output, int[] weight_shape, int padding) -> Tensor");
}

TORCH_LIBRARY_IMPL(neurocode, CPU, m) {
    m.impl("event_conv2d", &op_event_conv2d);
    m.impl("event_conv2d_weight", &op_event_conv2d_weight);
}
