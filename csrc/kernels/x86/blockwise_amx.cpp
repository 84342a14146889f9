// Kernel layer, AMX-INT8: the block-quantized low-bit linear layer (blockwise.h) for 16 rows and
// more.  `tdpbssd` multiplies the rows' int8 activations by the codes q (the nibbles expanded to
// signed bytes in the k4n16 order, which is AMX's B layout) into 16 x 16 int32 tiles, one block
// of K at a time: a tile step covers min(block, 64) k, a larger block takes several steps into
// the same tiles.  The signed codes need no correction of the sums (the other kernels multiply
// u = q + 8 and start from -8 * the block's sum of x).  After each block its sums leave the
// tiles for the AVX-512 float steps of the spec, in block order: convert, times the block's
// scale, added to the running float sums.  The integers are exact and the float steps those of
// every kernel, so the bits are.  Rows past the last whole 16 go to the AVX-512 kernel.
//
// Tiles: tmm0-1 A (rows 0-15, 16-31 of a row pair), tmm2-3 B (two panels), tmm4-7 C (2 x 2).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "eightbit/blockwise.h"
#include "kernels/amx_tile_config.h"
#include "kernels/blockwise_512.h"

namespace eb {
namespace {

constexpr int kTileRows = 16;
constexpr int64_t kPrefetchBlocks = 2;

// A tiles 16 rows x kb bytes, B tiles kb / 4 groups x 64 bytes, C tiles 16 x 16 int32.
TileConfig config_for(int kb) {
  TileConfig c;
  for (int t = 0; t < 8; ++t) {
    c.colsb[t] = static_cast<uint16_t>(t < 2 ? kb : 64);
    c.rows[t] = static_cast<uint8_t>(t == 2 || t == 3 ? kb / 4 : kTileRows);
  }
  return c;
}

// One block of rows [m, m + 16 * RT) x panels [p, p + PT): the tiles' sums, then the float steps
// into `partial` (row r, panel j at r * ldp + j * 16).
template <int RT, int PT>
void block_tiles(const BlockwiseCall& call, int kb, const int8_t* a, int64_t a_step,
                 const int8_t* w, int64_t w_stride, const float* const* scales, float* partial, int64_t ldp) {
  const PackedBlockB& B = *call.b;
  const int64_t steps = B.block / kb;
  _tile_zero(4);
  if (PT == 2) _tile_zero(5);
  if (RT == 2) _tile_zero(6);
  if (RT == 2 && PT == 2) _tile_zero(7);
  for (int64_t s = 0; s < steps; ++s) {
    const int8_t* as = a + s * kb;
    const int8_t* ws = w + s * kb / 4 * 64;
    _tile_loadd(0, as, call.lda);
    _tile_loadd(2, ws, 64);
    _tile_dpbssd(4, 0, 2);
    if (PT == 2) {
      _tile_loadd(3, ws + w_stride, 64);
      _tile_dpbssd(5, 0, 3);
    }
    if (RT == 2) {
      _tile_loadd(1, as + a_step, call.lda);
      _tile_dpbssd(6, 1, 2);
      if (PT == 2) _tile_dpbssd(7, 1, 3);
    }
  }
  alignas(64) int32_t sums[2 * kTileRows][2 * 16];
  constexpr int64_t kStride = 2 * 16 * sizeof(int32_t);
  _tile_stored(4, &sums[0][0], kStride);
  if (PT == 2) _tile_stored(5, &sums[0][16], kStride);
  if (RT == 2) _tile_stored(6, &sums[kTileRows][0], kStride);
  if (RT == 2 && PT == 2) _tile_stored(7, &sums[kTileRows][16], kStride);
  for (int r = 0; r < RT * kTileRows; ++r) {
    for (int j = 0; j < PT; ++j) {
      const __m512 dot = _mm512_cvtepi32_ps(_mm512_load_si512(&sums[r][16 * j]));
      float* acc = partial + r * ldp + j * kBlockPanelCols;
      _mm512_store_ps(acc, _mm512_add_ps(_mm512_load_ps(acc), _mm512_mul_ps(dot, _mm512_load_ps(scales[j]))));
    }
  }
}

using BlockTilesFn = void (*)(const BlockwiseCall&, int, const int8_t*, int64_t, const int8_t*,
                              int64_t, const float* const*, float*, int64_t);
constexpr BlockTilesFn kBlockTiles[2][2] = {{block_tiles<1, 1>, block_tiles<1, 2>},
                                            {block_tiles<2, 1>, block_tiles<2, 2>}};

void blockwise_amx(const BlockwiseCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const int64_t whole = (m1 - m0) / kTileRows * kTileRows;
  if (whole < m1 - m0) blockwise_kernel_avx512()(call, m0 + whole, m1, p0, p1);
  if (whole == 0) return;
  const PackedBlockB& B = *call.b;
  const int kb = static_cast<int>(std::min<int64_t>(B.block, 64));
  const int64_t row_tiles = whole / kTileRows;
  const int64_t ldp = (p1 - p0) * kBlockPanelCols, block_groups = B.block / 4;
  thread_local AlignedBuffer<int8_t> byte_buffer;
  thread_local AlignedBuffer<float> partial_buffer;
  byte_buffer.reserve_discard(static_cast<size_t>(2 * block_groups * 64));
  partial_buffer.reserve_discard(static_cast<size_t>(whole * ldp));
  int8_t* const bytes = byte_buffer.data();
  float* const partial = partial_buffer.data();
  std::memset(partial, 0, static_cast<size_t>(whole * ldp) * sizeof(float));
  const TileConfig config = config_for(kb);
  _tile_loadconfig(&config);
  // Per panel pair and block: the block's codes expanded once (into L1), then every row tile
  // pair multiplies them.
  for (int64_t p = p0; p < p1; p += 2) {
    const int pt = p + 1 < p1 ? 2 : 1;
    for (int64_t b = 0; b < B.blocks; ++b) {
      expand_signed_groups(B, p, p + pt, b * block_groups, (b + 1) * block_groups, bytes, block_groups * 64);
      // The codes two blocks ahead start coming from memory now, while this block multiplies.
      if (b + kPrefetchBlocks < B.blocks)
        for (int j = 0; j < pt; ++j) {
          const char* ahead = reinterpret_cast<const char*>(B.panel(p + j)) + (b + kPrefetchBlocks) * block_groups * kNibbleGroupBytes;
          for (int64_t off = 0; off < block_groups * kNibbleGroupBytes; off += 64) _mm_prefetch(ahead + off, _MM_HINT_T0);
        }
      const float* scales[2] = {B.panel_scales(p) + b * kBlockPanelCols, B.panel_scales(p + pt - 1) + b * kBlockPanelCols};
      for (int64_t t = 0; t < row_tiles; t += 2) {
        const int rt = t + 1 < row_tiles ? 2 : 1;
        kBlockTiles[rt - 1][pt - 1](call, kb,
                                    call.xq + (m0 + t * kTileRows) * call.lda + b * B.block, kTileRows * call.lda,
                                    bytes, block_groups * 64, scales,
                                    partial + t * kTileRows * ldp + (p - p0) * kBlockPanelCols, ldp);
      }
    }
  }
  _tile_release();
  for (int64_t r = 0; r < whole; ++r) {  // y = acc * x_scale (+ bias) (relu), as every kernel
    const __m512 xs = _mm512_set1_ps(call.x_scale[m0 + r]);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n0 = p * kBlockPanelCols;
      const int64_t cols = std::min<int64_t>(kBlockPanelCols, B.N - n0);
      const __mmask16 mask = static_cast<__mmask16>((1u << cols) - 1u);
      __m512 y = _mm512_mul_ps(_mm512_load_ps(partial + r * ldp + (p - p0) * kBlockPanelCols), xs);
      if (call.bias != nullptr) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(mask, call.bias + n0));
      if (call.relu) y = _mm512_max_ps(y, _mm512_setzero_ps());
      _mm512_mask_storeu_ps(call.y + (m0 + r) * call.ldy + n0, mask, y);
    }
  }
}

}  // namespace

BlockwiseFn blockwise_kernel_amx() { return blockwise_amx; }

}  // namespace eb
