// Kernel layer: depthwise convolution, shared source for every ISA.
//
// Channels are the vector dimension (NHWC keeps them contiguous): for each
// output pixel and each block of channels, every in-bounds tap adds
// (x - x_zp) * (w - w_zp) in int32, then the shared epilogue requantizes the
// block.  Padded taps are skipped: they would add (x_zp - x_zp) * w = 0.
// Each ISA's unit includes this header, so the loops are auto-vectorised with
// that unit's flags; the arithmetic is integer, so every ISA gives the same bits.
#pragma once

#include <algorithm>
#include <cstdint>

#include "eightbit/conv.h"
#include "kernels/epilogue.h"

namespace eb {

// Internal linkage on purpose: this header is compiled into translation units
// with different instruction-set flags, and an inline function with external
// linkage would be merged by the linker into ONE copy (possibly an AVX-512
// one, called from the portable path on a CPU without AVX-512).
namespace {

template <typename T>
void depthwise_rows(const DepthwiseCall& call, int64_t r0, int64_t r1) {
  const ConvGeometry& g = call.g;
  const int64_t oh_n = g.out_h(), ow_n = g.out_w(), C = g.in_c;
  const T* x = static_cast<const T*>(call.x);
  alignas(64) uint32_t acc[kMaxTileCols];
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / (oh_n * ow_n), oh = (r / ow_n) % oh_n, ow = r % ow_n;
    for (int64_t c0 = 0; c0 < C; c0 += kMaxTileCols) {
      const int64_t cb = std::min<int64_t>(kMaxTileCols, C - c0);
      std::fill(acc, acc + cb, 0u);
      for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
        const int64_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
        if (ih < 0 || ih >= g.in_h) continue;
        for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
          const int64_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
          if (iw < 0 || iw >= g.in_w) continue;
          const T* xp = x + ((n * g.in_h + ih) * g.in_w + iw) * C + c0;
          const int32_t* wp = call.weights + (kh * g.kernel_w + kw) * C + c0;
          for (int64_t c = 0; c < cb; ++c)
            acc[c] += static_cast<uint32_t>((static_cast<int32_t>(xp[c]) - call.x_zp) * wp[c]);
        }
      }
      apply_epilogue(call.ep, reinterpret_cast<const int32_t*>(acc), 0, r, 1, c0, static_cast<int>(cb));
    }
  }
}

inline void depthwise_any(const DepthwiseCall& call, int64_t r0, int64_t r1) {
  if (call.x_signed)
    depthwise_rows<int8_t>(call, r0, r1);
  else
    depthwise_rows<uint8_t>(call, r0, r1);
}

}  // namespace

}  // namespace eb
