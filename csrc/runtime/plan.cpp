// Runtime layer: the plan executor (see plan.h).
#include "runtime/plan.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "runtime/cnn_ops.h"
#include "runtime/gemm.h"
#include "runtime/quantize.h"
#include "runtime/thread_pool.h"

namespace eb {
namespace {

// Work per thread below which a thread pool wake-up costs more than it saves (byte operations).
constexpr int64_t kMinWorkPerThread = 65536;

constexpr int64_t kArenaAlign = 64;            // every tensor starts on a cache line
constexpr int64_t kMaxGlobalPixels = int64_t{1} << 24;  // the global pool's float32 pixel count stays exact
constexpr int64_t kMaxExtent = int64_t{1} << 40;

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw std::invalid_argument(where + ": " + what);
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "(N";
  for (size_t i = 1; i < s.size(); ++i) out += ", " + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}


int64_t product(const std::vector<int64_t>& s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to && i < s.size(); ++i) p *= s[i];
  return p;
}

// The tensor's shape with this call's batch.
std::vector<int64_t> with_batch(const PlanTensor& t, int64_t batch) {
  std::vector<int64_t> s = t.shape;
  s[0] = batch;
  return s;
}

// Element strides of a C-contiguous tensor of `shape` over the broadcast shape `out` (NumPy rules,
// shapes aligned at the right; 0 along axes of extent 1 or missing).
std::vector<int64_t> broadcast_strides(const std::vector<int64_t>& shape, const std::vector<int64_t>& out) {
  std::vector<int64_t> strides(out.size(), 0);
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    const size_t d = out.size() - shape.size() + i;
    strides[d] = shape[i] == 1 ? 0 : stride;
    stride *= shape[i];
  }
  return strides;
}

// ------------------------------------------------------------ layout changes

// NCHW float32 -> NHWC quantized, one (n, h) row of W * C values at a time:
// gathered into a small buffer, then quantized by the runtime's own loop.
void quantize_nchw_to_nhwc(const float* x, int64_t batch, int64_t C, int64_t H, int64_t W, const PlanTensor& y_t,
                           void* y) {
  const int32_t qmin = y_t.is_signed() ? -128 : 0, qmax = y_t.is_signed() ? 127 : 255;
  const int64_t row = W * C;
  parallel_for(batch * H, row, kMinWorkPerThread, [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> buf;
    buf.resize(static_cast<size_t>(row));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / H, h = r % H;
      const float* src = x + (n * C * H + h) * W;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t w = 0; w < W; ++w) buf[w * C + c] = src[c * H * W + w];
      quantize_per_tensor(buf.data(), row, y_t.scale, y_t.zp, qmin, qmax, static_cast<uint8_t*>(y) + r * row);
    }
  });
}

void dequantize_nhwc_to_nchw(const void* x, const PlanTensor& x_t, int64_t batch, int64_t H, int64_t W, int64_t C,
                             float* y) {
  const int64_t row = W * C;
  parallel_for(batch * H, row, kMinWorkPerThread, [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> buf;
    buf.resize(static_cast<size_t>(row));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / H, h = r % H;
      dequantize_linear(static_cast<const uint8_t*>(x) + r * row, 1, x_t.is_signed(), 1, 1, row, &x_t.scale,
                        &x_t.zp, false, buf.data());
      float* dst = y + (n * C * H + h) * W;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t w = 0; w < W; ++w) dst[c * H * W + w] = buf[w * C + c];
    }
  });
}

// Bytes of `batch` items of [P, C] <-> [C, P] (P pixels): NHWC <-> NCHW.
void transpose_bytes(const uint8_t* x, int64_t batch, int64_t rows, int64_t cols, uint8_t* y) {
  parallel_for(batch, rows * cols, kMinWorkPerThread, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const uint8_t* src = x + n * rows * cols;
      uint8_t* dst = y + n * rows * cols;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
    }
  });
}

// --------------------------------------------------------------- step bodies

struct Buffers {
  int64_t batch = 0;
  std::vector<void*> ptr;  // per tensor id
};

struct StepRunner {
  const std::vector<PlanTensor>& tensors;
  const PlanStep& step;
  const Buffers& buf;

  const PlanTensor& in_t(size_t i = 0) const { return tensors[static_cast<size_t>(step.inputs[i])]; }
  const PlanTensor& out_t() const { return tensors[static_cast<size_t>(step.output)]; }
  const void* in(size_t i = 0) const { return buf.ptr[static_cast<size_t>(step.inputs[i])]; }
  void* out() const { return buf.ptr[static_cast<size_t>(step.output)]; }
  int64_t batch() const { return buf.batch; }

  void operator()(const QuantizeStep&) const {
    const PlanTensor& x = in_t();
    const PlanTensor& y = out_t();
    const auto* px = static_cast<const float*>(in());
    if (x.shape.size() == 4) {
      quantize_nchw_to_nhwc(px, batch(), x.shape[1], x.shape[2], x.shape[3], y, out());
      return;
    }
    const int64_t n = batch() * x.sample_elems();
    const int32_t qmin = y.is_signed() ? -128 : 0, qmax = y.is_signed() ? 127 : 255;
    parallel_for(n, 8, kMinWorkPerThread, [&](int64_t i0, int64_t i1) {
      quantize_per_tensor(px + i0, i1 - i0, y.scale, y.zp, qmin, qmax, static_cast<uint8_t*>(out()) + i0);
    });
  }

  void operator()(const DequantizeStep&) const {
    const PlanTensor& x = in_t();
    auto* py = static_cast<float*>(out());
    if (x.shape.size() == 4) {
      dequantize_nhwc_to_nchw(in(), x, batch(), x.shape[1], x.shape[2], x.shape[3], py);
      return;
    }
    const int64_t n = batch() * x.sample_elems();
    parallel_for(n, 4, kMinWorkPerThread, [&](int64_t i0, int64_t i1) {
      dequantize_linear(static_cast<const uint8_t*>(in()) + i0, 1, x.is_signed(), 1, 1, i1 - i0, &x.scale, &x.zp,
                        false, py + i0);
    });
  }

  void operator()(const ConvStep& s) const {
    const PlanTensor& x = in_t();
    const PlanTensor& y = out_t();
    ConvGeometry g = s.geometry;
    g.batch = batch();
    Epilogue ep;
    ep.kind = s.fixed ? OutputKind::kQuantFixed : OutputKind::kQuantFloat;
    ep.multiplier = s.fixed ? nullptr : s.multiplier.data();
    ep.fixed_m0 = s.fixed ? s.m0.data() : nullptr;
    ep.fixed_shift = s.fixed ? s.shift.data() : nullptr;
    ep.bias_i32 = s.bias.data();
    ep.out_zp = y.zp;
    ep.out_signed = y.is_signed();
    ep.qmin = s.qmin;
    ep.qmax = s.qmax;
    ep.out = out();
    ep.ldc = g.out_c;
    run_conv(g, in(), x.is_signed(), x.zp, s.weights, ep);
  }

