// Kernel layer, AVX-512 VNNI: block-quantized low-bit linear layer.  A tile keeps R rows x P
// panels of 16 columns: per block, int32 sums that start at the row's -8 * block sum, and
// float32 accumulators that take float(sum) * scale once per block, in block order.  Per group of
// 4 k, a panel's 32 bytes of nibbles are broadcast to both halves of a zmm, the high half
// shifted right by 4, both masked to a nibble: the k4n16 bytes u = q + 8 that vpdpbusd
// multiplies (unsigned) by the rows' broadcast int8 activations (signed).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "eightbit/blockwise.h"
#include "kernels/blockwise_512.h"
#include "kernels/tile_split.h"

namespace eb {
namespace {

// Where a tile reads its weights: the packed nibbles, expanded in registers (few rows: the
// weights stream from memory once), or, for more rows, the bytes that the first row tile of a K
// chunk expanded (expanding in every tile would cost as much as the products).
struct NibbleSource {
  const uint8_t* panel;
  int64_t stride;  // bytes between panels
  __m512i load(int j, int64_t g) const { return expand(panel + j * stride + g * kNibbleGroupBytes); }
};
struct ByteSource {
  const uint8_t* panel;
  int64_t stride;
  int64_t g0;  // the first group expanded
  __m512i load(int j, int64_t g) const { return _mm512_load_si512(panel + j * stride + (g - g0) * 64); }
};
// The first row tile of a K chunk expands the nibbles and leaves the bytes for the others: the
// weights then stream from memory while that tile's products run.
struct ExpandingSource {
  NibbleSource nibbles;
  uint8_t* bytes;
  int64_t stride;
  int64_t g0;
  __m512i load(int j, int64_t g) const {
    const __m512i w = nibbles.load(j, g);
    _mm512_store_si512(bytes + j * stride + (g - g0) * 64, w);
    return w;
  }
};

// Blocks [b0, b1) of rows [m, m + R) x panels [p, p + P): the int32 sums of each block, then the
// float accumulators.  Those live in registers for the few-rows tiles (Source = NibbleSource,
// all of K in one call) and in `partial` for the others (ldp floats per row, the tile's first
// column at column 0, kept between K chunks): there the registers go to more rows.  The call with
// the last block writes y.
template <int R, int P, class Source>
void tile(const BlockwiseCall& call, int64_t m, int64_t p, const Source& w_at, int64_t b0, int64_t b1, float* partial,
          int64_t ldp) {
  constexpr bool kInMemory = !std::is_same<Source, NibbleSource>::value;
  const PackedBlockB& B = *call.b;
  const int64_t groups_per_block = B.block / 4;
  __m512 acc[kInMemory ? 1 : R][P];
  auto acc_at = [&](int r, int j) -> __m512 {
    return kInMemory ? _mm512_load_ps(partial + r * ldp + j * kBlockPanelCols) : acc[kInMemory ? 0 : r][j];
  };
  auto set_acc = [&](int r, int j, __m512 v) {
    if (kInMemory)
      _mm512_store_ps(partial + r * ldp + j * kBlockPanelCols, v);
    else
      acc[kInMemory ? 0 : r][j] = v;
  };
  if (b0 == 0)
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < P; ++j) set_acc(r, j, _mm512_setzero_ps());
  for (int64_t b = b0; b < b1; ++b) {
    __m512i sum[R][P];
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < P; ++j) sum[r][j] = _mm512_set1_epi32(call.block_bias[(m + r) * B.blocks + b]);
    // Unrolled: GCC then keeps the sums in place instead of copying them around the back edge.
#pragma GCC unroll 8
    for (int64_t g = b * groups_per_block; g < (b + 1) * groups_per_block; ++g) {
      __m512i w[P];
      for (int j = 0; j < P; ++j) w[j] = w_at.load(j, g);
      for (int r = 0; r < R; ++r) {
        int32_t four;
        __builtin_memcpy(&four, call.xq + (m + r) * call.lda + g * 4, 4);
        const __m512i a = _mm512_set1_epi32(four);
        for (int j = 0; j < P; ++j) sum[r][j] = _mm512_dpbusd_epi32(sum[r][j], w[j], a);
      }
    }
    for (int j = 0; j < P; ++j) {
      const __m512 scale = _mm512_load_ps(B.panel_scales(p + j) + b * kBlockPanelCols);
      for (int r = 0; r < R; ++r)
        set_acc(r, j, _mm512_add_ps(acc_at(r, j), _mm512_mul_ps(_mm512_cvtepi32_ps(sum[r][j]), scale)));
    }
  }
  if (b1 < B.blocks) return;
  for (int r = 0; r < R; ++r) {
    const __m512 xs = _mm512_set1_ps(call.x_scale[m + r]);
    for (int j = 0; j < P; ++j) {
      const int64_t n0 = (p + j) * kBlockPanelCols;
      const int64_t cols = std::min<int64_t>(kBlockPanelCols, B.N - n0);
      const __mmask16 mask = static_cast<__mmask16>((1u << cols) - 1u);
      __m512 y = _mm512_mul_ps(acc_at(r, j), xs);
      if (call.bias != nullptr) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(mask, call.bias + n0));
      if (call.relu) y = _mm512_max_ps(y, _mm512_setzero_ps());
      _mm512_mask_storeu_ps(call.y + (m + r) * call.ldy + n0, mask, y);
    }
  }
}

