// Runtime layer, step conv: a quantized convolution, or a linear layer (run as
// a 1x1 convolution over [N, rows, 1, K] for an [N, ..., K] input), with the
// requantization ("float" multipliers or "fixed" m0 / shift) and the fused
// activation's clamp in its epilogue.  Weights are packed once, at create.
#include <cmath>

#include "runtime/conv.h"
#include "runtime/dispatch.h"
#include "runtime/gemm.h"
#include "runtime/steps/steps.h"

namespace eb {
namespace {

struct ConvStep final : Step {
  ConvGeometry geometry;               // geometry.batch is set per call
  bool linear = false;                 // rows [N, rows, 1, K]: in_h is set per call too
  PackedConv weights;
  bool fixed = false;                  // requant "fixed" (m0 / shift) instead of "float"
  std::vector<float> multiplier;       // [out_c + 16] (kernels read whole panels)
  std::vector<int32_t> m0, shift;      // [out_c + 16]
  std::vector<int32_t> bias;           // [out_c + 16]
  int32_t qmin = 0, qmax = 255;        // the fused activation's clamp

  void run(const StepIO& io) const override {
    const PlanTensor& x = io.in_t();
    const PlanTensor& y = io.out_t();
    ConvGeometry g = geometry;
    g.batch = io.batch();
    if (linear) g.in_h = product_of_middle(x.shape);  // the run's rows (the sequence may vary)
    Epilogue ep;
    ep.kind = fixed ? OutputKind::kQuantFixed : OutputKind::kQuantFloat;
    ep.multiplier = fixed ? nullptr : multiplier.data();
    ep.fixed_m0 = fixed ? m0.data() : nullptr;
    ep.fixed_shift = fixed ? shift.data() : nullptr;
    ep.bias_i32 = bias.data();
    ep.out_zp = y.zp;
    ep.out_signed = y.is_signed();
    ep.qmin = qmin;
    ep.qmax = qmax;
    ep.out = io.out();
    ep.ldc = g.out_c;
    run_conv(g, io.in(), x.is_signed(), x.zp, weights, ep);
  }

  std::string kernel(const PlanTensor& x) const override {
    return linear ? gemm_kernel_name(active_gemm()) : conv_kernel_name(geometry, x.is_signed(), weights);
  }
  int64_t const_bytes() const override {
    const PackedConv& w = weights;
    int64_t n = bytes_of(w.zp_user) + bytes_of(w.dw_weights) + bytes_of(w.dw_weights_i8) + bytes_of(w.dw_weight_sum);
    for (const PackedB& b : w.group_b) n += bytes_of(b);
    return n + bytes_of(multiplier) + bytes_of(m0) + bytes_of(shift) + bytes_of(bias);
  }
};

}  // namespace

std::unique_ptr<Step> create_conv(const StepContext& c) {
  const Record &k = c.consts, &r = c.lowered;
  c.arity(1);
  const PlanTensor &x = c.in(), &y = c.out();
  c.require_quantized(x);
  c.require_quantized(y);
  // A linear layer's w is [O, K] and its x [N, ..., K]: rows run as a 1x1 convolution over [N, rows, 1, K].
  const bool linear = x.shape.size() != 4;
  if (linear && x.shape.size() < 2) c.bad("a linear layer needs an [N, ..., K] input");
  c.rank(y, x.shape.size());
  const StepWeights w(c);
  const std::vector<int64_t>& ws = w.shape();
  if (ws.size() != (linear ? 2u : 4u)) c.bad(linear ? "w must be 2-D [O, K]" : "w must be 4-D OIHW");
  const int64_t oc = ws[0], cg = ws[1], kh = linear ? 1 : ws[2], kw = linear ? 1 : ws[3];
  const int64_t group = r.integer("group");
  if (group < 1 || oc < 1 || cg < 1 || kh < 1 || kw < 1 || oc % group != 0)
    c.bad("weights do not fit group " + std::to_string(group));
  auto s = std::make_unique<ConvStep>();
  ConvGeometry& g = s->geometry;
  // (a linear layer's rows are set per run: the sequence may be among them)
  g.in_h = linear ? (holds_sequence(x.shape, 1, x.shape.size()) ? 1 : product_of_middle(x.shape)) : x.shape[1];
  if (!linear && holds_sequence(x.shape, 1, 4)) c.bad("a convolution over the sequence dimension");
  g.in_w = linear ? 1 : x.shape[2];
  g.in_c = x.shape.back();
  g.out_c = oc;
  g.kernel_h = kh;
  g.kernel_w = kw;
  g.groups = group;
  g.set_window(r.pair("strides"), r.pair("dilations"), r.quad("pads"));
  if (g.in_c != cg * group)
    c.bad("input '" + x.name + "' has " + std::to_string(g.in_c) + " channels; the weights do not fit it");
  c.window(g);
  if (linear && (g.stride_h != 1 || g.stride_w != 1 || g.dilation_h != 1 || g.dilation_w != 1 || g.pad_top != 0 ||
                 g.pad_left != 0 || g.pad_bottom != 0 || g.pad_right != 0))
    c.bad("a linear layer has a 1x1 window: unit strides and dilations, no pads");
  c.shape_is(y, linear ? with_last(x.shape, oc) : std::vector<int64_t>{0, g.out_h(), g.out_w(), oc});

  s->fixed = r.has("m0");
  if (s->fixed) {
    s->m0 = per_channel<int32_t>(r, "m0", ArrayDtype::kInt32, "int32", oc);
    s->shift = per_channel<int32_t>(r, "shift", ArrayDtype::kInt32, "int32", oc);
    for (int64_t i = 0; i < oc; ++i)
      if (s->m0[i] < 0 || s->shift[i] > 30 || s->shift[i] < -31) c.bad("fixed-point multiplier out of range");
  } else {
    s->multiplier = per_channel<float>(r, "multiplier", ArrayDtype::kFloat32, "float32", oc);
    for (int64_t i = 0; i < oc; ++i)
      if (!(s->multiplier[i] > 0.0f) || !std::isfinite(s->multiplier[i]))
        c.bad("multipliers must be positive and finite");
  }
  s->bias = per_channel<int32_t>(k, "bias", ArrayDtype::kInt32, "int32", oc);
  // The clamp in output codes: inside the output type, and not empty.
  const int64_t lo = y.is_signed() ? -128 : 0;
  s->qmin = r.int32("qmin", lo, lo + 255);
  s->qmax = r.int32("qmax", s->qmin, lo + 255);
  const int32_t zp = 0;  // symmetric weights
  s->linear = linear;
  s->weights = pack_conv(w.data(), true, oc, cg, kh, kw, group, &zp, false);
  return s;
}

}  // namespace eb