  void operator()(const BinaryStep& s) const {
    const PlanTensor& a = in_t(0);
    const PlanTensor& b = in_t(1);
    const PlanTensor& c = out_t();
    const QuantTensor qa{in(0), with_batch(a, batch()), a.scale, a.zp};
    const QuantTensor qb{in(1), with_batch(b, batch()), b.scale, b.zp};
    if (s.mul)
      qlinear_mul(qa, qb, c.scale, c.zp, c.is_signed(), out());
    else
      qlinear_add(qa, qb, c.scale, c.zp, c.is_signed(), batch() <= 1 ? s.b_first_batch_le1 : s.b_first_batch_gt1,
                  out());
  }

  void operator()(const MaxPoolStep& s) const {
    PoolGeometry g = s.window.geometry;
    g.batch = batch();
    max_pool(g, in_t().is_signed(), in(), out());
  }

  void operator()(const AvgPoolStep& s) const {
    PoolGeometry g = s.window.geometry;
    g.batch = batch();
    qlinear_average_pool(g, s.window.pad_end, s.params, out_t().zp, in(), out());
  }

  void operator()(const GlobalAvgPoolStep&) const {
    const PlanTensor& x = in_t();
    const PlanTensor& y = out_t();
    qlinear_global_average_pool(in(), x.is_signed(), batch(), x.shape[1] * x.shape[2], x.shape[3], x.scale, x.zp,
                                y.scale, y.zp, out());
  }

  void operator()(const ConcatStep& s) const {
    std::vector<ConcatPart> parts(step.inputs.size());
    for (size_t i = 0; i < parts.size(); ++i) {
      parts[i].data = static_cast<const uint8_t*>(in(i));
      parts[i].axis_len = in_t(i).shape[static_cast<size_t>(s.axis)];
      parts[i].table = s.tables[i].empty() ? nullptr : s.tables[i].data();
    }
    const std::vector<int64_t>& shape = out_t().shape;
    const auto axis = static_cast<size_t>(s.axis);
    concat(parts, batch() * product(shape, 1, axis), product(shape, axis + 1, shape.size()),
           static_cast<uint8_t*>(out()));
  }

  void operator()(const LutStep& s) const {
    lookup_table(static_cast<const uint8_t*>(in()), batch() * in_t().sample_elems(), s.table.data(),
                 static_cast<uint8_t*>(out()));
  }

  // The float graph's reshape: a 4-D quantized input is read in NCHW order,
  // a 4-D quantized output written in NHWC order.
  void operator()(const ReshapeStep&) const {
    const PlanTensor& x = in_t();
    const PlanTensor& y = out_t();
    const auto* src = static_cast<const uint8_t*>(in());
    auto* dst = static_cast<uint8_t*>(out());
    const bool from_nhwc = x.quantized() && x.shape.size() == 4;
    const bool to_nhwc = y.quantized() && y.shape.size() == 4;
    const int64_t bytes = batch() * x.sample_bytes();
    if (!from_nhwc && !to_nhwc) {
      if (bytes > 0) std::memcpy(dst, src, static_cast<size_t>(bytes));
      return;
    }
    if (from_nhwc && to_nhwc) {  // through NCHW order
      thread_local AlignedBuffer<uint8_t> tmp;
      tmp.reserve_discard(static_cast<size_t>(bytes));
      transpose_bytes(src, batch(), x.shape[1] * x.shape[2], x.shape[3], tmp.data());
      transpose_bytes(tmp.data(), batch(), y.shape[3], y.shape[1] * y.shape[2], dst);
      return;
    }
    if (from_nhwc)
      transpose_bytes(src, batch(), x.shape[1] * x.shape[2], x.shape[3], dst);
    else
      transpose_bytes(src, batch(), y.shape[3], y.shape[1] * y.shape[2], dst);
  }

  // exp and the sum in double, one rounding at the end: within a few ulp of
  // NumPy's float32 formula (execute.py), which rounds at every step.
  void operator()(const SoftmaxStep& s) const {
    const std::vector<int64_t> shape = with_batch(in_t(), batch());
    const auto axis = static_cast<size_t>(s.axis);
    const int64_t outer = product(shape, 0, axis), len = shape[axis], inner = product(shape, axis + 1, shape.size());
    const auto* x = static_cast<const float*>(in());
    auto* y = static_cast<float*>(out());
    parallel_for(outer, len * inner * 16, kMinWorkPerThread, [&](int64_t o0, int64_t o1) {
      std::vector<double> e(static_cast<size_t>(len));  // each exp computed once (the dominant cost)
      for (int64_t o = o0; o < o1; ++o)
        for (int64_t i = 0; i < inner; ++i) {
          const float* px = x + o * len * inner + i;
          float* py = y + o * len * inner + i;
          float mx = -INFINITY;
          for (int64_t k = 0; k < len; ++k) mx = std::max(mx, px[k * inner]);
          double sum = 0.0;
          for (int64_t k = 0; k < len; ++k) sum += (e[k] = std::exp(static_cast<double>(px[k * inner] - mx)));
          for (int64_t k = 0; k < len; ++k) py[k * inner] = static_cast<float>(e[k] / sum);
        }
    });
  }

  void operator()(const DynamicLinearStep& s) const {
    const PackedB& w = s.weights;
    const int64_t rows = batch() * product_of_middle(in_t().shape);
    if (!run_dynamic_linear(static_cast<const float*>(in()), rows, w.K, w, s.w_scale.data(), s.bias.data(), s.relu,
                            static_cast<float*>(out()), w.N, s.per_tensor))
      throw std::invalid_argument(step.label + ": the input holds NaN or infinity (dynamic quantization needs finite values)");
  }

  void operator()(const FloatConvStep& s) const {
    float_conv(s.conv, batch(), static_cast<const float*>(in()), static_cast<float*>(out()));
  }

  void operator()(const FloatUnaryStep& s) const {
    float_unary(s.op, static_cast<const float*>(in()), batch() * in_t().sample_elems(), static_cast<float*>(out()));
  }

  void operator()(const FloatLinearStep& s) const {
    float_linear(static_cast<const float*>(in()), batch() * product_of_middle(in_t().shape), s.weights, s.bias.empty() ? nullptr : s.bias.data(), s.lo,
                 s.hi, static_cast<float*>(out()));
  }

  void operator()(const FloatAffineStep& s) const {
    const PlanTensor& x = in_t();
    float_channel_affine(static_cast<const float*>(in()), batch(), x.shape[1], x.sample_elems() / x.shape[1],
                         s.scale.data(), s.shift.data(), static_cast<float*>(out()));
  }

