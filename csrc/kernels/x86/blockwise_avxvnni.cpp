// Kernel layer, AVX-VNNI: block-quantized linear layer (kernels/blockwise_256.h) with VEX vpdpbusd.
#include "kernels/blockwise_256.h"

namespace eb {
namespace {

struct DotVnni {
  static __m256i dot(__m256i acc, __m256i u, __m256i a) { return _mm256_dpbusd_avx_epi32(acc, u, a); }
};

}  // namespace

BlockwiseFn blockwise_kernel_avxvnni() { return blockwise_256<DotVnni>; }

}  // namespace eb
