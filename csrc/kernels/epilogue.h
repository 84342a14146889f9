// Kernel layer: the GEMM epilogue, shared source for every ISA.
//
// Each per-ISA translation unit includes this header, so the same loops are
// compiled with that unit's flags and auto-vectorised; core/requantize.h
// explains why the bits cannot differ between them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "core/requantize.h"
#include "eightbit/gemm.h"

namespace eb {

// Internal linkage on purpose: this header is compiled into translation units
// with different instruction-set flags, and an inline function with external
// linkage would be merged by the linker into ONE copy (possibly an AVX-512
// one, called from the portable path on a CPU without AVX-512).
namespace {

constexpr int kMaxTileCols = 64;

// Writes requantized values (already within [qmin, qmax]) as int8 or uint8.
inline void store_quantized(const Epilogue& ep, const int32_t* q, int64_t m, int64_t n0, int cols) {
  if (ep.out_signed) {
    int8_t* out = static_cast<int8_t*>(ep.out) + m * ep.ldc + n0;
    for (int c = 0; c < cols; ++c) out[c] = static_cast<int8_t>(q[c]);
  } else {
    uint8_t* out = static_cast<uint8_t*>(ep.out) + m * ep.ldc + n0;
    for (int c = 0; c < cols; ++c) out[c] = static_cast<uint8_t>(q[c]);
  }
}

// n columns of requantize_float_rows, as plain loops for the vectoriser.
template <typename Out, bool kColComp>
inline void requantize_float_span(const int32_t* __restrict s, const int32_t* __restrict cc,
                                  const float* __restrict mult, float lo, float hi, int32_t zp, Out* __restrict out,
                                  int n) {
  for (int c = 0; c < n; ++c) {
    const int32_t acc =
        kColComp ? static_cast<int32_t>(static_cast<uint32_t>(s[c]) + static_cast<uint32_t>(cc[c])) : s[c];
    out[c] = static_cast<Out>(clamp_round(static_cast<float>(acc) * mult[c], lo, hi) + zp);
  }
}

#if defined(__AVX512BW__)
// requantize_float_rows on AVX-512 for NV vectors of 16 columns (cols <= 16 NV): the columns'
// multipliers, terms and masks are loaded once for all rows.  The same IEEE operations as
// clamp_round (GCC vectorises the scalar loop with 128-bit vectors only).
template <typename Out, bool kColComp, int NV>
void requantize_float_rows_512(const Epilogue& ep, const int32_t* tile, int64_t ld, int64_t m0, int rows, int64_t n0,
                               int cols) {
  const __m512 vlo = _mm512_set1_ps(static_cast<float>(ep.qmin - ep.out_zp));
  const __m512 vhi = _mm512_set1_ps(static_cast<float>(ep.qmax - ep.out_zp));
  const __m512i zp = _mm512_set1_epi32(ep.out_zp);
  __mmask16 mask[NV];
  __m512 mult[NV];
  __m512i comp[NV];
  for (int v = 0; v < NV; ++v) {
    const int left = cols - 16 * v;
    mask[v] = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << std::max(left, 0)) - 1);
    mult[v] = _mm512_maskz_loadu_ps(mask[v], ep.multiplier + n0 + 16 * v);
    comp[v] = kColComp ? _mm512_maskz_loadu_epi32(mask[v], ep.col_comp + n0 + 16 * v) : _mm512_setzero_si512();
  }
  for (int r = 0; r < rows; ++r) {
    const int32_t* s = tile + r * ld;
    Out* out = static_cast<Out*>(ep.out) + (m0 + r) * ep.ldc + n0;
    for (int v = 0; v < NV; ++v) {
      __m512i acc = _mm512_maskz_loadu_epi32(mask[v], s + 16 * v);
      if (kColComp) acc = _mm512_add_epi32(acc, comp[v]);
      __m512 x = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), mult[v]);
      x = _mm512_min_ps(_mm512_max_ps(x, vlo), vhi);  // maxps(x, lo): lo when x is NaN
      // cvtps2dq rounds half to even (MXCSR default), as round_even_small does.
      _mm512_mask_cvtepi32_storeu_epi8(out + 16 * v, mask[v], _mm512_add_epi32(_mm512_cvtps_epi32(x), zp));
    }
  }
}
#endif