  void operator()(const FloatBinaryStep& s) const {
    const std::vector<int64_t> a_shape = with_batch(in_t(0), batch());
    const std::vector<int64_t> b_shape = s.b_shape.empty() ? with_batch(in_t(1), batch()) : s.b_shape;
    const std::vector<int64_t> y_shape = with_batch(out_t(), batch());
    const float* b = s.b_shape.empty() ? static_cast<const float*>(in(1)) : s.b.data();
    float_binary(s.op, static_cast<const float*>(in(0)), broadcast_strides(a_shape, y_shape), b,
                 broadcast_strides(b_shape, y_shape), y_shape, s.lo, s.hi, static_cast<float*>(out()));
  }

  void operator()(const FloatBmmStep&) const {
    const std::vector<int64_t> y_shape = with_batch(out_t(), batch());
    const size_t lead = y_shape.size() - 2;
    const std::vector<int64_t> lead_shape(y_shape.begin(), y_shape.begin() + static_cast<std::ptrdiff_t>(lead));
    // Strides of an operand's matrices over the output's leading dims (0 where it broadcasts).
    auto matrix_strides = [&](const PlanTensor& t) {
      std::vector<int64_t> s = with_batch(t, batch());
      const int64_t matrix = s[lead] * s[lead + 1];
      s.resize(lead);
      std::vector<int64_t> strides = broadcast_strides(s, lead_shape);
      for (int64_t& v : strides) v *= matrix;
      return strides;
    };
    float_bmm(static_cast<const float*>(in(0)), matrix_strides(in_t(0)), static_cast<const float*>(in(1)),
              matrix_strides(in_t(1)), y_shape, in_t(0).shape.back(), static_cast<float*>(out()));
  }

  void operator()(const FloatTransposeStep& s) const {
    float_transpose(static_cast<const float*>(in()), with_batch(in_t(), batch()), s.perm, static_cast<float*>(out()));
  }

  void operator()(const FloatPadStep& s) const {
    float_pad(s.pad, static_cast<const float*>(in()), with_batch(in_t(), batch()), static_cast<float*>(out()));
  }

  void operator()(const FloatLayerNormStep& s) const {
    const std::vector<int64_t>& shape = in_t().shape;
    const size_t first = shape.size() - static_cast<size_t>(s.axes);  // the first normalized axis
    float_layer_norm(static_cast<const float*>(in()), batch() * product(shape, 1, first),
                     product(shape, first, shape.size()), s.eps, s.weight.empty() ? nullptr : s.weight.data(),
                     s.bias.empty() ? nullptr : s.bias.data(), static_cast<float*>(out()));
  }

  void operator()(const FloatPoolStep& s) const {
    float_pool(s.pool, batch(), static_cast<const float*>(in()), static_cast<float*>(out()));
  }

  void operator()(const FloatConcatStep& s) const {
    // Each input contributes extent[axis] * inner floats per outer index.
    const std::vector<int64_t> y_shape = with_batch(out_t(), batch());
    const auto axis = static_cast<size_t>(s.axis);
    const int64_t outer = product(y_shape, 0, axis), inner = product(y_shape, axis + 1, y_shape.size());
    auto* y = static_cast<float*>(out());
    int64_t offset = 0;
    for (size_t i = 0; i < step.inputs.size(); ++i) {
      const int64_t run = in_t(i).shape[axis] * inner;
      const auto* x = static_cast<const float*>(in(i));
      for (int64_t o = 0; o < outer; ++o)
        std::memcpy(y + o * y_shape[axis] * inner + offset, x + o * run, static_cast<size_t>(run) * sizeof(float));
      offset += run;
    }
  }

  void operator()(const HostStep& s) const {
    std::vector<const void*> ins(step.inputs.size());
    for (size_t i = 0; i < ins.size(); ++i) ins[i] = in(i);
    s.fn(batch(), ins, out());
  }
};

// ------------------------------------------------------------ monitoring

// Bytes of x[0..n) equal to a or to b: byte-wide counters per lane (at most 255
// blocks before they are summed), so the compare and the count stay byte vectors.
int64_t count_bytes_serial(const uint8_t* x, int64_t n, uint8_t a, uint8_t b) {
  constexpr int64_t kLanes = 32;
  int64_t total = 0, j = 0;
  while (n - j >= kLanes) {
    uint8_t acc[kLanes] = {};
    const int64_t blocks = std::min<int64_t>((n - j) / kLanes, 255);
    for (int64_t k = 0; k < blocks; ++k, j += kLanes)
      for (int64_t l = 0; l < kLanes; ++l) acc[l] = static_cast<uint8_t>(acc[l] + ((x[j + l] == a) | (x[j + l] == b)));
    for (int64_t l = 0; l < kLanes; ++l) total += acc[l];
  }
  for (; j < n; ++j) total += (x[j] == a) | (x[j] == b);
  return total;
}

int64_t count_bytes(const uint8_t* x, int64_t n, uint8_t a, uint8_t b) {
  std::atomic<int64_t> total{0};
  parallel_for(n, 1, kMinWorkPerThread * 4, [&](int64_t i0, int64_t i1) {
    total.fetch_add(count_bytes_serial(x + i0, i1 - i0, a, b), std::memory_order_relaxed);
  });
  return total.load();
}

// Values of x[0..n) below lo or above hi (NaN is neither).
int64_t count_outside(const float* x, int64_t n, float lo, float hi) {
  std::atomic<int64_t> total{0};
  parallel_for(n, 4, kMinWorkPerThread * 4, [&](int64_t i0, int64_t i1) {
    int64_t c = 0;
    for (int64_t j0 = i0; j0 < i1; j0 += 4096) {
      const int64_t j1 = std::min(i1, j0 + 4096);
      uint32_t local = 0;
      for (int64_t j = j0; j < j1; ++j) local += static_cast<uint32_t>((x[j] < lo) | (x[j] > hi));
      c += local;
    }
    total.fetch_add(c, std::memory_order_relaxed);
  });
  return total.load();
}

// The float32 bounds equivalent to the exact real bounds [lo, hi]: for a float x,
// x < lo  <=>  x < lo_f  and  x > hi  <=>  x > hi_f.
std::pair<float, float> float_bounds(double lo, double hi) {
  float lo_f = static_cast<float>(lo), hi_f = static_cast<float>(hi);
  if (static_cast<double>(lo_f) < lo) lo_f = std::nextafter(lo_f, INFINITY);
  if (static_cast<double>(hi_f) > hi) hi_f = std::nextafter(hi_f, -INFINITY);
  return {lo_f, hi_f};
}

