// Runtime layer: elementwise quantization (QuantizeLinear,
// DequantizeLinear, DynamicQuantizeLinear) with the exact float steps of
// docs/numerics.md.
#pragma once

#include <cstdint>

namespace eb {

struct QuantParams {
  float scale = 1.0f;
  int32_t zero_point = 0;
};

// DynamicQuantizeLinear's scale and uint8 zero point for n floats, computed
// as ONNX Runtime does.  Returns false if any value is not finite.
bool dynamic_qparams(const float* x, int64_t n, QuantParams* out);

// y[i] = sat(round(x[i] / scale) + zp) into [qmin, qmax]; out holds bytes
// (uint8 when qmin == 0, int8 when qmin == -128).
void quantize_per_tensor(const float* x, int64_t n, float scale, int32_t zp, int32_t qmin, int32_t qmax,
                         void* out);

// DynamicQuantizeLinear's quantization of n floats with the parameters dynamic_qparams found for
// them (or for a larger set that holds them) into uint8.
void quantize_dynamic(const float* x, int64_t n, const QuantParams& q, uint8_t* out);

// QuantizeLinear over x viewed as [outer, channels, inner]; scale/zp hold 1
// value (per tensor, channels == 1 allowed) or `channels` values (per axis).
void quantize_linear(const float* x, int64_t outer, int64_t channels, int64_t inner, const float* scale,
                     const int32_t* zp, bool per_axis, int32_t qmin, int32_t qmax, void* out);

// DequantizeLinear: y = float(int32(x) - zp) * scale.  x is uint8, int8 or
// int32 (elem_bytes 1 / 1 / 4, is_signed for int8).
void dequantize_linear(const void* x, int elem_bytes, bool is_signed, int64_t outer, int64_t channels,
                       int64_t inner, const float* scale, const int32_t* zp, bool per_axis, float* out);

}  // namespace eb
