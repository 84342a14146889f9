// Kernel layer: the float32 steps of eightbit/float_math.h, one shared source for every ISA (each
// unit compiles it with its own flags: a vector is one zmm, one ymm or one xmm / NEON register).
//
// Bit-identity across ISAs: every function below is lane-wise (a lane's result depends only on
// that lane's inputs, through the same IEEE float32 operations on every path: the build uses
// -ffp-contract=off, and the fused multiply-adds are explicit, vfma below, one rounding on every
// path: vfmadd on AVX2 / AVX-512, std::fma lane by lane elsewhere), tails go through the same vector code on a padded copy, and sums use
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
#include <utility>

#include "eightbit/float_math.h"

#if defined(__AVX512F__) || defined(__AVX2__) || defined(__FMA__)
#include <immintrin.h>
#endif

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

// Lanes [0, valid) from p, the others `pad` (valid in [0, kFmLanes]); masked loads never touch
// memory past `valid`.
inline VF vload_part(const float* p, int64_t valid, float pad) {
#if defined(__AVX512F__)
  return _mm512_mask_loadu_ps(vset(pad), static_cast<__mmask16>((1u << valid) - 1), p);
#elif defined(__AVX2__)
  const VI m = VI{0, 1, 2, 3, 4, 5, 6, 7} < static_cast<int32_t>(valid);
  return m ? VF(_mm256_maskload_ps(p, reinterpret_cast<const __m256i&>(m))) : vset(pad);
#else
  VF v = vset(pad);
  for (int64_t i = 0; i < valid; ++i) v[i] = p[i];
  return v;
#endif
}

inline void vstore_part(float* p, int64_t valid, VF v) {
#if defined(__AVX512F__)
  _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << valid) - 1), v);
#elif defined(__AVX2__)
  const VI m = VI{0, 1, 2, 3, 4, 5, 6, 7} < static_cast<int32_t>(valid);
  _mm256_maskstore_ps(p, reinterpret_cast<const __m256i&>(m), v);
#else
  for (int64_t i = 0; i < valid; ++i) p[i] = v[i];
#endif
}

// Lanes rotated down by W: result[i] = v[(i + W) mod kFmLanes] (compile-time indices: one
// permute; indices built at run time cost a blend per lane group).
template <int W, size_t... I>
inline VF vrotate(VF v, std::index_sequence<I...>) {
  return __builtin_shufflevector(v, v, ((I + W) % kFmLanes)...);
}
template <int W>
inline VF vrotate(VF v) {
  return vrotate<W>(v, std::make_index_sequence<kFmLanes>{});
}

inline VI as_int(VF v) { return (VI)v; }  // the bits: a GCC vector cast reinterprets
inline VF as_float(VI v) { return (VF)v; }
inline VF vselect(VI mask, VF a, VF b) { return mask ? a : b; }
inline VF vabs(VF x) { return as_float(as_int(x) & 0x7fffffff); }
inline VF vcopysign(VF mag, VF sign) { return as_float((as_int(mag) & 0x7fffffff) | (as_int(sign) & int32_t(0x80000000u))); }
// max / min that keep NaN in x (as std::max(x, lo), std::min(x, hi)).
inline VF vmax_keep(VF x, VF lo) { return vselect(x < lo, lo, x); }
inline VF vmin_keep(VF x, VF hi) { return vselect(hi < x, hi, x); }
inline VF vfix_nan(VF x, VF r) { return vselect(x != x, x, r); }  // NaN in, the same NaN out

// a * b + c rounded once, the same bits on every path (std::fma is exact everywhere, but a libm
// call per lane without FMA hardware: the scalar path is slow, not different).
inline VF vfma(VF a, VF b, VF c) {
#if defined(__AVX512F__)
  return _mm512_fmadd_ps(a, b, c);
#elif defined(__AVX__) && defined(__FMA__)
  return _mm256_fmadd_ps(a, b, c);
#else
  VF r;
  for (int i = 0; i < kFmLanes; ++i) r[i] = std::fma(a[i], b[i], c[i]);
  return r;
#endif
}
inline VF vfma(VF a, float b, float c) { return vfma(a, vset(b), vset(c)); }
inline VF vfma(VF a, VF b, float c) { return vfma(a, b, vset(c)); }
inline VF vfma(VF a, float b, VF c) { return vfma(a, vset(b), c); }