// Adds what one step wrote to its output's counters.
void count_step(const std::vector<PlanTensor>& tensors, const PlanStep& step, const Buffers& buf,
                std::vector<TensorStats>& stats) {
  TensorStats& st = stats[static_cast<size_t>(step.output)];
  if (!st.monitored) return;
  const PlanTensor& y = tensors[static_cast<size_t>(step.output)];
  const int64_t n = buf.batch * y.sample_elems();
  const int32_t qmin = y.is_signed() ? -128 : 0, qmax = y.is_signed() ? 127 : 255;
  // Codes as bytes; a zero point at one end makes that end legitimate (a ReLU's 0): count the other twice.
  const auto lo_byte = static_cast<uint8_t>(qmin), hi_byte = static_cast<uint8_t>(qmax);
  const uint8_t a = y.zp != qmin ? lo_byte : hi_byte, b = y.zp != qmax ? hi_byte : lo_byte;
  st.count += n;
  st.saturated += count_bytes(static_cast<const uint8_t*>(buf.ptr[static_cast<size_t>(step.output)]), n, a, b);
  if (st.range_checked) {
    // Exact in double: a float scale times an integer below 2^9.
    const auto [lo, hi] = float_bounds(static_cast<double>(y.scale) * (qmin - y.zp),
                                       static_cast<double>(y.scale) * (qmax - y.zp));
    st.out_of_range += count_outside(static_cast<const float*>(buf.ptr[static_cast<size_t>(step.inputs[0])]), n, lo, hi);
  }
}

// Bytes of the constants a step holds.
template <typename T>
int64_t bytes_of(const std::vector<T>& v) {
  return static_cast<int64_t>(v.size() * sizeof(T));
}
template <typename T>
int64_t bytes_of(const AlignedBuffer<T>& v) {
  return static_cast<int64_t>(v.size() * sizeof(T));
}
int64_t bytes_of(const PackedB& b) {
  return bytes_of(b.data) + bytes_of(b.col_sum) + bytes_of(b.zp_shifted) + bytes_of(b.zp_user);
}

struct ConstBytes {
  int64_t operator()(const ConvStep& s) const {
    const PackedConv& w = s.weights;
    int64_t n = bytes_of(w.zp_user) + bytes_of(w.dw_weights) + bytes_of(w.dw_weights_i8) + bytes_of(w.dw_weight_sum);
    for (const PackedB& b : w.group_b) n += bytes_of(b);
    return n + bytes_of(s.multiplier) + bytes_of(s.m0) + bytes_of(s.shift) + bytes_of(s.bias);
  }
  int64_t operator()(const ConcatStep& s) const {
    int64_t n = 0;
    for (const auto& t : s.tables) n += bytes_of(t);
    return n;
  }
  int64_t operator()(const LutStep& s) const { return static_cast<int64_t>(s.table.size()); }
  int64_t operator()(const DynamicLinearStep& s) const { return bytes_of(s.weights) + bytes_of(s.w_scale) + bytes_of(s.bias); }
  int64_t operator()(const FloatConvStep& s) const { return bytes_of(s.conv.w) + bytes_of(s.conv.bias); }
  int64_t operator()(const FloatLinearStep& s) const { return bytes_of(s.weights.data) + bytes_of(s.bias); }
  int64_t operator()(const FloatAffineStep& s) const { return bytes_of(s.scale) + bytes_of(s.shift); }
  int64_t operator()(const FloatBinaryStep& s) const { return bytes_of(s.b); }
  int64_t operator()(const FloatLayerNormStep& s) const { return bytes_of(s.weight) + bytes_of(s.bias); }
  template <typename Other>
  int64_t operator()(const Other&) const {
    return 0;
  }
};

// ------------------------------------------------------------ build checks

struct StepChecker {
  const std::vector<PlanTensor>& tensors;
  const PlanStep& step;

  const PlanTensor& in_t(size_t i = 0) const { return tensors[static_cast<size_t>(step.inputs[i])]; }
  const PlanTensor& out_t() const { return tensors[static_cast<size_t>(step.output)]; }
  [[noreturn]] void bad(const std::string& what) const { fail(step.label, what); }

  void arity(size_t n) const {
    if (step.inputs.size() != n) bad("expected " + std::to_string(n) + " input(s)");
  }
  void quant(const PlanTensor& t) const {
    if (!t.quantized()) bad("tensor '" + t.name + "' must be uint8 or int8");
  }
  void rank(const PlanTensor& t, size_t r) const {
    if (t.shape.size() != r) bad("tensor '" + t.name + "' must be " + std::to_string(r) + "-D, got " + shape_str(t.shape));
  }
  void same_type(const PlanTensor& a, const PlanTensor& b) const {
    if (a.type != b.type) bad("tensors '" + a.name + "' and '" + b.name + "' must have the same dtype");
  }
  // Strides, dilations and pads of a convolution, and a kernel that fits the padded input.
  void window(const ConvGeometry& g) const {
    // Bounded so that no extent below can overflow (the Python plan's limits, docs/format.md).
    constexpr int64_t kMax = int64_t{1} << 20;
    auto in = [](int64_t v, int64_t lo) { return v >= lo && v <= kMax; };
    if (!in(g.stride_h, 1) || !in(g.stride_w, 1) || !in(g.dilation_h, 1) || !in(g.dilation_w, 1) || !in(g.pad_top, 0) ||
        !in(g.pad_left, 0) || !in(g.pad_bottom, 0) || !in(g.pad_right, 0) || !in(g.kernel_h, 1) || !in(g.kernel_w, 1))
      bad("kernel, strides and dilations must be in [1, 2^20], pads in [0, 2^20]");
    if (g.in_h + g.pad_top + g.pad_bottom < g.dilation_h * (g.kernel_h - 1) + 1 ||
        g.in_w + g.pad_left + g.pad_right < g.dilation_w * (g.kernel_w - 1) + 1)
      bad("the (dilated) kernel is larger than the padded input");
  }

  // x [N, ..., k] -> y [N, ..., n]
  void linear_shapes(int64_t k, int64_t n) const {
    const PlanTensor &x = in_t(), &y = out_t();
    if (x.shape.size() < 2) bad("a linear layer needs an [N, ..., K] input");
    shape_is(x, with_last(x.shape, k));
    shape_is(y, with_last(x.shape, n));
  }

  void shape_is(const PlanTensor& t, const std::vector<int64_t>& want) const {
    if (!std::equal(t.shape.begin() + 1, t.shape.end(), want.begin() + 1, want.end()))
      bad("tensor '" + t.name + "' has shape " + shape_str(t.shape) + ", expected " + shape_str(want));
  }

