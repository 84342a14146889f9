// Runtime layer: block-quantized low-bit linear layers (see blockwise.h).
#include "runtime/blockwise.h"

#include <algorithm>
#include <cstring>

#include "eightbit/cnn_ops.h"
#include "runtime/dispatch.h"
#include "runtime/thread_pool.h"

namespace eb {
namespace {

constexpr int64_t kBlockRows = 64;
constexpr int64_t kBlockPanels = 4;
constexpr int64_t kMinMacsPerThread = int64_t{1} << 20;

}  // namespace

PackedBlockB pack_blockwise(const int8_t* codes, const float* scales, int64_t N, int64_t K, int64_t block) {
  PackedBlockB p;
  p.K = K;
  p.N = N;
  p.block = block;
  p.blocks = K / block;
  p.Np = (N + kBlockPanelCols - 1) / kBlockPanelCols * kBlockPanelCols;
  const int64_t panels = p.Np / kBlockPanelCols, groups = K / 4;
  p.nibbles.reserve_discard(static_cast<size_t>(std::max<int64_t>(panels * groups * kNibbleGroupBytes, 1)));
  p.scales.reserve_discard(static_cast<size_t>(std::max<int64_t>(panels * p.blocks * kBlockPanelCols, 1)));
  for (int64_t pn = 0; pn < panels; ++pn) {
    uint8_t* out = p.nibbles.data() + pn * groups * kNibbleGroupBytes;
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t i = 0; i < kNibbleGroupBytes; ++i) {
        // Low nibble: column i / 4, high: column 8 + i / 4; k = 4 g + i % 4; u = q + 8 (padding: q = 0).
        const int64_t k = 4 * g + i % 4, lo_n = pn * kBlockPanelCols + i / 4, hi_n = lo_n + 8;
        const int lo = lo_n < N ? codes[lo_n * K + k] + 8 : 8, hi = hi_n < N ? codes[hi_n * K + k] + 8 : 8;
        out[g * kNibbleGroupBytes + i] = static_cast<uint8_t>(lo | (hi << 4));
      }
    float* s = p.scales.data() + pn * p.blocks * kBlockPanelCols;
    for (int64_t b = 0; b < p.blocks; ++b)
      for (int64_t c = 0; c < kBlockPanelCols; ++c) {
        const int64_t n = pn * kBlockPanelCols + c;
        s[b * kBlockPanelCols + c] = n < N ? scales[n * p.blocks + b] : 0.0f;
      }
  }
  return p;
}

bool quantize_rows_symmetric(const float* x, int64_t M, int64_t K, int64_t ldq, int8_t* q, float* scale) {
  const CnnKernels& k = active_cnn();
  const OutputRange codes{-127.0f, 127.0f, true};
  for (int64_t m = 0; m < M; ++m) {
    const float* row = x + m * K;
    float mn = 0.0f, mx = 0.0f;  // max |x| = max(-min(0, x), max(0, x)), exactly, in any order
    if (!k.range(row, K, &mn, &mx)) return false;
    const float quotient = std::max(-mn, mx) / 127.0f;
    const float s = quotient != 0.0f ? quotient : 1.0f;  // a zero row, or a subnormal max that underflows
    scale[m] = s;
    // clamp(rint(x / s), -127, 127) with the correctly rounded quotient; |x| <= 127 s (1 + 2^-23)
    // is within quantize_bounded's |x| <= 256 s.
    k.quantize_bounded(row, K, s, 0, codes, q + m * ldq);
  }
  return true;
}

bool blockwise_linear(const float* x, int64_t M, const PackedBlockB& b, const float* bias, bool relu, float* y) {
  if (M == 0 || b.N == 0) return true;
  thread_local AlignedBuffer<int8_t> xq;
  thread_local AlignedBuffer<float> x_scale;
  thread_local AlignedBuffer<int32_t> block_bias;
  // Rows 64 bytes longer than K: a row stride that is a power of two would put the rows a tile
  // reads into a few L1 sets.
  const int64_t lda = b.K + 64;
  xq.reserve_discard(static_cast<size_t>(M * lda));
  x_scale.reserve_discard(static_cast<size_t>(M));
  block_bias.reserve_discard(static_cast<size_t>(M * b.blocks));
  if (!quantize_rows_symmetric(x, M, b.K, lda, xq.data(), x_scale.data())) return false;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t blk = 0; blk < b.blocks; ++blk) {
      int32_t sum = 0;
      for (int64_t k = blk * b.block; k < (blk + 1) * b.block; ++k) sum += xq[m * lda + k];
      block_bias[m * b.blocks + blk] = -8 * sum;
    }
  BlockwiseCall call;
  call.xq = xq.data();
  call.lda = lda;
  call.x_scale = x_scale.data();
  call.block_bias = block_bias.data();
  call.b = &b;
  call.bias = bias;
  call.relu = relu;
  call.y = y;
  call.ldy = b.N;
  const BlockwiseFn kernel = active_blockwise();
  const int64_t panels = b.Np / kBlockPanelCols;
  const int64_t row_blocks = (M + kBlockRows - 1) / kBlockRows, panel_blocks = (panels + kBlockPanels - 1) / kBlockPanels;
  const int64_t blocks = row_blocks * panel_blocks;
  auto run_range = [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) {  // panel-block major: a thread's blocks share weights
      const int64_t m0 = i % row_blocks * kBlockRows, p0 = i / row_blocks * kBlockPanels;
      kernel(call, m0, std::min(M, m0 + kBlockRows), p0, std::min(panels, p0 + kBlockPanels));
    }
  };
  const int threads = static_cast<int>(std::clamp<int64_t>(std::min(M * b.Np * b.K / kMinMacsPerThread, blocks), 1,
                                                           ThreadPool::instance().num_threads()));
  if (threads <= 1)
    run_range(0, blocks);
  else
    ThreadPool::instance().run(threads, [&](int t) { run_range(blocks * t / threads, blocks * (t + 1) / threads); });
  return true;
}

}  // namespace eb