// 1 / d for d in [1, 8] without a divide (a divide costs 10-16 cycles a vector): a bit-trick
// first guess (~4 bits) and three Newton steps y += y (1 - d y), each two FMAs: within ~1 ulp,
// and exactly the same operations on every path.
inline VF vrecip_1_8(VF d) {
  VF y = as_float(int32_t(0x7ef311c3) - as_int(d));
  for (int i = 0; i < 3; ++i) y = vfma(y, vfma(-d, y, 1.0f), y);
  return y;
}

// ---------------------------------------------------------------------------- exp

// e^(hi + lo), lo small against the reduction (|lo| <= ~2; 0 for a plain exp), no NaN handling.
// Cody-Waite: n = round((hi + lo) / ln 2), r = hi - n ln2_hi - n ln2_lo + lo (n ln2_hi exact:
// ln2_hi has 9 bits), e^r by a degree-6 polynomial on |r| <= 0.347, then 2^n in two factors so
// that results down to the subnormal range round once (2^n1 * 2^n2, both normal).
// kGuard: arguments below -104 give 0 and above 89 inf (+-inf included), computed from a harmless
// 0 instead: a product that underflows costs a ~150-cycle microcode assist on Intel cores, and
// softmax pads its tails with -inf.  Without kGuard the caller keeps hi + lo in [-105, 0].
template <bool kLo, bool kGuard>
inline VF exp_core(VF hi, VF lo) {
  const VF x = kLo ? hi + lo : hi;
  VI under{}, over{};
  if (kGuard) {
    under = x < -104.0f;
    over = x > 89.0f;
    hi = vselect(under | over, VF{}, hi);
  }
  const VF xs = kGuard ? vselect(under | over, VF{}, x) : x;
  const VF magic = vset(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer, kept in the low bits
  const VF t = vfma(xs, 1.44269502f, magic);
  const VF n = t - magic;
  const VI ni = as_int(t) - as_int(magic);
  VF r = vfma(n, vset(2.12194440e-4f), vfma(n, -0.693359375f, hi));  // ln2_lo = -2.12194440e-4
  if (kLo) r = r + (kGuard ? vselect(under | over, VF{}, lo) : lo);
  VF q = vfma(r, 1.381455571e-03f, 8.368736133e-03f);
  q = vfma(q, r, 4.166838899e-02f);
  q = vfma(q, r, 1.666652113e-01f);
  q = vfma(q, r, 4.999999404e-01f);
  const VF p = vfma(q, r * r, r) + 1.0f;
#if defined(__AVX512F__)
  (void)ni;
  const VF e = VF(_mm512_scalef_ps(p, n));  // p 2^n rounded once: the same bits as the two factors
#else
  const VI n1 = ni >> 1, n2 = ni - n1;
  const VF e = (p * as_float((n1 + 127) << 23)) * as_float((n2 + 127) << 23);
#endif
  return kGuard ? vselect(under, VF{}, vselect(over, vset(INFINITY), e)) : e;
}

inline VF vexp(VF x) { return vfix_nan(x, exp_core<false, true>(x, VF{})); }

// ---------------------------------------------------------------------------- erf, erfc

// erfc(t) for t in [0, 10.18], given -t^2 = hi + lo (lo the rounding error of hi, from an FMA):
// erfc(t) = tau e^(-t^2 + P(tau)), tau = 1 / (1 + 0.6 t) (the form of Numerical Recipes' erfcc;
// our own degree-10 fit over t in [0, 10.5]).  The exponent stays in [-105, 0]: no guard.
inline VF erfc_core(VF t, VF hi, VF lo) {
  const VF tau = vrecip_1_8(vfma(t, 0.6f, 1.0f));
  VF p = vfma(tau, -1.382948607e-01f, 6.778388023e-01f);
  p = vfma(p, tau, -1.187260151e+00f);
  p = vfma(p, tau, 5.713246465e-01f);
  p = vfma(p, tau, 7.671146989e-01f);
  p = vfma(p, tau, -9.654815793e-01f);
  p = vfma(p, tau, 1.449798644e-01f);
  p = vfma(p, tau, -1.204598323e-01f);
  p = vfma(p, tau, 3.346288204e-01f);
  p = vfma(p, tau, 9.987556338e-01f);
  p = vfma(p, tau, -1.083146095e+00f);
  return tau * exp_core<true, false>(hi, lo + p);
}

// erf(x) / x = P(x^2) for |x| < 0.5 (degree 5 in x^2).
inline VF erf_small_ratio(VF x2) {
  VF p = vfma(x2, -7.695578388e-04f, 5.200479180e-03f);
  p = vfma(p, x2, -2.686315775e-02f);
  p = vfma(p, x2, 1.128377393e-01f);
  p = vfma(p, x2, -3.761263788e-01f);
  p = vfma(p, x2, 1.128379226e+00f);
  return p;
}

// erf: x P(x^2) for |x| < 0.5, else 1 - erfc(|x|) with x's sign.
inline VF verf(VF x) {
  const VF a = vmin_keep(vabs(x), vset(4.0f));  // erf rounds to 1 past 3.92
  const VF sq = a * a;
  const VF big = vcopysign(1.0f - erfc_core(a, -sq, -vfma(a, a, -sq)), x);
  const VF small = x * erf_small_ratio(x * x);
  return vfix_nan(x, vselect(a < 0.5f, small, big));
}

// GELU, erf form: x / 2 * (1 + erf(x / sqrt 2)) = x / 2 * erfc(-x / sqrt 2), one branch: with
// q = erfc(|x| / sqrt 2), 1 + erf is q (x < 0) or 2 - q, and (x / sqrt 2)^2 = x^2 / 2 is exact as
// hi + lo: the negative tail keeps its relative accuracy instead of cancelling in 1 + erf.
inline VF vgelu(VF x) {
  // |x| <= 14.4: erfc(14.4 / sqrt 2) underflows to 0 already, and the exponent stays >= -105.
  // NaN runs through (every select below passes it on); gelu(-inf) = -inf * 0 = NaN, as the
  // float graph's formula gives.
  const VF ax = vmin_keep(vabs(x), vset(14.4f));
  const VF h = ax * -0.5f;  // exact
  const VF hi = h * ax;     // -x^2 / 2 = hi + lo exactly
  const VF q = erfc_core(ax * 0.707106769f, hi, vfma(h, ax, -hi));
  return (x * 0.5f) * vselect(x < 0.0f, q, 2.0f - q);
}

// ---------------------------------------------------------------------------- tanh, sigmoid

// tanh: x + x^3 P(x^2) for |x| < 0.625, else 1 - 2 / (e^2|x| + 1) with x's sign (|x| clamped to
// 9.5, where tanh is 1 in float32).
inline VF vtanh(VF x) {
  const VF a = vmin_keep(vabs(x), vset(9.5f));
  const VF big = vcopysign(1.0f - 2.0f / (exp_core<false, true>(a * 2.0f, VF{}) + 1.0f), x);
  const VF x2 = x * x;
  VF p = vfma(x2, 2.142952988e-03f, -8.177388459e-03f);
  p = vfma(p, x2, 2.170069888e-02f);
  p = vfma(p, x2, -5.394676328e-02f);
  p = vfma(p, x2, 1.333320588e-01f);
  p = vfma(p, x2, -3.333333135e-01f);
  const VF small = vcopysign(vfma(x * x2, p, x), x);  // tanh(-0) = -0 (the sum would give +0)
  return vfix_nan(x, vselect(a < 0.625f, small, big));
}

// The float graph's sigmoid: e = e^-|x|, 1 / (1 + e) or e / (1 + e) (never overflows).
inline VF vsigmoid(VF x) {
  const VF e = exp_core<false, true>(-vabs(x), VF{});
  const VF d = e + 1.0f;
  return vfix_nan(x, vselect(x >= 0.0f, 1.0f / d, e / d));
}

// The float graph's tanh GELU, its float32 operations in its order.
inline VF vgelu_tanh(VF x) {
  const VF inner = ((x + ((x * 0.044715f) * x) * x)) * 0.797884583f;
  return (x * 0.5f) * (vtanh(inner) + 1.0f);
}

// ---------------------------------------------------------------------------- loops

// y[i] = f(x[i]); the tail through the same vector code, zero-padded.
template <typename F>
inline void map_n(const float* x, int64_t n, float* y, F f) {
  int64_t i = 0;
  // Two vectors an iteration: exp / erf are long dependency chains, two side by side fill the
  // core's pipelines better than out-of-order execution alone.
  for (; i + 2 * kFmLanes <= n; i += 2 * kFmLanes) {
    const VF a = f(vload(x + i)), b = f(vload(x + i + kFmLanes));
    vstore(y + i, a);
    vstore(y + i + kFmLanes, b);
  }
  for (; i + kFmLanes <= n; i += kFmLanes) vstore(y + i, f(vload(x + i)));
  if (i < n) vstore_part(y + i, n - i, f(vload_part(x + i, n - i, 0.0f)));
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
  if (i < n) vstore_part(y + i, n - i, f(SA ? vload_part(a + i, n - i, 0.0f) : a0, SB ? vload_part(b + i, n - i, 0.0f) : b0));
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
  for (int k = 0; k < kFmVecsPerBlock; ++k) {
    const int64_t v = valid - k * kFmLanes;
    b.v[k] = v >= kFmLanes ? vload(p + k * kFmLanes) : vload_part(p + k * kFmLanes, v > 0 ? v : 0, pad);
  }
  return b;
}

inline void store_block(float* p, int64_t valid, const Block& b) {
  for (int k = 0; k < kFmVecsPerBlock; ++k) {
    const int64_t v = valid - k * kFmLanes;
    if (v >= kFmLanes)
      vstore(p + k * kFmLanes, b.v[k]);
    else if (v > 0)
      vstore_part(p + k * kFmLanes, v, b.v[k]);
  }
}

// The 16 partials folded pairwise: s[i] + s[i + 8], then + 4, + 2, + 1, the same tree on every
// path (across the block's vectors while a step spans them, then by lane rotation).
inline float fold(Block acc) {
  int vecs = kFmVecsPerBlock;
  for (; vecs > 1; vecs /= 2)
    for (int k = 0; k < vecs / 2; ++k) acc.v[k] = acc.v[k] + acc.v[k + vecs / 2];
  VF v = acc.v[0];
  if (kFmLanes >= 16) v = v + vrotate<8>(v);
  if (kFmLanes >= 8) v = v + vrotate<4>(v);
  v = v + vrotate<2>(v);
  v = v + vrotate<1>(v);
  return v[0];
}

// The largest lane (max is exact: any order gives the same value; NaN lanes are skipped).
inline VF vmax_lanes(VF a, VF b) { return vselect(b > a, b, a); }
inline float hmax(VF v) {
  if (kFmLanes >= 16) v = vmax_lanes(v, vrotate<8>(v));
  if (kFmLanes >= 8) v = vmax_lanes(v, vrotate<4>(v));
  v = vmax_lanes(v, vrotate<2>(v));
  v = vmax_lanes(v, vrotate<1>(v));
  return v[0];
}

// Softmax of R contiguous rows (the same operations per row as for one): max (exact in any
// order), e = exp(x - max) summed in 16 partials (tail padded with -inf: e = +0), y = e * (1 / sum).
// NaN or +inf anywhere makes the row NaN, as NumPy's formula does.  Each phase runs for all R rows
// before the next: short rows are chains of long latencies (max fold, exp, sum fold, divide), and
// R independent chains side by side keep the core busy.  e goes into y, but a partial last block
// stays in registers: a masked store read back by a masked load is not forwarded (a ~20-cycle
// stall a row).
template <int R>
inline void softmax_rows_group(const float* x, int64_t len, float* y) {
  const float ninf = -INFINITY;
  const int64_t full = len - len % kFmPartials;
  float m[R], inv[R];
  for (int r = 0; r < R; ++r) {
    const float* xr = x + r * len;
    VF mx = vset(ninf);
    int64_t i = 0;
    for (; i + kFmLanes <= len; i += kFmLanes) {
      const VF v = vload(xr + i);
      mx = vselect(v > mx, v, mx);
    }
    if (i < len) {
      const VF v = vload_part(xr + i, len - i, ninf);
      mx = vselect(v > mx, v, mx);
    }
    m[r] = hmax(mx);
  }
  Block acc[R], last[R];
  for (int r = 0; r < R; ++r) {
    acc[r] = Block{};
    for (int64_t i = 0; i < len; i += kFmPartials) {
      Block b = load_block(x + r * len + i, len - i, ninf);
      for (int k = 0; k < kFmVecsPerBlock; ++k) {
        b.v[k] = vexp(b.v[k] - m[r]);
        acc[r].v[k] += b.v[k];
      }
      if (i < full)
        store_block(y + r * len + i, kFmPartials, b);
      else
        last[r] = b;
    }
  }
  for (int r = 0; r < R; ++r) inv[r] = 1.0f / fold(acc[r]);
  for (int r = 0; r < R; ++r) {
    float* yr = y + r * len;
    for (int64_t i = 0; i < full; i += kFmLanes) vstore(yr + i, vload(yr + i) * inv[r]);
    if (full < len) {
      for (int k = 0; k < kFmVecsPerBlock; ++k) last[r].v[k] *= inv[r];
      store_block(yr + full, len - full, last[r]);
    }
  }
}

void fm_softmax_rows(const float* x, int64_t rows, int64_t len, float* y) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) softmax_rows_group<4>(x + r * len, len, y + r * len);
  for (; r < rows; ++r) softmax_rows_group<1>(x + r * len, len, y + r * len);
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