  void operator()(const QuantizeStep&) const {
    arity(1);
    const PlanTensor &x = in_t(), &y = out_t();
    if (x.quantized()) bad("input must be float32");
    quant(y);
    const auto& s = x.shape;
    shape_is(y, s.size() == 4 ? std::vector<int64_t>{0, s[2], s[3], s[1]} : s);
  }
  void operator()(const DequantizeStep&) const {
    arity(1);
    const PlanTensor &x = in_t(), &y = out_t();
    quant(x);
    if (y.quantized()) bad("output must be float32");
    const auto& s = x.shape;
    shape_is(y, s.size() == 4 ? std::vector<int64_t>{0, s[3], s[1], s[2]} : s);
  }
  void operator()(const ConvStep& c) const {
    arity(1);
    const PlanTensor &x = in_t(), &y = out_t();
    quant(x);
    quant(y);
    const ConvGeometry& g = c.geometry;
    const bool linear = x.shape.size() != 4;  // [N, ..., K] rows, run as [N, rows, 1, K]
    if (linear && x.shape.size() < 2) bad("a linear layer needs an [N, ..., K] input");
    rank(y, x.shape.size());
    const int64_t in_c = x.shape.back();
    if (in_c != g.in_c || (linear ? product_of_middle(x.shape) != g.in_h || g.in_w != 1
                                  : x.shape[1] != g.in_h || x.shape[2] != g.in_w))
      bad("geometry does not match input '" + x.name + "'");
    if (g.in_c != c.weights.group_in_c * c.weights.groups || g.out_c != c.weights.out_c ||
        g.kernel_h != c.weights.kernel_h || g.kernel_w != c.weights.kernel_w || g.groups != c.weights.groups)
      bad("input '" + x.name + "' has " + std::to_string(in_c) + " channels; the weights do not fit it");
    window(g);
    if (linear && (g.kernel_h != 1 || g.kernel_w != 1 || g.stride_h != 1 || g.stride_w != 1 || g.dilation_h != 1 ||
                   g.dilation_w != 1 || g.pad_top != 0 || g.pad_left != 0 || g.pad_bottom != 0 || g.pad_right != 0))
      bad("a linear layer has a 1x1 window: unit strides and dilations, no pads");
    shape_is(y, linear ? with_last(x.shape, g.out_c) : std::vector<int64_t>{0, g.out_h(), g.out_w(), g.out_c});
    const int32_t lo = y.is_signed() ? -128 : 0, hi = y.is_signed() ? 127 : 255;
    if (c.qmin < lo || c.qmax > hi || c.qmin > c.qmax) bad("activation clamp range is empty or outside the output type");
    const size_t need = static_cast<size_t>(g.out_c + 16);
    if ((c.fixed ? std::min(c.m0.size(), c.shift.size()) : c.multiplier.size()) < need || c.bias.size() < need)
      bad("internal: per-channel parameters are too short");
  }
  void operator()(const BinaryStep&) const {
    arity(2);
    const PlanTensor &a = in_t(0), &b = in_t(1), &c = out_t();
    quant(c);
    same_type(a, c);
    same_type(b, c);
    std::vector<int64_t> out;
    if (a.shape.size() != c.shape.size() || b.shape.size() != c.shape.size() ||
        !broadcast_shapes(a.shape, b.shape, &out))
      bad("input shapes " + shape_str(a.shape) + " and " + shape_str(b.shape) + " do not broadcast");
    shape_is(c, out);
  }
  void pool(const PoolWindow& w) const {
    arity(1);
    const PoolGeometry& g = w.geometry;
    const int64_t* pad_end = w.pad_end;
    const PlanTensor &x = in_t(), &y = out_t();
    quant(x);
    same_type(x, y);
    rank(x, 4);
    for (int a = 0; a < 3; ++a)
      if (g.kernel[a] < 1 || g.stride[a] < 1 || g.dilation[a] < 1 || g.pad_begin[a] < 0 || pad_end[a] < 0 ||
          g.kernel[a] > INT32_MAX || g.stride[a] > INT32_MAX || g.dilation[a] > INT32_MAX ||
          g.pad_begin[a] > INT32_MAX || pad_end[a] > INT32_MAX)
        bad("kernel, strides and dilations must be in [1, 2^31), pads in [0, 2^31)");
    PoolGeometry r = g;
    if (g.in[1] != x.shape[1] || g.in[2] != x.shape[2] || g.channels != x.shape[3] || g.in[0] != 1)
      bad("geometry does not match input '" + x.name + "'");
    if (!resolve_pool_output(&r, pad_end, w.ceil_mode)) bad("the (dilated) kernel is larger than the padded input");
    if (r.out[0] != g.out[0] || r.out[1] != g.out[1] || r.out[2] != g.out[2]) bad("internal: output extents differ");
    shape_is(y, {0, r.out[1], r.out[2], r.channels});
  }
  void operator()(const MaxPoolStep& s) const { pool(s.window); }
  void operator()(const AvgPoolStep& s) const {
    pool(s.window);
    const PoolGeometry& g = s.window.geometry;
    if (g.kernel[1] == g.in[1] && g.kernel[2] == g.in[2] && g.pad_begin[1] == 0 && g.pad_begin[2] == 0 &&
        s.window.pad_end[1] == 0 && s.window.pad_end[2] == 0 && g.in[1] * g.in[2] >= kMaxGlobalPixels)
      bad("a window covering the whole image must have fewer than 2^24 pixels");
  }
  void operator()(const GlobalAvgPoolStep&) const {
    arity(1);
    const PlanTensor &x = in_t(), &y = out_t();
    quant(x);
    same_type(x, y);
    rank(x, 4);
    const int64_t pixels = x.shape[1] * x.shape[2];
    if (pixels < 1 || pixels >= kMaxGlobalPixels) bad("expected between 1 and 2^24 - 1 pixels per channel");
    shape_is(y, {0, 1, 1, x.shape[3]});
  }
  void operator()(const ConcatStep& s) const {
    if (step.inputs.empty()) bad("expected at least one input");
    const PlanTensor& y = out_t();
    quant(y);
    if (s.axis < 1 || s.axis >= static_cast<int64_t>(y.shape.size())) bad("axis must be a non-batch axis");
    if (s.tables.size() != step.inputs.size()) bad("internal: expected one table entry per input");
    int64_t total = 0;
    for (size_t i = 0; i < step.inputs.size(); ++i) {
      const PlanTensor& x = in_t(i);
      same_type(x, y);
      if (x.shape.size() != y.shape.size()) bad("input '" + x.name + "' has the wrong rank");
      for (size_t d = 1; d < y.shape.size(); ++d)
        if (d != static_cast<size_t>(s.axis) && x.shape[d] != y.shape[d])
          bad("input '" + x.name + "' differs from the output outside the concat axis");
      total += x.shape[static_cast<size_t>(s.axis)];
      if (!s.tables[i].empty() && s.tables[i].size() != 256) bad("tables must have 256 entries");
    }
    if (total != y.shape[static_cast<size_t>(s.axis)]) bad("the output's axis extent is not the inputs' sum");
  }
  void operator()(const LutStep&) const {
    arity(1);
    quant(in_t());
    quant(out_t());
    shape_is(out_t(), in_t().shape);
  }
  void operator()(const ReshapeStep&) const {
    arity(1);
    same_type(in_t(), out_t());
    if (in_t().sample_elems() != out_t().sample_elems())
      bad("cannot reshape " + shape_str(in_t().shape) + " to " + shape_str(out_t().shape));
  }
  void operator()(const SoftmaxStep& s) const {
    arity(1);
    if (in_t().quantized() || out_t().quantized()) bad("softmax works on float32 tensors");
    // Axis 0 is the batch: items are independent, so no step may mix them.
    if (s.axis < 1 || s.axis >= static_cast<int64_t>(in_t().shape.size()))
      bad("axis must name a dimension after the batch, got " + std::to_string(s.axis));
    shape_is(out_t(), in_t().shape);
  }
  void operator()(const DynamicLinearStep& s) const {
    arity(1);
    if (in_t().quantized() || out_t().quantized()) bad("dynamic_linear works on float32 tensors");
    const PackedB& w = s.weights;
    linear_shapes(w.K, w.N);
    if (!w.b_signed || w.any_zp_shifted) bad("dynamic_linear needs symmetric int8 weights");
    if (static_cast<int64_t>(s.w_scale.size()) < w.Np || static_cast<int64_t>(s.bias.size()) < w.Np)
      bad("w_scale and bias must cover the packed columns");
  }

