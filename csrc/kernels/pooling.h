// Kernel layer: MaxPool and QLinearAveragePool on channels-last tensors,
// shared source for every ISA.
//
// Output pixels are taken a segment of one output row at a time.  For every
// tap of the window (row-major order), the tap is folded into each output
// pixel of the segment that sees it inside the input: a per-channel max, or a
// float32 sum.  The innermost loop runs over contiguous channels and is
// auto-vectorised with the including unit's flags; the pixels of one pass are
// independent, so the vector units are not waiting on one accumulator chain.
// Taps outside the input are skipped: a padded tap never wins a max and adds
// nothing to a sum.  Each output pixel still receives its taps in row-major
// order, and the float steps are single IEEE operations in docs/numerics.md's
// order (no fma), so every ISA gives the same bits.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/requantize.h"
#include "eightbit/cnn_ops.h"

namespace eb {

// Internal linkage on purpose: see kernels/depthwise.h (one copy per ISA unit).
namespace {

constexpr int64_t kPoolChannelBlock = 256;  // channels per block of sum_pixels' partial sums
constexpr int64_t kSegmentFloats = 16384;   // average pool: float sums of one segment (64 KiB)
constexpr int64_t kMaxBlock = 64;           // max pool: channels per fixed-length inner loop

// ceil(a / b) for b > 0 and any a.
inline int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// The input positions of one output position's window along one axis: taps
// j with lo <= j < hi are inside the input (position start + j * dilation).
struct AxisTaps {
  int64_t start = 0, lo = 0, hi = 0;

