// Kernel layer, AVX-VNNI (VEX-encoded vpdpbusd on 256-bit registers): u8 x s8
// GEMM micro-kernels over the k4n16 packed B.  A panel's 64-byte line is two
// ymm of 8 columns x 4 k.  Tile: up to 6 rows x 1 panel = 12 ymm
// accumulators + 2 B + 1 A of the 16 ymm registers; few rows take 2 panels
// so that at least 4 accumulator chains are in flight.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "kernels/epilogue.h"

namespace eb {
namespace {

constexpr int kMR = 6;

inline __m256i broadcast_a(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm256_set1_epi32(v);
}

template <int MR, int NP>
void ukernel(int64_t groups, const uint8_t* a, int64_t lda, const int8_t* b, int64_t bstride, int32_t* tile) {
  constexpr int V = 2 * NP;  // ymm vectors per row
  __m256i acc[MR][V];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < V; ++j) acc[r][j] = _mm256_setzero_si256();
  for (int64_t g = 0; g < groups; ++g) {
    __m256i bv[V];
    for (int j = 0; j < V; ++j)
      bv[j] = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + (j / 2) * bstride + g * kPanelGroupBytes +
                                                                 (j % 2) * 32));
    for (int r = 0; r < MR; ++r) {
      const __m256i av = broadcast_a(a + r * lda + g * kKGroup);
      for (int j = 0; j < V; ++j) acc[r][j] = _mm256_dpbusd_avx_epi32(acc[r][j], av, bv[j]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < V; ++j)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(tile + r * NP * kPanelCols + j * 8), acc[r][j]);
}

using UkernelFn = void (*)(int64_t, const uint8_t*, int64_t, const int8_t*, int64_t, int32_t*);

template <int NP, int... R>
constexpr auto make_table(std::integer_sequence<int, R...>) {
  return std::array<UkernelFn, sizeof...(R)>{ukernel<R + 1, NP>...};
}

const auto kTable1 = make_table<1>(std::make_integer_sequence<int, kMR>{});
const auto kTable2 = make_table<2>(std::make_integer_sequence<int, 3>{});

void block_avxvnni(const GemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const PackedB& B = *call.b;
  const int64_t groups = B.Kp / kKGroup;
  const int64_t bstride = B.panel_stride();
  alignas(64) int32_t tile[kMR * 2 * kPanelCols];
  for (int64_t m = m0; m < m1; m += kMR) {
    const int rows = static_cast<int>(std::min<int64_t>(kMR, m1 - m));
    const uint8_t* a = call.a + m * call.lda;
    for (int64_t p = p0; p < p1;) {
      const int np = (rows <= 3 && p1 - p >= 2) ? 2 : 1;
      if (np == 2)
        kTable2[rows - 1](groups, a, call.lda, B.panel(p), bstride, tile);
      else
        kTable1[rows - 1](groups, a, call.lda, B.panel(p), bstride, tile);
      const int64_t n0 = p * kPanelCols;
      const int cols = static_cast<int>(std::min<int64_t>(np * kPanelCols, B.N - n0));
      apply_epilogue(call.ep, tile, np * kPanelCols, m, rows, n0, cols);
      p += np;
    }
  }
}

}  // namespace

GemmKernel gemm_kernel_avxvnni() { return {"avxvnni", false, kMR, block_avxvnni}; }

}  // namespace eb
