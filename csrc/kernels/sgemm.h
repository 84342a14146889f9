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
  const float* a;  // row 0, column k0; row stride lda
  int64_t lda;
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

// The blocking, for a tile of kMr rows x kNr columns (kNr divides the panel): for each block of
// kMc rows, each block of at most kKc k (K split evenly), each tile column of each panel, each
// row tile.  The row block (kMc x kKc of A) stays in L2 while B's kKc x kNr slice of one panel
// stays in L1 / L2.  A is read in place: packing its row blocks tile by tile (contiguous
// broadcasts) measured no faster with 384-deep K blocks.  tile(rows, t) runs one tile.
template <int kMr, int kNr, int64_t kKc, int64_t kMc, typename TileFn>
void sgemm_blocked(const SgemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1, TileFn&& tile) {
  static_assert(kSgemmPanel % kNr == 0, "a tile's columns split the panel");
  const int64_t K = call.K;
  const int64_t k_blocks = std::max<int64_t>(1, (K + kKc - 1) / kKc);
  const int64_t k_step = std::max<int64_t>(1, (K + k_blocks - 1) / k_blocks);  // equal blocks: no thin last one
  // Row blocks of equal size (whole tiles): a thin last block would stream all of B for a few rows.
  const int64_t m_blocks = std::max<int64_t>(1, (m1 - m0 + kMc - 1) / kMc);
  const int64_t m_step = ((m1 - m0 + m_blocks - 1) / m_blocks + kMr - 1) / kMr * kMr;
  for (int64_t mb = m0; mb < m1; mb += m_step) {
    const int64_t me = std::min(m1, mb + m_step);
    for (int64_t k0 = 0; k0 < K || k0 == 0; k0 += k_step) {  // K == 0: one pass (bias and clamp only)
      const int64_t kc = std::min(k_step, K - k0);
      for (int64_t p = p0; p < p1; ++p)
        for (int64_t n0 = p * kSgemmPanel; n0 < std::min(call.N, (p + 1) * kSgemmPanel); n0 += kNr) {
          SgemmTile t;
          t.lda = call.lda;
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
          // The next tile column's B slice, a share of its rows per row tile, fetched into L2 while
          // this one computes: weights come cold from L3 or memory, and few row tiles hide little.
          const float* next = nullptr;
          if (n0 + kNr < std::min(call.N, p1 * kSgemmPanel))
            next = (n0 + kNr) % kSgemmPanel == 0 ? t.b + call.b_panel_stride - (kSgemmPanel - kNr) : t.b + kNr;
          const int64_t tiles = (me - mb + kMr - 1) / kMr, share = (kc + tiles - 1) / tiles;
          int64_t fetched = 0;
          for (int64_t m = mb; m < me; m += kMr) {
            for (const int64_t end = std::min(kc, fetched + share); next != nullptr && fetched < end; ++fetched)
              for (int byte = 0; byte < kNr * 4; byte += 64)
                __builtin_prefetch(reinterpret_cast<const char*>(next + fetched * call.ldb) + byte, 0, 2);
            t.a = call.a + m * call.lda + k0;
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
