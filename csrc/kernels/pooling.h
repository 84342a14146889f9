// Kernel layer: MaxPool and QLinearAveragePool on channels-last tensors,
// shared source for every ISA.
//
// For each output pixel and each block of channels, every in-bounds tap of
// the window is folded into a per-channel accumulator (max, or a float32 sum
// in row-major tap order), so the inner loop runs over contiguous channels and
// is auto-vectorised with the including unit's flags.  Taps outside the input
// are skipped: a padded tap never wins a max and adds nothing to a sum.  The
// float steps are single IEEE operations in docs/numerics.md's order (no fma),
// so every ISA gives the same bits.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "core/requantize.h"
#include "eightbit/cnn_ops.h"

namespace eb {

// Internal linkage on purpose: see kernels/depthwise.h (one copy per ISA unit).
namespace {

constexpr int64_t kPoolChannelBlock = 256;

// The input positions of one output pixel's window along one axis: taps
// j with lo <= j < hi are inside the input (position start + j * dilation).
struct AxisTaps {
  int64_t start = 0, lo = 0, hi = 0;
};

inline AxisTaps axis_taps(const PoolGeometry& g, int axis, int64_t o) {
  AxisTaps t;
  t.start = o * g.stride[axis] - g.pad_begin[axis];
  const int64_t d = g.dilation[axis], n = g.in[axis], k = g.kernel[axis];
  // smallest j with start + j*d >= 0, and smallest j with start + j*d >= n
  t.lo = t.start >= 0 ? 0 : std::min(k, (-t.start + d - 1) / d);
  t.hi = t.start >= n ? 0 : std::min(k, (n - t.start + d - 1) / d);
  t.hi = std::max(t.hi, t.lo);
  return t;
}

// Calls fn(pixel offset of the tap in x) for every in-bounds tap of output
// pixel r, in row-major tap order; returns the number of taps visited.
template <typename Fn>
inline int64_t for_each_tap(const PoolGeometry& g, int64_t r, Fn&& fn) {
  const int64_t o2 = r % g.out[2], o1 = (r / g.out[2]) % g.out[1], o0 = (r / (g.out[2] * g.out[1])) % g.out[0];
  const int64_t n = r / (g.out[2] * g.out[1] * g.out[0]);
  const AxisTaps t0 = axis_taps(g, 0, o0), t1 = axis_taps(g, 1, o1), t2 = axis_taps(g, 2, o2);
  for (int64_t j0 = t0.lo; j0 < t0.hi; ++j0) {
    const int64_t i0 = n * g.in[0] + t0.start + j0 * g.dilation[0];
    for (int64_t j1 = t1.lo; j1 < t1.hi; ++j1) {
      const int64_t i1 = i0 * g.in[1] + t1.start + j1 * g.dilation[1];
      for (int64_t j2 = t2.lo; j2 < t2.hi; ++j2) fn(i1 * g.in[2] + t2.start + j2 * g.dilation[2]);
    }
  }
  return (t0.hi - t0.lo) * (t1.hi - t1.lo) * (t2.hi - t2.lo);
}

template <typename T>
void max_pool_rows(const PoolGeometry& g, const T* x, T* y, int64_t r0, int64_t r1) {
  const int64_t C = g.channels;
  for (int64_t r = r0; r < r1; ++r) {
    T* out = y + r * C;
    std::fill(out, out + C, std::numeric_limits<T>::min());  // a window with no tap inside x
    for_each_tap(g, r, [&](int64_t pixel) {
      const T* in = x + pixel * C;
      for (int64_t c = 0; c < C; ++c) out[c] = std::max(out[c], in[c]);
    });
  }
}

inline void max_pool_any(const PoolGeometry& g, bool is_signed, const void* x, void* y, int64_t r0, int64_t r1) {
  if (is_signed)
    max_pool_rows(g, static_cast<const int8_t*>(x), static_cast<int8_t*>(y), r0, r1);
  else
    max_pool_rows(g, static_cast<const uint8_t*>(x), static_cast<uint8_t*>(y), r0, r1);
}

template <typename T>
void average_pool_rows(const PoolGeometry& g, const AvgPoolParams& k, const T* x, T* y, int64_t r0, int64_t r1) {
  const int64_t C = g.channels;
  const float lo = k.range.qmin, hi = k.range.qmax;
  const float x_scale = k.x_scale, y_scale = k.y_scale, y_zp = k.y_zp;
  const int32_t x_zp = k.x_zp;
  alignas(64) float sum[kPoolChannelBlock];
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t c0 = 0; c0 < C; c0 += kPoolChannelBlock) {
      const int64_t cb = std::min(kPoolChannelBlock, C - c0);
      std::fill(sum, sum + cb, 0.0f);
      const int64_t inside = for_each_tap(g, r, [&](int64_t pixel) {
        const T* in = x + pixel * C + c0;
        for (int64_t c = 0; c < cb; ++c)
          sum[c] = sum[c] + x_scale * static_cast<float>(static_cast<int32_t>(in[c]) - x_zp);
      });
      const float count = static_cast<float>(k.count_include_pad ? g.taps() : inside);
      T* out = y + r * C + c0;
      for (int64_t c = 0; c < cb; ++c) {
        const float v = sum[c] / count / y_scale + y_zp;  // three roundings, left to right
        out[c] = static_cast<T>(clamp_round(v, lo, hi));
      }
    }
  }
}

inline void average_pool_any(const PoolGeometry& g, const AvgPoolParams& k, const void* x, void* y, int64_t r0,
                             int64_t r1) {
  if (k.range.is_signed)
    average_pool_rows(g, k, static_cast<const int8_t*>(x), static_cast<int8_t*>(y), r0, r1);
  else
    average_pool_rows(g, k, static_cast<const uint8_t*>(x), static_cast<uint8_t*>(y), r0, r1);
}

}  // namespace

}  // namespace eb