// Doubles: a VF's lanes as two vectors of kFmLanes / 2 doubles (lo: lanes [0, L/2), hi: the rest).
typedef float VH __attribute__((vector_size(kFmLanes * sizeof(float) / 2)));
typedef double VD __attribute__((vector_size(kFmLanes * sizeof(float))));

// (GCC's generic conversions go through xmm halves; the intrinsics convert a whole register.)
template <int Off, size_t... I>
inline VD widen_part(VF v, std::index_sequence<I...>) {
  return __builtin_convertvector(__builtin_shufflevector(v, v, (Off + I)...), VD);
}
inline VD widen_lo(VF v) {
#if defined(__AVX512F__)
  return VD(_mm512_cvtps_pd(_mm512_castps512_ps256(v)));
#elif defined(__AVX__)
  return VD(_mm256_cvtps_pd(_mm256_castps256_ps128(v)));
#else
  return widen_part<0>(v, std::make_index_sequence<kFmLanes / 2>{});
#endif
}
inline VD widen_hi(VF v) {
#if defined(__AVX512F__)
  return VD(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
#elif defined(__AVX__)
  return VD(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
#else
  return widen_part<kFmLanes / 2>(v, std::make_index_sequence<kFmLanes / 2>{});
#endif
}
template <size_t... I>
inline VF narrow(VD lo, VD hi, std::index_sequence<I...>) {
  const VH a = __builtin_convertvector(lo, VH), b = __builtin_convertvector(hi, VH);
  return __builtin_shufflevector(a, b, I...);
}
inline VF narrow(VD lo, VD hi) {
#if defined(__AVX512F__)
  return VF(_mm512_insertf32x8(_mm512_zextps256_ps512(_mm512_cvtpd_ps(lo)), _mm512_cvtpd_ps(hi), 1));
#elif defined(__AVX__)
  return VF(_mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo)));
#else
  return narrow(lo, hi, std::make_index_sequence<kFmLanes>{});
#endif
}

