// Kernel layer, avx2: the CNN companion operators (kernels/elementwise.h and
// kernels/pooling.h compiled with AVX2 + FMA), and a vpshufb table lookup.
#include <immintrin.h>

#include "kernels/cnn_kernels.h"

namespace eb {
namespace {

// 256-entry lookup, 32 bytes at a time: vpshufb looks up the low nibble in
// each of the 16 rows of 16 entries; the row whose index equals the high
// nibble is kept.
void lookup_avx2(const uint8_t* x, int64_t n, const uint8_t* table, uint8_t* y) {
  __m256i rows[16];
  for (int j = 0; j < 16; ++j)
    rows[j] = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(table + 16 * j)));
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    const __m256i lo = _mm256_and_si256(v, nibble);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
    __m256i r = _mm256_setzero_si256();
    for (int j = 0; j < 16; ++j) {
      const __m256i row = _mm256_cmpeq_epi8(hi, _mm256_set1_epi8(static_cast<char>(j)));
      r = _mm256_blendv_epi8(r, _mm256_shuffle_epi8(rows[j], lo), row);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), r);
  }
  lookup_bytes(x + i, n - i, table, y + i);
}

// DynamicQuantizeLinear's range with four ymm accumulators each for min and max (see
// range_avx512 in cnn_ops_avx512vnni.cpp): vminps(v, m) is `v < m ? v : m`, so no lane takes -0
// or NaN and the fold order does not matter; NaN is caught by an unordered compare.
bool range_avx2(const float* x, int64_t n, float* mn_out, float* mx_out) {
  __m256 mn[4], mx[4];
  for (int k = 0; k < 4; ++k) mn[k] = mx[k] = _mm256_setzero_ps();
  __m256 nan = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; ++k) {
      const __m256 v = _mm256_loadu_ps(x + i + 8 * k);
      mn[k] = _mm256_min_ps(v, mn[k]);
      mx[k] = _mm256_max_ps(v, mx[k]);
      nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    mn[0] = _mm256_min_ps(v, mn[0]);
    mx[0] = _mm256_max_ps(v, mx[0]);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  alignas(32) float lo8[8], hi8[8];
  _mm256_store_ps(lo8, _mm256_min_ps(_mm256_min_ps(mn[0], mn[1]), _mm256_min_ps(mn[2], mn[3])));
  _mm256_store_ps(hi8, _mm256_max_ps(_mm256_max_ps(mx[0], mx[1]), _mm256_max_ps(mx[2], mx[3])));
  float lo = 0.0f, hi = 0.0f;
  bool finite = _mm256_movemask_ps(nan) == 0;
  for (int j = 0; j < 8; ++j) {
    lo = lo8[j] < lo ? lo8[j] : lo;
    hi = hi8[j] > hi ? hi8[j] : hi;
  }
  for (; i < n; ++i) {
    const float v = x[i];
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
    finite &= v == v;
  }
  *mn_out = lo;
  *mx_out = hi;
  return finite && lo - lo == 0.0f && hi - hi == 0.0f;
}

}  // namespace

CnnKernels cnn_kernels_avx2() {
  CnnKernels k = unit_cnn_kernels(lookup_avx2);
  k.range = range_avx2;
  return k;
}

}  // namespace eb
