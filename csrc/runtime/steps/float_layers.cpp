// Runtime layer, float island layers (graph nodes kept float32): float_conv
// (NCHW), float_linear ([N, ..., K] rows), float_bmm (batched matrix product),
// float_pool (NCHW max / average) and float_layer_norm.  Bias and a fused
// activation's clamp run inside; weights are packed or copied at create.
#include <algorithm>
#include <array>
#include <cmath>
#include <tuple>

#include "runtime/float_ops.h"
#include "runtime/steps/steps.h"

namespace eb {
namespace {

struct FloatConvStep final : Step {
  FloatConv conv;

  void run(const StepIO& io) const override {
    float_conv(conv, io.batch(), static_cast<const float*>(io.in()), static_cast<float*>(io.out()));
  }
  int64_t const_bytes() const override { return bytes_of(conv.w) + bytes_of(conv.bias); }
};

struct FloatLinearStep final : Step {
  PackedF32 weights;
  std::vector<float> bias;  // empty or weights.N values
  float lo = -3.4028235e38f, hi = 3.4028235e38f;

  void run(const StepIO& io) const override {
    float_linear(static_cast<const float*>(io.in()), io.batch() * product_of_middle(io.in_t().shape), weights,
                 bias.empty() ? nullptr : bias.data(), lo, hi, static_cast<float*>(io.out()));
  }
  int64_t const_bytes() const override { return bytes_of(weights.data) + bytes_of(bias); }
};

// a [N, .., M, K] @ b [N, .., K, P] -> [N, .., M, P] (same rank >= 3, leading dims broadcast).
struct FloatBmmStep final : Step {
  void run(const StepIO& io) const override {
    const std::vector<int64_t> y_shape = with_batch(io.out_t(), io.batch());
    const size_t lead = y_shape.size() - 2;
    const std::vector<int64_t> lead_shape(y_shape.begin(), y_shape.begin() + static_cast<std::ptrdiff_t>(lead));
    // Strides of an operand's matrices over the output's leading dims (0 where it broadcasts).
    auto matrix_strides = [&](const PlanTensor& t) {
      std::vector<int64_t> s = with_batch(t, io.batch());
      const int64_t matrix = s[lead] * s[lead + 1];
      s.resize(lead);
      std::vector<int64_t> strides = broadcast_strides(s, lead_shape);
      for (int64_t& v : strides) v *= matrix;
      return strides;
    };
    float_bmm(static_cast<const float*>(io.in(0)), matrix_strides(io.in_t(0)), static_cast<const float*>(io.in(1)),
              matrix_strides(io.in_t(1)), y_shape, io.in_t(0).shape.back(), static_cast<float*>(io.out()));
  }
};

struct FloatPoolStep final : Step {
  FloatPool pool;  // global average: kernel = the whole plane

  void run(const StepIO& io) const override {
    float_pool(pool, io.batch(), static_cast<const float*>(io.in()), static_cast<float*>(io.out()));
  }
};

struct FloatLayerNormStep final : Step {  // normalizes over the last `axes` dimensions (never the batch)
  int64_t axes = 1;
  double eps = 1e-5;
  std::vector<float> weight, bias;  // empty or one value per normalized element

  void run(const StepIO& io) const override {
    const std::vector<int64_t>& shape = io.in_t().shape;
    const size_t first = shape.size() - static_cast<size_t>(axes);  // the first normalized axis
    float_layer_norm(static_cast<const float*>(io.in()), io.batch() * product(shape, 1, first),
                     product(shape, first, shape.size()), eps, weight.empty() ? nullptr : weight.data(),
                     bias.empty() ? nullptr : bias.data(), static_cast<float*>(io.out()));
  }
  int64_t const_bytes() const override { return bytes_of(weight) + bytes_of(bias); }
};

}  // namespace

std::unique_ptr<Step> create_float_conv(const StepContext& c) {
  c.float_in_out("a float convolution");
  const PlanTensor &x = c.in(), &y = c.out();
  const ArrayView& w = c.consts.array("weight", ArrayDtype::kFloat32, "float32");
  if (w.shape.size() != 4 || x.shape.size() != 4) c.bad("a float convolution needs 4-D NCHW input and OIHW weight");
  auto s = std::make_unique<FloatConvStep>();
  ConvGeometry& g = s->conv.g;
  g.in_c = x.shape[1];
  g.in_h = x.shape[2];
  g.in_w = x.shape[3];
  g.out_c = w.shape[0];
  g.kernel_h = w.shape[2];
  g.kernel_w = w.shape[3];
  g.groups = c.lowered.integer("group");
  g.set_window(c.lowered.pair("strides"), c.lowered.pair("dilations"), c.lowered.quad("pads"));
  if (g.groups < 1 || g.in_c % g.groups != 0 || g.out_c % g.groups != 0 || g.kernel_h < 1 || g.kernel_w < 1)
    c.bad("channels, groups and kernel do not fit");
  s->conv.bias = optional_floats(c.consts, "bias");
  if (w.count != g.out_c * g.group_in_c() * g.kernel_h * g.kernel_w ||
      (!s->conv.bias.empty() && static_cast<int64_t>(s->conv.bias.size()) != g.out_c))
    c.bad("weights or bias of the wrong size");
  c.window(g);
  c.shape_is(y, {0, g.out_c, g.out_h(), g.out_w()});
  s->conv.w = values_of<float>(w);
  std::tie(s->conv.lo, s->conv.hi) = c.clamp();
  return s;
}

std::unique_ptr<Step> create_float_linear(const StepContext& c) {
  c.float_in_out("a float linear layer");
  const char* key = c.lowered.str("weight") == "b" ? "b" : "weight";
  const ArrayView& w = c.consts.array(key, ArrayDtype::kFloat32, "float32");
  if (w.shape.size() != 2) c.bad("a float linear layer's weight must be 2-D");
  const bool transposed = c.lowered.flag("transposed");  // b [K, N] of a matmul: W = b^T
  const int64_t n = transposed ? w.shape[1] : w.shape[0], k = transposed ? w.shape[0] : w.shape[1];
  c.linear_shapes(k, n);
  auto s = std::make_unique<FloatLinearStep>();
  s->bias = optional_floats(c.consts, "bias");
  if (!s->bias.empty() && static_cast<int64_t>(s->bias.size()) != n) c.bad("bias of the wrong size");
  std::tie(s->lo, s->hi) = c.clamp();
  std::vector<float> values = values_of<float>(w);
  if (transposed) {
    std::vector<float> t(values.size());
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < n; ++j) t[static_cast<size_t>(j * k + i)] = values[static_cast<size_t>(i * n + j)];
    values.swap(t);
  }
  s->weights = pack_f32_transposed(values.data(), n, k);
  return s;
}

