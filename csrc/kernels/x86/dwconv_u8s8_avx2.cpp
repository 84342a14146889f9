// Kernel layer, avx2: depthwise convolution (kernels/depthwise_256.h) with an
// exact emulation of vpdpbusd.
#include "kernels/depthwise_256.h"

namespace eb {
namespace {

// vpmaddubsw saturates a pair sum x0 w0 + x1 w1 to int16, which 255 x 127 x 2
// exceeds; split x = lo + 128 hi (lo < 128, hi 0 or 1) and neither pair sum
// can: |lo0 w0 + lo1 w1| <= 127 x 128 x 2 = 32512.  vpmaddwd then adds the
// pairs exactly into int32: sum x w = sum lo w + 128 sum hi w.
struct DotAvx2 {
  static __m256i dot(__m256i acc, __m256i x, __m256i w) {
    const __m256i lo = _mm256_and_si256(x, _mm256_set1_epi8(0x7F));
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 7), _mm256_set1_epi8(0x01));
    const __m256i lo_pairs = _mm256_maddubs_epi16(lo, w), hi_pairs = _mm256_maddubs_epi16(hi, w);
    const __m256i sum = _mm256_add_epi32(_mm256_madd_epi16(lo_pairs, _mm256_set1_epi16(1)),
                                         _mm256_madd_epi16(hi_pairs, _mm256_set1_epi16(128)));
    return _mm256_add_epi32(acc, sum);
  }
};

}  // namespace

DepthwiseFn depthwise_kernel_avx2() { return depthwise_256_any<DotAvx2>; }

}  // namespace eb
