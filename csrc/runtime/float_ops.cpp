// Runtime layer: float32 linear and convolution (see float_ops.h).
#include "runtime/float_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "runtime/dispatch.h"
#include "runtime/thread_pool.h"

namespace eb {
namespace {

// Multiply-adds per thread below which a thread pool wake-up costs more than it saves.
constexpr int64_t kMinWorkPerThread = int64_t{1} << 18;

int64_t panels(int64_t n) { return (n + kSgemmPanel - 1) / kSgemmPanel; }

// Rows of A x all panels of B, the panels split over the pool.
void run_sgemm(const SgemmCall& call) {
  if (call.M == 0 || call.N == 0) return;
  const SgemmFn kernel = active_sgemm();
  parallel_for(panels(call.N), call.M * std::max<int64_t>(call.K, 1) * kSgemmPanel, kMinWorkPerThread,
               [&](int64_t p0, int64_t p1) { kernel(call, 0, call.M, p0, p1); });
}

// One image's and group's im2col columns, packed as B: panel [P / 16][Kc][16]
// with P = out_h * out_w pixels and Kc = (c, kh, kw); padding taps are 0.
void pack_columns(const ConvGeometry& g, const float* x, int64_t group, float* out) {
  const int64_t oh_n = g.out_h(), ow_n = g.out_w(), P = oh_n * ow_n, cg = g.group_in_c();
  for (int64_t panel = 0; panel < panels(P); ++panel) {
    int64_t ih0[kSgemmPanel], iw0[kSgemmPanel];
    for (int j = 0; j < kSgemmPanel; ++j) {
      const int64_t p = std::min(panel * kSgemmPanel + j, P - 1);
      ih0[j] = (p / ow_n) * g.stride_h - g.pad_top;
      iw0[j] = (p % ow_n) * g.stride_w - g.pad_left;
    }
    const int valid = static_cast<int>(std::min<int64_t>(kSgemmPanel, P - panel * kSgemmPanel));
    float* dst = out + panel * cg * g.kernel_h * g.kernel_w * kSgemmPanel;
    for (int64_t c = 0; c < cg; ++c) {
      const float* plane = x + (group * cg + c) * g.in_h * g.in_w;
      for (int64_t kh = 0; kh < g.kernel_h; ++kh)
        for (int64_t kw = 0; kw < g.kernel_w; ++kw, dst += kSgemmPanel)
          for (int j = 0; j < kSgemmPanel; ++j) {
            const int64_t ih = ih0[j] + kh * g.dilation_h, iw = iw0[j] + kw * g.dilation_w;
            const bool inside = j < valid && ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w;
            dst[j] = inside ? plane[ih * g.in_w + iw] : 0.0f;
          }
    }
  }
}

}  // namespace

PackedF32 pack_f32_transposed(const float* w, int64_t N, int64_t K) {
  PackedF32 p;
  p.K = K;
  p.N = N;
  p.data.resize(static_cast<size_t>(panels(N) * K * kSgemmPanel));  // zero-filled: columns past N
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      p.data[static_cast<size_t>(((n / kSgemmPanel) * K + k) * kSgemmPanel + n % kSgemmPanel)] = w[n * K + k];
  return p;
}

void float_linear(const float* x, int64_t M, const PackedF32& w, const float* bias, float lo, float hi, float* y) {
  SgemmCall call;
  call.M = M;
  call.N = w.N;
  call.K = w.K;
  call.a = x;
  call.lda = w.K;
  call.b = w.data.data();
  call.bias = bias;
  call.lo = lo;
  call.hi = hi;
  call.c = y;
  call.ldc = w.N;
  run_sgemm(call);
}

void float_conv(const FloatConv& conv, int64_t batch, const float* x, float* y) {
  ConvGeometry g = conv.g;
  g.batch = batch;
  const int64_t P = g.out_h() * g.out_w(), cg = g.group_in_c(), og = g.group_out_c();
  const int64_t Kc = cg * g.kernel_h * g.kernel_w;
  thread_local AlignedBuffer<float> columns;
  columns.reserve_discard(static_cast<size_t>(panels(P) * Kc * kSgemmPanel));
  float* const packed = columns.data();  // the pointer: pool threads have their own thread_local
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      pack_columns(g, x + n * g.in_c * g.in_h * g.in_w, grp, packed);
      SgemmCall call;
      call.M = og;
      call.N = P;
      call.K = Kc;
      call.a = conv.w.data() + grp * og * Kc;
      call.lda = Kc;
      call.b = packed;
      call.bias = conv.bias.empty() ? nullptr : conv.bias.data() + grp * og;
      call.bias_per_row = true;
      call.lo = conv.lo;
      call.hi = conv.hi;
      call.c = y + (n * g.out_c + grp * og) * P;
      call.ldc = P;
      run_sgemm(call);
    }
}

