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
#include <vector>

#include "eightbit/conv.h"
#include "kernels/epilogue.h"

namespace eb {

// Internal linkage on purpose: this header is compiled into translation units
// with different instruction-set flags, and an inline function with external
// linkage would be merged by the linker into ONE copy (possibly an AVX-512
// one, called from the portable path on a CPU without AVX-512).
namespace {

// The taps of one output pixel that lie inside the input: their x and weight offsets (room for
// the whole kernel, allocated once per call).
struct DwTaps {
  std::vector<int64_t> x_off, w_off;
  int count = 0;
  explicit DwTaps(const ConvGeometry& g)
      : x_off(static_cast<size_t>(g.kernel_h * g.kernel_w)), w_off(static_cast<size_t>(g.kernel_h * g.kernel_w)) {}

  void find(const ConvGeometry& g, int64_t n, int64_t oh, int64_t ow) {
    count = 0;
    for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
      const int64_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
      if (ih < 0 || ih >= g.in_h) continue;
      for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
        const int64_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
        if (iw < 0 || iw >= g.in_w) continue;
        x_off[count] = ((n * g.in_h + ih) * g.in_w + iw) * g.in_c;
        w_off[count] = (kh * g.kernel_w + kw) * g.in_c;
        ++count;
      }
    }
  }
};

// Channels [c0, c0 + cb) over the taps; with kFixed > 0 the channel count is a compile-time
// constant, so the channel loop is unrolled into whole vectors (the tail after the blocks takes
// kFixed = 0). Integer arithmetic in uint32 (the int32 wrap).
template <typename T, int kFixed>
inline void dw_block(const DepthwiseCall& call, const T* x, const DwTaps& taps, int64_t c0, int64_t cb_runtime,
                     uint32_t* acc) {
  const int64_t cb = kFixed > 0 ? kFixed : cb_runtime;
  std::fill(acc, acc + cb, 0u);
  for (int t = 0; t < taps.count; ++t) {
    const T* xp = x + taps.x_off[t] + c0;
    const int32_t* wp = call.weights + taps.w_off[t] + c0;
    for (int64_t c = 0; c < cb; ++c)
      acc[c] += static_cast<uint32_t>((static_cast<int32_t>(xp[c]) - call.x_zp) * wp[c]);
  }
}

// One run of the int8-weight kernels: output pixels [r, r + pixels) of output row (n, oh)
// (up to r1), and the `span` input columns from iw_first that their windows touch.
struct DwRun {
  int64_t n, oh, pixels, iw_first, span;
  DwRun(const ConvGeometry& g, int64_t r, int64_t r1) {
    const int64_t oh_n = g.out_h(), ow_n = g.out_w(), ow0 = r % ow_n;
    n = r / (oh_n * ow_n);
    oh = (r / ow_n) % oh_n;
    pixels = std::min(ow_n - ow0, r1 - r);
    iw_first = ow0 * g.stride_w - g.pad_left;
    span = (pixels - 1) * g.stride_w + (g.kernel_w - 1) * g.dilation_w + 1;
  }
};

// The 4 input rows of row group rg (kernel rows 4 rg ..) for output row (n, oh), from channel
// c0 (the int8-weight kernels): a row outside the input or past the kernel reads the zero-point
// row at every column (step 0).
inline void dw_group_rows(const DepthwiseCall& call, int64_t n, int64_t oh, int64_t rg, int64_t c0,
                          const uint8_t* rows[4], int64_t steps[4]) {
  const ConvGeometry& g = call.g;
  const uint8_t* x = static_cast<const uint8_t*>(call.x);
  for (int i = 0; i < 4; ++i) {
    const int64_t kh = 4 * rg + i, ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
    const bool in = kh < g.kernel_h && ih >= 0 && ih < g.in_h;
    rows[i] = in ? x + (n * g.in_h + ih) * g.in_w * g.in_c + c0 : call.zero_row + c0;
    steps[i] = in ? g.in_c : 0;
  }
}

constexpr int kDwPixels = 8;   // output pixels per epilogue call

template <typename T>
void depthwise_rows(const DepthwiseCall& call, int64_t r0, int64_t r1) {
  const ConvGeometry& g = call.g;
  const int64_t oh_n = g.out_h(), ow_n = g.out_w(), C = g.in_c;
  const T* x = static_cast<const T*>(call.x);
  alignas(64) uint32_t acc[kDwPixels * kMaxTileCols];
  std::vector<DwTaps> taps(kDwPixels, DwTaps(g));
  // the pixels' coordinates stepped along (three divisions per pixel cost about what its taps do)
  int64_t n = r0 / (oh_n * ow_n), oh = (r0 / ow_n) % oh_n, ow = r0 % ow_n;
  for (int64_t r = r0; r < r1;) {
    const int pixels = static_cast<int>(std::min<int64_t>(kDwPixels, r1 - r));
    for (int p = 0; p < pixels; ++p) {
      taps[p].find(g, n, oh, ow);
      if (++ow == ow_n) {
        ow = 0;
        if (++oh == oh_n) oh = 0, ++n;
      }
    }
    int64_t c0 = 0;
    for (; c0 + 32 <= C; c0 += 32) {
      for (int p = 0; p < pixels; ++p) dw_block<T, 32>(call, x, taps[p], c0, 32, acc + p * 32);
      apply_epilogue(call.ep, reinterpret_cast<const int32_t*>(acc), 32, r, pixels, c0, 32);
    }
    for (; c0 < C; c0 += kMaxTileCols) {
      const int64_t cb = std::min<int64_t>(kMaxTileCols, C - c0);
      for (int p = 0; p < pixels; ++p) dw_block<T, 0>(call, x, taps[p], c0, cb, acc + p * kMaxTileCols);
      apply_epilogue(call.ep, reinterpret_cast<const int32_t*>(acc), kMaxTileCols, r, pixels, c0, static_cast<int>(cb));
    }
    r += pixels;
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
