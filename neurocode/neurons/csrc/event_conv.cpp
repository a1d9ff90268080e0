// Event-driven 2-D convolution for sparse inputs (spike maps): torch operators
// neurocode::event_conv2d and neurocode::event_conv2d_weight (CPU, float32/float64).
//
// A dense convolution multiplies every input position with every kernel tap. A spike map is
// mostly zeros, so here each *nonzero* input (b, c, iy, ix) with value v scatters v * W[:, c, ky, kx]
// into the outputs it reaches, all output channels at once (the innermost loop runs over the
// output channels, contiguous in a channels-last accumulator: it vectorises). The weight
// gradient is the same walk gathering the output gradient. Both are the convolution's exact sums
// (only the order of the additions differs from torch's dense kernels). Stride 1, zero padding,
// no dilation, one group: the spiking models' second layers.

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

namespace {

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
    const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(nthreads, g.B));
    const int64_t wsize = g.C * g.KH * g.KW * g.O;
    std::vector<std::vector<S>> partial(static_cast<size_t>(nt));
    parallel_ranges(g.B, int(nt), [&](int64_t b0, int64_t b1, int tid) {
        S* acc = dwt;
        if (tid > 0) { partial[tid].assign(size_t(wsize), S(0)); acc = partial[tid].data(); }
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
    for (int64_t t = 1; t < nt; ++t) {
        if (partial[t].empty()) continue;
        const S* p = partial[t].data();
        for (int64_t i = 0; i < wsize; ++i) dwt[i] += p[i];
    }
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

// [B, O, OH, OW] in channels-last memory format.
Tensor op_event_conv2d(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias,
                       int64_t padding) {
    const char* op = "neurocode::event_conv2d";
    const Geometry g = geometry(input, weight.sizes(), padding, op);
    TORCH_CHECK(weight.scalar_type() == input.scalar_type() && weight.device().is_cpu(), op,
                ": weight must be a CPU tensor of the input's dtype ", input.scalar_type());
    Tensor x = input.contiguous();
    Tensor wt = weight.permute({1, 2, 3, 0}).contiguous();  // [C, KH, KW, O]
    Tensor out_cl = at::zeros({g.B, g.OH, g.OW, g.O}, input.options());
    AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "neurocode::event_conv2d", [&] {
        scatter_forward<scalar_t>(x.const_data_ptr<scalar_t>(), wt.const_data_ptr<scalar_t>(),
                                  out_cl.mutable_data_ptr<scalar_t>(), g, at::get_num_threads());
    });
    if (bias.has_value()) {
        TORCH_CHECK(bias->dim() == 1 && bias->size(0) == g.O, op, ": bias must be [", g.O, "], got ", bias->sizes());
        out_cl.add_(*bias);
    }
    return out_cl.permute({0, 3, 1, 2});
}

// The weight gradient [O, C, KH, KW] from the (sparse) input and the output gradient.
Tensor op_event_conv2d_weight(const Tensor& input, const Tensor& grad_output, at::IntArrayRef weight_shape,
                              int64_t padding) {
    const char* op = "neurocode::event_conv2d_weight";
    const Geometry g = geometry(input, weight_shape, padding, op);
    TORCH_CHECK(grad_output.dim() == 4 && grad_output.size(0) == g.B && grad_output.size(1) == g.O &&
                    grad_output.size(2) == g.OH && grad_output.size(3) == g.OW,
                op, ": grad_output must be [", g.B, ", ", g.O, ", ", g.OH, ", ", g.OW, "], got ", grad_output.sizes());
    Tensor x = input.contiguous();
    Tensor gout_cl = grad_output.to(input.scalar_type()).permute({0, 2, 3, 1}).contiguous();  // [B, OH, OW, O]
    Tensor dwt = at::zeros({g.C, g.KH, g.KW, g.O}, input.options());
    AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "neurocode::event_conv2d_weight", [&] {
        gather_weight<scalar_t>(x.const_data_ptr<scalar_t>(), gout_cl.const_data_ptr<scalar_t>(),
                                dwt.mutable_data_ptr<scalar_t>(), g, at::get_num_threads());
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