void float_unary(const FloatUnaryOp& op, const float* x, int64_t n, float* y) {
  auto apply = [&](auto f) {
    parallel_for(n, 16, kMinWorkPerThread, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) y[i] = f(x[i]);
    });
  };
  switch (op.kind) {
    case FloatUnary::kClip:
      return apply([&](float v) { return std::min(std::max(v, op.a), op.b); });
    case FloatUnary::kLeakyRelu:
      return apply([&](float v) { return v > 0.0f ? v : v * op.a; });
    case FloatUnary::kSigmoid:
      return apply([](float v) {
        const float e = std::exp(-std::fabs(v));  // never overflows
        return v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
      });
    case FloatUnary::kTanh:
      return apply([](float v) { return std::tanh(v); });
    case FloatUnary::kHardswish:
      return apply([](float v) { return v * std::min(std::max(v + 3.0f, 0.0f), 6.0f) / 6.0f; });
    case FloatUnary::kGelu:
      return apply([](float v) {
        const double d = v;
        return static_cast<float>(0.5 * d * (1.0 + std::erf(d / std::sqrt(2.0))));
      });
    case FloatUnary::kGeluTanh:
      return apply([](float v) {
        const float inner = 0.7978845608f * (v + 0.044715f * v * v * v);
        return 0.5f * v * (1.0f + std::tanh(inner));
      });
  }
}

void float_channel_affine(const float* x, int64_t batch, int64_t C, int64_t inner, const float* scale,
                          const float* shift, float* y) {
  parallel_for(batch * C, inner * 2, kMinWorkPerThread, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float s = scale[r % C], t = shift[r % C];
      for (int64_t i = 0; i < inner; ++i) y[r * inner + i] = x[r * inner + i] * s + t;
    }
  });
}

void float_binary(bool mul, const float* a, const std::vector<int64_t>& a_strides, const float* b,
                  const std::vector<int64_t>& b_strides, const std::vector<int64_t>& out, float* y) {
  const size_t rank = out.size();
  const int64_t inner = rank == 0 ? 1 : out[rank - 1];
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < rank; ++d) rows *= out[d];
  const int64_t sa = rank == 0 ? 0 : a_strides[rank - 1], sb = rank == 0 ? 0 : b_strides[rank - 1];
  parallel_for(rows, inner, kMinWorkPerThread, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t oa = 0, ob = 0, rest = r;  // the row's offsets in a and b, from its multi-index
      for (size_t d = rank - 1; d-- > 0;) {
        const int64_t i = rest % out[d];
        rest /= out[d];
        oa += i * a_strides[d];
        ob += i * b_strides[d];
      }
      float* yr = y + r * inner;
      if (mul)
        for (int64_t i = 0; i < inner; ++i) yr[i] = a[oa + i * sa] * b[ob + i * sb];
      else
        for (int64_t i = 0; i < inner; ++i) yr[i] = a[oa + i * sa] + b[ob + i * sb];
    }
  });
}

void float_pool(const FloatPool& p, int64_t batch, const float* x, float* y) {
  parallel_for(batch * p.channels, p.out_h * p.out_w * p.kernel[0] * p.kernel[1], kMinWorkPerThread,
               [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const float* plane = x + c * p.in_h * p.in_w;
      float* out = y + c * p.out_h * p.out_w;
      for (int64_t oh = 0; oh < p.out_h; ++oh)
        for (int64_t ow = 0; ow < p.out_w; ++ow) {
          const int64_t h0 = oh * p.stride[0] - p.pad[0], w0 = ow * p.stride[1] - p.pad[1];
          float acc = p.average ? 0.0f : -std::numeric_limits<float>::infinity();
          int64_t count = 0, padded = 0;
          for (int64_t kh = 0; kh < p.kernel[0]; ++kh)
            for (int64_t kw = 0; kw < p.kernel[1]; ++kw) {
              const int64_t ih = h0 + kh, iw = w0 + kw;
              if (ih < 0 || ih >= p.in_h || iw < 0 || iw >= p.in_w) {
                // PyTorch's divisor: the window clipped to the padded input (ceil_mode
                // windows may reach past the end padding; those taps are not counted)
                padded += ih < p.in_h + p.pad[2] && iw < p.in_w + p.pad[3];
                continue;
              }
              const float v = plane[ih * p.in_w + iw];
              acc = p.average ? acc + v : std::max(acc, v);
              ++count;
            }
          out[oh * p.out_w + ow] = p.average ? acc / static_cast<float>(p.count_include_pad ? count + padded : count)
                                             : acc;
        }
    }
  });
}

}  // namespace eb