  int64_t inside() const { return hi - lo; }
};

inline AxisTaps axis_taps(const PoolGeometry& g, int axis, int64_t o) {
  AxisTaps t;
  t.start = o * g.stride[axis] - g.pad_begin[axis];
  const int64_t d = g.dilation[axis], n = g.in[axis], k = g.kernel[axis];
  t.lo = std::min(k, std::max<int64_t>(0, ceil_div(-t.start, d)));     // first j with start + j*d >= 0
  t.hi = std::max(t.lo, std::min(k, ceil_div(n - t.start, d)));        // first j with start + j*d >= n
  return t;
}

// Output pixels (n, o0, o1, o2) with o2 in [a, b); r is the index of (n, o0, o1, a).
struct RowSegment {
  int64_t r = 0, n = 0, o0 = 0, o1 = 0, a = 0, b = 0;
};

// Splits output pixels [r0, r1) into row segments of at most max_len pixels.
template <typename Fn>
inline void for_each_segment(const PoolGeometry& g, int64_t r0, int64_t r1, int64_t max_len, Fn&& fn) {
  for (int64_t r = r0; r < r1;) {
    RowSegment s;
    s.r = r;
    s.a = r % g.out[2];
    const int64_t rows = r / g.out[2];
    s.o1 = rows % g.out[1];
    s.o0 = (rows / g.out[1]) % g.out[0];
    s.n = rows / (g.out[1] * g.out[0]);
    s.b = std::min({g.out[2], s.a + (r1 - r), s.a + max_len});
    fn(s);
    r += s.b - s.a;
  }
}

// For each tap (j0, j1, j2) in row-major order whose rows are inside the
// input, calls fn(base, lo, hi): output positions o2 in [lo, hi) of the
// segment see this tap inside the input, at input pixel base + o2 * stride.
template <typename Fn>
inline void for_each_tap_column(const PoolGeometry& g, const RowSegment& s, Fn&& fn) {
  const AxisTaps t0 = axis_taps(g, 0, s.o0), t1 = axis_taps(g, 1, s.o1);
  const int64_t s2 = g.stride[2], n2 = g.in[2];
  for (int64_t j0 = t0.lo; j0 < t0.hi; ++j0) {
    const int64_t i0 = s.n * g.in[0] + t0.start + j0 * g.dilation[0];
    for (int64_t j1 = t1.lo; j1 < t1.hi; ++j1) {
      const int64_t row = (i0 * g.in[1] + t1.start + j1 * g.dilation[1]) * n2;
      for (int64_t j2 = 0; j2 < g.kernel[2]; ++j2) {
        const int64_t offset = j2 * g.dilation[2] - g.pad_begin[2];  // input column = o2 * s2 + offset
        const int64_t lo = std::max(s.a, ceil_div(-offset, s2));
        const int64_t hi = std::min(s.b, ceil_div(n2 - offset, s2));
        if (lo < hi) fn(row + offset, lo, hi);
      }
    }
  }
}

template <typename T>
inline void max_into(T* __restrict acc, const T* __restrict in, int64_t channels) {
  int64_t c = 0;
  for (; c + kMaxBlock <= channels; c += kMaxBlock)  // fixed trip count: whole vectors, no tail
    for (int64_t j = 0; j < kMaxBlock; ++j) acc[c + j] = std::max(acc[c + j], in[c + j]);
  for (; c < channels; ++c) acc[c] = std::max(acc[c], in[c]);
}

template <typename T>
void max_pool_rows(const PoolGeometry& g, const T* x, T* y, int64_t r0, int64_t r1) {
  const int64_t C = g.channels, s2 = g.stride[2];
  for_each_segment(g, r0, r1, g.out[2], [&](const RowSegment& s) {
    T* out = y + s.r * C;  // the segment's first pixel
    std::fill(out, out + (s.b - s.a) * C, std::numeric_limits<T>::min());  // a window with no tap inside x
    for_each_tap_column(g, s, [&](int64_t base, int64_t lo, int64_t hi) {
      for (int64_t o = lo; o < hi; ++o) max_into(out + (o - s.a) * C, x + (base + o * s2) * C, C);
    });
  });
}

inline void max_pool_any(const PoolGeometry& g, bool is_signed, const void* x, void* y, int64_t r0, int64_t r1) {
  if (is_signed)
    max_pool_rows(g, static_cast<const int8_t*>(x), static_cast<int8_t*>(y), r0, r1);
  else
    max_pool_rows(g, static_cast<const uint8_t*>(x), static_cast<uint8_t*>(y), r0, r1);
}

// sum += float32(x_scale * float32(x - x_zp)), two roundings, per channel.
template <typename T>
inline void add_dequantized(float* __restrict sum, const T* __restrict in, int64_t channels, float x_scale,
                            int32_t x_zp) {
  for (int64_t c = 0; c < channels; ++c)
    sum[c] = sum[c] + x_scale * static_cast<float>(static_cast<int32_t>(in[c]) - x_zp);
}

template <typename T>
void average_pool_rows(const PoolGeometry& g, const AvgPoolParams& k, const T* x, T* y, int64_t r0, int64_t r1) {
  const int64_t C = g.channels, s2 = g.stride[2];
  const int64_t max_len = std::max<int64_t>(1, kSegmentFloats / std::max<int64_t>(C, 1));
  const float lo = k.range.qmin, hi = k.range.qmax, y_scale = k.y_scale, y_zp = k.y_zp;
  std::vector<float> sums(static_cast<size_t>(std::min(max_len, g.out[2]) * C));
  for_each_segment(g, r0, r1, max_len, [&](const RowSegment& s) {
    float* sum = sums.data();
    std::fill(sum, sum + (s.b - s.a) * C, 0.0f);
    for_each_tap_column(g, s, [&](int64_t base, int64_t first, int64_t last) {
      for (int64_t o = first; o < last; ++o)
        add_dequantized(sum + (o - s.a) * C, x + (base + o * s2) * C, C, k.x_scale, k.x_zp);
    });
    const int64_t rows_inside = axis_taps(g, 0, s.o0).inside() * axis_taps(g, 1, s.o1).inside();
    for (int64_t o = s.a; o < s.b; ++o) {
      const int64_t taps = k.count_include_pad ? g.taps() : rows_inside * axis_taps(g, 2, o).inside();
      const float count = static_cast<float>(taps);
      const float* row = sum + (o - s.a) * C;
      T* out = y + (s.r + o - s.a) * C;
      for (int64_t c = 0; c < C; ++c) {
        const float v = row[c] / count / y_scale + y_zp;  // three roundings, left to right
        out[c] = static_cast<T>(clamp_round(v, lo, hi));
      }
    }
  });
}

inline void average_pool_any(const PoolGeometry& g, const AvgPoolParams& k, const void* x, void* y, int64_t r0,
                             int64_t r1) {
  if (k.range.is_signed)
    average_pool_rows(g, k, static_cast<const int8_t*>(x), static_cast<int8_t*>(y), r0, r1);
  else
    average_pool_rows(g, k, static_cast<const uint8_t*>(x), static_cast<uint8_t*>(y), r0, r1);
}

// Per-channel sums, modulo 2^32, of `pixels` rows of `channels` bytes read as
// uint8 after XOR with `flip` (0x80 turns int8 into uint8 + 128; the caller
// removes the offset).  Rows are added in uint16 partial sums of at most 257
// rows (257 * 255 < 2^16), which vectorise four times wider than uint32 sums.
inline void sum_pixels(const uint8_t* x, int64_t pixels, int64_t channels, uint8_t flip, uint32_t* sum) {
  constexpr int64_t kRowsPerPart = 257;
  if (channels == 1) {  // channels-first input: one contiguous row
    uint32_t s = 0;
    for (int64_t p = 0; p < pixels; ++p) s += static_cast<uint8_t>(x[p] ^ flip);
    sum[0] = s;
    return;
  }
  alignas(64) uint16_t part[kPoolChannelBlock];
  for (int64_t c0 = 0; c0 < channels; c0 += kPoolChannelBlock) {
    const int64_t cb = std::min(kPoolChannelBlock, channels - c0);
    std::fill(sum + c0, sum + c0 + cb, 0u);
    for (int64_t p0 = 0; p0 < pixels; p0 += kRowsPerPart) {
      std::fill(part, part + cb, uint16_t{0});
      for (int64_t p = p0; p < std::min(pixels, p0 + kRowsPerPart); ++p) {
        const uint8_t* row = x + p * channels + c0;
        for (int64_t c = 0; c < cb; ++c) part[c] = static_cast<uint16_t>(part[c] + static_cast<uint8_t>(row[c] ^ flip));
      }
      for (int64_t c = 0; c < cb; ++c) sum[c0 + c] += part[c];
    }
  }
}

}  // namespace

}  // namespace eb