  void operator()(const FloatConvStep& s) const {
    arity(1);
    const PlanTensor &x = in_t(), &y = out_t();
    if (x.quantized() || y.quantized()) bad("a float convolution works on float32 tensors");
    rank(x, 4);
    const ConvGeometry& g = s.conv.g;
    if (x.shape[1] != g.in_c || x.shape[2] != g.in_h || x.shape[3] != g.in_w)
      bad("geometry does not match input '" + x.name + "'");
    if (g.groups < 1 || g.in_c % g.groups != 0 || g.out_c % g.groups != 0 || g.kernel_h < 1 || g.kernel_w < 1)
      bad("channels, groups and kernel do not fit");
    if (static_cast<int64_t>(s.conv.w.size()) != g.out_c * g.group_in_c() * g.kernel_h * g.kernel_w ||
        (!s.conv.bias.empty() && static_cast<int64_t>(s.conv.bias.size()) != g.out_c))
      bad("weights or bias of the wrong size");
    window(g);
    shape_is(y, {0, g.out_c, g.out_h(), g.out_w()});
  }

  void operator()(const FloatUnaryStep&) const {
    arity(1);
    if (in_t().quantized() || out_t().quantized()) bad("a float activation works on float32 tensors");
    shape_is(out_t(), in_t().shape);
  }

  void operator()(const FloatLinearStep& s) const {
    arity(1);
    const PlanTensor &x = in_t(), &y = out_t();
    if (x.quantized() || y.quantized()) bad("a float linear layer works on float32 tensors");
    linear_shapes(s.weights.K, s.weights.N);
    if (!s.bias.empty() && static_cast<int64_t>(s.bias.size()) != s.weights.N) bad("bias of the wrong size");
  }

  void operator()(const FloatAffineStep& s) const {
    arity(1);
    const PlanTensor &x = in_t(), &y = out_t();
    if (x.quantized() || y.quantized() || x.shape.size() < 2) bad("batch norm works on float32 [N, C, ...] tensors");
    if (static_cast<int64_t>(s.scale.size()) != x.shape[1] || static_cast<int64_t>(s.shift.size()) != x.shape[1])
      bad("scale and shift need one value per channel");
    shape_is(y, x.shape);
  }

  void operator()(const FloatBinaryStep& s) const {
    arity(s.b_shape.empty() ? 2 : 1);
    for (size_t i = 0; i < step.inputs.size(); ++i)
      if (in_t(i).quantized()) bad("float add / mul / div works on float32 tensors");
    if (out_t().quantized()) bad("float add / mul / div works on float32 tensors");
    if (s.op != FloatBinaryOp::kAdd && s.op != FloatBinaryOp::kMul && s.op != FloatBinaryOp::kDiv)
      bad("unknown float binary op");
    if (!s.b_shape.empty() && static_cast<int64_t>(s.b.size()) != product(s.b_shape, 0, s.b_shape.size()))
      bad("the constant's size does not match its shape");
    // Every operand broadcasts to the output (the batch only against the batch, or 1).
    const std::vector<int64_t>& y = out_t().shape;
    auto fits = [&](const std::vector<int64_t>& a, bool batch_dim) {
      if (a.size() > y.size()) return false;
      for (size_t i = 0; i < a.size(); ++i) {
        const size_t d = y.size() - a.size() + i;
        if (d == 0 && batch_dim) continue;
        if (a[i] != 1 && a[i] != y[d]) return false;
      }
      return true;
    };
    // A tensor operand has the output's rank: its dimension 0 is the batch.
    if (!fits(in_t(0).shape, true) || (s.b_shape.empty() ? !fits(in_t(1).shape, true) : !fits(s.b_shape, false)) ||
        in_t(0).shape.size() != y.size() || (s.b_shape.empty() && in_t(1).shape.size() != y.size()))
      bad("operands do not broadcast to the output");
    if (!(s.lo <= s.hi)) bad("the fused activation's clamp range is empty");
  }

  void operator()(const FloatBmmStep&) const {
    arity(2);
    const PlanTensor &a = in_t(0), &b = in_t(1), &y = out_t();
    if (a.quantized() || b.quantized() || y.quantized()) bad("a float matrix product works on float32 tensors");
    const size_t r = a.shape.size();
    if (r < 3 || b.shape.size() != r)
      bad("a " + shape_str(a.shape) + " and b " + shape_str(b.shape) + " must have the same rank >= 3");
    if (a.shape[r - 1] != b.shape[r - 2])
      bad("a " + shape_str(a.shape) + " has " + std::to_string(a.shape[r - 1]) + " columns, b " +
          shape_str(b.shape) + " " + std::to_string(b.shape[r - 2]) + " rows");
    std::vector<int64_t> want(r, 0);  // dim 0, the batch, is the run's for every tensor
    for (size_t d = 1; d + 2 < r; ++d) {
      const int64_t ea = a.shape[d], eb = b.shape[d];
      if (ea != eb && ea != 1 && eb != 1)
        bad("the leading dimensions of a " + shape_str(a.shape) + " and b " + shape_str(b.shape) + " do not broadcast");
      want[d] = ea == 1 ? eb : ea;
    }
    want[r - 2] = a.shape[r - 2];
    want[r - 1] = b.shape[r - 1];
    shape_is(y, want);
  }

  void float_in_out(const char* what) const {
    arity(1);
    if (in_t().quantized() || out_t().quantized()) bad(std::string(what) + " works on float32 tensors");
  }

