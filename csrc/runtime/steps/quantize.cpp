// Runtime layer, steps quantize and dequantize: the model boundary between
// float32 tensors in the float graph's layout and quantized ones, 4-D tensors
// changing between NCHW and NHWC on the way (per tensor, the output's / input's
// scale and zero point).
#include "runtime/quantize.h"
#include "runtime/steps/steps.h"
#include "runtime/thread_pool.h"

namespace eb {
namespace {

// NCHW float32 -> NHWC quantized, one (n, h) row of W * C values at a time:
// gathered into a small buffer, then quantized by the runtime's own loop.
void quantize_nchw_to_nhwc(const float* x, int64_t batch, int64_t C, int64_t H, int64_t W, const PlanTensor& y_t,
                           void* y) {
  const int32_t qmin = y_t.is_signed() ? -128 : 0, qmax = y_t.is_signed() ? 127 : 255;
  const int64_t row = W * C;
  parallel_for(batch * H, row, kMinWorkPerThread, [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> buf;
    buf.resize(static_cast<size_t>(row));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / H, h = r % H;
      const float* src = x + (n * C * H + h) * W;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t w = 0; w < W; ++w) buf[w * C + c] = src[c * H * W + w];
      quantize_per_tensor(buf.data(), row, y_t.scale, y_t.zp, qmin, qmax, static_cast<uint8_t*>(y) + r * row);
    }
  });
}

void dequantize_nhwc_to_nchw(const void* x, const PlanTensor& x_t, int64_t batch, int64_t H, int64_t W, int64_t C,
                             float* y) {
  const int64_t row = W * C;
  parallel_for(batch * H, row, kMinWorkPerThread, [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> buf;
    buf.resize(static_cast<size_t>(row));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / H, h = r % H;
      dequantize_linear(static_cast<const uint8_t*>(x) + r * row, 1, x_t.is_signed(), 1, 1, row, &x_t.scale,
                        &x_t.zp, false, buf.data());
      float* dst = y + (n * C * H + h) * W;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t w = 0; w < W; ++w) dst[c * H * W + w] = buf[w * C + c];
    }
  });
}

struct QuantizeStep final : Step {
  bool quantizes() const override { return true; }

  void run(const StepIO& io) const override {
    const PlanTensor& x = io.in_t();
    const PlanTensor& y = io.out_t();
    const auto* px = static_cast<const float*>(io.in());
    if (x.shape.size() == 4) {
      quantize_nchw_to_nhwc(px, io.batch(), x.shape[1], x.shape[2], x.shape[3], y, io.out());
      return;
    }
    const int64_t n = io.batch() * x.sample_elems();
    const int32_t qmin = y.is_signed() ? -128 : 0, qmax = y.is_signed() ? 127 : 255;
    parallel_for(n, 8, kMinWorkPerThread, [&](int64_t i0, int64_t i1) {
      quantize_per_tensor(px + i0, i1 - i0, y.scale, y.zp, qmin, qmax, static_cast<uint8_t*>(io.out()) + i0);
    });
  }
};

struct DequantizeStep final : Step {
  void run(const StepIO& io) const override {
    const PlanTensor& x = io.in_t();
    auto* py = static_cast<float*>(io.out());
    if (x.shape.size() == 4) {
      dequantize_nhwc_to_nchw(io.in(), x, io.batch(), x.shape[1], x.shape[2], x.shape[3], py);
      return;
    }
    const int64_t n = io.batch() * x.sample_elems();
    parallel_for(n, 4, kMinWorkPerThread, [&](int64_t i0, int64_t i1) {
      dequantize_linear(static_cast<const uint8_t*>(io.in()) + i0, 1, x.is_signed(), 1, 1, i1 - i0, &x.scale, &x.zp,
                        false, py + i0);
    });
  }
};

}  // namespace

std::unique_ptr<Step> create_quantize(const StepContext& c) {
  c.arity(1);
  const PlanTensor &x = c.in(), &y = c.out();
  if (x.quantized()) c.bad("input must be float32");
  c.require_quantized(y);
  const auto& s = x.shape;
  if (s.size() == 4 && holds_sequence(s, 1, 4)) c.bad("a 4-D tensor (NHWC when quantized) with the sequence dimension");
  c.shape_is(y, s.size() == 4 ? std::vector<int64_t>{0, s[2], s[3], s[1]} : s);
  return std::make_unique<QuantizeStep>();
}

std::unique_ptr<Step> create_dequantize(const StepContext& c) {
  c.arity(1);
  const PlanTensor &x = c.in(), &y = c.out();
  c.require_quantized(x);
  if (y.quantized()) c.bad("output must be float32");
  const auto& s = x.shape;
  if (s.size() == 4 && holds_sequence(s, 1, 4)) c.bad("a 4-D tensor (NHWC when quantized) with the sequence dimension");
  c.shape_is(y, s.size() == 4 ? std::vector<int64_t>{0, s[3], s[1], s[2]} : s);
  return std::make_unique<DequantizeStep>();
}

}  // namespace eb