// The common QLinearConv / QLinearMatMul case in one pass per row: column
// terms, float requantization and the narrowing store, no row terms.
// Without AVX-512, fixed 16-column spans: the vectoriser would otherwise pick
// a 64-wide main loop (64 output bytes) that a 32-column tile never enters.
template <typename Out, bool kColComp>
void requantize_float_rows(const Epilogue& ep, const int32_t* tile, int64_t ld, int64_t m0, int rows, int64_t n0,
                           int cols) {
#if defined(__AVX512BW__)
  using Fn = void (*)(const Epilogue&, const int32_t*, int64_t, int64_t, int, int64_t, int);
  static constexpr Fn kByVectors[4] = {
      requantize_float_rows_512<Out, kColComp, 1>, requantize_float_rows_512<Out, kColComp, 2>,
      requantize_float_rows_512<Out, kColComp, 3>, requantize_float_rows_512<Out, kColComp, 4>};
  for (int c = 0; c < cols; c += 64) {  // tiles are at most kMaxTileCols = 64 wide
    const int n = std::min(cols - c, 64);
    kByVectors[(n + 15) / 16 - 1](ep, tile + c, ld, m0, rows, n0 + c, n);
  }
#else
  const float lo = static_cast<float>(ep.qmin - ep.out_zp);
  const float hi = static_cast<float>(ep.qmax - ep.out_zp);
  const float* mult = ep.multiplier + n0;
  const int32_t* cc = kColComp ? ep.col_comp + n0 : nullptr;
  for (int r = 0; r < rows; ++r) {
    const int32_t* s = tile + r * ld;
    Out* out = static_cast<Out*>(ep.out) + (m0 + r) * ep.ldc + n0;
#if defined(__AVX2__)
    // 16 columns at a time, the same IEEE operations; two packs and a dword permute narrow
    // them (the vectoriser's own narrowing of the loop below costs more than the arithmetic).
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    const __m256i zp = _mm256_set1_epi32(ep.out_zp), order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    auto requantize8 = [&](int c) {
      __m256i acc = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + c));
      if (kColComp) acc = _mm256_add_epi32(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cc + c)));
      __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_loadu_ps(mult + c));
      v = _mm256_min_ps(_mm256_max_ps(v, vlo), vhi);  // maxps(v, lo): lo when v is NaN
      return _mm256_add_epi32(_mm256_cvtps_epi32(v), zp);  // round half to even (MXCSR default)
    };
    int c = 0;
    for (; c + 16 <= cols; c += 16) {
      // Within [qmin, qmax]: every pack below is exact.
      const __m256i words = _mm256_packs_epi32(requantize8(c), requantize8(c + 8));
      const __m256i bytes =
          std::is_signed_v<Out> ? _mm256_packs_epi16(words, words) : _mm256_packus_epi16(words, words);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + c),
                       _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(bytes, order)));
    }
    requantize_float_span<Out, kColComp>(s + c, cc + c, mult + c, lo, hi, ep.out_zp, out + c, cols - c);
#else
    int c = 0;
    for (; c + 16 <= cols; c += 16)
      requantize_float_span<Out, kColComp>(s + c, cc + c, mult + c, lo, hi, ep.out_zp, out + c, 16);
    requantize_float_span<Out, kColComp>(s + c, cc + c, mult + c, lo, hi, ep.out_zp, out + c, cols - c);
#endif
  }
#endif
}

