// Kernel layer, avx512vnni: the CNN companion operators (kernels/elementwise.h
// and kernels/pooling.h compiled with AVX-512), and a masked-vpshufb table
// lookup (AVX-512BW; vpermi2b would need VBMI, which this path does not assume).
#include <immintrin.h>

#include "kernels/cnn_kernels.h"

namespace eb {
namespace {

// 256-entry lookup, 64 bytes at a time: each of the 16 rows of 16 entries is
// looked up by the low nibble, written only to the bytes whose high nibble
// selects that row.
void lookup_avx512(const uint8_t* x, int64_t n, const uint8_t* table, uint8_t* y) {
  __m512i rows[16];
  for (int j = 0; j < 16; ++j)
    // (masked form: GCC 12's unmasked broadcast starts from an "undefined" vector and warns)
    rows[j] = _mm512_maskz_broadcast_i32x4(__mmask16(0xFFFF),
                                           _mm_loadu_si128(reinterpret_cast<const __m128i*>(table + 16 * j)));
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512i v = _mm512_loadu_si512(x + i);
    const __m512i lo = _mm512_and_si512(v, nibble);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
    __m512i r = _mm512_setzero_si512();
    for (int j = 0; j < 16; ++j) {
      const __mmask64 row = _mm512_cmpeq_epi8_mask(hi, _mm512_set1_epi8(static_cast<char>(j)));
      r = _mm512_mask_shuffle_epi8(r, row, rows[j], lo);
    }
    _mm512_storeu_si512(y + i, r);
  }
  lookup_bytes(x + i, n - i, table, y + i);
}

}  // namespace

CnnKernels cnn_kernels_avx512vnni() { return unit_cnn_kernels(lookup_avx512); }

}  // namespace eb
