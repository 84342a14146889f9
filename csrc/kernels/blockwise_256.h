// Kernel layer: the block-quantized linear layer on 256-bit registers, shared by the AVX2 and
// AVX-VNNI units, each of which includes it with its flags and its Dot (how u8 nibbles times s8
// activations are summed into int32 lanes: vpdpbusd, or on AVX2 vpmaddubsw + vpmaddwd, exact
// here because |u * a| <= 15 * 127 keeps a pair's sum far from int16's limit).  A panel's 32 bytes
// of nibbles for a group of 4 k become two registers: low nibbles (columns 0-7) and high nibbles
// (columns 8-15).  Tiles: up to 2 rows x 1 panel (16 ymm: 4 sums, 4 accumulators, 2 weights).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "eightbit/blockwise.h"
#include "kernels/tile_split.h"

namespace eb {
namespace {  // internal linkage: compiled into units with different ISA flags

constexpr int kRows256 = 2;

template <class Dot, int R>
void tile_256(const BlockwiseCall& call, int64_t m, int64_t p) {
  const PackedBlockB& B = *call.b;
  const int64_t groups_per_block = B.block / 4;
  const __m256i nibble = _mm256_set1_epi8(0x0f);
  const uint8_t* bp = B.panel(p);
  __m256 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t b = 0; b < B.blocks; ++b) {
    __m256i sum[R][2];
    for (int r = 0; r < R; ++r)
      sum[r][0] = sum[r][1] = _mm256_set1_epi32(call.block_bias[(m + r) * B.blocks + b]);
#pragma GCC unroll 4
    for (int64_t g = b * groups_per_block; g < (b + 1) * groups_per_block; ++g) {
      const __m256i packed = _mm256_load_si256(reinterpret_cast<const __m256i*>(bp + g * kNibbleGroupBytes));
      const __m256i w[2] = {_mm256_and_si256(packed, nibble), _mm256_and_si256(_mm256_srli_epi16(packed, 4), nibble)};
      for (int r = 0; r < R; ++r) {
        int32_t four;
        __builtin_memcpy(&four, call.xq + (m + r) * call.lda + g * 4, 4);
        const __m256i a = _mm256_set1_epi32(four);
        sum[r][0] = Dot::dot(sum[r][0], w[0], a);
        sum[r][1] = Dot::dot(sum[r][1], w[1], a);
      }
    }
    const float* scales = B.panel_scales(p) + b * kBlockPanelCols;
    for (int h = 0; h < 2; ++h) {
      const __m256 scale = _mm256_load_ps(scales + 8 * h);
      for (int r = 0; r < R; ++r)
        acc[r][h] = _mm256_add_ps(acc[r][h], _mm256_mul_ps(_mm256_cvtepi32_ps(sum[r][h]), scale));
    }
  }
  const int64_t n0 = p * kBlockPanelCols;
  const int64_t cols = std::min<int64_t>(kBlockPanelCols, B.N - n0);
  for (int r = 0; r < R; ++r) {
    alignas(32) float out[kBlockPanelCols];
    const __m256 xs = _mm256_set1_ps(call.x_scale[m + r]);
    for (int h = 0; h < 2; ++h) {
      __m256 y = _mm256_mul_ps(acc[r][h], xs);
      if (call.bias != nullptr) {
        alignas(32) float bias[8] = {};
        for (int64_t c = 0; c < 8 && 8 * h + c < cols; ++c) bias[c] = call.bias[n0 + 8 * h + c];
        y = _mm256_add_ps(y, _mm256_load_ps(bias));
      }
      if (call.relu) y = _mm256_max_ps(y, _mm256_setzero_ps());
      _mm256_store_ps(out + 8 * h, y);
    }
    std::copy_n(out, cols, call.y + (m + r) * call.ldy + n0);
  }
}

template <class Dot>
void blockwise_256(const BlockwiseCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const TileSplit split(m1 - m0, kRows256);
  for (int64_t p = p0; p < p1; ++p)
    for (int64_t m = m0, t = 0; m < m1; m += split.rows(t), ++t) {
      if (split.rows(t) == 2)
        tile_256<Dot, 2>(call, m, p);
      else
        tile_256<Dot, 1>(call, m, p);
    }
}

}  // namespace
}  // namespace eb