// kFloat in one pass per row (the general path below makes three through a buffer): the same
// operations in the same order.  The zero-point terms are template flags so that the loop
// vectorises without them; bias and relu are loop-invariant branches.
template <bool kColComp, bool kRowZp, bool kRowComp>
void float_rows(const Epilogue& ep, const int32_t* tile, int64_t ld, int64_t m0, int rows, int64_t n0, int cols) {
  const int32_t* cc = kColComp ? ep.col_comp + n0 : nullptr;
  const int32_t* cs = kRowZp ? ep.col_sum + n0 : nullptr;
  const int32_t* zb = kRowComp ? ep.col_zp + n0 : nullptr;
  const float* scale = ep.col_scale + n0;
  const float* bias = ep.bias != nullptr ? ep.bias + n0 : nullptr;
  const bool relu = ep.relu;
  for (int r = 0; r < rows; ++r) {
    const int64_t m = m0 + r;
    const int32_t* s = tile + r * ld;
    float* out = static_cast<float*>(ep.out) + m * ep.ldc + n0;
    const uint32_t za = kRowZp ? static_cast<uint32_t>(ep.row_zp[m]) : 0u;
    const uint32_t rc = kRowComp ? static_cast<uint32_t>(ep.row_comp[m]) : 0u;
    const float rs = ep.row_scale[m];
#if defined(__AVX512BW__)
    // 16 lanes at a time, the tail masked (GCC vectorises the loop below with 128-bit vectors only).
    const __m512i vza = _mm512_set1_epi32(static_cast<int32_t>(za)), vrc = _mm512_set1_epi32(static_cast<int32_t>(rc));
    const __m512 vrs = _mm512_set1_ps(rs), zero = _mm512_setzero_ps();
    for (int c = 0; c < cols; c += 16) {
      const __mmask16 k = cols - c >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (cols - c)) - 1);
      __m512i a = _mm512_maskz_loadu_epi32(k, s + c);  // int32 adds and products wrap as uint32 ones
      if (kColComp) a = _mm512_add_epi32(a, _mm512_maskz_loadu_epi32(k, cc + c));
      if (kRowZp) a = _mm512_sub_epi32(a, _mm512_mullo_epi32(vza, _mm512_maskz_loadu_epi32(k, cs + c)));
      if (kRowComp) a = _mm512_sub_epi32(a, _mm512_mullo_epi32(vrc, _mm512_maskz_loadu_epi32(k, zb + c)));
      __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(a), _mm512_mul_ps(vrs, _mm512_maskz_loadu_ps(k, scale + c)));
      if (bias != nullptr) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, bias + c));
      if (relu) v = _mm512_max_ps(v, zero);  // v > 0 ? v : 0
      _mm512_mask_storeu_ps(out + c, k, v);
    }
#else
    for (int c = 0; c < cols; ++c) {
      uint32_t a = static_cast<uint32_t>(s[c]);  // uint32: the wrap-around of int32 accumulation
      if (kColComp) a += static_cast<uint32_t>(cc[c]);
      if (kRowZp) a -= za * static_cast<uint32_t>(cs[c]);
      if (kRowComp) a -= rc * static_cast<uint32_t>(zb[c]);
      float v = static_cast<float>(static_cast<int32_t>(a)) * (rs * scale[c]);
      if (bias != nullptr) v = v + bias[c];
      if (relu) v = v > 0.0f ? v : 0.0f;
      out[c] = v;
    }
#endif
  }
}

