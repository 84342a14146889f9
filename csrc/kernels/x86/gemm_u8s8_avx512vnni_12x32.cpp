// Kernel layer, AVX-512 VNNI: u8 x s8 GEMM micro-kernels over the k4n16
// packed B.  One `vpdpbusd` multiplies 64 byte pairs and adds them, 4 at a
// time, into 16 int32 lanes with no intermediate saturation, so it is exact.
//
// Tile: up to 12 rows x 2 panels (32 columns) = 24 zmm accumulators, 2 zmm of
// B and one broadcast of A: 27 of 32 registers.  Per group of 4 k it issues
// 2 B loads + 12 broadcasts for 24 vpdpbusd, so two VNNI ports stay busy with
// loads to spare.  Few rows (GEMV-like calls) use 4 panels instead, so that at
// least 4 independent accumulator chains hide the 4-5 cycle latency.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "kernels/epilogue.h"

namespace eb {
namespace {

constexpr int kMR = 12;

inline __m512i broadcast_a(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm512_set1_epi32(v);
}

// Raw sums S for MR rows x NP panels, stored to tile (row stride NP * 16).
template <int MR, int NP>
void ukernel(int64_t groups, const uint8_t* a, int64_t lda, const int8_t* b, int64_t bstride, int32_t* tile) {
  __m512i acc[MR][NP];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NP; ++j) acc[r][j] = _mm512_setzero_si512();
  for (int64_t g = 0; g < groups; ++g) {
    __m512i bv[NP];
    for (int j = 0; j < NP; ++j) bv[j] = _mm512_load_si512(b + j * bstride + g * kPanelGroupBytes);
    for (int r = 0; r < MR; ++r) {
      const __m512i av = broadcast_a(a + r * lda + g * kKGroup);
      for (int j = 0; j < NP; ++j) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], av, bv[j]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NP; ++j) _mm512_storeu_si512(tile + r * NP * kPanelCols + j * kPanelCols, acc[r][j]);
}

using UkernelFn = void (*)(int64_t, const uint8_t*, int64_t, const int8_t*, int64_t, int32_t*);

template <int NP, int... R>
constexpr auto make_table(std::integer_sequence<int, R...>) {
  return std::array<UkernelFn, sizeof...(R)>{ukernel<R + 1, NP>...};
}

const auto kTable1 = make_table<1>(std::make_integer_sequence<int, kMR>{});
const auto kTable2 = make_table<2>(std::make_integer_sequence<int, kMR>{});
const auto kTable4 = make_table<4>(std::make_integer_sequence<int, 3>{});

void block_avx512vnni(const GemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const PackedB& B = *call.b;
  const int64_t groups = B.Kp / kKGroup;
  const int64_t bstride = B.panel_stride();
  alignas(64) int32_t tile[kMR * 4 * kPanelCols];
  for (int64_t m = m0; m < m1; m += kMR) {
    const int rows = static_cast<int>(std::min<int64_t>(kMR, m1 - m));
    const uint8_t* a = call.a + m * call.lda;
    int64_t p = p0;
    while (p < p1) {
      const int64_t left = p1 - p;
      int np;
      if (rows <= 3 && left >= 4) {
        np = 4;
        kTable4[rows - 1](groups, a, call.lda, B.panel(p), bstride, tile);
      } else if (left >= 2) {
        np = 2;
        kTable2[rows - 1](groups, a, call.lda, B.panel(p), bstride, tile);
      } else {
        np = 1;
        kTable1[rows - 1](groups, a, call.lda, B.panel(p), bstride, tile);
      }
      const int64_t n0 = p * kPanelCols;
      const int cols = static_cast<int>(std::min<int64_t>(np * kPanelCols, B.N - n0));
      apply_epilogue(call.ep, tile, np * kPanelCols, m, rows, n0, cols);
      p += np;
    }
  }
}

}  // namespace

GemmKernel gemm_kernel_avx512vnni() { return {"avx512vnni", false, kMR, block_avx512vnni}; }

}  // namespace eb