// Few rows: up to 2 rows x 4 panels, nibbles expanded in registers (4 sum chains per row).
constexpr int kFewRows = 2, kFewPanels = 4;
// More rows: up to 8 rows x 2 panels over the expanded bytes (16 sums in registers).
constexpr int kRows = 8, kPanels = 2;
constexpr int64_t kChunkBytes = 24 * 1024;  // expanded weights per K chunk (of a 32-48 KB L1D)

template <class Source>
using TileFn = void (*)(const BlockwiseCall&, int64_t, int64_t, const Source&, int64_t, int64_t, float*, int64_t);

template <class Source, int R, int... P>
constexpr auto tiles_of_height(std::integer_sequence<int, P...>) {
  return std::array<TileFn<Source>, sizeof...(P)>{tile<R, P + 1, Source>...};
}
template <class Source, int Panels, int... R>
constexpr auto all_tiles(std::integer_sequence<int, R...>) {
  return std::array<std::array<TileFn<Source>, Panels>, sizeof...(R)>{
      tiles_of_height<Source, R + 1>(std::make_integer_sequence<int, Panels>{})...};
}
constexpr auto kFewTiles = all_tiles<NibbleSource, kFewPanels>(std::make_integer_sequence<int, kFewRows>{});
constexpr auto kTiles = all_tiles<ByteSource, kPanels>(std::make_integer_sequence<int, kRows>{});
constexpr auto kFirstTiles = all_tiles<ExpandingSource, kPanels>(std::make_integer_sequence<int, kRows>{});

void blockwise_avx512(const BlockwiseCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const PackedBlockB& B = *call.b;
  const int64_t groups = B.K / 4, nibble_stride = groups * kNibbleGroupBytes;
  if (m1 - m0 <= kFewRows) {
    for (int64_t p = p0; p < p1; p += kFewPanels) {
      const int np = static_cast<int>(std::min<int64_t>(kFewPanels, p1 - p));
      kFewTiles[m1 - m0 - 1][np - 1](call, m0, p, NibbleSource{B.panel(p), nibble_stride}, 0, B.blocks, nullptr, 0);
    }
    return;
  }
  // K in chunks of whole blocks whose expanded bytes (64 per group and panel) stay in L1 while
  // every row tile passes; the float sums wait in `partial` between chunks.
  const int64_t chunk_blocks = std::max<int64_t>(1, kChunkBytes / ((p1 - p0) * 16 * B.block));
  const int64_t ldp = (p1 - p0) * kBlockPanelCols;
  thread_local AlignedBuffer<uint8_t> bytes;
  thread_local AlignedBuffer<float> partial;
  bytes.reserve_discard(static_cast<size_t>((p1 - p0) * chunk_blocks * B.block * 16));
  partial.reserve_discard(static_cast<size_t>((m1 - m0) * ldp));
  const TileSplit split(m1 - m0, kRows);
  for (int64_t b0 = 0; b0 < B.blocks; b0 += chunk_blocks) {
    const int64_t b1 = std::min(B.blocks, b0 + chunk_blocks);
    const int64_t g0 = b0 * B.block / 4, g1 = b1 * B.block / 4, byte_stride = (g1 - g0) * 64;
    for (int64_t p = p0; p < p1; p += kPanels) {
      const int np = static_cast<int>(std::min<int64_t>(kPanels, p1 - p));
      uint8_t* chunk = bytes.data() + (p - p0) * byte_stride;
      const ExpandingSource first{{B.panel(p), nibble_stride}, chunk, byte_stride, g0};
      const ByteSource others{chunk, byte_stride, g0};
      for (int64_t m = m0, t = 0; m < m1; m += split.rows(t), ++t) {
        float* tile_partial = partial.data() + (m - m0) * ldp + (p - p0) * kBlockPanelCols;
        if (t == 0)
          kFirstTiles[split.rows(t) - 1][np - 1](call, m, p, first, b0, b1, tile_partial, ldp);
        else
          kTiles[split.rows(t) - 1][np - 1](call, m, p, others, b0, b1, tile_partial, ldp);
      }
    }
  }
}

}  // namespace

BlockwiseFn blockwise_kernel_avx512() { return blockwise_avx512; }

}  // namespace eb