  void operator()(const FloatTransposeStep& s) const {
    float_in_out("transpose");
    const std::vector<int64_t>& x = in_t().shape;
    if (s.perm.size() != x.size() || s.perm[0] != 0) bad("perm must order every axis and keep the batch first");
    std::vector<bool> seen(x.size(), false);
    std::vector<int64_t> want(x.size(), 0);
    for (size_t d = 0; d < x.size(); ++d) {
      const int64_t p = s.perm[d];
      if (p < 0 || p >= static_cast<int64_t>(x.size()) || seen[static_cast<size_t>(p)]) bad("perm is not a permutation");
      seen[static_cast<size_t>(p)] = true;
      want[d] = x[static_cast<size_t>(p)];
    }
    shape_is(out_t(), want);
  }

  void operator()(const FloatPadStep& s) const {
    float_in_out("pad");
    const FloatPad& p = s.pad;
    const std::vector<int64_t>& x = in_t().shape;
    if (p.begin.size() != x.size() || p.end.size() != x.size() || p.begin[0] != 0 || p.end[0] != 0)
      bad("pads need a begin and an end per axis, 0 on the batch");
    std::vector<int64_t> want(x.size(), 0);
    for (size_t d = 1; d < x.size(); ++d) {
      const int64_t n = x[d], b = p.begin[d], e = p.end[d];
      if (b < 0 || e < 0 || b > kMaxExtent || e > kMaxExtent) bad("pads must be in [0, 2^40]");
      // Every output index must find its source inside the input (float_pad's contract).
      const int64_t most = std::max(b, e);
      if (most > 0 && ((p.mode == FloatPadMode::kReflect && most > n - 1) ||
                       (p.mode == FloatPadMode::kCircular && most > n) ||
                       (p.mode == FloatPadMode::kReplicate && n < 1)))
        bad("axis " + std::to_string(d) + " of extent " + std::to_string(n) + " is too short for this padding");
      want[d] = n + b + e;
    }
    shape_is(out_t(), want);
  }

  void operator()(const FloatLayerNormStep& s) const {
    float_in_out("layer norm");
    const std::vector<int64_t>& x = in_t().shape;
    if (s.axes < 1 || s.axes >= static_cast<int64_t>(x.size())) bad("layer norm must normalize trailing non-batch axes");
    const int64_t inner = product(x, x.size() - static_cast<size_t>(s.axes), x.size());
    if ((!s.weight.empty() && static_cast<int64_t>(s.weight.size()) != inner) ||
        (!s.bias.empty() && static_cast<int64_t>(s.bias.size()) != inner))
      bad("weight and bias need one value per normalized element");
    if (!(s.eps > 0.0) || !std::isfinite(s.eps)) bad("eps must be positive and finite");
    shape_is(out_t(), x);
  }

  void operator()(const FloatPoolStep& s) const {
    arity(1);
    const PlanTensor &x = in_t(), &y = out_t();
    if (x.quantized() || y.quantized()) bad("float pooling works on float32 tensors");
    rank(x, 4);
    const FloatPool& p = s.pool;
    if (x.shape[1] != p.channels || x.shape[2] != p.in_h || x.shape[3] != p.in_w) bad("geometry does not match the input");
    if (p.kernel[0] < 1 || p.kernel[1] < 1 || p.stride[0] < 1 || p.stride[1] < 1 || p.pad[0] < 0 || p.pad[1] < 0 ||
        p.pad[2] < 0 || p.pad[3] < 0 || p.out_h < 1 || p.out_w < 1 ||
        (p.out_h - 1) * p.stride[0] - p.pad[0] >= p.in_h || (p.out_w - 1) * p.stride[1] - p.pad[1] >= p.in_w)
      bad("pooling window out of range");
    shape_is(y, {0, p.channels, p.out_h, p.out_w});
  }

  void operator()(const FloatConcatStep& s) const {
    const PlanTensor& y = out_t();
    if (y.quantized() || s.axis < 1 || s.axis >= static_cast<int64_t>(y.shape.size())) bad("bad float concat");
    int64_t total = 0;
    for (size_t i = 0; i < step.inputs.size(); ++i) {
      const PlanTensor& x = in_t(i);
      if (x.quantized() || x.shape.size() != y.shape.size()) bad("inputs must be float32 of the output's rank");
      for (size_t d = 1; d < y.shape.size(); ++d)
        if (d != static_cast<size_t>(s.axis) && x.shape[d] != y.shape[d]) bad("inputs differ outside the axis");
      total += x.shape[static_cast<size_t>(s.axis)];
    }
    if (total != y.shape[static_cast<size_t>(s.axis)]) bad("the output's axis extent is not the inputs' sum");
  }

  void operator()(const HostStep& s) const {
    if (!s.fn) bad("internal: no function");
  }
};

}  // namespace

int64_t PlanTensor::sample_elems() const { return shape.empty() ? 1 : product(shape, 1, shape.size()); }

int PlanExecutor::add_tensor(PlanTensor t) {
  if (finalized_) throw std::logic_error("PlanExecutor: already finalized");
  const std::string where = "tensor '" + t.name + "'";
  if (t.shape.empty()) fail(where, "must have a batch dimension");
  int64_t elems = 1;
  for (size_t i = 1; i < t.shape.size(); ++i) {
    if (t.shape[i] < 0 || t.shape[i] > kMaxExtent || (t.shape[i] > 0 && elems > kMaxExtent / t.shape[i]))
      fail(where, "has a negative or huge dimension");
    elems *= t.shape[i];
  }
  if (t.quantized()) {
    if (!(t.scale > 0.0f) || !std::isfinite(t.scale)) fail(where, "scale must be positive and finite");
    const int32_t lo = t.is_signed() ? -128 : 0, hi = t.is_signed() ? 127 : 255;
    if (t.zp < lo || t.zp > hi) fail(where, "zero point is outside its dtype's range");
  }
  tensors_.push_back(std::move(t));
  return static_cast<int>(tensors_.size() - 1);
}

void PlanExecutor::add_step(PlanStep step) {
  if (finalized_) throw std::logic_error("PlanExecutor: already finalized");
  const auto n = static_cast<int>(tensors_.size());
  if (step.output < 0 || step.output >= n) fail(step.label, "unknown output tensor");
  for (int id : step.inputs)
    if (id < 0 || id >= n) fail(step.label, "unknown input tensor");
  std::visit(StepChecker{tensors_, step}, step.params);
  steps_.push_back(std::move(step));
}

