// Runtime layer: the float32 elementwise steps, layer norm and softmax (float_ops.h) over the
// active FloatMathKernels table, split over the thread pool.  Every split is on whole elements or
// rows, so the thread count never changes a bit.
#include <algorithm>
#include <cmath>
#include <limits>

#include "runtime/dispatch.h"
#include "runtime/float_ops.h"
#include "runtime/thread_pool.h"

namespace eb {
namespace {

// Work units (roughly float operations) per thread below which a wake-up costs more than it saves.
constexpr int64_t kMinWorkPerThread = int64_t{1} << 18;

// Element strides of a C-contiguous tensor of shape `out`.
bool is_contiguous(const std::vector<int64_t>& strides, const std::vector<int64_t>& out) {
  int64_t s = 1;
  for (size_t d = out.size(); d-- > 0;) {
    if (out[d] != 1 && strides[d] != s) return false;
    s *= out[d];
  }
  return true;
}

bool is_zero(const std::vector<int64_t>& strides) {
  return std::all_of(strides.begin(), strides.end(), [](int64_t s) { return s == 0; });
}

}  // namespace

void float_unary(const FloatUnaryOp& op, const float* x, int64_t n, float* y) {
  const FloatMathKernels k = active_float_math();
  parallel_for(n, 16, kMinWorkPerThread, [&](int64_t i0, int64_t i1) { k.unary(op, x + i0, i1 - i0, y + i0); });
}

void float_channel_affine(const float* x, int64_t batch, int64_t C, int64_t inner, const float* scale,
                          const float* shift, float* y) {
  const FloatMathKernels k = active_float_math();
  parallel_for(batch * C, inner * 2, kMinWorkPerThread, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) k.affine(x + r * inner, inner, scale[r % C], shift[r % C], y + r * inner);
  });
}

void float_binary(FloatBinaryOp op, const float* a, const std::vector<int64_t>& a_strides, const float* b,
                  const std::vector<int64_t>& b_strides, const std::vector<int64_t>& out, float lo, float hi,
                  float* y) {
  const FloatMathKernels k = active_float_math();
  const bool clamp = lo > -std::numeric_limits<float>::infinity() || hi < std::numeric_limits<float>::infinity();
  const size_t rank = out.size();
  int64_t total = 1;
  for (int64_t e : out) total *= e;
  if (total == 0) return;
  // Whole tensors (each operand contiguous or a scalar): one flat loop.
  const bool a_flat = is_contiguous(a_strides, out), b_flat = is_contiguous(b_strides, out);
  if ((a_flat || is_zero(a_strides)) && (b_flat || is_zero(b_strides))) {
    const int64_t sa = a_flat ? 1 : 0, sb = b_flat ? 1 : 0;
    parallel_for(total, 1, kMinWorkPerThread, [&](int64_t i0, int64_t i1) {
      k.binary(op, a + i0 * sa, sa, b + i0 * sb, sb, i1 - i0, clamp, lo, hi, y + i0);
    });
    return;
  }
  // Row by row over the last axis (a bias or scale vector along it, a broadcast row, ...).
  const int64_t inner = out[rank - 1], rows = total / inner;
  const int64_t sa = a_strides[rank - 1], sb = b_strides[rank - 1];
  const bool unit = (sa == 0 || sa == 1) && (sb == 0 || sb == 1);
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
      if (unit) {
        k.binary(op, a + oa, sa, b + ob, sb, inner, clamp, lo, hi, yr);
        continue;
      }
      for (int64_t i = 0; i < inner; ++i) {  // other strides (a transposed view): element by element
        const float va = a[oa + i * sa], vb = b[ob + i * sb];
        const float v = op == FloatBinaryOp::kAdd ? va + vb : op == FloatBinaryOp::kMul ? va * vb : va / vb;
        yr[i] = clamp ? std::min(std::max(v, lo), hi) : v;  // max then min keeps NaN, as NumPy's clip
      }
    }
  });
}

void float_layer_norm(const float* x, int64_t rows, int64_t inner, double eps, const float* weight,
                      const float* bias, float* y) {
  if (inner == 0) return;
  const FloatMathKernels k = active_float_math();
  parallel_for(rows, inner * 6, kMinWorkPerThread, [&](int64_t r0, int64_t r1) {
    k.layer_norm_rows(x + r0 * inner, r1 - r0, inner, eps, weight, bias, y + r0 * inner);
  });
}

void float_softmax(const float* x, int64_t outer, int64_t len, int64_t inner, float* y) {
  if (len == 0 || inner == 0) return;
  const FloatMathKernels k = active_float_math();
  if (inner == 1) {  // the last axis: contiguous rows
    parallel_for(outer, len * 24, kMinWorkPerThread, [&](int64_t r0, int64_t r1) {
      k.softmax_rows(x + r0 * len, r1 - r0, len, y + r0 * len);
    });
    return;
  }
  parallel_for(outer, len * inner * 24, kMinWorkPerThread, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) k.softmax_columns(x + o * len * inner, len, inner, y + o * len * inner);
  });
}

}  // namespace eb
