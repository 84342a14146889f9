// Kernel layer: the nibble expansion of the block-quantized weights on 512-bit registers, shared
// by the AVX-512 VNNI and AMX units (each includes it with its own flags).
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "eightbit/blockwise.h"

namespace eb {
namespace {  // internal linkage: compiled into units with different ISA flags

// Weights of one panel for a group of 4 k: 32 bytes of nibbles -> the 64 k4n16 bytes u = q + 8
// (both halves of a zmm get the 32 bytes, the high half shifted right by 4, both masked).
inline __m512i expand(const uint8_t* nibbles) {
  const __m512i shift = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);  // high half >> 4
  const __m512i both = _mm512_broadcast_i64x4(_mm256_load_si256(reinterpret_cast<const __m256i*>(nibbles)));
  return _mm512_and_si512(_mm512_srlv_epi16(both, shift), _mm512_set1_epi8(0x0f));
}

// Groups [g0, g1) of panels [p0, p1) expanded into `bytes` as the signed codes q = u - 8:
// panel p's at (p - p0) * stride, 64 bytes a group.
inline void expand_signed_groups(const PackedBlockB& b, int64_t p0, int64_t p1, int64_t g0, int64_t g1, int8_t* bytes,
                                 int64_t stride) {
  const __m512i eight = _mm512_set1_epi8(8);
  for (int64_t p = p0; p < p1; ++p)
    for (int64_t g = g0; g < g1; ++g)
      _mm512_store_si512(bytes + (p - p0) * stride + (g - g0) * 64,
                         _mm512_sub_epi8(expand(b.panel(p) + g * kNibbleGroupBytes), eight));
}

}  // namespace
}  // namespace eb
