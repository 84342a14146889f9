// Kernel layer: the float32 GEMM of eightbit/sgemm.h, the blocking shared by
// every ISA unit (each brings its register tile).  Blocking only groups
// outputs: every output keeps its one fma chain in k order (see sgemm.h), so
// the result has the same bits whatever the tile, the blocks or the threads.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "eightbit/sgemm.h"

namespace eb {
namespace {  // internal linkage: see kernels/depthwise.h

// One register tile's work: rows x cols outputs over k in [k0, k0 + kc).
struct SgemmTile {
  const float* a;  // row 0, column k0; row stride lda, or packed: A(r, k) at a[k * rows + r]
  int64_t lda;
  bool a_packed;
  const float* b;  // row k0, the tile's first column; row stride ldb
  int64_t ldb;
  int64_t kc;
  float* c;  // row 0, the tile's first column; row stride ldc
  int64_t ldc;
  int cols;            // valid columns (<= the tile's width); the rest is neither read nor written
  bool first, last;    // first: start from +0, else from c's partial sums; last: bias and clamp
  const float* bias_row;  // the tile's rows' bias, or null
  const float* bias_col;  // the tile's columns' bias, or null
  float lo, hi;
};

// Packs rows [m, m + rows) x columns [k0, k0 + kc) of A tile by tile (kMr rows each, the last
// one shorter): A(r, k) of a tile at dst[k * tile_rows + r].  One pointer then walks a tile.
template <int kMr>
void sgemm_pack_a(const float* a, int64_t lda, int64_t rows, int64_t kc, float* dst) {
  for (int64_t m = 0; m < rows; m += kMr) {
    const int64_t r_n = std::min<int64_t>(kMr, rows - m);
    for (int64_t r = 0; r < r_n; ++r) {
      const float* src = a + (m + r) * lda;
      for (int64_t k = 0; k < kc; ++k) dst[k * r_n + r] = src[k];
    }
    dst += r_n * kc;
  }
}

// The blocking, for a tile of kMr rows x kNr columns (kNr divides the panel): for each block of
// kMc rows, each block of at most kKc k (K split evenly): each tile column of each panel, each row tile.  The row block
// (kMc x kKc of A) stays in L2 while B's kKc x kNr slice of one panel stays in L1.  With kPackA,
// A's row block is first copied tile by tile into contiguous memory when enough columns reuse it
// (no L1 set conflicts between A's rows, one pointer per tile).  tile(rows, t) runs one tile.
template <int kMr, int kNr, int64_t kKc, int64_t kMc, bool kPackA, typename TileFn>
void sgemm_blocked(const SgemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1, TileFn&& tile) {
  static_assert(kSgemmPanel % kNr == 0, "a tile's columns split the panel");
  // Packing pays where many columns reuse A and A's rows are long (their strides then alias in
  // L1); attention's small products (K = 32 .. 128) read A in place.
  constexpr int64_t kMinPackColumns = 96, kMinPackK = 256;
  const int64_t K = call.K;
  const int64_t k_blocks = std::max<int64_t>(1, (K + kKc - 1) / kKc);
  const int64_t k_step = std::max<int64_t>(1, (K + k_blocks - 1) / k_blocks);  // equal blocks: no thin last one
  const bool pack = kPackA && std::min(call.N, p1 * kSgemmPanel) - p0 * kSgemmPanel >= kMinPackColumns && K >= kMinPackK;
  float* const packed_a = pack ? sgemm_scratch(std::min(kMc, m1 - m0) * k_step) : nullptr;
  for (int64_t mb = m0; mb < m1; mb += kMc) {
    const int64_t me = std::min(m1, mb + kMc);
    for (int64_t k0 = 0; k0 < K || k0 == 0; k0 += k_step) {  // K == 0: one pass (bias and clamp only)
      const int64_t kc = std::min(k_step, K - k0);
      if (pack) sgemm_pack_a<kMr>(call.a + mb * call.lda + k0, call.lda, me - mb, kc, packed_a);
      for (int64_t p = p0; p < p1; ++p)
        for (int64_t n0 = p * kSgemmPanel; n0 < std::min(call.N, (p + 1) * kSgemmPanel); n0 += kNr) {
          SgemmTile t;
          t.lda = call.lda;
          t.a_packed = pack;
          t.b = call.b + p * call.b_panel_stride + k0 * call.ldb + (n0 - p * kSgemmPanel);
          t.ldb = call.ldb;
          t.kc = kc;
          t.ldc = call.ldc;
          t.cols = static_cast<int>(std::min<int64_t>(kNr, call.N - n0));
          t.first = k0 == 0;
          t.last = k0 + kc >= K;
          t.bias_col = call.bias != nullptr && !call.bias_per_row ? call.bias + n0 : nullptr;
          t.lo = call.lo;
          t.hi = call.hi;
          for (int64_t m = mb; m < me; m += kMr) {
            t.a = pack ? packed_a + (m - mb) * kc : call.a + m * call.lda + k0;
            t.c = call.c + m * call.ldc + n0;
            t.bias_row = call.bias != nullptr && call.bias_per_row ? call.bias + m : nullptr;
            tile(static_cast<int>(std::min<int64_t>(kMr, me - m)), t);
          }
        }
    }
  }
}

// Calls f(std::integral_constant<int, rows>) for rows in [1, kMax]: the tile's rows as a constant.
template <int kMax, typename F>
inline void sgemm_rows(int rows, F&& f) {
  if constexpr (kMax > 0) {
    if (rows == kMax) return f(std::integral_constant<int, kMax>{});
    sgemm_rows<kMax - 1>(rows, f);
  }
}

}  // namespace
}  // namespace eb
