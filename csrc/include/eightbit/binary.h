// Kernel layer interface: binary (1-bit) GEMM.  Operands are vectors of +-1
// stored as sign bits, 64 per uint64 word along K, least significant bit
// first: bit set = -1, clear = +1, bits past K zero.  For rows a, b of K
// signs (eightbit.reference.binary):
//
//   dot(a, b) = sum_k a[k] * b[k] = K - 2 * popcount(a XOR b)
//
// summed over the words (the zero padding XORs to zero).  Integer and exact;
// the kernels only choose how to count bits.
#pragma once

#include <cstdint>

#include "eightbit/aligned_buffer.h"

namespace eb {

// B (the weights, N rows of K signs) in panels of 8 columns: panel p holds, for each word w,
// the 8 columns' words side by side (64 bytes), so one 512-bit load covers 8 outputs' words.
// N is padded to a multiple of 8 with zero words.
constexpr int kBinaryPanelCols = 8;

struct PackedBinaryB {
  int64_t K = 0, N = 0;  // signs per row, rows
  int64_t words = 0;     // ceil(K / 64)
  int64_t Np = 0;        // N rounded up to kBinaryPanelCols
  AlignedBuffer<uint64_t> data;  // (Np / 8) panels x words x 8

  const uint64_t* panel(int64_t p) const { return data.data() + p * words * kBinaryPanelCols; }
};

// C[m][n] = dot(A row m, B column n) for rows [m0, m1) and panels [p0, p1),
// K words [w0, w1) of each row.  A row m is a + m * lda (words).  With
// w0 > 0 the kernel adds to the popcounts already in C (a previous chunk of
// K); when w1 == words it turns the popcounts into dot products.
struct BinaryGemmCall {
  const uint64_t* a = nullptr;
  int64_t lda = 0;
  const PackedBinaryB* b = nullptr;
  int32_t* c = nullptr;
  int64_t ldc = 0;
};
using BinaryGemmFn = void (*)(const BinaryGemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1,
                              int64_t w0, int64_t w1);

// One row of n floats to ceil(n / 64) sign words: bit = x[k] < threshold[per_column ? k : 0]
// (an ordered compare: -0.0 gives +1), bits past n zero.
using PackSignsFn = void (*)(const float* x, int64_t n, const float* threshold, bool per_column, uint64_t* bits);

struct BinaryKernels {
  BinaryGemmFn gemm = nullptr;
  PackSignsFn pack_signs = nullptr;
  const char* name = "";  // how it counts bits (eightbit info)
};

BinaryKernels binary_kernels_scalar();
BinaryKernels binary_kernels_avx2();
BinaryKernels binary_kernels_avx512();  // needs AVX512_VPOPCNTDQ

}  // namespace eb
