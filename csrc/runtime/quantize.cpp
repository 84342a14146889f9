// Runtime layer: elementwise quantization (see quantize.h).
#include "runtime/quantize.h"

#include <cmath>

#include "core/requantize.h"
#include "runtime/dispatch.h"

namespace eb {

bool dynamic_qparams(const float* x, int64_t n, QuantParams* out) {
  float mn = 0.0f, mx = 0.0f;  // the range always includes zero
  if (!active_cnn().range(x, n, &mn, &mx)) return false;
  const float scale = mx == mn ? 1.0f : (mx - mn) / 255.0f;
  // ORT clamps with std::max(0, std::min(255, z)), which sends NaN (a range
  // so small that scale underflows to 0) to 255, unlike clamp_round.
  float z = 0.0f - mn / scale;
  z = z < 255.0f ? z : 255.0f;
  z = 0.0f < z ? z : 0.0f;
  out->scale = scale;
  out->zero_point = static_cast<int32_t>(round_even_small(z));
  return true;
}

void quantize_per_tensor(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin, int32_t qmax,
                         void* out) {
  const OutputRange range{static_cast<float>(qmin), static_cast<float>(qmax), qmin < 0};
  active_cnn().quantize(x, n, scale, zp, range, out);
}

void quantize_dynamic(const float* x, int64_t n, const QuantParams& q, uint8_t* out) {
  // |x| <= max(-mn, mx) <= 255 scale (1 + 2^-22): the bounded kernel's precondition.
  active_cnn().quantize_bounded(x, n, q.scale, q.zero_point, output_range(false), out);
}

void quantize_linear(const float* x, int64_t outer, int64_t channels, int64_t inner, const float* scale,
                     const int32_t* zp, bool per_axis, int32_t qmin, int32_t qmax, void* out) {
  uint8_t* y = static_cast<uint8_t*>(out);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t off = (o * channels + c) * inner;
      const int64_t q = per_axis ? c : 0;
      quantize_per_tensor(x + off, inner, scale[q], zp[q], qmin, qmax, y + off);
    }
}

template <typename T>
static void dequantize_span(const T* x, int64_t n, float scale, int32_t zp, float* y) {
  for (int64_t i = 0; i < n; ++i)
    y[i] = static_cast<float>(static_cast<int64_t>(x[i]) - zp) * scale;  // int64: no overflow for int32 x
}

void dequantize_linear(const void* x, int elem_bytes, bool is_signed, int64_t outer, int64_t channels,
                       int64_t inner, const float* scale, const int32_t* zp, bool per_axis, float* out) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t off = (o * channels + c) * inner;
      const int64_t q = per_axis ? c : 0;
      if (elem_bytes == 4)
        dequantize_span(static_cast<const int32_t*>(x) + off, inner, scale[q], zp[q], out + off);
      else if (is_signed)
        dequantize_span(static_cast<const int8_t*>(x) + off, inner, scale[q], zp[q], out + off);
      else
        dequantize_span(static_cast<const uint8_t*>(x) + off, inner, scale[q], zp[q], out + off);
    }
}

}  // namespace eb
