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

}  // namespace

CnnKernels cnn_kernels_avx2() { return unit_cnn_kernels(lookup_avx2); }

}  // namespace eb
