// Kernel layer: depthwise convolution with 256-bit u8 x s8 dot products, for
// the AVX-VNNI and AVX2 units (each includes this header with its flags).
//
// The AVX-512 VNNI kernel (x86/dwconv_u8s8_avx512vnni.cpp) split into two
// 256-bit halves: with int8 weights (PackedConv::dw_weights_i8) each dot
// multiplies 4 kernel rows of one kernel column for 8 channels.  One output
// row (a run of pixels) at a time: for every input column the run touches,
// 4 input rows' bytes of a 64-channel block are byte-interleaved once into
// [channel][4 rows] dwords, in the packed weights' order (unpacks work per
// 128-bit lane, so the zmm layout's lanes 0-1 and 2-3 are the two halves
// here), and every output pixel adds kernel_w of those columns times the
// weights.  Rows and columns outside the input read the zero point.  The
// sums are put back in channel order and requantized by the shared epilogue.
//
// `Dot` adds the 4-way u8 x s8 products of each dword to an int32 lane: VEX
// vpdpbusd, or on plain AVX2 an exact emulation (see DotAvx2).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/depthwise.h"

namespace eb {
namespace {  // internal linkage: compiled into units with different ISA flags

// x[h][k] lane l dword j: the 4 rows' bytes of channel 32 h + 16 l + 4 k + j of the block.
struct Column256 {
  __m256i x[2][4];
};

inline void interleave256(__m256i r0, __m256i r1, __m256i r2, __m256i r3, __m256i* x) {
  const __m256i lo01 = _mm256_unpacklo_epi8(r0, r1), hi01 = _mm256_unpackhi_epi8(r0, r1);
  const __m256i lo23 = _mm256_unpacklo_epi8(r2, r3), hi23 = _mm256_unpackhi_epi8(r2, r3);
  x[0] = _mm256_unpacklo_epi16(lo01, lo23);
  x[1] = _mm256_unpackhi_epi16(lo01, lo23);
  x[2] = _mm256_unpacklo_epi16(hi01, hi23);
  x[3] = _mm256_unpackhi_epi16(hi01, hi23);
}

// 32 bytes from p, or the first n (< 32) of them and zeros (a block's last channels).
inline __m256i load_bytes(const uint8_t* p, int n) {
  if (n >= 32) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  alignas(32) uint8_t buffer[32] = {};
  if (n > 0) std::memcpy(buffer, p, static_cast<size_t>(n));
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(buffer));
}

// acc[h][k] -> 64 int32 in channel order: lane l of acc[h][k] holds channels 32 h + 16 l + 4 k ...
inline void store_unpermuted256(const __m256i acc[2][4], int32_t* s) {
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 2; ++l) {
      const int sel = l == 0 ? 0x20 : 0x31;
      int32_t* dst = s + 32 * h + 16 * l;
      _mm256_store_si256(reinterpret_cast<__m256i*>(dst), _mm256_permute2x128_si256(acc[h][0], acc[h][1], sel));
      _mm256_store_si256(reinterpret_cast<__m256i*>(dst + 8), _mm256_permute2x128_si256(acc[h][2], acc[h][3], sel));
    }
}

template <typename Dot, bool kSigned>
void depthwise_256(const DepthwiseCall& call, int64_t r0, int64_t r1) {
  const ConvGeometry& g = call.g;
  const int64_t C = g.in_c;
  const int64_t row_groups = dw_row_groups(g.kernel_h);
  const int64_t blocks = (C + kDwBlockChannels - 1) / kDwBlockChannels;
  const int64_t group_stride = blocks * kDwBlockBytes;
  Epilogue ep = call.ep;
  ep.col_comp = call.comp_i8;
  const __m256i flip = _mm256_set1_epi8(kSigned ? static_cast<char>(0x80) : 0);
  thread_local AlignedBuffer<Column256> columns;
  thread_local AlignedBuffer<int32_t> sums;
  for (int64_t r = r0; r < r1;) {
    const DwRun run(g, r, r1);
    const int64_t n = run.n, oh = run.oh, pixels = run.pixels, iw_first = run.iw_first, span = run.span;
    columns.reserve_discard(static_cast<size_t>(span));
    sums.reserve_discard(static_cast<size_t>(pixels * kDwBlockChannels));
    Column256* const column = columns.data();  // (each thread_local access is a call)
    int32_t* const sum = sums.data();
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t c0 = b * kDwBlockChannels;
      const int cols = static_cast<int>(std::min<int64_t>(kDwBlockChannels, C - c0));
      const int halves = cols > 32 ? 2 : 1;
      const int8_t* wb = call.weights_i8 + b * kDwBlockBytes;
      for (int64_t rg = 0; rg < row_groups; ++rg) {
        const uint8_t* rows[4];
        int64_t steps[4];
        dw_group_rows(call, n, oh, rg, c0, rows, steps);
        Column256 padding{};
        for (int h = 0; h < halves; ++h) {
          const __m256i zp = _mm256_xor_si256(load_bytes(call.zero_row + c0 + 32 * h, cols - 32 * h), flip);
          interleave256(zp, zp, zp, zp, padding.x[h]);
        }
        for (int64_t col = 0; col < span; ++col) {
          const int64_t iw = iw_first + col;
          if (iw < 0 || iw >= g.in_w) {
            column[col] = padding;
            continue;
          }
          for (int h = 0; h < halves; ++h) {
            __m256i v[4];
            for (int i = 0; i < 4; ++i)
              v[i] = _mm256_xor_si256(load_bytes(rows[i] + iw * steps[i] + 32 * h, cols - 32 * h), flip);
            interleave256(v[0], v[1], v[2], v[3], column[col].x[h]);
          }
        }
        const bool first = rg == 0, last = rg + 1 == row_groups;
        for (int64_t p = 0; p < pixels; ++p) {
          int32_t* s = sum + p * kDwBlockChannels;
          __m256i acc[2][4];
          for (int h = 0; h < 2; ++h)
            for (int k = 0; k < 4; ++k)
              acc[h][k] = first ? _mm256_setzero_si256()
                                : _mm256_load_si256(reinterpret_cast<const __m256i*>(s + 32 * h + 8 * k));
          for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
            const Column256& xc = column[p * g.stride_w + kw * g.dilation_w];
            const int8_t* w = wb + (kw * row_groups + rg) * group_stride;
            for (int h = 0; h < halves; ++h)
              for (int k = 0; k < 4; ++k)
                acc[h][k] = Dot::dot(acc[h][k], xc.x[h][k],
                                     _mm256_load_si256(reinterpret_cast<const __m256i*>(w + 64 * k + 32 * h)));
          }
          if (last) {
            store_unpermuted256(acc, s);
          } else {
            for (int h = 0; h < 2; ++h)
              for (int k = 0; k < 4; ++k) _mm256_store_si256(reinterpret_cast<__m256i*>(s + 32 * h + 8 * k), acc[h][k]);
          }
        }
      }
      apply_epilogue(ep, sum, kDwBlockChannels, r, static_cast<int>(pixels), c0, cols);
    }
    r += pixels;
  }
}

template <typename Dot>
void depthwise_256_any(const DepthwiseCall& call, int64_t r0, int64_t r1) {
  if (call.weights_i8 == nullptr)
    depthwise_any(call, r0, r1);  // weights whose w - w_zp leave int8: the int32 kernel
  else if (call.x_signed)
    depthwise_256<Dot, true>(call, r0, r1);
  else
    depthwise_256<Dot, false>(call, r0, r1);
}

}  // namespace
}  // namespace eb
