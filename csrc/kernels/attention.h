// Kernel layer: the int8 attention loops (eightbit/attention.h), shared source for every ISA.
//
// Each ISA's unit includes this header, so the loops are auto-vectorised with that unit's flags
// (reductions are written over 16 explicit lanes, so that they vectorise without reassociating
// anything a float reduction would need).  Every float step is exact or one IEEE operation in the
// reference's order, the project builds with -ffp-contract=off, and the rest is integer: every ISA
// gives the reference's bits.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "eightbit/attention.h"
#include "eightbit/gemm.h"

namespace eb {

// Internal linkage on purpose: see kernels/depthwise.h (one copy per ISA unit).
namespace {

constexpr int kAttnLanes = 16;
constexpr float kAttnMagic = 12582912.0f;  // 1.5 * 2^23: (v + magic) - magic = rne(v) for |v| < 2^22
constexpr int32_t kAttnTableLast = 4096;   // the exp table's last index (d >= 16)
constexpr int64_t kAttnExpOne = int64_t{1} << 24;

// v - v is 0 exactly for finite v, NaN otherwise.
inline bool attn_all_finite(const float* x, int64_t n) {
  float bad[kAttnLanes] = {};
  int64_t i = 0;
  for (; i + kAttnLanes <= n; i += kAttnLanes)
    for (int l = 0; l < kAttnLanes; ++l) {
      const float v = x[i + l];
      bad[l] = (v - v) == 0.0f ? bad[l] : 1.0f;
    }
  bool ok = true;
  for (int l = 0; l < kAttnLanes; ++l) ok &= bad[l] == 0.0f;
  for (; i < n; ++i) ok &= (x[i] - x[i]) == 0.0f;
  return ok;
}

inline bool attn_quantize_columns(const float* b, int64_t K, int64_t P, int64_t ldb, float alpha, int8_t* work,
                                  int8_t* packed, int32_t* col_sum, float* col_scale) {
  const int64_t Kp = round_up(K, kKGroup), Np = round_up(P, kPanelCols);
  for (int64_t k = 0; k < K; ++k)
    if (!attn_all_finite(b + k * ldb, P)) return false;
  // amax per column (col_scale holds it, then the scale s, then s * alpha).
  float* s = col_scale;
  for (int64_t p = 0; p < Np; ++p) s[p] = 0.0f;
  for (int64_t k = 0; k < K; ++k) {
    const float* row = b + k * ldb;
    for (int64_t p = 0; p < P; ++p) {
      const float a = std::fabs(row[p]);
      s[p] = a > s[p] ? a : s[p];
    }
  }
  for (int64_t p = 0; p < P; ++p) s[p] = s[p] > 0.0f ? s[p] / 127.0f : 1.0f;
  // q row by row into work [Kp, Np] (zero padding), and the column sums.
  for (int64_t p = 0; p < Np; ++p) col_sum[p] = 0;
  for (int64_t k = 0; k < K; ++k) {
    const float* row = b + k * ldb;
    int8_t* q = work + k * Np;
    for (int64_t p = 0; p < P; ++p) {
      float v = row[p] / s[p];
      v = v > -127.0f ? v : -127.0f;
      v = v < 127.0f ? v : 127.0f;
      const int32_t r = static_cast<int32_t>((v + kAttnMagic) - kAttnMagic);
      q[p] = static_cast<int8_t>(r);
      col_sum[p] += r;
    }
    for (int64_t p = P; p < Np; ++p) q[p] = 0;
  }
  std::memset(work + K * Np, 0, static_cast<size_t>((Kp - K) * Np));
  for (int64_t p = 0; p < P; ++p) s[p] = s[p] * alpha;
  for (int64_t p = P; p < Np; ++p) s[p] = 0.0f;
  // Pack: in panel pn, group g, column c: the 4 bytes q[4g .. 4g+3][16 pn + c] as one word.
  const int64_t groups = Kp / kKGroup;
  for (int64_t pn = 0; pn < Np / kPanelCols; ++pn)
    for (int64_t g = 0; g < groups; ++g) {
      const uint8_t* q0 = reinterpret_cast<const uint8_t*>(work) + (g * kKGroup) * Np + pn * kPanelCols;
      uint32_t w[kPanelCols];
      for (int c = 0; c < kPanelCols; ++c)
        w[c] = uint32_t{q0[c]} | uint32_t{q0[Np + c]} << 8 | uint32_t{q0[2 * Np + c]} << 16 |
               uint32_t{q0[3 * Np + c]} << 24;
      std::memcpy(packed + (pn * groups + g) * kPanelGroupBytes, w, sizeof w);
    }
  return true;
}

// s = x * scale + mask; false for NaN / +inf; *top = max s.
template <bool kScaled, bool kMask>
inline bool attn_scores(const float* x, const float* mask, int64_t T, float scale, float* s, float* top) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  float mx[kAttnLanes], bad[kAttnLanes] = {};
  for (int l = 0; l < kAttnLanes; ++l) mx[l] = -kInf;
  auto one = [&](int64_t j, int l) {
    float v = kScaled ? x[j] * scale : x[j];
    if (kMask) v = v + mask[j];  // two roundings: no FMA
    s[j] = v;
    bad[l] = v < kInf ? bad[l] : 1.0f;
    mx[l] = v > mx[l] ? v : mx[l];
  };
  int64_t j = 0;
  for (; j + kAttnLanes <= T; j += kAttnLanes)
    for (int l = 0; l < kAttnLanes; ++l) one(j + l, l);
  for (int l = 0; j < T; ++j, ++l) one(j, l);
  float m = -kInf;
  bool ok = true;
  for (int l = 0; l < kAttnLanes; ++l) {
    m = mx[l] > m ? mx[l] : m;
    ok &= bad[l] == 0.0f;
  }
  *top = m;
  return ok;
}

inline bool attn_softmax_row(const float* x, const float* mask, int64_t T, bool scaled, float scale,
                             const int32_t* table, bool fixed, uint8_t* p, float* s_p, float* s, int32_t* e) {
  float m;
  bool ok;
  if (scaled)
    ok = mask != nullptr ? attn_scores<true, true>(x, mask, T, scale, s, &m) : attn_scores<true, false>(x, mask, T, scale, s, &m);
  else
    ok = mask != nullptr ? attn_scores<false, true>(x, mask, T, scale, s, &m) : attn_scores<false, false>(x, mask, T, scale, s, &m);
  if (!ok) return false;
  if (m == -std::numeric_limits<float>::infinity()) {  // every key masked: attends to nothing
    std::memset(p, 0, static_cast<size_t>(round_up(T, kKGroup)));
    *s_p = 0.0f;
    return true;
  }
  // d = m - s (+inf for a -inf key), t = rne(min(d * 256, 4096)): d * 256 is exact.
  const float limit = static_cast<float>(kAttnTableLast);
  int64_t sum = 0;
  for (int64_t j = 0; j < T; ++j) {
    float v = (m - s[j]) * 256.0f;
    v = v < limit ? v : limit;
    const int32_t t = static_cast<int32_t>((v + kAttnMagic) - kAttnMagic);
    e[j] = table[t];
    sum += e[j];
  }
  if (fixed) {
    // R <= 255 * 2^24 < 2^32 (sum >= 2^24), e <= 2^24: e * R is a 32 x 32 -> 64-bit product.
    const uint32_t r = static_cast<uint32_t>((int64_t{255} << 48) / sum);
    for (int64_t j = 0; j < T; ++j)
      p[j] = static_cast<uint8_t>((uint64_t{static_cast<uint32_t>(e[j])} * r + (uint64_t{1} << 47)) >> 48);
    *s_p = 1.0f / 255.0f;
  } else {
    // e * 255 + 2^23 <= 2^32 - 2^23: fits uint32.
    for (int64_t j = 0; j < T; ++j)
      p[j] = static_cast<uint8_t>((static_cast<uint32_t>(e[j]) * 255u + (1u << 23)) >> 24);
    *s_p = static_cast<float>(static_cast<double>(kAttnExpOne) / (255.0 * static_cast<double>(sum)));
  }
  for (int64_t j = T; j < round_up(T, kKGroup); ++j) p[j] = 0;  // the GEMM reads whole groups of 4
  return true;
}

inline bool attn_softmax_rows(const float* x, int64_t ldx, const float* mask, int64_t mask_ld, int64_t rows,
                              int64_t T, bool scaled, float scale, const int32_t* table, bool fixed, uint8_t* p,
                              int64_t ldp, float* s_p, float* s, int32_t* e) {
  for (int64_t r = 0; r < rows; ++r)
    if (!attn_softmax_row(x + r * ldx, mask != nullptr ? mask + r * mask_ld : nullptr, T, scaled, scale, table, fixed,
                          p + r * ldp, s_p + r, s, e))
      return false;
  return true;
}

inline AttentionKernels attention_table() {
  AttentionKernels k;
  k.quantize_columns = attn_quantize_columns;
  k.softmax_rows = attn_softmax_rows;
  return k;
}

}  // namespace
}  // namespace eb
