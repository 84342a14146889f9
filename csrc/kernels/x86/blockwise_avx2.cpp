// Kernel layer, AVX2: block-quantized linear layer (kernels/blockwise_256.h) with the nibbles
// (u8, <= 15) times the int8 activations summed by vpmaddubsw (no saturation at these values)
// and vpmaddwd.
#include "kernels/blockwise_256.h"

namespace eb {
namespace {

struct DotAvx2 {
  static __m256i dot(__m256i acc, __m256i u, __m256i a) {
    const __m256i pairs = _mm256_maddubs_epi16(u, a);  // |u0 a0 + u1 a1| <= 2 * 15 * 128
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
};

}  // namespace

BlockwiseFn blockwise_kernel_avx2() { return blockwise_256<DotAvx2>; }

}  // namespace eb
