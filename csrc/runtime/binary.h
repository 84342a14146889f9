// Runtime layer: binary (+-1) GEMM on validated operands (eightbit/binary.h
// says how signs are stored).  Packs B once, splits a call into blocks over
// the thread pool and K into chunks whose B stays in L1, and runs the active
// ISA's kernel.
#pragma once

#include <cstdint>

#include <vector>

#include "eightbit/binary.h"
#include "eightbit/conv.h"

namespace eb {

// bits: N rows of `words` uint64 (ldb words apart) holding K signs, every other bit zero (words is
// ceil(K / 64) for a plain row; a convolution's rows hold C signs in each tap's words).
PackedBinaryB pack_binary_b(const uint64_t* bits, int64_t ldb, int64_t N, int64_t K, int64_t words);

// c[m][n] = dot(a row m, b row n) for a [M rows, lda words apart] of b.K signs each (bits past K
// zero); c has ldc int32 between rows.
void binary_gemm(const uint64_t* a, int64_t M, int64_t lda, const PackedBinaryB& b, int32_t* c, int64_t ldc);

// Sign bits of x [rows, K] against a threshold (one, or one per column k): bit = x < threshold,
// into bits [rows, ceil(K / 64)] words, bits past K zero.
void pack_signs(const float* x, int64_t rows, int64_t K, const float* threshold, bool per_column, uint64_t* bits);

// A binary linear layer: y[r][n] = float(dot(signs of x row r, b row n)) * scale[n], then
// + bias[n] when bias is not null (two roundings, as eightbit.reference.binary.binary_linear).
void binary_linear(const float* x, int64_t rows, const float* threshold, bool per_column, const PackedBinaryB& b,
                   const float* scale, const float* bias, float* y);

// A binary convolution's weights: each output channel's row holds, tap by tap (kh, kw), the
// tap's C signs in channel_words words; tap_sums[t * out_c + o] = sum_c sign(w[o][c][t]), what a
// zero-padded tap must take back (its bits read as +1).
struct PackedBinaryConv {
  int64_t out_c = 0, in_c = 0, kernel_h = 0, kernel_w = 0, channel_words = 0;
  PackedBinaryB b;
  std::vector<int32_t> tap_sums;
};

// bits: [out_c][kernel_h * kernel_w][ceil(in_c / 64)] sign words, bits past in_c zero.
PackedBinaryConv pack_binary_conv(const uint64_t* bits, int64_t out_c, int64_t in_c, int64_t kernel_h,
                                  int64_t kernel_w);

// dots [batch * out_h * out_w][out_c] of the binary convolution of pixel_bits (NHWC pixels, each
// ceil(in_c / 64) sign words) with w; padded positions count 0 (zero_padding) or +1.
void binary_conv_dots(const ConvGeometry& g, const uint64_t* pixel_bits, const PackedBinaryConv& w,
                      bool zero_padding, int32_t* dots);

// Sign bits of quantized codes x [rows, C] (uint8, or int8 when is_signed): bit = the code's rank
// among the type's codes (0 for the lowest) < counts[c]; counts in [0, 256].
void pack_code_signs(const uint8_t* x, int64_t rows, int64_t C, bool is_signed, const int32_t* counts,
                     uint64_t* bits);

// y = float(dots) * scale[n], then + bias[n] when bias is not null (two roundings).
void scale_dots(const int32_t* dots, int64_t rows, int64_t n_cols, const float* scale, const float* bias, float* y);

// y NHWC [batch, out_h, out_w, out_c] = float(dot) * scale[o] (+ bias[o]) of the binary
// convolution of x NHWC float32 (signs: x < threshold, one or one per channel) with w; padded
// positions count 0 (zero_padding) or +1.  g: groups 1, checked (ConvGeometry::check).
void binary_conv2d(const ConvGeometry& g, const float* x, const float* threshold, bool per_channel,
                   const PackedBinaryConv& w, const float* scale, const float* bias, bool zero_padding, float* y);

}  // namespace eb
