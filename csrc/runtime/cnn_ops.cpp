// Runtime layer: the CNN companion operators (see cnn_ops.h).
#include "runtime/cnn_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/requantize.h"
#include "runtime/dispatch.h"
#include "runtime/thread_pool.h"

namespace eb {
namespace {

// Work per thread below which a thread pool wake-up costs more than it saves (byte operations).
constexpr int64_t kMinWorkPerThread = 65536;


// The output of a broadcast binary op as few dimensions as possible: adjacent
// axes merge when both operands step through them as one axis.  Strides are
// in elements, 0 along a broadcast axis; the innermost stride is 0 or 1.
struct BroadcastPlan {
  std::vector<int64_t> shape{1}, p_stride{0}, q_stride{0};
  int64_t total = 1;
};

std::vector<int64_t> broadcast_strides(const std::vector<int64_t>& shape, size_t rank) {
  std::vector<int64_t> strides(rank, 0);
  int64_t step = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    const size_t axis = shape.size() - 1 - i;
    strides[rank - 1 - i] = shape[axis] == 1 ? 0 : step;
    step *= shape[axis];
  }
  return strides;
}

BroadcastPlan plan_broadcast(const std::vector<int64_t>& p_shape, const std::vector<int64_t>& q_shape,
                             const std::vector<int64_t>& out_shape) {
  const size_t rank = out_shape.size();
  const std::vector<int64_t> ps = broadcast_strides(p_shape, rank), qs = broadcast_strides(q_shape, rank);
  BroadcastPlan plan;
  plan.shape.clear();
  plan.p_stride.clear();
  plan.q_stride.clear();
  for (size_t i = 0; i < rank; ++i) {
    plan.total *= out_shape[i];
    if (out_shape[i] == 1) continue;
    if (!plan.shape.empty() && plan.p_stride.back() == ps[i] * out_shape[i] &&
        plan.q_stride.back() == qs[i] * out_shape[i]) {
      plan.shape.back() *= out_shape[i];
      plan.p_stride.back() = ps[i];
      plan.q_stride.back() = qs[i];
      continue;
    }
    plan.shape.push_back(out_shape[i]);
    plan.p_stride.push_back(ps[i]);
    plan.q_stride.push_back(qs[i]);
  }
  if (plan.shape.empty()) {
    plan.shape = {1};
    plan.p_stride = {0};
    plan.q_stride = {0};
  }
  return plan;
}

// Calls fn(run) for the innermost runs covering output elements [e0, e1).
template <typename Fn>
void for_each_run(const BroadcastPlan& plan, const uint8_t* p, const uint8_t* q, uint8_t* out, int64_t e0,
                  int64_t e1, Fn&& fn) {
  const size_t outer = plan.shape.size() - 1;
  const int64_t len = plan.shape.back(), p_inner = plan.p_stride.back(), q_inner = plan.q_stride.back();
  std::vector<int64_t> index(outer, 0);
  int64_t row = e0 / len, col = e0 % len, p_off = 0, q_off = 0;
  for (size_t d = outer; d-- > 0;) {
    index[d] = row % plan.shape[d];
    row /= plan.shape[d];
    p_off += index[d] * plan.p_stride[d];
    q_off += index[d] * plan.q_stride[d];
  }
  BinaryRun run;
  run.p_scalar = p_inner == 0;
  run.q_scalar = q_inner == 0;
  for (int64_t e = e0; e < e1;) {
    run.n = std::min(len - col, e1 - e);
    run.p = p + p_off + col * p_inner;
    run.q = q + q_off + col * q_inner;
    run.out = out + e;
    fn(run);
    e += run.n;
    col = 0;
    for (size_t d = outer; d-- > 0;) {  // next row: an odometer over the outer axes
      p_off += plan.p_stride[d];
      q_off += plan.q_stride[d];
      if (++index[d] < plan.shape[d]) break;
      p_off -= plan.shape[d] * plan.p_stride[d];
      q_off -= plan.shape[d] * plan.q_stride[d];
      index[d] = 0;
    }
  }
}

// Runs `kernel(params, run)` over the broadcast of p and q.
template <typename Params, typename Kernel>
void run_binary(const QuantTensor& p, const QuantTensor& q, const Params& params, Kernel kernel, void* out) {
  std::vector<int64_t> out_shape;
  if (!broadcast_shapes(p.shape, q.shape, &out_shape)) return;  // the binding has rejected this
  const BroadcastPlan plan = plan_broadcast(p.shape, q.shape, out_shape);
  if (plan.total == 0) return;
  const auto* pb = static_cast<const uint8_t*>(p.data);
  const auto* qb = static_cast<const uint8_t*>(q.data);
  parallel_for(plan.total, 1, kMinWorkPerThread, [&](int64_t e0, int64_t e1) {
    for_each_run(plan, pb, qb, static_cast<uint8_t*>(out), e0, e1,
                 [&](const BinaryRun& run) { kernel(params, run); });
  });
}

bool covers_whole_image(const PoolGeometry& g, const int64_t pad_end[3]) {
  for (int a = 0; a < 3; ++a)
    if (g.kernel[a] != g.in[a] || g.pad_begin[a] != 0 || pad_end[a] != 0) return false;
  return true;
}

template <typename T>
void global_average(const T* x, int64_t batch, int64_t pixels, int64_t channels, float x_scale, int32_t x_zp,
                    float y_scale, int32_t y_zp, T* y) {
  const float scale = x_scale / (y_scale * static_cast<float>(pixels));
  // int8 is summed as uint8 + 128: the offset leaves with the zero point's term (mod 2^32).
  const uint8_t flip = std::is_signed<T>::value ? 0x80 : 0x00;
  const uint32_t offset = std::is_signed<T>::value ? 128u : 0u;
  const uint32_t zp_total = (static_cast<uint32_t>(x_zp) + offset) * static_cast<uint32_t>(pixels);
  const SumPixelsFn sum_pixels = active_cnn().sum_pixels;
  const float lo = static_cast<float>(static_cast<int32_t>(std::numeric_limits<T>::min()) - y_zp);
  const float hi = static_cast<float>(static_cast<int32_t>(std::numeric_limits<T>::max()) - y_zp);
  parallel_for(batch, pixels * channels, kMinWorkPerThread, [&](int64_t b0, int64_t b1) {
    std::vector<uint32_t> sum(static_cast<size_t>(channels));
    for (int64_t b = b0; b < b1; ++b) {
      sum_pixels(reinterpret_cast<const uint8_t*>(x) + b * pixels * channels, pixels, channels, flip, sum.data());
      T* out = y + b * channels;
      for (int64_t c = 0; c < channels; ++c) {
        const int32_t acc = static_cast<int32_t>(sum[c] - zp_total);
        out[c] = static_cast<T>(clamp_round(static_cast<float>(acc) * scale, lo, hi) + y_zp);
      }
    }
  });
}

}  // namespace

