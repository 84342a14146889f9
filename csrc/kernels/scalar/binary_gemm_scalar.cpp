// Kernel layer, portable path: binary GEMM one output at a time (the C++ twin
// of eightbit.reference.binary, written for clarity; and the fallback where no
// vector kernel runs).
#include "eightbit/binary.h"

#include <algorithm>

namespace eb {
namespace {

int popcount64(uint64_t x) { return __builtin_popcountll(x); }

void binary_gemm_scalar(const BinaryGemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1, int64_t w0,
                        int64_t w1) {
  const PackedBinaryB& B = *call.b;
  const int64_t n1 = std::min<int64_t>(B.N, p1 * kBinaryPanelCols);
  for (int64_t m = m0; m < m1; ++m) {
    const uint64_t* a = call.a + m * call.lda;
    int32_t* c = call.c + m * call.ldc;
    for (int64_t n = p0 * kBinaryPanelCols; n < n1; ++n) {
      const uint64_t* b = B.panel(n / kBinaryPanelCols) + n % kBinaryPanelCols;
      int64_t count = w0 > 0 ? c[n] : 0;
      for (int64_t w = w0; w < w1; ++w) count += popcount64(a[w] ^ b[w * kBinaryPanelCols]);
      c[n] = static_cast<int32_t>(w1 == B.words ? B.K - 2 * count : count);
    }
  }
}

void pack_signs_scalar(const float* x, int64_t n, const float* threshold, bool per_column, uint64_t* bits) {
  for (int64_t k0 = 0; k0 < n; k0 += 64) {
    uint64_t word = 0;
    for (int64_t j = 0; j < std::min<int64_t>(64, n - k0); ++j)
      word |= static_cast<uint64_t>(x[k0 + j] < threshold[per_column ? k0 + j : 0]) << j;
    bits[k0 / 64] = word;
  }
}

}  // namespace

BinaryKernels binary_kernels_scalar() { return {binary_gemm_scalar, pack_signs_scalar, "scalar popcount"}; }

}  // namespace eb
