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
#include <cstring>

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

// x / scale, correctly rounded, without a divide (docs/numerics.md, "The quotient x / scale").
// With inv = RN(1 / scale) (an IEEE divide, once per scale), two Markstein corrections
//   q0 = RN(x inv),  q1 = RN(q0 - RN(q0 scale - x) inv),  q2 = RN(q1 - (q1 scale - x) inv)
// give q2 = RN(x / scale) for every scale in [2^-126, 2^124] and every x that is 0 or whose
// magnitude lies in [lo, hi] (the band: |x| >= 2^-100 and 2^-124 <= |x / scale| <= 2^125).
// q1 is faithful; q1 scale - x is then exact, and the second correction rounds correctly.
// Outside the domain the kernels divide.  Only units with an FMA instruction use it: elsewhere
// std::fma is a libm call, slower than the divide.
#if defined(__FMA__)
constexpr bool kDivideByFma = true;
#else
constexpr bool kDivideByFma = false;
#endif

inline uint32_t abs_bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b & 0x7FFFFFFFu;
}

struct ScaleDivisor {
  float scale = 1.0f, inv = 1.0f, neg_inv = -1.0f;
  uint32_t lo = 0, span = 0;  // |x|'s bits - lo <= span (unsigned): |x| in the band
  bool exact = false;         // scale inside the domain (and an FMA unit)
};

inline ScaleDivisor scale_divisor(float scale) {
  ScaleDivisor d;
  d.scale = scale;
  if (!kDivideByFma || !(scale >= 0x1p-126f && scale <= 0x1p124f)) return d;
  d.inv = 1.0f / scale;  // correctly rounded, normal: 1 / scale in [2^-124, 2^126]
  d.neg_inv = -d.inv;
#if defined(__FMA__)
  // Hide that neg_inv is -inv: GCC 12 otherwise moves the negation of fma(-r, inv, q) into the
  // fma that computed r, which flips the sign of an exact zero (q1 = -0 for x = -0 became +0).
  __asm__("" : "+x"(d.neg_inv));
#endif
  const float lo = std::fmax(0x1p-100f, scale * 0x1p-124f);
  const float hi = scale <= 0x1p3f ? scale * 0x1p124f : 0x1.fffffep127f;
  d.lo = abs_bits(lo);
  d.span = abs_bits(hi) - d.lo;
  d.exact = true;
  return d;
}

inline bool in_band(const ScaleDivisor& d, float x) {
  const uint32_t b = abs_bits(x);
  return b - d.lo <= d.span || b == 0;  // NaN and infinity are above hi
}

// r = q scale - x is +0 when zero, so q - r inv keeps the sign of a zero q (x = -0 gives -0).
inline float divide_fma(float x, float scale, float inv, float neg_inv) {
  float q = x * inv;
  float r = std::fma(q, scale, -x);  // rounded: q may be 1.5 ulp off
  q = std::fma(r, neg_inv, q);       // faithful
  r = std::fma(q, scale, -x);        // exact
  return std::fma(r, neg_inv, q);    // RN(x / scale)
}

// The quotient exactly as the quantize kernel computes it (per element here): a test hook.
inline void divide_by_scales(const float* x, const float* scale, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    const ScaleDivisor d = scale_divisor(scale[i]);
    y[i] = d.exact && in_band(d, x[i]) ? divide_fma(x[i], d.scale, d.inv, d.neg_inv) : x[i] / scale[i];
  }
}

// QuantizeLinear: the loop is clamp_round written out so that it vectorises (maxps / minps keep
// the ternaries' NaN -> lo; the rounding is the magic-number add, no roundps needed).
// Not inlined: inlined into quantize_run, GCC 12 did not vectorise it ("control flow in loop").
template <bool kFma, typename T>
__attribute__((noinline)) void quantize_block(const float* x, int64_t n, const ScaleDivisor& d, float lo, float hi,
                                              int32_t zp, T* y) {
  constexpr float kMagic = 12582912.0f;  // round_even_small's 1.5 * 2^23
  const float scale = d.scale, inv = d.inv, neg_inv = d.neg_inv;
  for (int64_t i = 0; i < n; ++i) {
    float v = kFma ? divide_fma(x[i], scale, inv, neg_inv) : x[i] / scale;
    v = v > lo ? v : lo;
    v = v < hi ? v : hi;
    y[i] = static_cast<T>(static_cast<int32_t>((v + kMagic) - kMagic) + zp);
  }
}

// kBounded: the caller guarantees finite x with |x| <= 256 scale (DynamicQuantizeLinear's own
// range), inside the band whenever the scale is in the domain: no per-value check.
template <bool kBounded, typename T>
void quantize_run(const float* x, int64_t n, float scale, int32_t zp, const OutputRange& range, T* y) {
  const float lo = range.qmin - static_cast<float>(zp), hi = range.qmax - static_cast<float>(zp);
  const ScaleDivisor d = scale_divisor(scale);
  if (!kDivideByFma || !d.exact || !(scale >= 0x1p-90f)) return quantize_block<false>(x, n, d, lo, hi, zp, y);
  if (kBounded) return quantize_block<true>(x, n, d, lo, hi, zp, y);
  // Blocks whose largest |x| is at most the band's top take the FMA quotient; others (a huge
  // value, infinity, NaN) divide.  Values below the band need no check: with scale >= 2^-90,
  // |x| < lo gives |x / scale| < 2^-10, and the FMA steps too give a value below 1/2: both
  // round to 0 (docs/numerics.md).
  const uint32_t top = d.lo + d.span;
  constexpr int64_t kBlock = 256;
  for (int64_t i = 0; i < n; i += kBlock) {
    const int64_t len = n - i < kBlock ? n - i : kBlock;
    const float* xb = x + i;
    uint32_t largest = 0;
    for (int64_t j = 0; j < len; ++j) {
      const uint32_t b = abs_bits(xb[j]);
      largest = b > largest ? b : largest;
    }
    if (largest <= top)
      quantize_block<true>(xb, len, d, lo, hi, zp, y + i);
    else
      quantize_block<false>(xb, len, d, lo, hi, zp, y + i);
  }
}

inline void quantize_any(const float* x, int64_t n, float scale, int32_t zp, const OutputRange& range, void* y) {
  if (range.is_signed)
    quantize_run<false>(x, n, scale, zp, range, static_cast<int8_t*>(y));
  else
    quantize_run<false>(x, n, scale, zp, range, static_cast<uint8_t*>(y));
}

inline void quantize_bounded(const float* x, int64_t n, float scale, int32_t zp, const OutputRange& range, void* y) {
  if (range.is_signed)
    quantize_run<true>(x, n, scale, zp, range, static_cast<int8_t*>(y));
  else
    quantize_run<true>(x, n, scale, zp, range, static_cast<uint8_t*>(y));
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
