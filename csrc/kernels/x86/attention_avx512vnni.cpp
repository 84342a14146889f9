// Kernel layer, avx512vnni: the int8 attention loops (eightbit/attention.h) in AVX-512
// intrinsics.  The portable loops (kernels/attention.h) leave a head's short rows (25 keys, a
// 32-wide head) mostly to scalar tails; here every row is whole 16-lane vectors with masked loads.
// Same steps as the portable loops, so the same bits: max, |x|, the power-of-two scaling, min and
// round-half-even are exact, the division and the products are one IEEE operation each, and the
// rest is integer.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "kernels/attention.h"

namespace eb {
namespace {

inline __mmask16 lanes(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u); }

bool quantize_columns_avx512(const float* b, int64_t K, int64_t P, int64_t ldb, float alpha, int8_t* /*work*/,
                             int8_t* packed, int32_t* col_sum, float* col_scale) {
  const int64_t groups = round_up(K, kKGroup) / kKGroup, panels = round_up(P, kPanelCols) / kPanelCols;
  const __m512 zero = _mm512_setzero_ps(), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
  const __m512i byte = _mm512_set1_epi32(0xFF), abs_mask = _mm512_set1_epi32(0x7FFFFFFF),
                inf_bits = _mm512_set1_epi32(0x7F800000);
  for (int64_t pn = 0; pn < panels; ++pn) {
    const __mmask16 m = lanes(P - pn * kPanelCols);
    const float* col = b + pn * kPanelCols;
    // max |v| on the bits: for non-negative floats the integer order is the numeric order, and
    // infinity and NaN have the largest patterns; an integer max is a 1-cycle dependency chain.
    __m512i bits = _mm512_setzero_si512();
    for (int64_t k = 0; k < K; ++k)
      bits = _mm512_max_epu32(bits, _mm512_and_si512(_mm512_castps_si512(_mm512_maskz_loadu_ps(m, col + k * ldb)), abs_mask));
    if (_mm512_cmp_epu32_mask(bits, inf_bits, _MM_CMPINT_NLT) != 0) return false;  // infinity or NaN
    const __m512 amax = _mm512_castsi512_ps(bits);
    const __m512 s = _mm512_mask_div_ps(_mm512_set1_ps(1.0f), _mm512_cmp_ps_mask(amax, zero, _CMP_GT_OQ), amax,
                                        _mm512_set1_ps(127.0f));
    _mm512_storeu_ps(col_scale + pn * kPanelCols, _mm512_maskz_mul_ps(m, s, _mm512_set1_ps(alpha)));
    __m512i sum = _mm512_setzero_si512();
    int8_t* dst = packed + pn * groups * kPanelGroupBytes;
    for (int64_t g = 0; g < groups; ++g) {
      __m512i word = _mm512_setzero_si512();
      for (int i = 0; i < kKGroup; ++i) {
        const int64_t k = g * kKGroup + i;
        if (k >= K) break;  // rows past K stay 0
        __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(m, col + k * ldb), s);
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
        const __m512i q = _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        sum = _mm512_add_epi32(sum, q);
        word = _mm512_or_si512(word, _mm512_slli_epi32(_mm512_and_si512(q, byte), 8 * i));
      }
      _mm512_storeu_si512(dst + g * kPanelGroupBytes, word);
    }
    _mm512_storeu_si512(col_sum + pn * kPanelCols, sum);
  }
  return true;
}

