// Kernel layer, aarch64: depthwise convolution with 4-way byte dot products,
// for the NEON, dot-product and i8mm units (each includes this header with its
// flags and its `Dot`).
//
// The int8 weights (DepthwiseCall::weights_i8, packed for the x86 VNNI
// kernels) already suit 128-bit vectors: the 16 bytes at (tap group, block)
// + 64 k + 16 l are channels 16 l + 4 k .. + 3 of the block, 4 kernel rows
// each.  As in kernels/depthwise_256.h, one output row (a run of pixels) at a
// time: for every input column the run touches, the 4 input rows of a
// 64-channel block are byte-interleaved once with ZIP1/ZIP2 (bytes, then
// halfwords) into that order, and every output pixel adds kernel_w columns
// times the weights.  Each accumulator then holds 4 consecutive channels, so
// the sums go to the epilogue without a permute.
//
// `Dot::kSignedX`: the unit multiplies signed bytes only (SDOT, SMULL), so x
// is taken as x - 128 (x_u ^ 0x80) and 128 sum_t w is added back to the
// channel's bias term, exact modulo 2^32; otherwise (USDOT) x is the unsigned
// byte as the x86 kernels see it.
#pragma once

#include <arm_neon.h>

#include <algorithm>
#include <cstring>

#include "kernels/depthwise.h"

