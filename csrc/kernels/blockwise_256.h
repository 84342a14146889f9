// Kernel layer: the block-quantized linear layer on 256-bit registers, shared by the AVX2 and
// AVX-VNNI units, each of which includes it with its flags and its Dot (how u8 nibbles times s8
// activations are summed into int32 lanes: vpdpbusd, or on AVX2 vpmaddubsw + vpmaddwd, exact
// here because |u * a| <= 15 * 127 keeps a pair's sum far from int16's limit).  A panel's 32 bytes
// of nibbles for a group of 4 k become two registers: low nibbles (columns 0-7) and high nibbles
// (columns 8-15).  Tiles: 2 rows x 1 panel expanding in registers, or, from 16 rows, 3 rows
// over bytes expanded once per chunk (below).
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

// Where a tile reads a group's two weight registers (columns 0-7 and 8-15): a panel's nibbles,
// expanded here (few rows: the weights stream from memory once), or the bytes a chunk's
// expansion left (more rows: expanding in every tile would cost three operations per four
// products).
struct Nibbles256 {
  const uint8_t* panel;
  void load(int64_t g, __m256i (&w)[2]) const {
    const __m256i nibble = _mm256_set1_epi8(0x0f);
    const __m256i packed = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + g * kNibbleGroupBytes));
    w[0] = _mm256_and_si256(packed, nibble);
    w[1] = _mm256_and_si256(_mm256_srli_epi16(packed, 4), nibble);
  }
};
struct Bytes256 {
  const uint8_t* bytes;
  int64_t g0;  // the first group expanded
  void load(int64_t g, __m256i (&w)[2]) const {
    w[0] = _mm256_load_si256(reinterpret_cast<const __m256i*>(bytes + (g - g0) * 64));
    w[1] = _mm256_load_si256(reinterpret_cast<const __m256i*>(bytes + (g - g0) * 64 + 32));
  }
};

// Blocks [b0, b1) of rows [m, m + R) x one panel: the float sums, row r's 16 at acc + r * 16,
// are read into registers, take each block's int32 sums (from the row's -8 * block sum) times
// the block's scales, and are written back.
template <class Dot, int R, class Source>
void tile_256(const BlockwiseCall& call, int64_t m, const Source& w_at, int64_t b0, int64_t b1,
              const float* panel_scales, float* acc_io) {
  const PackedBlockB& B = *call.b;
  const int64_t groups_per_block = B.block / 4;
  __m256 acc[R][2];
  for (int r = 0; r < R; ++r)
    for (int h = 0; h < 2; ++h) acc[r][h] = _mm256_load_ps(acc_io + r * kBlockPanelCols + 8 * h);
  for (int64_t b = b0; b < b1; ++b) {
    __m256i sum[R][2];
    for (int r = 0; r < R; ++r)
      sum[r][0] = sum[r][1] = _mm256_set1_epi32(call.block_bias[(m + r) * B.blocks + b]);
#pragma GCC unroll 4
    for (int64_t g = b * groups_per_block; g < (b + 1) * groups_per_block; ++g) {
      __m256i w[2];
      w_at.load(g, w);
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
    for (int h = 0; h < 2; ++h) _mm256_store_ps(acc_io + r * kBlockPanelCols + 8 * h, acc[r][h]);
}

// Few rows: 2-row tiles on the nibbles.  From 16 rows: each panel's nibbles expanded once per
// chunk of K into `bytes` (per group, the low and the high nibbles' 32 bytes), then 3-row tiles
// read them, the float sums waiting in a buffer between chunks.
constexpr int kRowsBytes256 = 3;  // 6 sums + 6 float sums + 2 weights + 1 row: 15 ymm
constexpr int64_t kChunkGroups256 = 256;  // 16 KB of expanded bytes a panel: L1
constexpr int64_t kMinRowsBytes256 = 16;  // measured: 4 and 8 rows are faster on the 2-row tiles

template <class Dot>
void blockwise_256(const BlockwiseCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const PackedBlockB& B = *call.b;
  if (m1 - m0 < kMinRowsBytes256) {
    const TileSplit split(m1 - m0, kRows256);
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t m = m0, t = 0; m < m1; m += split.rows(t), ++t) {
        alignas(32) float acc[kRows256 * kBlockPanelCols] = {};
        const Nibbles256 nibbles{B.panel(p)};
        if (split.rows(t) == 2)
          tile_256<Dot, 2>(call, m, nibbles, 0, B.blocks, B.panel_scales(p), acc);
        else
          tile_256<Dot, 1>(call, m, nibbles, 0, B.blocks, B.panel_scales(p), acc);
        store_rows_256(call, m, split.rows(t), p, acc);
      }
    return;
  }
  const int64_t chunk_blocks = std::max<int64_t>(1, kChunkGroups256 / (B.block / 4));
  thread_local AlignedBuffer<uint8_t> byte_buffer;
  thread_local AlignedBuffer<float> partial_buffer;
  byte_buffer.reserve_discard(static_cast<size_t>(chunk_blocks * B.block / 4 * 64));
  partial_buffer.reserve_discard(static_cast<size_t>((m1 - m0) * kBlockPanelCols));
  uint8_t* const bytes = byte_buffer.data();  // (each thread_local access is a call)
  float* const partial = partial_buffer.data();
  const TileSplit split(m1 - m0, kRowsBytes256);
  for (int64_t p = p0; p < p1; ++p) {
    std::fill_n(partial, (m1 - m0) * kBlockPanelCols, 0.0f);
    for (int64_t b0 = 0; b0 < B.blocks; b0 += chunk_blocks) {
      const int64_t b1 = std::min(B.blocks, b0 + chunk_blocks), g0 = b0 * B.block / 4, g1 = b1 * B.block / 4;
      const Nibbles256 nibbles{B.panel(p)};
      for (int64_t g = g0; g < g1; ++g) {
        __m256i w[2];
        nibbles.load(g, w);
        _mm256_store_si256(reinterpret_cast<__m256i*>(bytes + (g - g0) * 64), w[0]);
        _mm256_store_si256(reinterpret_cast<__m256i*>(bytes + (g - g0) * 64 + 32), w[1]);
      }
      const Bytes256 expanded{bytes, g0};
      for (int64_t m = m0, t = 0; m < m1; m += split.rows(t), ++t) {
        float* acc = partial + (m - m0) * kBlockPanelCols;
        switch (split.rows(t)) {
          case 3: tile_256<Dot, 3>(call, m, expanded, b0, b1, B.panel_scales(p), acc); break;
          case 2: tile_256<Dot, 2>(call, m, expanded, b0, b1, B.panel_scales(p), acc); break;
          default: tile_256<Dot, 1>(call, m, expanded, b0, b1, B.panel_scales(p), acc); break;
        }
      }
    }
    store_rows_256(call, m0, m1 - m0, p, partial);
  }
}

}  // namespace
}  // namespace eb