// dynamic_qparams then quantize_per_tensor (runtime/quantize.cpp, kernels/elementwise.h), step for
// step; the parameters of 16 rows at a time in one vector (lane = row), not row by row in scalars.
bool quantize_rows_avx512(const float* a, int64_t M, int64_t K, int64_t lda, uint8_t* q, int64_t ldq, float* scale,
                          int32_t* zp) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t r0 = 0; r0 < M; r0 += 16) {
    const int n = static_cast<int>(std::min<int64_t>(16, M - r0));
    alignas(64) float lo_r[16] = {}, hi_r[16] = {};
    for (int r = 0; r < n; ++r) {
      const float* x = a + (r0 + r) * lda;
      __m512 mn = zero, mx = zero, chk = zero;  // masked-off lanes read 0: the range includes 0 anyway
      for (int64_t j = 0; j < K; j += 16) {
        const __m512 v = _mm512_maskz_loadu_ps(lanes(K - j), x + j);
        mn = _mm512_min_ps(v, mn);  // v < mn ? v : mn, as range_with_zero
        mx = _mm512_max_ps(v, mx);
        chk = _mm512_add_ps(chk, _mm512_sub_ps(v, v));  // v - v: 0 for finite v, NaN otherwise
      }
      if (_mm512_cmp_ps_mask(chk, zero, _CMP_NEQ_UQ) != 0) return false;
      lo_r[r] = _mm512_reduce_min_ps(mn);
      hi_r[r] = _mm512_reduce_max_ps(mx);
    }
    const __m512 lo = _mm512_load_ps(lo_r), hi = _mm512_load_ps(hi_r);
    // scale = hi == lo ? 1 : (hi - lo) / 255;  z = 0 - lo / scale, clamped: z < 255 ? z : 255 (NaN -> 255,
    // as ONNX Runtime), then 0 < z ? z : 0;  zp = rne(z).
    const __m512 sv = _mm512_mask_div_ps(_mm512_set1_ps(1.0f), _mm512_cmp_ps_mask(hi, lo, _CMP_NEQ_UQ),
                                         _mm512_sub_ps(hi, lo), _mm512_set1_ps(255.0f));
    __m512 z = _mm512_sub_ps(zero, _mm512_div_ps(lo, sv));
    z = _mm512_max_ps(_mm512_min_ps(z, _mm512_set1_ps(255.0f)), zero);
    const __m512i zv = _mm512_cvt_roundps_epi32(z, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __mmask16 rows = lanes(n);
    _mm512_mask_storeu_ps(scale + r0, rows, sv);
    _mm512_mask_storeu_epi32(zp + r0, rows, zv);
    for (int r = 0; r < n; ++r) {
      const float* x = a + (r0 + r) * lda;
      const int32_t zi = zp[r0 + r];
      const __m512 vs = _mm512_set1_ps(scale[r0 + r]), vlo = _mm512_set1_ps(static_cast<float>(0 - zi)),
                   vhi = _mm512_set1_ps(static_cast<float>(255 - zi));
      const __m512i vz = _mm512_set1_epi32(zi);
      for (int64_t j = 0; j < K; j += 16) {
        const __mmask16 m = lanes(K - j);
        __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(m, x + j), vs);
        v = _mm512_min_ps(_mm512_max_ps(v, vlo), vhi);  // v > lo ? v : lo, then v < hi ? v : hi
        const __m512i iv =
            _mm512_add_epi32(_mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vz);
        _mm_mask_storeu_epi8(q + (r0 + r) * ldq + j, m, _mm512_cvtepi32_epi8(iv));
      }
    }
  }
  return true;
}

template <bool kScaled, bool kMask>
bool scores_avx512(const float* x, const float* mask, int64_t T, float scale, float* s, float* top) {
  const __m512 inf = _mm512_set1_ps(std::numeric_limits<float>::infinity()), sc = _mm512_set1_ps(scale);
  __m512 mx = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __mmask16 bad = 0;
  for (int64_t j = 0; j < T; j += 16) {
    const __mmask16 m = lanes(T - j);
    __m512 v = _mm512_maskz_loadu_ps(m, x + j);
    if (kScaled) v = _mm512_mul_ps(v, sc);
    if (kMask) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, mask + j));  // two roundings: no FMA
    _mm512_storeu_ps(s + j, v);  // whole vectors (s holds them): a masked store is not forwarded to a load
    bad |= _mm512_mask_cmp_ps_mask(m, v, inf, _CMP_NLT_UQ);  // NaN or +inf
    mx = _mm512_mask_max_ps(mx, m, mx, v);
  }
  *top = _mm512_reduce_max_ps(mx);
  return bad == 0;
}

// e = table[rne(min((top - s) * 256, 4096))] of one row, written over s (as int32); returns S.
int64_t exp_sum_avx512(float* s, int64_t T, float top, const int32_t* table) {
  int32_t* e = reinterpret_cast<int32_t*>(s);
  const __m512 vtop = _mm512_set1_ps(top), k256 = _mm512_set1_ps(256.0f), limit = _mm512_set1_ps(4096.0f);
  // Lane sums in int32 (e <= 2^24: 127 vectors fit), moved into int64 every 127 vectors.
  __m512i sum32 = _mm512_setzero_si512(), sum64 = _mm512_setzero_si512();
  int pending = 0;
  for (int64_t j = 0; j < T; j += 16) {
    const __mmask16 m = lanes(T - j);
    __m512 d = _mm512_mul_ps(_mm512_sub_ps(vtop, _mm512_loadu_ps(s + j)), k256);  // lanes past T: not gathered
    d = _mm512_min_ps(d, limit);  // +inf (a -inf key) -> the last entry
    const __m512i t = _mm512_cvt_roundps_epi32(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512i ev = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, t, table, 4);
    _mm512_storeu_si512(e + j, ev);  // s holds whole vectors
    sum32 = _mm512_add_epi32(sum32, ev);
    if (++pending == 127 || j + 16 >= T) {
      sum64 = _mm512_add_epi64(sum64, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(sum32)));
      sum64 = _mm512_add_epi64(sum64, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(sum32, 1)));
      sum32 = _mm512_setzero_si512();
      pending = 0;
    }
  }
  return _mm512_reduce_add_epi64(sum64);
}