// Applies the zero-point terms and the output stage to a tile of raw sums
// S (rows x cols, row stride ld) whose top-left element is C[m0][n0].
inline void apply_epilogue(const Epilogue& ep, const int32_t* tile, int64_t ld, int64_t m0, int rows,
                           int64_t n0, int cols) {
  if (ep.kind == OutputKind::kQuantFloat && ep.row_zp == nullptr && ep.row_comp == nullptr) {
    const bool comp = ep.col_comp != nullptr;
    if (ep.out_signed)
      (comp ? requantize_float_rows<int8_t, true> : requantize_float_rows<int8_t, false>)(ep, tile, ld, m0, rows, n0, cols);
    else
      (comp ? requantize_float_rows<uint8_t, true> : requantize_float_rows<uint8_t, false>)(ep, tile, ld, m0, rows, n0, cols);
    return;
  }
  if (ep.kind == OutputKind::kFloat) {
    using Fn = void (*)(const Epilogue&, const int32_t*, int64_t, int64_t, int, int64_t, int);
    static constexpr Fn kFloatRows[8] = {float_rows<false, false, false>, float_rows<false, false, true>,
                                         float_rows<false, true, false>,  float_rows<false, true, true>,
                                         float_rows<true, false, false>,  float_rows<true, false, true>,
                                         float_rows<true, true, false>,   float_rows<true, true, true>};
    const int which = (ep.col_comp != nullptr ? 4 : 0) | (ep.row_zp != nullptr ? 2 : 0) | (ep.row_comp != nullptr ? 1 : 0);
    kFloatRows[which](ep, tile, ld, m0, rows, n0, cols);
    return;
  }
  alignas(64) int32_t buffer[kMaxTileCols];
  for (int r = 0; r < rows; ++r) {
    const int64_t m = m0 + r;
    const int32_t* s = tile + r * ld;
    // int32 output is written in place; the other kinds go through `buffer`.
    int32_t* acc = ep.kind == OutputKind::kInt32 ? static_cast<int32_t*>(ep.out) + m * ep.ldc + n0 : buffer;
    // Zero-point terms in uint32: wrap-around is the int32 accumulation the
    // contract asks for, and unsigned overflow is defined behaviour.
    if (ep.col_comp != nullptr) {
      const int32_t* cc = ep.col_comp + n0;
      for (int c = 0; c < cols; ++c)
        acc[c] = static_cast<int32_t>(static_cast<uint32_t>(s[c]) + static_cast<uint32_t>(cc[c]));
    } else {
      for (int c = 0; c < cols; ++c) acc[c] = s[c];
    }
    if (ep.row_zp != nullptr) {
      const uint32_t za = static_cast<uint32_t>(ep.row_zp[m]);
      const int32_t* cs = ep.col_sum + n0;
      for (int c = 0; c < cols; ++c)
        acc[c] = static_cast<int32_t>(static_cast<uint32_t>(acc[c]) - za * static_cast<uint32_t>(cs[c]));
    }
    if (ep.row_comp != nullptr) {
      const uint32_t rc = static_cast<uint32_t>(ep.row_comp[m]);
      const int32_t* zb = ep.col_zp + n0;
      for (int c = 0; c < cols; ++c)
        acc[c] = static_cast<int32_t>(static_cast<uint32_t>(acc[c]) - rc * static_cast<uint32_t>(zb[c]));
    }

    switch (ep.kind) {
      case OutputKind::kInt32:
        break;
      case OutputKind::kQuantFloat: {
        const float lo = static_cast<float>(ep.qmin - ep.out_zp);
        const float hi = static_cast<float>(ep.qmax - ep.out_zp);
        const float* mult = ep.multiplier + n0;
        alignas(64) int32_t q[kMaxTileCols];
        for (int c = 0; c < cols; ++c)
          q[c] = clamp_round(static_cast<float>(acc[c]) * mult[c], lo, hi) + ep.out_zp;
        store_quantized(ep, q, m, n0, cols);
        break;
      }
      case OutputKind::kQuantFixed: {
        const int32_t* m0v = ep.fixed_m0 + n0;
        const int32_t* shv = ep.fixed_shift + n0;
        alignas(64) int32_t q[kMaxTileCols];
        for (int c = 0; c < cols; ++c) {
          const int32_t v = requantize_fixed(acc[c], m0v[c], shv[c]);
          // v + zp may leave int32 only when v is near INT32_MAX/MIN; clamp in int64.
          const int64_t y = static_cast<int64_t>(v) + ep.out_zp;
          q[c] = static_cast<int32_t>(std::min<int64_t>(std::max<int64_t>(y, ep.qmin), ep.qmax));
        }
        store_quantized(ep, q, m, n0, cols);
        break;
      }
      case OutputKind::kFloat: {
        float* out = static_cast<float*>(ep.out) + m * ep.ldc + n0;
        const float rs = ep.row_scale[m];
        const float* cs = ep.col_scale + n0;
        if (ep.bias != nullptr) {
          const float* bias = ep.bias + n0;
          for (int c = 0; c < cols; ++c) out[c] = static_cast<float>(acc[c]) * (rs * cs[c]) + bias[c];
        } else {
          for (int c = 0; c < cols; ++c) out[c] = static_cast<float>(acc[c]) * (rs * cs[c]);
        }
        if (ep.relu) {
          for (int c = 0; c < cols; ++c) out[c] = out[c] > 0.0f ? out[c] : 0.0f;
        }
        break;
      }
    }
  }
}

}  // namespace

}  // namespace eb
