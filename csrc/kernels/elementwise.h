// Kernel layer: QLinearAdd, QLinearMul and the byte lookup table, shared
// source for every ISA.
//
// Each ISA's unit includes this header, so the loops are auto-vectorised with
// that unit's flags.  The float steps are the ones docs/numerics.md lists, in
// its order; std::fma is one rounding everywhere (the FMA instruction where
// the unit has it, an exact libm call in the portable unit) and the project
// builds with -ffp-contract=off, so no other step is ever fused: every ISA
// gives the same bits.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/requantize.h"
#include "eightbit/cnn_ops.h"

namespace eb {

// Internal linkage on purpose: see kernels/depthwise.h (one copy per ISA unit).
namespace {

// An operand flagged scalar is read at index 0: the template flags let the
// compiler hoist it out of the vector loop.
template <bool kScalar, typename T>
inline float operand(const T* v, int64_t i) {
  return static_cast<float>(v[kScalar ? 0 : i]);
}

template <typename T, bool kPScalar, bool kQScalar>
void qlinear_add_run(const QAddParams& k, const BinaryRun& run) {
  const T* p = static_cast<const T*>(run.p);
  const T* q = static_cast<const T*>(run.q);
  T* out = static_cast<T*>(run.out);
  const int64_t n = run.n;  // a local: stores through a byte pointer could alias run.n
  const float r_p = k.r_p, r_q = k.r_q, fixed = k.fixed, lo = k.range.qmin, hi = k.range.qmax;
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::fma(operand<kPScalar>(p, i), r_p, std::fma(operand<kQScalar>(q, i), r_q, fixed));
    out[i] = static_cast<T>(clamp_round(v, lo, hi));
  }
}

template <typename T, bool kPScalar, bool kQScalar>
void qlinear_mul_run(const QMulParams& k, const BinaryRun& run) {
  const T* p = static_cast<const T*>(run.p);
  const T* q = static_cast<const T*>(run.q);
  T* out = static_cast<T*>(run.out);
  const int64_t n = run.n;  // a local: stores through a byte pointer could alias run.n
  const int32_t p_zp = k.p_zp, q_zp = k.q_zp;
  const float ratio = k.ratio, c_zp = k.c_zp, lo = k.range.qmin, hi = k.range.qmax;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t prod = (static_cast<int32_t>(p[kPScalar ? 0 : i]) - p_zp) *
                         (static_cast<int32_t>(q[kQScalar ? 0 : i]) - q_zp);  // |prod| <= 65025
    const float v = static_cast<float>(prod) * ratio + c_zp;                 // two roundings (no contraction)
    out[i] = static_cast<T>(clamp_round(v, lo, hi));
  }
}

// Picks the instantiation for the run's dtype and scalar flags.
template <template <typename, bool, bool> class Op, typename Params>
inline void dispatch_run(const Params& k, const BinaryRun& run) {
  const int flags = (run.p_scalar ? 2 : 0) | (run.q_scalar ? 1 : 0);
  if (k.range.is_signed) {
    switch (flags) {
      case 0: return Op<int8_t, false, false>::call(k, run);
      case 1: return Op<int8_t, false, true>::call(k, run);
      case 2: return Op<int8_t, true, false>::call(k, run);
      default: return Op<int8_t, true, true>::call(k, run);
    }
  }
  switch (flags) {
    case 0: return Op<uint8_t, false, false>::call(k, run);
    case 1: return Op<uint8_t, false, true>::call(k, run);
    case 2: return Op<uint8_t, true, false>::call(k, run);
    default: return Op<uint8_t, true, true>::call(k, run);
  }
}

template <typename T, bool kP, bool kQ>
struct AddOp {
  static void call(const QAddParams& k, const BinaryRun& run) { qlinear_add_run<T, kP, kQ>(k, run); }
};
template <typename T, bool kP, bool kQ>
struct MulOp {
  static void call(const QMulParams& k, const BinaryRun& run) { qlinear_mul_run<T, kP, kQ>(k, run); }
};

inline void qlinear_add_any(const QAddParams& k, const BinaryRun& run) { dispatch_run<AddOp>(k, run); }
inline void qlinear_mul_any(const QMulParams& k, const BinaryRun& run) { dispatch_run<MulOp>(k, run); }

// The plain table lookup; the SIMD units use it for their tails.
inline void lookup_bytes(const uint8_t* x, int64_t n, const uint8_t* table, uint8_t* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = table[x[i]];
}

// QuantizeLinear: the loop is clamp_round written out so that it vectorises (maxps / minps keep
// the ternaries' NaN -> lo; the rounding is the magic-number add, no roundps needed).
template <typename T>
void quantize_run(const float* x, int64_t n, float scale, int32_t zp, const OutputRange& range, T* y) {
  const float lo = range.qmin - static_cast<float>(zp), hi = range.qmax - static_cast<float>(zp);
  constexpr float kMagic = 12582912.0f;  // round_even_small's 1.5 * 2^23
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i] / scale;
    v = v > lo ? v : lo;
    v = v < hi ? v : hi;
    y[i] = static_cast<T>(static_cast<int32_t>((v + kMagic) - kMagic) + zp);
  }
}

inline void quantize_any(const float* x, int64_t n, float scale, int32_t zp, const OutputRange& range, void* y) {
  if (range.is_signed)
    quantize_run(x, n, scale, zp, range, static_cast<int8_t*>(y));
  else
    quantize_run(x, n, scale, zp, range, static_cast<uint8_t*>(y));
}

// min(0, x) and max(0, x) in 16 independent lanes (a vector register, or several), then across
// them: min and max do not depend on the order, and a lane starts at +0 that -0 never replaces, so
// every ISA finds the same values.  v - v is 0 exactly for finite v.
inline bool range_with_zero(const float* x, int64_t n, float* mn_out, float* mx_out) {
  constexpr int kLanes = 16;
  float mn[kLanes] = {}, mx[kLanes] = {}, bad[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const float v = x[i + j];
      mn[j] = v < mn[j] ? v : mn[j];
      mx[j] = v > mx[j] ? v : mx[j];
      bad[j] = (v - v) == 0.0f ? bad[j] : 1.0f;
    }
  float lo = 0.0f, hi = 0.0f;
  bool finite = true;
  for (int j = 0; j < kLanes; ++j) {
    lo = mn[j] < lo ? mn[j] : lo;
    hi = mx[j] > hi ? mx[j] : hi;
    finite &= bad[j] == 0.0f;
  }
  for (; i < n; ++i) {
    const float v = x[i];
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
    finite &= (v - v) == 0.0f;
  }
  *mn_out = lo;
  *mx_out = hi;
  return finite;
}

}  // namespace

}  // namespace eb