// p and s_p of one row from its e (over s) and S.
void probabilities_avx512(const int32_t* e, int64_t T, int64_t sum, bool fixed, uint8_t* p, float* s_p) {
  if (fixed) {
    // R <= 255 * 2^24 < 2^32 (sum >= 2^24), e <= 2^24: e * R is a 32 x 32 -> 64-bit product.
    const __m512i r = _mm512_set1_epi64(static_cast<int64_t>((int64_t{255} << 48) / sum));
    const __m512i half = _mm512_set1_epi64(int64_t{1} << 47);
    for (int64_t j = 0; j < T; j += 16) {
      const __m512i ev = _mm512_loadu_si512(e + j);
      const __m512i even = _mm512_srli_epi64(_mm512_add_epi64(_mm512_mul_epu32(ev, r), half), 48);
      const __m512i odd = _mm512_srli_epi64(_mm512_add_epi64(_mm512_mul_epu32(_mm512_srli_epi64(ev, 32), r), half), 48);
      const __m512i pv = _mm512_or_si512(even, _mm512_slli_epi64(odd, 32));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p + j), _mm512_cvtepi32_epi8(pv));  // 0 past T
    }
    *s_p = 1.0f / 255.0f;
  } else {
    // e * 255 + 2^23 <= 2^32 - 2^23: exact in uint32.
    const __m512i k255 = _mm512_set1_epi32(255), half = _mm512_set1_epi32(1 << 23);
    for (int64_t j = 0; j < T; j += 16) {
      const __m512i ev = _mm512_loadu_si512(e + j);
      const __m512i pv = _mm512_srli_epi32(_mm512_add_epi32(_mm512_mullo_epi32(ev, k255), half), 24);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p + j), _mm512_cvtepi32_epi8(pv));  // 0 past T
    }
    *s_p = static_cast<float>(static_cast<double>(kAttnExpOne) / (255.0 * static_cast<double>(sum)));
  }
}

// A short row is a chain of latencies (max fold, gather, sum fold, divide): rows go four at a
// time, phase by phase, so that the four chains overlap (as the float softmax does).
template <bool kScaled, bool kMask>
bool softmax_rows_t(const float* x, int64_t ldx, const float* mask, int64_t mask_ld, int64_t rows, int64_t T,
                    float scale, const int32_t* table, bool fixed, uint8_t* p, int64_t ldp, float* s_p, float* s) {
  constexpr int kRows = 4;
  const int64_t tv = round_up(T, 16);
  for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
    const int n = static_cast<int>(std::min<int64_t>(kRows, rows - r0));
    float top[kRows];
    int64_t sum[kRows];
    for (int i = 0; i < n; ++i)
      if (!scores_avx512<kScaled, kMask>(x + (r0 + i) * ldx, kMask ? mask + (r0 + i) * mask_ld : nullptr, T, scale,
                                         s + i * tv, &top[i]))
        return false;
    for (int i = 0; i < n; ++i)
      sum[i] = top[i] == -std::numeric_limits<float>::infinity() ? 0 : exp_sum_avx512(s + i * tv, T, top[i], table);
    for (int i = 0; i < n; ++i) {
      uint8_t* pr = p + (r0 + i) * ldp;
      if (sum[i] == 0) {  // every key masked: attends to nothing
        std::memset(pr, 0, static_cast<size_t>(round_up(T, kKGroup)));
        s_p[r0 + i] = 0.0f;
      } else {
        probabilities_avx512(reinterpret_cast<const int32_t*>(s + i * tv), T, sum[i], fixed, pr, s_p + r0 + i);
      }
    }
  }
  return true;
}

bool softmax_rows_avx512(const float* x, int64_t ldx, const float* mask, int64_t mask_ld, int64_t rows, int64_t T,
                         bool scaled, float scale, const int32_t* table, bool fixed, uint8_t* p, int64_t ldp,
                         float* s_p, float* s, int32_t* /*e*/) {
  const auto run = scaled ? (mask != nullptr ? softmax_rows_t<true, true> : softmax_rows_t<true, false>)
                          : (mask != nullptr ? softmax_rows_t<false, true> : softmax_rows_t<false, false>);
  return run(x, ldx, mask, mask_ld, rows, T, scale, table, fixed, p, ldp, s_p, s);
}

}  // namespace

AttentionKernels attention_kernels_avx512() {
  AttentionKernels k = attention_table();
  k.quantize_columns = quantize_columns_avx512;
  k.softmax_rows = softmax_rows_avx512;
  k.quantize_rows = quantize_rows_avx512;
  return k;
}

}  // namespace eb
