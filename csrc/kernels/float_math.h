// Kernel layer: the float32 steps of eightbit/float_math.h, one shared source for every ISA (each
// unit compiles it with its own flags: a vector is one zmm, one ymm or one xmm / NEON register).
//
// Bit-identity across ISAs: every function below is lane-wise (a lane's result depends only on
// that lane's inputs, through the same IEEE float32 operations on every path; no FMA: the build
// uses -ffp-contract=off), tails go through the same vector code on a padded copy, and sums use
// 16 partials (element i into partial i mod 16) folded by one scalar pairwise tree.  The lane
// count only changes how many lanes run at once, never a result.
//
// Coefficients: fitted by tools/fit_float_math.py (near-minimax, Lawson's weighted least
// squares), rounded to float32; the error bounds measured by tools/float_math_exhaustive.cpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "eightbit/float_math.h"

namespace eb {
namespace {  // internal linkage: each ISA unit has its own copy

#if defined(__AVX512F__)
constexpr int kFmLanes = 16;
#elif defined(__AVX__)
constexpr int kFmLanes = 8;
#else
constexpr int kFmLanes = 4;
#endif
constexpr int kFmPartials = 16;  // reduction lanes, the same on every path
constexpr int kFmVecsPerBlock = kFmPartials / kFmLanes;

typedef float VF __attribute__((vector_size(kFmLanes * sizeof(float))));
typedef int32_t VI __attribute__((vector_size(kFmLanes * sizeof(float))));
// The same vector read from / written to any float address (unaligned; may alias float data).
typedef float VFMem __attribute__((vector_size(kFmLanes * sizeof(float)), aligned(4), may_alias));

inline VF vload(const float* p) { return *reinterpret_cast<const VFMem*>(p); }
inline void vstore(float* p, VF v) { *reinterpret_cast<VFMem*>(p) = v; }
inline VF vset(float v) { return VF{} + v; }
inline VI as_int(VF v) { return (VI)v; }  // the bits: a GCC vector cast reinterprets
inline VF as_float(VI v) { return (VF)v; }
inline VF vselect(VI mask, VF a, VF b) { return mask ? a : b; }
inline VF vabs(VF x) { return as_float(as_int(x) & 0x7fffffff); }
inline VF vcopysign(VF mag, VF sign) { return as_float((as_int(mag) & 0x7fffffff) | (as_int(sign) & int32_t(0x80000000u))); }
// max / min that keep NaN in x (as std::max(x, lo), std::min(x, hi)).
inline VF vmax_keep(VF x, VF lo) { return vselect(x < lo, lo, x); }
inline VF vmin_keep(VF x, VF hi) { return vselect(hi < x, hi, x); }
inline VF vfix_nan(VF x, VF r) { return vselect(x != x, x, r); }  // NaN in, the same NaN out

// ---------------------------------------------------------------------------- exp

// e^(hi + lo) for |lo| small against the reduction (|lo| <= ~2); no NaN handling.  Cody-Waite:
// n = round((hi + lo) / ln 2), r = hi - n ln2_hi - n ln2_lo + lo (n ln2_hi exact: ln2_hi has 9
// bits), e^r by a degree-6 polynomial on |r| <= 0.347, then 2^n in two factors so that results
// down to the subnormal range round once (2^n1 * 2^n2, both normal).  The argument is clamped to
// [-105, 89]: beyond it the result is 0 or overflows to inf anyway.
inline VF exp_core(VF hi, VF lo) {
  const VF s = hi + lo;
  const VF x = vmin_keep(vmax_keep(s, vset(-105.0f)), vset(89.0f));
  const VI inside = s == x;  // else (or NaN) reduce the clamped x alone
  hi = vselect(inside, hi, x);
  lo = vselect(inside, lo, VF{});
  const VF magic = vset(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer, kept in the low bits
  const VF t = x * 1.44269502f + magic;
  const VF n = t - magic;
  const VI ni = as_int(t) - as_int(magic);
  const VF r = ((hi - n * 0.693359375f) - n * -2.12194440e-4f) + lo;
  VF q = vset(1.381455571e-03f);
  q = q * r + 8.368736133e-03f;
  q = q * r + 4.166838899e-02f;
  q = q * r + 1.666652113e-01f;
  q = q * r + 4.999999404e-01f;
  const VF p = (q * (r * r) + r) + 1.0f;
  const VI n1 = ni >> 1, n2 = ni - n1;
  return (p * as_float((n1 + 127) << 23)) * as_float((n2 + 127) << 23);
}

inline VF vexp(VF x) { return vfix_nan(x, exp_core(x, VF{})); }

// ---------------------------------------------------------------------------- erf, erfc

// erfc(t) for t >= 0.5, given -t^2 as hi + lo exactly enough (hi = -th^2 exact, lo the rest):
// erfc(t) = tau e^(-t^2 + P(tau)), tau = 1 / (1 + t / 2) (the form of Numerical Recipes' erfcc,
// our own degree-9 fit over t in [0.5, 10.5]; beyond 10.5 erfc underflows to 0).
inline VF erfc_core(VF t, VF hi, VF lo) {
  t = vmin_keep(t, vset(10.5f));
  const VF tau = 1.0f / (t * 0.5f + 1.0f);
  VF p = vset(2.529971302e-01f);
  p = p * tau + -1.190268397e+00f;
  p = p * tau + 2.193292379e+00f;
  p = p * tau + -1.887546897e+00f;
  p = p * tau + 7.693431973e-01f;
  p = p * tau + -3.874569237e-01f;
  p = p * tau + 1.483504772e-01f;
  p = p * tau + 3.661683202e-01f;
  p = p * tau + 1.000684977e+00f;
  p = p * tau + -1.265535235e+00f;
  return tau * exp_core(hi, lo + p);
}

// -t^2 = hi + lo: Dekker's split of t (12 + 12 bits) makes th * th exact.
inline void neg_square(VF t, VF* hi, VF* lo) {
  const VF th = as_float(as_int(t) & int32_t(0xfffff000u));
  const VF tl = t - th;
  *hi = -(th * th);
  *lo = -((th * tl) * 2.0f + tl * tl);
}

// erf(x) / x = P(x^2) for |x| < 0.5 (degree 5 in x^2).
inline VF erf_small_ratio(VF x2) {
  VF p = vset(-7.695578388e-04f);
  p = p * x2 + 5.200479180e-03f;
  p = p * x2 + -2.686315775e-02f;
  p = p * x2 + 1.128377393e-01f;
  p = p * x2 + -3.761263788e-01f;
  p = p * x2 + 1.128379226e+00f;
  return p;
}

inline VF verf(VF x) {
  const VF a = vmin_keep(vabs(x), vset(10.5f));
  VF hi, lo;
  neg_square(a, &hi, &lo);
  const VF big = vcopysign(1.0f - erfc_core(vmax_keep(a, vset(0.5f)), hi, lo), x);
  const VF small = x * erf_small_ratio(x * x);
  return vfix_nan(x, vselect(a < 0.5f, small, big));
}

// GELU, erf form: x / 2 * (1 + erf(x / sqrt 2)).  For |x / sqrt 2| >= 0.5, 1 + erf is 2 - erfc or
// (x < 0) erfc itself, with (x / sqrt 2)^2 = x^2 / 2 split exactly: the negative tail keeps its
// relative accuracy instead of cancelling in 1 + erf.
inline VF vgelu(VF x) {
  const VF z = x * 0.707106769f;
  const VF az = vabs(z);
  const VF ax = vmin_keep(vabs(x), vset(14.9f));  // 14.9 / sqrt 2 > 10.5: erfc is 0 past it
  VF hi, lo;
  neg_square(ax, &hi, &lo);
  const VF q = erfc_core(vmax_keep(az, vset(0.5f)), hi * 0.5f, lo * 0.5f);
  const VF big = vselect(x < 0.0f, q, 2.0f - q);
  const VF small = z * erf_small_ratio(z * z) + 1.0f;
  return vfix_nan(x, (x * 0.5f) * vselect(az < 0.5f, small, big));
}

// ---------------------------------------------------------------------------- tanh, sigmoid

// tanh: x + x^3 P(x^2) for |x| < 0.625, else 1 - 2 / (e^2|x| + 1) with x's sign (|x| clamped to
// 9.5, where tanh is 1 in float32).
inline VF vtanh(VF x) {
  const VF a = vmin_keep(vabs(x), vset(9.5f));
  const VF big = vcopysign(1.0f - 2.0f / (exp_core(a * 2.0f, VF{}) + 1.0f), x);
  const VF x2 = x * x;
  VF p = vset(2.142952988e-03f);
  p = p * x2 + -8.177388459e-03f;
  p = p * x2 + 2.170069888e-02f;
  p = p * x2 + -5.394676328e-02f;
  p = p * x2 + 1.333320588e-01f;
  p = p * x2 + -3.333333135e-01f;
  const VF small = x + (x * x2) * p;
  return vfix_nan(x, vselect(a < 0.625f, small, big));
}

// The float graph's sigmoid: e = e^-|x|, 1 / (1 + e) or e / (1 + e) (never overflows).
inline VF vsigmoid(VF x) {
  const VF e = exp_core(-vabs(x), VF{});
  const VF d = e + 1.0f;
  return vfix_nan(x, vselect(x >= 0.0f, 1.0f / d, e / d));
}

// The float graph's tanh GELU, its float32 operations in its order.
inline VF vgelu_tanh(VF x) {
  const VF inner = ((x + ((x * 0.044715f) * x) * x)) * 0.797884583f;
  return (x * 0.5f) * (vtanh(inner) + 1.0f);
}

// ---------------------------------------------------------------------------- loops

// y[i] = f(x[i]); the tail through the same vector code on a zero-padded copy.
template <typename F>
inline void map_n(const float* x, int64_t n, float* y, F f) {
  int64_t i = 0;
  for (; i + kFmLanes <= n; i += kFmLanes) vstore(y + i, f(vload(x + i)));
  if (i < n) {
    float buf[kFmLanes] = {};
    std::memcpy(buf, x + i, static_cast<size_t>(n - i) * sizeof(float));
    vstore(buf, f(vload(buf)));
    std::memcpy(y + i, buf, static_cast<size_t>(n - i) * sizeof(float));
  }
}

void fm_unary(const FloatUnaryOp& op, const float* x, int64_t n, float* y) {
  const float a = op.a, b = op.b;
  switch (op.kind) {
    case FloatUnary::kClip:
      return map_n(x, n, y, [=](VF v) { return vmin_keep(vmax_keep(v, vset(a)), vset(b)); });
    case FloatUnary::kLeakyRelu:
      return map_n(x, n, y, [=](VF v) { return vselect(v > 0.0f, v, v * a); });
    case FloatUnary::kSigmoid:
      return map_n(x, n, y, vsigmoid);
    case FloatUnary::kTanh:
      return map_n(x, n, y, vtanh);
    case FloatUnary::kHardswish:  // (x * clip(x + 3, 0, 6)) / 6, NumPy's order
      return map_n(x, n, y, [](VF v) {
        return (v * vmin_keep(vmax_keep(v + 3.0f, VF{}), vset(6.0f))) / 6.0f;
      });
    case FloatUnary::kGelu:
      return map_n(x, n, y, vgelu);
    case FloatUnary::kGeluTanh:
      return map_n(x, n, y, vgelu_tanh);
    case FloatUnary::kHardsigmoid:  // two float32 roundings, as NumPy's alpha * x + beta
      return map_n(x, n, y, [=](VF v) { return vmin_keep(vmax_keep(v * a + b, VF{}), vset(1.0f)); });
    case FloatUnary::kErf:
      return map_n(x, n, y, verf);
  }
}

void fm_exp(const float* x, int64_t n, float* y) { map_n(x, n, y, vexp); }

template <FloatBinaryOp Op>
inline VF binary_op(VF a, VF b) {
  if (Op == FloatBinaryOp::kAdd) return a + b;
  if (Op == FloatBinaryOp::kMul) return a * b;
  return a / b;
}

template <FloatBinaryOp Op, bool Clamp, bool SA, bool SB>
void binary_loop(const float* a, const float* b, int64_t n, float lo, float hi, float* y) {
  auto f = [=](VF va, VF vb) {
    const VF r = binary_op<Op>(va, vb);
    return Clamp ? vmin_keep(vmax_keep(r, vset(lo)), vset(hi)) : r;
  };
  const VF a0 = vset(a[0]), b0 = vset(b[0]);
  int64_t i = 0;
  for (; i + kFmLanes <= n; i += kFmLanes) vstore(y + i, f(SA ? vload(a + i) : a0, SB ? vload(b + i) : b0));
  if (i < n) {
    float ba[kFmLanes] = {}, bb[kFmLanes] = {};
    for (int64_t j = i; j < n; ++j) {
      ba[j - i] = a[SA ? j : 0];
      bb[j - i] = b[SB ? j : 0];
    }
    vstore(ba, f(vload(ba), vload(bb)));
    std::memcpy(y + i, ba, static_cast<size_t>(n - i) * sizeof(float));
  }
}

template <FloatBinaryOp Op, bool Clamp>
void binary_strides(const float* a, int64_t sa, const float* b, int64_t sb, int64_t n, float lo, float hi, float* y) {
  if (sa && sb) return binary_loop<Op, Clamp, true, true>(a, b, n, lo, hi, y);
  if (sa) return binary_loop<Op, Clamp, true, false>(a, b, n, lo, hi, y);
  if (sb) return binary_loop<Op, Clamp, false, true>(a, b, n, lo, hi, y);
  return binary_loop<Op, Clamp, false, false>(a, b, n, lo, hi, y);
}

template <FloatBinaryOp Op>
void binary_clamp(const float* a, int64_t sa, const float* b, int64_t sb, int64_t n, bool clamp, float lo, float hi,
                  float* y) {
  if (clamp)
    binary_strides<Op, true>(a, sa, b, sb, n, lo, hi, y);
  else
    binary_strides<Op, false>(a, sa, b, sb, n, lo, hi, y);
}

void fm_binary(FloatBinaryOp op, const float* a, int64_t sa, const float* b, int64_t sb, int64_t n, bool clamp,
               float lo, float hi, float* y) {
  if (n <= 0) return;
  switch (op) {
    case FloatBinaryOp::kAdd:
      return binary_clamp<FloatBinaryOp::kAdd>(a, sa, b, sb, n, clamp, lo, hi, y);
    case FloatBinaryOp::kMul:
      return binary_clamp<FloatBinaryOp::kMul>(a, sa, b, sb, n, clamp, lo, hi, y);
    case FloatBinaryOp::kDiv:
      return binary_clamp<FloatBinaryOp::kDiv>(a, sa, b, sb, n, clamp, lo, hi, y);
  }
}

void fm_affine(const float* x, int64_t n, float scale, float shift, float* y) {
  map_n(x, n, y, [=](VF v) { return v * scale + shift; });
}

// ---------------------------------------------------------------------------- reductions

// A block of 16 values: the row's next 16, or its tail padded with `pad`.
struct Block {
  VF v[kFmVecsPerBlock];
};

inline Block load_block(const float* p, int64_t valid, float pad) {
  Block b;
  if (valid >= kFmPartials) {
    for (int k = 0; k < kFmVecsPerBlock; ++k) b.v[k] = vload(p + k * kFmLanes);
  } else {
    float buf[kFmPartials];
    for (int j = 0; j < kFmPartials; ++j) buf[j] = j < valid ? p[j] : pad;
    for (int k = 0; k < kFmVecsPerBlock; ++k) b.v[k] = vload(buf + k * kFmLanes);
  }
  return b;
}

inline void store_block(float* p, int64_t valid, const Block& b) {
  if (valid >= kFmPartials) {
    for (int k = 0; k < kFmVecsPerBlock; ++k) vstore(p + k * kFmLanes, b.v[k]);
  } else {
    float buf[kFmPartials];
    for (int k = 0; k < kFmVecsPerBlock; ++k) vstore(buf + k * kFmLanes, b.v[k]);
    std::memcpy(p, buf, static_cast<size_t>(valid) * sizeof(float));
  }
}

// The 16 partials folded pairwise: s[i] + s[i + 8], then + 4, + 2, + 1 (the same on every path).
inline float fold(const Block& acc) {
  float s[kFmPartials];
  for (int k = 0; k < kFmVecsPerBlock; ++k) vstore(s + k * kFmLanes, acc.v[k]);
  for (int w = kFmPartials / 2; w >= 1; w /= 2)
    for (int i = 0; i < w; ++i) s[i] = s[i] + s[i + w];
  return s[0];
}

// Softmax of one contiguous row: max (exact in any order), e = exp(x - max) stored in y and summed
// in 16 partials (tail padded with -inf: e = +0), then y = e * (1 / sum).  NaN or +inf anywhere
// makes the row NaN, as NumPy's formula does.
inline void softmax_row(const float* x, int64_t len, float* y) {
  const float ninf = -INFINITY;
  VF mx = vset(ninf);
  int64_t i = 0;
  for (; i + kFmLanes <= len; i += kFmLanes) {
    const VF v = vload(x + i);
    mx = vselect(v > mx, v, mx);
  }
  float m = ninf;
  for (int j = 0; j < kFmLanes; ++j) m = mx[j] > m ? mx[j] : m;
  for (; i < len; ++i) m = x[i] > m ? x[i] : m;
  Block acc{};
  for (i = 0; i < len; i += kFmPartials) {
    Block b = load_block(x + i, len - i, ninf);
    for (int k = 0; k < kFmVecsPerBlock; ++k) {
      b.v[k] = vexp(b.v[k] - m);
      acc.v[k] += b.v[k];
    }
    store_block(y + i, len - i, b);
  }
  const float inv = 1.0f / fold(acc);
  map_n(y, len, y, [=](VF v) { return v * inv; });
}

void fm_softmax_rows(const float* x, int64_t rows, int64_t len, float* y) {
  for (int64_t r = 0; r < rows; ++r) softmax_row(x + r * len, len, y + r * len);
}

// Softmax over the first axis of a [len, inner] slice: 16 columns at a time, each column summed in
// k order in its own lane (lane-wise, so any vector width gives the same bits).
void fm_softmax_columns(const float* x, int64_t len, int64_t inner, float* y) {
  const float ninf = -INFINITY;
  for (int64_t c = 0; c < inner; c += kFmPartials) {
    const int64_t w = std::min<int64_t>(kFmPartials, inner - c);
    Block mx, sum{};
    for (int k = 0; k < kFmVecsPerBlock; ++k) mx.v[k] = vset(ninf);
    for (int64_t r = 0; r < len; ++r) {
      const Block b = load_block(x + r * inner + c, w, ninf);
      for (int k = 0; k < kFmVecsPerBlock; ++k) mx.v[k] = vselect(b.v[k] > mx.v[k], b.v[k], mx.v[k]);
    }
    for (int64_t r = 0; r < len; ++r) {
      Block b = load_block(x + r * inner + c, w, ninf);
      for (int k = 0; k < kFmVecsPerBlock; ++k) {
        b.v[k] = vexp(b.v[k] - mx.v[k]);
        sum.v[k] += b.v[k];
      }
      store_block(y + r * inner + c, w, b);
    }
    Block inv;
    for (int k = 0; k < kFmVecsPerBlock; ++k) inv.v[k] = 1.0f / sum.v[k];
    for (int64_t r = 0; r < len; ++r) {
      Block b = load_block(y + r * inner + c, w, 0.0f);
      for (int k = 0; k < kFmVecsPerBlock; ++k) b.v[k] *= inv.v[k];
      store_block(y + r * inner + c, w, b);
    }
  }
}

// Layer norm of one row, in float32 with 16 partials: mean = sum / n; then d = x - mean, the
// corrected two-pass variance var = sum d^2 / n - c^2 with c = sum d / n (c, var and 1 / sqrt in
// double from the float sums); y = ((x - mean) - c) * rstd [* w] [+ b].  A constant row gives
// d - c = 0 exactly: y = b.
template <bool W, bool B>
void layer_norm_row(const float* x, int64_t n, double eps, const float* weight, const float* bias, float* y) {
  Block acc{};
  for (int64_t i = 0; i < n; i += kFmPartials) {
    const Block b = load_block(x + i, n - i, 0.0f);
    for (int k = 0; k < kFmVecsPerBlock; ++k) acc.v[k] += b.v[k];
  }
  const float mean = fold(acc) / static_cast<float>(n);
  Block s1{}, s2{};
  for (int64_t i = 0; i < n; i += kFmPartials) {
    const Block b = load_block(x + i, n - i, mean);  // padding: d = 0
    for (int k = 0; k < kFmVecsPerBlock; ++k) {
      const VF d = b.v[k] - mean;
      s1.v[k] += d;
      s2.v[k] += d * d;
    }
  }
  const double c = static_cast<double>(fold(s1)) / static_cast<double>(n);
  const double var = std::max(static_cast<double>(fold(s2)) / static_cast<double>(n) - c * c, 0.0);
  const float rstd = static_cast<float>(1.0 / std::sqrt(var + eps));
  const float cf = static_cast<float>(c);
  int64_t i = 0;
  auto f = [&](VF v, int64_t at) {
    VF r = ((v - mean) - cf) * rstd;
    if (W) r = r * vload(weight + at);
    if (B) r = r + vload(bias + at);
    return r;
  };
  for (; i + kFmLanes <= n; i += kFmLanes) vstore(y + i, f(vload(x + i), i));
  for (; i < n; ++i) {  // the tail lane by lane: the same float32 operations
    float r = ((x[i] - mean) - cf) * rstd;
    if (W) r = r * weight[i];
    if (B) r = r + bias[i];
    y[i] = r;
  }
}

template <bool W, bool B>
void layer_norm_loop(const float* x, int64_t rows, int64_t n, double eps, const float* w, const float* b, float* y) {
  for (int64_t r = 0; r < rows; ++r) layer_norm_row<W, B>(x + r * n, n, eps, w, b, y + r * n);
}

void fm_layer_norm_rows(const float* x, int64_t rows, int64_t inner, double eps, const float* w, const float* b,
                        float* y) {
  if (inner <= 0) return;
  if (w && b) return layer_norm_loop<true, true>(x, rows, inner, eps, w, b, y);
  if (w) return layer_norm_loop<true, false>(x, rows, inner, eps, w, b, y);
  if (b) return layer_norm_loop<false, true>(x, rows, inner, eps, w, b, y);
  return layer_norm_loop<false, false>(x, rows, inner, eps, w, b, y);
}

inline FloatMathKernels float_math_table() {
  return FloatMathKernels{fm_unary, fm_exp, fm_binary, fm_affine, fm_softmax_rows, fm_softmax_columns,
                          fm_layer_norm_rows};
}

}  // namespace
}  // namespace eb