std::unique_ptr<Step> create_float_bmm(const StepContext& c) {
  c.arity(2);
  const PlanTensor &a = c.in(0), &b = c.in(1), &y = c.out();
  if (a.quantized() || b.quantized() || y.quantized()) c.bad("a float matrix product works on float32 tensors");
  const size_t r = a.shape.size();
  if (r < 3 || b.shape.size() != r)
    c.bad("a " + shape_str(a.shape) + " and b " + shape_str(b.shape) + " must have the same rank >= 3");
  if (a.shape[r - 1] != b.shape[r - 2])
    c.bad("a " + shape_str(a.shape) + " has " + std::to_string(a.shape[r - 1]) + " columns, b " + shape_str(b.shape) +
          " " + std::to_string(b.shape[r - 2]) + " rows");
  std::vector<int64_t> want(r, 0);  // dim 0, the batch, is the run's for every tensor
  for (size_t d = 1; d + 2 < r; ++d) {
    const int64_t ea = a.shape[d], eb = b.shape[d];
    if (ea != eb && ea != 1 && eb != 1)
      c.bad("the leading dimensions of a " + shape_str(a.shape) + " and b " + shape_str(b.shape) + " do not broadcast");
    want[d] = ea == 1 ? eb : ea;
  }
  want[r - 2] = a.shape[r - 2];
  want[r - 1] = b.shape[r - 1];
  c.shape_is(y, want);
  return std::make_unique<FloatBmmStep>();
}

// The output's extents come from its tensor: the window must start every output pixel inside the
// (padded) input.
std::unique_ptr<Step> create_float_pool(const StepContext& c) {
  c.float_in_out("float pooling");
  const PlanTensor &x = c.in(), &y = c.out();
  if (x.shape.size() != 4 || y.shape.size() != 4) c.bad("pooling needs 4-D NCHW tensors");
  auto s = std::make_unique<FloatPoolStep>();
  FloatPool& p = s->pool;
  p.average = c.lowered.flag("average");
  p.count_include_pad = c.lowered.flag("count_include_pad");
  p.channels = x.shape[1];
  p.in_h = x.shape[2];
  p.in_w = x.shape[3];
  p.out_h = y.shape[2];
  p.out_w = y.shape[3];
  const std::array<int64_t, 2> kernel = c.lowered.pair("kernel"), stride = c.lowered.pair("strides");
  const std::array<int64_t, 4> pads = c.lowered.quad("pads");
  std::copy(kernel.begin(), kernel.end(), p.kernel);
  std::copy(stride.begin(), stride.end(), p.stride);
  std::copy(pads.begin(), pads.end(), p.pad);
  if (p.kernel[0] < 1 || p.kernel[1] < 1 || p.stride[0] < 1 || p.stride[1] < 1 || p.pad[0] < 0 || p.pad[1] < 0 ||
      p.pad[2] < 0 || p.pad[3] < 0 || p.out_h < 1 || p.out_w < 1 ||
      p.pad[0] >= p.kernel[0] || p.pad[1] >= p.kernel[1] ||  // a first window wholly in padding
      (p.out_h - 1) * p.stride[0] - p.pad[0] >= p.in_h || (p.out_w - 1) * p.stride[1] - p.pad[1] >= p.in_w)
    c.bad("pooling window out of range");
  c.shape_is(y, {0, p.channels, p.out_h, p.out_w});
  return s;
}

std::unique_ptr<Step> create_float_layer_norm(const StepContext& c) {
  c.float_in_out("layer norm");
  const std::vector<int64_t>& x = c.in().shape;
  auto s = std::make_unique<FloatLayerNormStep>();
  s->axes = c.lowered.integer("axes");
  s->eps = c.lowered.real("eps");
  s->weight = optional_floats(c.lowered, "weight");
  s->bias = optional_floats(c.lowered, "bias");
  if (s->axes < 1 || s->axes >= static_cast<int64_t>(x.size())) c.bad("layer norm must normalize trailing non-batch axes");
  if (holds_sequence(x, x.size() - static_cast<size_t>(s->axes), x.size())) c.bad("layer norm over the sequence dimension");
  const int64_t inner = product(x, x.size() - static_cast<size_t>(s->axes), x.size());
  if ((!s->weight.empty() && static_cast<int64_t>(s->weight.size()) != inner) ||
      (!s->bias.empty() && static_cast<int64_t>(s->bias.size()) != inner))
    c.bad("weight and bias need one value per normalized element");
  if (!(s->eps > 0.0) || !std::isfinite(s->eps)) c.bad("eps must be positive and finite");
  c.shape_is(c.out(), x);
  return s;
}

}  // namespace eb