void PlanExecutor::finalize(std::vector<int> inputs, std::vector<int> outputs) {
  if (finalized_) throw std::logic_error("PlanExecutor: already finalized");
  const size_t n = tensors_.size();
  std::vector<bool> defined(n, false), external(n, false);
  for (int id : inputs) {
    if (id < 0 || static_cast<size_t>(id) >= n) fail("plan inputs", "unknown tensor");
    if (tensors_[id].quantized()) fail("plan input '" + tensors_[id].name + "'", "must be float32");
    defined[id] = external[id] = true;
  }
  for (const PlanStep& step : steps_) {
    for (int id : step.inputs)
      if (!defined[id]) fail(step.label, "input '" + tensors_[id].name + "' is not computed before this step");
    if (defined[step.output]) fail(step.label, "output '" + tensors_[step.output].name + "' is written twice");
    defined[step.output] = true;
  }
  for (int id : outputs) {
    if (id < 0 || static_cast<size_t>(id) >= n || !defined[id] || tensors_[id].quantized() || external[id])
      fail("plan outputs", "each must be a float32 tensor computed by a step");
    external[id] = true;
  }
  inputs_ = std::move(inputs);
  outputs_ = std::move(outputs);
  offset_per_sample_.assign(n, -1);
  plan_memory();
  stats_.assign(n, TensorStats{});
  const_bytes_ = 0;
  for (const PlanStep& step : steps_) {
    TensorStats& st = stats_[static_cast<size_t>(step.output)];
    st.monitored = tensors_[static_cast<size_t>(step.output)].quantized();
    st.range_checked = st.monitored && std::holds_alternative<QuantizeStep>(step.params);
    const_bytes_ += std::visit(ConstBytes{}, step.params);
  }
  finalized_ = true;
}

// Greedy first-fit over lifetimes: tensors, largest first, each at the lowest
// offset free of every placed tensor whose lifetime [defining step, last
// reading step] overlaps its own.  Sizes are per batch item and every tensor
// is linear in the batch, so offset * batch is a valid layout for any batch.
void PlanExecutor::plan_memory() {
  const size_t n = tensors_.size();
  std::vector<int64_t> first(n, -1), last(n, -1);
  for (size_t s = 0; s < steps_.size(); ++s) {
    const auto i = static_cast<int64_t>(s);
    first[steps_[s].output] = i;
    last[steps_[s].output] = std::max(last[steps_[s].output], i);
    for (int id : steps_[s].inputs) last[id] = std::max(last[id], i);
  }
  std::vector<bool> external(n, false);
  for (int id : inputs_) external[id] = true;
  for (int id : outputs_) external[id] = true;
  std::vector<int> order;
  for (size_t t = 0; t < n; ++t)
    if (!external[t] && first[t] >= 0) order.push_back(static_cast<int>(t));
  auto size_of = [&](int t) { return round_up(tensors_[t].sample_bytes(), kArenaAlign); };
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return size_of(a) > size_of(b); });
  std::vector<int> placed;
  arena_per_sample_ = 0;
  for (int t : order) {
    std::vector<std::pair<int64_t, int64_t>> busy;  // [begin, end) of overlapping tensors
    for (int p : placed)
      if (first[p] <= last[t] && first[t] <= last[p]) busy.emplace_back(offset_per_sample_[p], offset_per_sample_[p] + size_of(p));
    std::sort(busy.begin(), busy.end());
    int64_t offset = 0;
    for (const auto& [begin, end] : busy) {
      if (offset + size_of(t) <= begin) break;
      offset = std::max(offset, end);
    }
    offset_per_sample_[t] = offset;
    arena_per_sample_ = std::max(arena_per_sample_, offset + size_of(t));
    placed.push_back(t);
  }
}

void PlanExecutor::run(int64_t batch, const std::vector<const float*>& inputs, const std::vector<float*>& outputs) {
  run_impl(batch, inputs, outputs, nullptr);
}

void PlanExecutor::run_profiled(int64_t batch, const std::vector<const float*>& inputs,
                                const std::vector<float*>& outputs, std::vector<double>* step_seconds) {
  if (step_seconds == nullptr) throw std::invalid_argument("PlanExecutor::run_profiled: no step_seconds");
  run_impl(batch, inputs, outputs, step_seconds);
}

void PlanExecutor::set_monitoring(bool on) {
  std::lock_guard<std::mutex> lock(run_mutex_);
  monitoring_ = on;
}

bool PlanExecutor::monitoring() {
  std::lock_guard<std::mutex> lock(run_mutex_);
  return monitoring_;
}

void PlanExecutor::reset_stats() {
  std::lock_guard<std::mutex> lock(run_mutex_);
  for (TensorStats& st : stats_) st.count = st.saturated = st.out_of_range = 0;
}

std::vector<TensorStats> PlanExecutor::stats() {
  std::lock_guard<std::mutex> lock(run_mutex_);
  return stats_;
}

void PlanExecutor::run_impl(int64_t batch, const std::vector<const float*>& inputs, const std::vector<float*>& outputs,
                            std::vector<double>* step_seconds) {
  if (!finalized_) throw std::logic_error("PlanExecutor: not finalized");
  if (batch < 0 || inputs.size() != inputs_.size() || outputs.size() != outputs_.size())
    throw std::invalid_argument("PlanExecutor::run: wrong number of buffers");
  std::lock_guard<std::mutex> lock(run_mutex_);
  const auto start = std::chrono::steady_clock::now();
  if (batch > 0 && arena_per_sample_ > std::numeric_limits<int64_t>::max() / batch)
    throw std::length_error("a batch of " + std::to_string(batch) + " needs more than 2^63 bytes of intermediate tensors");
  // Grows only: a smaller batch reuses the arena of a larger one.
  arena_.reserve_discard(static_cast<size_t>(std::max<int64_t>(arena_per_sample_ * batch, 1)));
  Buffers buf;
  buf.batch = batch;
  buf.ptr.assign(tensors_.size(), nullptr);
  for (size_t t = 0; t < tensors_.size(); ++t)
    if (offset_per_sample_[t] >= 0) buf.ptr[t] = arena_.data() + offset_per_sample_[t] * batch;
  for (size_t i = 0; i < inputs.size(); ++i) buf.ptr[inputs_[i]] = const_cast<float*>(inputs[i]);
  for (size_t i = 0; i < outputs.size(); ++i) buf.ptr[outputs_[i]] = outputs[i];
  if (step_seconds == nullptr && !monitoring_) {
    for (const PlanStep& step : steps_) std::visit(StepRunner{tensors_, step, buf}, step.params);
  } else {
    if (step_seconds != nullptr) step_seconds->assign(steps_.size(), 0.0);
    for (size_t s = 0; s < steps_.size(); ++s) {
      const PlanStep& step = steps_[s];
      std::chrono::steady_clock::time_point t0;
      if (step_seconds != nullptr) t0 = std::chrono::steady_clock::now();
      std::visit(StepRunner{tensors_, step, buf}, step.params);
      if (step_seconds != nullptr)
        (*step_seconds)[s] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (monitoring_) count_step(tensors_, step, buf, stats_);  // after the clock: a profile excludes it
    }
  }
  last_run_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace eb
