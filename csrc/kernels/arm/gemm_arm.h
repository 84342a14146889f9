// Kernel layer, aarch64: the block loop shared by the NEON, dot-product and
// i8mm GEMM units (each includes this header with its own -march flags).
//
// Every unit's micro-kernel computes raw sums S = sum_k a[m][k] * b[k][n]
// (A unsigned, B signed, as gemm.h describes) for up to 4 rows x one panel of
// 16 columns straight from the shared k4n16 packed B, so that packing is the
// same on every ISA; the shared epilogue does the rest.
#pragma once

#include <arm_neon.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#include "kernels/epilogue.h"
#include "kernels/tile_split.h"

namespace eb {
namespace {  // internal linkage: compiled into units with different ISA flags

constexpr int kArmMR = 4;

// Calls f(std::integral_constant<int, 0>) ... f(..., N - 1>): lane indices of
// the by-element instructions must be compile-time constants.
template <typename F, int... I>
inline void unroll_impl(F&& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}
template <int N, typename F>
inline void unroll(F&& f) {
  unroll_impl(f, std::make_integer_sequence<int, N>{});
}

// S for `rows` rows (row r at a[r]; rows past `rows` repeat the last one) x
// the 16 columns of `panel`: tile[r * 16 + c].  col_sum: the panel's sum_k b.
using ArmTileFn = void (*)(int64_t groups, const uint8_t* const* a, const int8_t* panel, const int32_t* col_sum,
                           int32_t* tile);

// One tile function per height 1..4.
template <template <int> class Tile>
constexpr ArmTileFn kArmTiles[kArmMR] = {Tile<1>::run, Tile<2>::run, Tile<3>::run, Tile<4>::run};

template <template <int> class Tile>
void block_arm(const GemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const PackedB& B = *call.b;
  const int64_t groups = B.Kp / kKGroup;
  alignas(64) int32_t tile[kArmMR * kPanelCols];
  const TileSplit split(m1 - m0, kArmMR);
  for (int64_t m = m0, t = 0; m < m1; m += split.rows(t), ++t) {
    const int rows = split.rows(t);
    const uint8_t* a[kArmMR];
    for (int r = 0; r < kArmMR; ++r) a[r] = call.a + (m + std::min(r, rows - 1)) * call.lda;
    for (int64_t p = p0; p < p1; ++p) {
      kArmTiles<Tile>[rows - 1](groups, a, B.panel(p), B.col_sum.data() + p * kPanelCols, tile);
      const int64_t n0 = p * kPanelCols;
      apply_epilogue(call.ep, tile, kPanelCols, m, rows, n0, static_cast<int>(std::min<int64_t>(kPanelCols, B.N - n0)));
    }
  }
}

// 4 bytes (one K group of one row) into lane 0 of a vector, the rest zero.
inline uint8x16_t load_group(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return vreinterpretq_u8_u32(vsetq_lane_u32(v, vdupq_n_u32(0), 0));
}

}  // namespace
}  // namespace eb
