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

// Min or max of the 16 lanes in a tree of shuffles (a scalar fold was a 16-step chain).  The
// masked forms: GCC 12's unmasked ones (and _mm512_reduce_min_ps) start from an "undefined"
// vector and warn.
template <typename Op>
float fold16(__m512 v, Op op) {
  const __mmask16 all = 0xFFFF;
  v = op(all, v, _mm512_maskz_shuffle_f32x4(all, v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = op(all, v, _mm512_maskz_shuffle_f32x4(all, v, v, _MM_SHUFFLE(2, 3, 0, 1)));
  v = op(all, v, _mm512_maskz_permute_ps(all, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = op(all, v, _mm512_maskz_permute_ps(all, v, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_cvtss_f32(v);
}

// DynamicQuantizeLinear's range, as range_with_zero (kernels/elementwise.h) finds it: four zmm
// accumulators for min and four for max (GCC kept range_with_zero's one register, a 4-cycle chain
// per vector).  vminps(v, m) (masked with all lanes, the same instruction) is `v < m ? v : m` lane
// by lane, so a lane never takes -0 or NaN and the accumulators fold in any order; NaN is caught
// by an unordered compare, infinities show in the range.  The tail is a masked load: its zeros do
// not move a range that includes zero.
bool range_avx512(const float* x, int64_t n, float* mn_out, float* mx_out) {
  const __mmask16 all = 0xFFFF;  // masked forms throughout: see fold16
  __m512 mn[4], mx[4];
  for (int k = 0; k < 4; ++k) mn[k] = mx[k] = _mm512_setzero_ps();
  __mmask16 nan = 0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int k = 0; k < 4; ++k) {
      const __m512 v = _mm512_loadu_ps(x + i + 16 * k);
      mn[k] = _mm512_maskz_min_ps(all, v, mn[k]);
      mx[k] = _mm512_maskz_max_ps(all, v, mx[k]);
      nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    mn[0] = _mm512_maskz_min_ps(all, v, mn[0]);
    mx[0] = _mm512_maskz_max_ps(all, v, mx[0]);
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  }
  const float lo = fold16(_mm512_maskz_min_ps(all, _mm512_maskz_min_ps(all, mn[0], mn[1]),
                                              _mm512_maskz_min_ps(all, mn[2], mn[3])), _mm512_maskz_min_ps);
  const float hi = fold16(_mm512_maskz_max_ps(all, _mm512_maskz_max_ps(all, mx[0], mx[1]),
                                              _mm512_maskz_max_ps(all, mx[2], mx[3])), _mm512_maskz_max_ps);
  *mn_out = lo;
  *mx_out = hi;
  return nan == 0 && lo - lo == 0.0f && hi - hi == 0.0f;
}

}  // namespace

CnnKernels cnn_kernels_avx512vnni() {
  CnnKernels k = unit_cnn_kernels(lookup_avx512);
  k.range = range_avx512;
  return k;
}

}  // namespace eb
