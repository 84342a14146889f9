// Kernel layer: the block-quantized linear layer on 256-bit registers, shared by the AVX2 and
// AVX-VNNI units, each of which includes it with its flags and its Dot (how u8 nibbles times s8
// activations are summed into int32 lanes: vpdpbusd, or on AVX2 vpmaddubsw + vpmaddwd, exact
// here because |u * a| <= 15 * 127 keeps a pair's sum far from int16's limit).  A panel's 32 bytes
// of nibbles for a group of 4 k become two registers: low nibbles (columns 0-7) and high nibbles
// (columns 8-15).  Tiles: up to 2 rows x 1 panel (16 ymm: 4 sums, 4 accumulators, 2 weights)
// expanding in registers, or, from 16 rows, 3 rows over bytes expanded once per chunk (below).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "eightbit/aligned_buffer.h"
#include "eightbit/blockwise.h"
#include "kernels/tile_split.h"

namespace eb {
namespace {  // internal linkage: compiled into units with different ISA flags

constexpr int kRows256 = 2;

// y of rows [m, m + rows) x panel p from the finished float sums (row r's at acc + r * 16).
inline void store_rows_256(const BlockwiseCall& call, int64_t m, int64_t rows, int64_t p, const float* acc) {
  const PackedBlockB& B = *call.b;
  const int64_t n0 = p * kBlockPanelCols;
  const int64_t cols = std::min<int64_t>(kBlockPanelCols, B.N - n0);
  for (int64_t r = 0; r < rows; ++r) {
    alignas(32) float out[kBlockPanelCols];
    const __m256 xs = _mm256_set1_ps(call.x_scale[m + r]);
    for (int h = 0; h < 2; ++h) {
      __m256 y = _mm256_mul_ps(_mm256_load_ps(acc + r * kBlockPanelCols + 8 * h), xs);
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
  alignas(32) float sums[R * kBlockPanelCols];
  for (int r = 0; r < R; ++r)
    for (int h = 0; h < 2; ++h) _mm256_store_ps(sums + r * kBlockPanelCols + 8 * h, acc[r][h]);
  store_rows_256(call, m, R, p, sums);
}

// 16 rows and more: each panel's nibbles expanded once per chunk of K into `bytes` (per group, the
// low and the high nibbles' 32 bytes), then tiles of up to 3 rows read them; the float sums
// stay in registers within a chunk and wait in `partial` (row r at r * 16) between chunks.  Expanding in every 2-row tile would
// cost three operations per four products.
constexpr int kRowsBytes256 = 3;  // 6 sums + 6 float sums + 2 weights + 1 row: 15 ymm
constexpr int64_t kChunkGroups256 = 256;  // 16 KB of expanded bytes a panel: L1
constexpr int64_t kMinRowsBytes256 = 16;  // measured: 4 and 8 rows are faster on the 2-row tiles

template <class Dot, int R>
void tile_bytes_256(const BlockwiseCall& call, int64_t m, const uint8_t* bytes, int64_t g0, int64_t b0, int64_t b1,
                    const float* panel_scales, float* partial) {
  const PackedBlockB& B = *call.b;
  const int64_t groups_per_block = B.block / 4;
  __m256 acc[R][2];  // the chunk's float sums in registers, from and back to `partial`
  for (int r = 0; r < R; ++r)
    for (int h = 0; h < 2; ++h) acc[r][h] = _mm256_load_ps(partial + r * kBlockPanelCols + 8 * h);
  for (int64_t b = b0; b < b1; ++b) {
    __m256i sum[R][2];
    for (int r = 0; r < R; ++r)
      sum[r][0] = sum[r][1] = _mm256_set1_epi32(call.block_bias[(m + r) * B.blocks + b]);
#pragma GCC unroll 4
    for (int64_t g = b * groups_per_block; g < (b + 1) * groups_per_block; ++g) {
      const uint8_t* wg = bytes + (g - g0) * 64;
      const __m256i w[2] = {_mm256_load_si256(reinterpret_cast<const __m256i*>(wg)),
                            _mm256_load_si256(reinterpret_cast<const __m256i*>(wg + 32))};
      for (int r = 0; r < R; ++r) {
        int32_t four;
        __builtin_memcpy(&four, call.xq + (m + r) * call.lda + g * 4, 4);
        const __m256i a = _mm256_set1_epi32(four);
        sum[r][0] = Dot::dot(sum[r][0], w[0], a);
        sum[r][1] = Dot::dot(sum[r][1], w[1], a);
      }
    }
    for (int h = 0; h < 2; ++h) {
      const __m256 scale = _mm256_load_ps(panel_scales + b * kBlockPanelCols + 8 * h);
      for (int r = 0; r < R; ++r)
        acc[r][h] = _mm256_add_ps(acc[r][h], _mm256_mul_ps(_mm256_cvtepi32_ps(sum[r][h]), scale));
    }
  }
  for (int r = 0; r < R; ++r)
    for (int h = 0; h < 2; ++h) _mm256_store_ps(partial + r * kBlockPanelCols + 8 * h, acc[r][h]);
}

template <class Dot>
void blockwise_256(const BlockwiseCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  if (m1 - m0 < kMinRowsBytes256) {  // fewer rows: 2-row tiles expand in registers (streaming the
                                     // weights costs more than expanding them again)
    const TileSplit split(m1 - m0, kRows256);
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t m = m0, t = 0; m < m1; m += split.rows(t), ++t) {
        if (split.rows(t) == 2)
          tile_256<Dot, 2>(call, m, p);
        else
          tile_256<Dot, 1>(call, m, p);
      }
    return;
  }
  const PackedBlockB& B = *call.b;
  const int64_t chunk_blocks = std::max<int64_t>(1, kChunkGroups256 / (B.block / 4));
  thread_local AlignedBuffer<uint8_t> byte_buffer;
  thread_local AlignedBuffer<float> partial_buffer;
  byte_buffer.reserve_discard(static_cast<size_t>(chunk_blocks * B.block / 4 * 64));
  partial_buffer.reserve_discard(static_cast<size_t>((m1 - m0) * kBlockPanelCols));
  uint8_t* const bytes = byte_buffer.data();  // (each thread_local access is a call)
  float* const partial = partial_buffer.data();
  const __m256i nibble = _mm256_set1_epi8(0x0f);
  const TileSplit split(m1 - m0, kRowsBytes256);
  for (int64_t p = p0; p < p1; ++p) {
    std::fill_n(partial, (m1 - m0) * kBlockPanelCols, 0.0f);
    for (int64_t b0 = 0; b0 < B.blocks; b0 += chunk_blocks) {
      const int64_t b1 = std::min(B.blocks, b0 + chunk_blocks), g0 = b0 * B.block / 4, g1 = b1 * B.block / 4;
      for (int64_t g = g0; g < g1; ++g) {
        const __m256i packed = _mm256_load_si256(reinterpret_cast<const __m256i*>(B.panel(p) + g * kNibbleGroupBytes));
        _mm256_store_si256(reinterpret_cast<__m256i*>(bytes + (g - g0) * 64), _mm256_and_si256(packed, nibble));
        _mm256_store_si256(reinterpret_cast<__m256i*>(bytes + (g - g0) * 64 + 32),
                           _mm256_and_si256(_mm256_srli_epi16(packed, 4), nibble));
      }
      for (int64_t m = m0, t = 0; m < m1; m += split.rows(t), ++t) {
        float* acc = partial + (m - m0) * kBlockPanelCols;
        switch (split.rows(t)) {
          case 3: tile_bytes_256<Dot, 3>(call, m, bytes, g0, b0, b1, B.panel_scales(p), acc); break;
          case 2: tile_bytes_256<Dot, 2>(call, m, bytes, g0, b0, b1, B.panel_scales(p), acc); break;
          default: tile_bytes_256<Dot, 1>(call, m, bytes, g0, b0, b1, B.panel_scales(p), acc); break;
        }
      }
    }
    store_rows_256(call, m0, m1 - m0, p, partial);
  }
}

}  // namespace
}  // namespace eb