bool broadcast_shapes(const std::vector<int64_t>& a, const std::vector<int64_t>& b, std::vector<int64_t>* out) {
  const size_t rank = std::max(a.size(), b.size());
  out->assign(rank, 1);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < a.size() ? a[a.size() - 1 - i] : 1;
    const int64_t db = i < b.size() ? b[b.size() - 1 - i] : 1;
    if (da != db && da != 1 && db != 1) return false;
    (*out)[rank - 1 - i] = da == 1 ? db : da;
  }
  return true;
}

void qlinear_add(const QuantTensor& a, const QuantTensor& b, float c_scale, int32_t c_zp, bool is_signed,
                 bool b_first, void* out) {
  const QuantTensor& p = b_first ? b : a;
  const QuantTensor& q = b_first ? a : b;
  QAddParams k;
  k.r_p = p.scale / c_scale;
  k.r_q = q.scale / c_scale;
  // ORT's compiler contracted this line into one fma; std::fma is exact on every build.
  k.fixed = static_cast<float>(c_zp) - std::fma(k.r_p, static_cast<float>(p.zp), k.r_q * static_cast<float>(q.zp));
  k.range = output_range(is_signed);
  run_binary(p, q, k, active_cnn().qlinear_add, out);
}

void qlinear_mul(const QuantTensor& a, const QuantTensor& b, float c_scale, int32_t c_zp, bool is_signed,
                 void* out) {
  QMulParams k;
  k.p_zp = a.zp;
  k.q_zp = b.zp;
  const float ab = a.scale * b.scale;
  k.ratio = ab / c_scale;
  k.c_zp = static_cast<float>(c_zp);
  k.range = output_range(is_signed);
  run_binary(a, b, k, active_cnn().qlinear_mul, out);
}

