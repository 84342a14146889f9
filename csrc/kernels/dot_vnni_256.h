// Kernel layer: the AVX-VNNI dot product on 256-bit registers (VEX vpdpbusd: four u8 x s8 products
// summed into each int32 lane), the Dot policy of the 256-bit kernels built in avxvnni units
// (kernels/depthwise_256.h, kernels/blockwise_256.h).
#pragma once

#include <immintrin.h>

namespace eb {
namespace {  // internal linkage: compiled into units with different ISA flags

struct DotVnni {
  static __m256i dot(__m256i acc, __m256i u8, __m256i s8) { return _mm256_dpbusd_avx_epi32(acc, u8, s8); }
};

}  // namespace
}  // namespace eb
