// Kernel layer, avxvnni: depthwise convolution with VEX vpdpbusd on 256-bit
// registers (kernels/depthwise_256.h).
#include "kernels/depthwise_256.h"

namespace eb {
namespace {

struct DotVnni {
  static __m256i dot(__m256i acc, __m256i x, __m256i w) { return _mm256_dpbusd_avx_epi32(acc, x, w); }
};

}  // namespace

DepthwiseFn depthwise_kernel_avxvnni() { return depthwise_256_any<DotVnni>; }

}  // namespace eb
