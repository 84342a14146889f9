// Runtime layer, step dynamic_linear: a dynamic int8 linear layer, float32
// [N, ..., K] -> [N, ..., O]: each row (or, per_tensor, the whole input, as
// ONNX Runtime's quantize_dynamic does) quantized at run time, symmetric int8
// weights packed at create; run_dynamic_linear.
#include <cmath>

#include "runtime/gemm.h"
#include "runtime/steps/steps.h"

namespace eb {
namespace {

struct DynamicLinearStep final : Step {
  PackedB weights;
  std::vector<float> w_scale, bias;  // weights.Np entries (the epilogue reads whole panels)
  bool relu = false;
  bool per_tensor = false;  // one input scale for the whole tensor, not per row

  void run(const StepIO& io) const override {
    const PackedB& w = weights;
    const int64_t rows = io.batch() * product_of_middle(io.in_t().shape);
    if (!run_dynamic_linear(static_cast<const float*>(io.in()), rows, w.K, w, w_scale.data(), bias.data(), relu,
                            static_cast<float*>(io.out()), w.N, per_tensor))
      throw std::invalid_argument(io.label() + ": the input holds NaN or infinity (dynamic quantization needs finite values)");
  }

  int64_t const_bytes() const override { return bytes_of(weights) + bytes_of(w_scale) + bytes_of(bias); }
};

}  // namespace

std::unique_ptr<Step> create_dynamic_linear(const StepContext& c) {
  c.arity(1);
  if (c.in().quantized() || c.out().quantized()) c.bad("dynamic_linear works on float32 tensors");
  const ArrayView& w = c.consts.array("w", ArrayDtype::kInt8, "int8");
  if (w.shape.size() != 2 || w.shape[0] < 1) c.bad("w must be 2-D int8 [O, K]");
  const int64_t o = w.shape[0], k = w.shape[1];
  c.linear_shapes(k, o);
  auto s = std::make_unique<DynamicLinearStep>();
  s->w_scale = per_channel<float>(c.consts, "w_scale", ArrayDtype::kFloat32, "float32", o);
  s->bias = per_channel<float>(c.consts, "bias", ArrayDtype::kFloat32, "float32", o);
  for (int64_t i = 0; i < o; ++i) {
    if (!(s->w_scale[i] > 0.0f) || !std::isfinite(s->w_scale[i])) c.bad("w_scale must be positive and finite");
    if (!std::isfinite(s->bias[i])) c.bad("bias must be finite");
  }
  s->relu = c.lowered.flag("relu");
  s->per_tensor = c.lowered.flag("per_tensor");
  // pack_b packs B [K, O]: the transpose of the PyTorch-layout weights.
  std::vector<int8_t> b(static_cast<size_t>(k * o));
  const auto* src = reinterpret_cast<const int8_t*>(w.data);
  for (int64_t i = 0; i < o; ++i)
    for (int64_t j = 0; j < k; ++j) b[static_cast<size_t>(j * o + i)] = src[i * k + j];
  const int32_t zero = 0;  // symmetric
  s->weights = pack_b(b.data(), true, k, o, o, &zero, false);
  s->w_scale.resize(static_cast<size_t>(s->weights.Np), 0.0f);
  s->bias.resize(static_cast<size_t>(s->weights.Np), 0.0f);
  return s;
}

}  // namespace eb