namespace eb {
namespace {  // internal linkage: compiled into units with different ISA flags

// x[l][k]: the 4 rows' bytes of channels 16 l + 4 k .. + 3 of the block.
struct Column128 {
  uint8x16_t x[4][4];
};

inline void interleave128(uint8x16_t r0, uint8x16_t r1, uint8x16_t r2, uint8x16_t r3, uint8x16_t* x) {
  const uint16x8_t lo01 = vreinterpretq_u16_u8(vzip1q_u8(r0, r1)), hi01 = vreinterpretq_u16_u8(vzip2q_u8(r0, r1));
  const uint16x8_t lo23 = vreinterpretq_u16_u8(vzip1q_u8(r2, r3)), hi23 = vreinterpretq_u16_u8(vzip2q_u8(r2, r3));
  x[0] = vreinterpretq_u8_u16(vzip1q_u16(lo01, lo23));
  x[1] = vreinterpretq_u8_u16(vzip2q_u16(lo01, lo23));
  x[2] = vreinterpretq_u8_u16(vzip1q_u16(hi01, hi23));
  x[3] = vreinterpretq_u8_u16(vzip2q_u16(hi01, hi23));
}

// 16 bytes from p, or the first n (< 16) of them and zeros (a block's last channels).
inline uint8x16_t load16(const uint8_t* p, int n) {
  if (n >= 16) return vld1q_u8(p);
  uint8_t buffer[16] = {};
  if (n > 0) std::memcpy(buffer, p, static_cast<size_t>(n));
  return vld1q_u8(buffer);
}

// comp_i8 + 128 sum_t w per channel (Dot::kSignedX), into `out` [C].
inline void signed_x_comp(const DepthwiseCall& call, int32_t* out) {
  const ConvGeometry& g = call.g;
  const int64_t C = g.in_c, blocks = (C + kDwBlockChannels - 1) / kDwBlockChannels;
  for (int64_t c = 0; c < C; ++c) {
    uint32_t sum = 0;
    for (int64_t kh = 0; kh < g.kernel_h; ++kh)
      for (int64_t kw = 0; kw < g.kernel_w; ++kw)
        sum += static_cast<uint32_t>(int32_t{call.weights_i8[dw_i8_offset(blocks, g.kernel_h, kh, kw, c)]});
    out[c] = static_cast<int32_t>(static_cast<uint32_t>(call.comp_i8[c]) + 128u * sum);
  }
}

template <typename Dot, bool kSigned>
void depthwise_128(const DepthwiseCall& call, int64_t r0, int64_t r1) {
  const ConvGeometry& g = call.g;
  const int64_t C = g.in_c;
  const int64_t row_groups = dw_row_groups(g.kernel_h);
  const int64_t blocks = (C + kDwBlockChannels - 1) / kDwBlockChannels;
  const int64_t group_stride = blocks * kDwBlockBytes;
  // Bytes as the unit multiplies them: int8 x is flipped to uint8 (x86's view), and for
  // signed-only dot products flipped again to x - 128.
  const uint8x16_t flip = vdupq_n_u8(kSigned != Dot::kSignedX ? 0x80 : 0);
  thread_local AlignedBuffer<Column128> columns;
  thread_local AlignedBuffer<int32_t> sums, comps;
  Epilogue ep = call.ep;
  ep.col_comp = call.comp_i8;
  if (Dot::kSignedX) {
    comps.reserve_discard(static_cast<size_t>(C));
    signed_x_comp(call, comps.data());
    ep.col_comp = comps.data();
  }
  for (int64_t r = r0; r < r1;) {
    const DwRun run(g, r, r1);
    const int64_t n = run.n, oh = run.oh, pixels = run.pixels, iw_first = run.iw_first, span = run.span;
    columns.reserve_discard(static_cast<size_t>(span));
    sums.reserve_discard(static_cast<size_t>(pixels * kDwBlockChannels));
    Column128* const column = columns.data();
    int32_t* const sum = sums.data();
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t c0 = b * kDwBlockChannels;
      const int cols = static_cast<int>(std::min<int64_t>(kDwBlockChannels, C - c0));
      const int lanes = (cols + 15) / 16;
      const int8_t* wb = call.weights_i8 + b * kDwBlockBytes;
      for (int64_t rg = 0; rg < row_groups; ++rg) {
        const uint8_t* rows[4];
        int64_t steps[4];
        dw_group_rows(call, n, oh, rg, c0, rows, steps);
        Column128 padding;
        for (int l = 0; l < lanes; ++l) {
          const uint8x16_t zp = veorq_u8(load16(call.zero_row + c0 + 16 * l, cols - 16 * l), flip);
          interleave128(zp, zp, zp, zp, padding.x[l]);
        }
        for (int64_t col = 0; col < span; ++col) {
          const int64_t iw = iw_first + col;
          if (iw < 0 || iw >= g.in_w) {
            column[col] = padding;
            continue;
          }
          for (int l = 0; l < lanes; ++l) {
            uint8x16_t v[4];
            for (int i = 0; i < 4; ++i) v[i] = veorq_u8(load16(rows[i] + iw * steps[i] + 16 * l, cols - 16 * l), flip);
            interleave128(v[0], v[1], v[2], v[3], column[col].x[l]);
          }
        }
        const bool first = rg == 0;
        for (int64_t p = 0; p < pixels; ++p) {
          int32_t* s = sum + p * kDwBlockChannels;
          int32x4_t acc[4][4];
          for (int l = 0; l < lanes; ++l)
            for (int k = 0; k < 4; ++k) acc[l][k] = first ? vdupq_n_s32(0) : vld1q_s32(s + 16 * l + 4 * k);
          for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
            const Column128& xc = column[p * g.stride_w + kw * g.dilation_w];
            const int8_t* w = wb + (kw * row_groups + rg) * group_stride;
            for (int l = 0; l < lanes; ++l)
              for (int k = 0; k < 4; ++k) acc[l][k] = Dot::dot(acc[l][k], xc.x[l][k], vld1q_s8(w + 64 * k + 16 * l));
          }
          for (int l = 0; l < lanes; ++l)
            for (int k = 0; k < 4; ++k) vst1q_s32(s + 16 * l + 4 * k, acc[l][k]);
        }
      }
      apply_epilogue(ep, sum, kDwBlockChannels, r, static_cast<int>(pixels), c0, cols);
    }
    r += pixels;
  }
}

template <typename Dot>
void depthwise_128_any(const DepthwiseCall& call, int64_t r0, int64_t r1) {
  if (call.weights_i8 == nullptr)
    depthwise_any(call, r0, r1);  // weights whose w - w_zp leave int8: the int32 kernel
  else if (call.x_signed)
    depthwise_128<Dot, true>(call, r0, r1);
  else
    depthwise_128<Dot, false>(call, r0, r1);
}

}  // namespace
}  // namespace eb
