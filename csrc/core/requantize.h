// Core numerics: the scalar building blocks of docs/numerics.md, shared by
// the elementwise quantizers and by every ISA's GEMM epilogue.
//
// Only operations whose result IEEE-754 and two's complement fully specify
// are used (int->float conversion, one multiply or divide, compares, the
// magic-number round), so every translation unit, whatever its -m flags,
// produces the same bits.  Requires -ffp-contract=off, set for the project.
#pragma once

#include <algorithm>
#include <cstdint>

namespace eb {

// Internal linkage on purpose: this header is compiled into translation units
// with different instruction-set flags, and an inline function with external
// linkage would be merged by the linker into ONE copy (possibly an AVX-512
// one, called from the portable path on a CPU without AVX-512).
namespace {

// Round half to even for |v| < 2^22: adding 1.5 * 2^23 pushes the fraction
// bits out of the mantissa under the default rounding mode.  Every caller has
// clamped v to a quantized range first, so |v| <= 510.
inline float round_even_small(float v) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  return (v + kMagic) - kMagic;
}

// Clamp-then-round: returns round(clamp(v, lo, hi)) with NaN -> lo, as
// ONNX Runtime's MLAS does (maxps returns its second operand on NaN).
inline int32_t clamp_round(float v, float lo, float hi) {
  v = v > lo ? v : lo;
  v = v < hi ? v : hi;
  return static_cast<int32_t>(round_even_small(v));
}

// gemmlowp's SaturatingRoundingDoublingHighMul for b >= 0.  b is a Q0.31
// multiplier in [0, 2^31), so the one overflow case (a == b == INT32_MIN)
// cannot occur.
inline int32_t srdhm(int32_t a, int32_t b) {
  const int64_t ab = static_cast<int64_t>(a) * b;
  const int64_t nudge = ab >= 0 ? (int64_t{1} << 30) : (1 - (int64_t{1} << 30));
  return static_cast<int32_t>((ab + nudge) / (int64_t{1} << 31));  // truncates toward zero
}

// Rounding divide by 2^exponent, ties away from zero (RoundingDivideByPOT).
inline int32_t rounding_divide_by_pot(int32_t x, int exponent) {
  const int64_t mask = (int64_t{1} << exponent) - 1;
  const int64_t remainder = x & mask;
  const int64_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return static_cast<int32_t>((x >> exponent) + (remainder > threshold ? 1 : 0));
}

// TFLite MultiplyByQuantizedMultiplier, with the left shift saturating to
// int32 instead of wrapping (docs/numerics.md, `fixed`).
inline int32_t requantize_fixed(int32_t acc, int32_t m0, int32_t shift) {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  int64_t x = static_cast<int64_t>(acc) * (int64_t{1} << left);
  x = std::min<int64_t>(std::max<int64_t>(x, INT32_MIN), INT32_MAX);
  return rounding_divide_by_pot(srdhm(static_cast<int32_t>(x), m0), right);
}

}  // namespace

}  // namespace eb