// 16 double partials, in partial order (vector 2k: lanes [kL, kL + L/2) of the block, 2k + 1 the rest).
struct DBlock {
  VD v[2 * kFmVecsPerBlock];
};

// The same pairwise tree as the float fold: s[i] + s[i + 8], + 4, + 2, + 1.
inline double fold(DBlock acc) {
  constexpr int kVecs = 2 * kFmVecsPerBlock, kHalf = kFmLanes / 2;  // doubles per vector
  for (int vecs = kVecs; vecs > 1; vecs /= 2)
    for (int k = 0; k < vecs / 2; ++k) acc.v[k] = acc.v[k] + acc.v[k + vecs / 2];
  double s[kHalf];
  std::memcpy(s, &acc.v[0], sizeof(s));
  for (int w = kHalf / 2; w >= 1; w /= 2)
    for (int i = 0; i < w; ++i) s[i] = s[i] + s[i + w];
  return s[0];
}

// Layer norm of one row, the float graph's float64 formula: mean and biased variance in double,
// y = (x - mean) * (1 / sqrt(var + eps)) [* w] [+ b] in double, rounded to float32 once: within
// one float32 rounding of NumPy's float64 result (equal to it but at rare ties).  One pass for
// the moments, shifted by the row's first value x0: with d = x - x0 summed in 16 double partials,
// var = sum d^2 / n - (sum d / n)^2 loses at most ~n double ulps (x0 is one of the values, so
// (mean - x0)^2 <= n var), far below float32 precision.  A constant row gives d = 0 and
// x - mean = 0 exactly: y = b.
template <bool W, bool B>
void layer_norm_row(const float* x, int64_t n, double eps, const float* weight, const float* bias, float* y) {
  const double x0 = x[0];
  DBlock s1{}, s2{};
  for (int64_t i = 0; i < n; i += kFmPartials) {
    const Block b = load_block(x + i, n - i, x[0]);  // padding: d = 0
    for (int k = 0; k < kFmVecsPerBlock; ++k) {
      const VD lo = widen_lo(b.v[k]) - x0, hi = widen_hi(b.v[k]) - x0;
      s1.v[2 * k] += lo;
      s1.v[2 * k + 1] += hi;
      s2.v[2 * k] += lo * lo;
      s2.v[2 * k + 1] += hi * hi;
    }
  }
  const double c = fold(s1) / static_cast<double>(n), mean = x0 + c;
  const double var = std::max(fold(s2) / static_cast<double>(n) - c * c, 0.0);
  const double rstd = 1.0 / std::sqrt(var + eps);
  auto f = [&](VF v, VF w, VF b) {
    VD lo = (widen_lo(v) - mean) * rstd, hi = (widen_hi(v) - mean) * rstd;
    if (W) {
      lo = lo * widen_lo(w);
      hi = hi * widen_hi(w);
    }
    if (B) {
      lo = lo + widen_lo(b);
      hi = hi + widen_hi(b);
    }
    return narrow(lo, hi);
  };
  int64_t i = 0;
  for (; i + kFmLanes <= n; i += kFmLanes)
    vstore(y + i, f(vload(x + i), W ? vload(weight + i) : VF{}, B ? vload(bias + i) : VF{}));
  if (i < n)
    vstore_part(y + i, n - i, f(vload_part(x + i, n - i, 0.0f), W ? vload_part(weight + i, n - i, 0.0f) : VF{},
                                B ? vload_part(bias + i, n - i, 0.0f) : VF{}));
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
