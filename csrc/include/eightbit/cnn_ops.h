// Kernel layer interface for the CNN companion operators: QLinearAdd,
// QLinearMul, MaxPool, QLinearAveragePool and byte lookup tables.
// docs/numerics.md ("CNN operators") is the arithmetic contract.
//
// Activations are channels-last (NHWC / NDHWC): channels are contiguous and
// are the vector dimension of the pooling kernels.  Each ISA unit fills one
// CnnKernels from the shared headers kernels/elementwise.h and
// kernels/pooling.h; the runtime (runtime/cnn_ops.cpp) splits the work.
#pragma once

#include <cstdint>

namespace eb {

// One contiguous run of an elementwise binary op: out[i] = f(p[i], q[i]) for
// i < n, where an operand flagged scalar is read at index 0 for every i.
struct BinaryRun {
  const void* p = nullptr;
  const void* q = nullptr;
  void* out = nullptr;
  int64_t n = 0;
  bool p_scalar = false;
  bool q_scalar = false;
};

// The output type's range as floats, for the clamp before rounding.  Passed
// as data, not as constants: GCC 12 does not vectorise the clamp against
// constant bounds (seen with -fopt-info-vec).
struct OutputRange {
  float qmin = 0.0f, qmax = 255.0f;
  bool is_signed = false;
};

inline OutputRange output_range(bool is_signed) {
  return is_signed ? OutputRange{-128.0f, 127.0f, true} : OutputRange{0.0f, 255.0f, false};
}

// QLinearAdd with the operands already in ONNX Runtime's order (P, Q):
// v = fma(P, r_p, fma(Q, r_q, fixed)), out = sat(rne(v)).
struct QAddParams {
  float r_p = 1.0f, r_q = 1.0f, fixed = 0.0f;
  OutputRange range;
};

// QLinearMul: v = float32(float32((p - p_zp) * (q - q_zp)) * ratio) + c_zp, out = sat(rne(v)).
struct QMulParams {
  int32_t p_zp = 0, q_zp = 0;
  float ratio = 1.0f, c_zp = 0.0f;
  OutputRange range;
};

// Pooling window geometry over three spatial axes (depth, height, width);
// 1-D and 2-D pools have leading axes of extent 1.  Output pixel r is
// ((n * out[0] + o0) * out[1] + o1) * out[2] + o2.
struct PoolGeometry {
  int64_t batch = 0, channels = 0;
  int64_t in[3] = {1, 1, 1};
  int64_t out[3] = {1, 1, 1};
  int64_t kernel[3] = {1, 1, 1};
  int64_t stride[3] = {1, 1, 1};
  int64_t dilation[3] = {1, 1, 1};
  int64_t pad_begin[3] = {0, 0, 0};

  int64_t out_pixels() const { return batch * out[0] * out[1] * out[2]; }
  int64_t in_pixels() const { return batch * in[0] * in[1] * in[2]; }
  int64_t taps() const { return kernel[0] * kernel[1] * kernel[2]; }
};

// QLinearAveragePool (the windowed float formula; the whole-image case is the
// runtime's integer path).
struct AvgPoolParams {
  float x_scale = 1.0f, y_scale = 1.0f, y_zp = 0.0f;
  int32_t x_zp = 0;
  bool count_include_pad = false;
  OutputRange range;
};

using QAddFn = void (*)(const QAddParams& params, const BinaryRun& run);
using QMulFn = void (*)(const QMulParams& params, const BinaryRun& run);
// Compute output pixels [r0, r1), every channel.
using MaxPoolFn = void (*)(const PoolGeometry& g, bool is_signed, const void* x, void* y, int64_t r0, int64_t r1);
using AvgPoolFn = void (*)(const PoolGeometry& g, const AvgPoolParams& params, const void* x, void* y, int64_t r0,
                           int64_t r1);
// Per-channel sums (mod 2^32) of `pixels` rows of `channels` bytes, each read
// as uint8 after XOR with `flip`.
using SumPixelsFn = void (*)(const uint8_t* x, int64_t pixels, int64_t channels, uint8_t flip, uint32_t* sum);
// y[i] = table[x[i]] for i < n; table has 256 entries.
using LookupFn = void (*)(const uint8_t* x, int64_t n, const uint8_t* table, uint8_t* y);
// QuantizeLinear of n floats: y[i] = clamp_round(x[i] / scale, qmin - zp, qmax - zp) + zp (the
// correctly rounded quotient, NaN -> qmin), y bytes of range's type.
using QuantizeFn = void (*)(const float* x, int64_t n, float scale, int32_t zp, const OutputRange& range, void* y);
// (CnnKernels::quantize_bounded: the same, for x known finite with |x| <= 256 scale, as
// DynamicQuantizeLinear's range guarantees; it skips the check of x's magnitude.)
// min(0, x[i]) and max(0, x[i]) over n floats (DynamicQuantizeLinear's range); false when a value
// is not finite (mn / mx are then unspecified).
using RangeFn = bool (*)(const float* x, int64_t n, float* mn, float* mx);
// y[i] = x[i] / scale[i] correctly rounded, computed as the quantize kernel computes its quotient
// (without a divide where that is proven exact): a test hook.
using DivideFn = void (*)(const float* x, const float* scale, int64_t n, float* y);

struct CnnKernels {
  QAddFn qlinear_add = nullptr;
  QMulFn qlinear_mul = nullptr;
  MaxPoolFn max_pool = nullptr;
  AvgPoolFn average_pool = nullptr;
  SumPixelsFn sum_pixels = nullptr;
  LookupFn lookup = nullptr;
  QuantizeFn quantize = nullptr;
  QuantizeFn quantize_bounded = nullptr;
  RangeFn range = nullptr;
  DivideFn divide = nullptr;
};

CnnKernels cnn_kernels_scalar();
CnnKernels cnn_kernels_avx2();
CnnKernels cnn_kernels_avx512vnni();

}  // namespace eb