bool resolve_pool_output(PoolGeometry* g, const int64_t pad_end[3], bool ceil_mode) {
  for (int a = 0; a < 3; ++a) {
    const int64_t extent = (g->kernel[a] - 1) * g->dilation[a] + 1;
    const int64_t span = g->in[a] + g->pad_begin[a] + pad_end[a] - extent;
    if (span < 0) return false;
    const int64_t s = g->stride[a];
    int64_t out = span / s + 1;
    if (ceil_mode) {
      out = (span + s - 1) / s + 1;
      if ((out - 1) * s >= g->in[a] + g->pad_begin[a]) --out;  // would start in the end padding
    }
    g->out[a] = out;
  }
  return true;
}

void max_pool(const PoolGeometry& g, bool is_signed, const void* x, void* y) {
  const MaxPoolFn kernel = active_cnn().max_pool;
  parallel_for(g.out_pixels(), g.channels * g.taps(), kMinWorkPerThread,
               [&](int64_t r0, int64_t r1) { kernel(g, is_signed, x, y, r0, r1); });
}

void qlinear_average_pool(const PoolGeometry& g, const int64_t pad_end[3], const AvgPoolParams& params,
                          int32_t y_zp, const void* x, void* y) {
  if (covers_whole_image(g, pad_end)) {
    qlinear_global_average_pool(x, params.range.is_signed, g.batch, g.in[0] * g.in[1] * g.in[2], g.channels,
                                params.x_scale, params.x_zp, params.y_scale, y_zp, y);
    return;
  }
  const AvgPoolFn kernel = active_cnn().average_pool;
  parallel_for(g.out_pixels(), g.channels * g.taps(), kMinWorkPerThread,
               [&](int64_t r0, int64_t r1) { kernel(g, params, x, y, r0, r1); });
}

void qlinear_global_average_pool(const void* x, bool is_signed, int64_t batch, int64_t pixels, int64_t channels,
                                 float x_scale, int32_t x_zp, float y_scale, int32_t y_zp, void* y) {
  if (is_signed)
    global_average(static_cast<const int8_t*>(x), batch, pixels, channels, x_scale, x_zp, y_scale, y_zp,
                   static_cast<int8_t*>(y));
  else
    global_average(static_cast<const uint8_t*>(x), batch, pixels, channels, x_scale, x_zp, y_scale, y_zp,
                   static_cast<uint8_t*>(y));
}

void lookup_table(const uint8_t* x, int64_t n, const uint8_t* table, uint8_t* y) {
  const LookupFn kernel = active_cnn().lookup;
  parallel_for(n, 1, kMinWorkPerThread, [&](int64_t i0, int64_t i1) { kernel(x + i0, i1 - i0, table, y + i0); });
}

void concat(const std::vector<ConcatPart>& parts, int64_t outer, int64_t inner, uint8_t* out) {
  int64_t row = 0;  // output bytes per outer index
  for (const ConcatPart& part : parts) row += part.axis_len * inner;
  if (row == 0 || outer == 0) return;
  const LookupFn lookup = active_cnn().lookup;
  // Output bytes [e0, e1) are split over threads; each walks the parts' slices it overlaps.
  parallel_for(outer * row, 1, kMinWorkPerThread, [&](int64_t e0, int64_t e1) {
    for (int64_t o = e0 / row; o * row < e1; ++o) {
      int64_t start = o * row;  // output offset of this part's slice
      for (const ConcatPart& part : parts) {
        const int64_t size = part.axis_len * inner;
        const int64_t lo = std::max(start, e0), hi = std::min(start + size, e1);
        if (lo < hi) {
          const uint8_t* src = part.data + o * size + (lo - start);
          if (part.table == nullptr)
            std::memcpy(out + lo, src, static_cast<size_t>(hi - lo));
          else
            lookup(src, hi - lo, part.table, out + lo);
        }
        start += size;
      }
    }
  });
}

}  // namespace eb
