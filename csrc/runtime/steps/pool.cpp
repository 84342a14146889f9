// Runtime layer, quantized pooling steps over the two spatial axes of NHWC
// tensors: max_pool, avg_pool (QLinearAveragePool) and global_avg_pool
// (QLinearGlobalAveragePool).  Output extents are resolved at create (ONNX
// rules, ceil_mode); run sets only the batch.
#include <array>
#include <climits>

#include "runtime/cnn_ops.h"
#include "runtime/steps/steps.h"

namespace eb {
namespace {

constexpr int64_t kMaxGlobalPixels = int64_t{1} << 24;  // the global pool's float32 pixel count stays exact

// A pooling window over the two spatial axes of an NHWC tensor (depth 1).
struct PoolWindow {
  PoolGeometry geometry;  // geometry.batch set per call
  int64_t pad_end[3] = {0, 0, 0};
};

// The window of a record over in() (4-D, quantized, of the output's dtype), checked and resolved.
PoolWindow pool_window(const StepContext& c, const std::array<int64_t, 2>& dilations) {
  c.arity(1);
  const PlanTensor &x = c.in(), &y = c.out();
  c.require_quantized(x);
  c.same_type(x, y);
  c.rank(x, 4);
  const Record& r = c.lowered;
  const std::array<int64_t, 2> kernel = r.pair("kernel"), strides = r.pair("strides");
  const std::array<int64_t, 4> pads = r.quad("pads");
  const bool ceil_mode = r.flag("ceil_mode");
  PoolWindow w;
  PoolGeometry& g = w.geometry;
  g.in[1] = x.shape[1];
  g.in[2] = x.shape[2];
  g.channels = x.shape[3];
  for (int a = 0; a < 2; ++a) {
    g.kernel[1 + a] = kernel[a];
    g.stride[1 + a] = strides[a];
    g.dilation[1 + a] = dilations[a];
    g.pad_begin[1 + a] = pads[a];
    w.pad_end[1 + a] = pads[2 + a];
  }
  for (int a = 0; a < 3; ++a)
    if (g.kernel[a] < 1 || g.stride[a] < 1 || g.dilation[a] < 1 || g.pad_begin[a] < 0 || w.pad_end[a] < 0 ||
        g.kernel[a] > INT32_MAX || g.stride[a] > INT32_MAX || g.dilation[a] > INT32_MAX ||
        g.pad_begin[a] > INT32_MAX || w.pad_end[a] > INT32_MAX)
      c.bad("kernel, strides and dilations must be in [1, 2^31), pads in [0, 2^31)");
  if (!resolve_pool_output(&g, w.pad_end, ceil_mode)) c.bad("the (dilated) kernel is larger than the padded input");
  c.shape_is(y, {0, g.out[1], g.out[2], g.channels});
  return w;
}

struct MaxPoolStep final : Step {
  PoolWindow window;

  void run(const StepIO& io) const override {
    PoolGeometry g = window.geometry;
    g.batch = io.batch();
    max_pool(g, io.in_t().is_signed(), io.in(), io.out());
  }
};

struct AvgPoolStep final : Step {
  PoolWindow window;
  AvgPoolParams params;

  void run(const StepIO& io) const override {
    PoolGeometry g = window.geometry;
    g.batch = io.batch();
    qlinear_average_pool(g, window.pad_end, params, io.out_t().zp, io.in(), io.out());
  }
};

struct GlobalAvgPoolStep final : Step {
  void run(const StepIO& io) const override {
    const PlanTensor& x = io.in_t();
    const PlanTensor& y = io.out_t();
    qlinear_global_average_pool(io.in(), x.is_signed(), io.batch(), x.shape[1] * x.shape[2], x.shape[3], x.scale,
                                x.zp, y.scale, y.zp, io.out());
  }
};

}  // namespace

std::unique_ptr<Step> create_max_pool(const StepContext& c) {
  auto s = std::make_unique<MaxPoolStep>();
  s->window = pool_window(c, c.lowered.pair("dilations"));
  return s;
}

std::unique_ptr<Step> create_avg_pool(const StepContext& c) {
  auto s = std::make_unique<AvgPoolStep>();
  s->window = pool_window(c, {1, 1});
  const PoolGeometry& g = s->window.geometry;
  const int64_t* pad_end = s->window.pad_end;
  // A window covering the whole unpadded image runs the global formula (as ONNX Runtime does).
  if (g.kernel[1] == g.in[1] && g.kernel[2] == g.in[2] && g.pad_begin[1] == 0 && g.pad_begin[2] == 0 &&
      pad_end[1] == 0 && pad_end[2] == 0 && g.in[1] * g.in[2] >= kMaxGlobalPixels)
    c.bad("a window covering the whole image must have fewer than 2^24 pixels");
  const PlanTensor &x = c.in(), &y = c.out();
  AvgPoolParams& p = s->params;
  p.x_scale = x.scale;
  p.x_zp = x.zp;
  p.y_scale = y.scale;
  p.y_zp = static_cast<float>(y.zp);
  p.count_include_pad = c.lowered.flag("count_include_pad");
  p.range = output_range(y.is_signed());
  // Without the padding counted, a window wholly in padding averages nothing (ONNX Runtime
  // refuses pads >= kernel; Plan.validate refuses it too).
  for (int a = 1; a < 3 && !p.count_include_pad; ++a)
    if (g.pad_begin[a] >= g.kernel[a] || (g.out[a] - 1) * g.stride[a] - g.pad_begin[a] >= g.in[a])
      c.bad("a window lies wholly in the padding (count_include_pad=0 averages nothing there)");
  return s;
}

std::unique_ptr<Step> create_global_avg_pool(const StepContext& c) {
  c.arity(1);
  const PlanTensor &x = c.in(), &y = c.out();
  c.require_quantized(x);
  c.same_type(x, y);
  c.rank(x, 4);
  const int64_t pixels = x.shape[1] * x.shape[2];
  if (pixels < 1 || pixels >= kMaxGlobalPixels) c.bad("expected between 1 and 2^24 - 1 pixels per channel");
  c.shape_is(y, {0, 1, 1, x.shape[3]});
  return std::make_unique<GlobalAvgPoolStep>();
}

}  // namespace eb
