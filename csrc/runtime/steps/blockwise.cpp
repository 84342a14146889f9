// Runtime layer, step blockwise_linear: a linear layer with block-quantized low-bit weights
// (python/eightbit/model/steps/blockwise.py), float32 rows in and out, each row quantized to
// symmetric int8 at run time (runtime/blockwise.h).  The codes arrive two to a byte as ONNX packs
// int4 (or, in a file, 2- and 3-bit codes at their bits) and are repacked once at create.
#include <cmath>
#include <stdexcept>
#include <string>

#include "runtime/blockwise.h"
#include "runtime/dispatch.h"
#include "runtime/steps/steps.h"

namespace eb {
namespace {

struct BlockwiseStep final : Step {
  PackedBlockB weights;
  std::vector<float> bias;
  bool relu = false;

  void run(const StepIO& io) const override {
    const int64_t rows = io.batch() * product_of_middle(io.in_t().shape);
    if (!blockwise_linear(static_cast<const float*>(io.in()), rows, weights, bias.data(), relu,
                          static_cast<float*>(io.out())))
      throw std::invalid_argument(io.label() + ": the input holds NaN or infinity (its rows are quantized by their max |x|)");
  }
  std::string kernel(const PlanTensor&) const override {
    return std::string("blockwise low-bit, ") + active_gemm().isa + " path";
  }
  int64_t const_bytes() const override {
    return bytes_of(weights.nibbles) + bytes_of(weights.scales) + bytes_of(bias);
  }
};

}  // namespace

std::unique_ptr<Step> create_blockwise_linear(const StepContext& c) {
  const Record &k = c.consts, &r = c.lowered;
  c.arity(1);
  c.float_in_out("a blockwise linear layer");
  // The codes: two a byte (w_codes, ONNX's int4 packing: the first in the low nibble), or, for
  // 2- and 3-bit grids, w_packed at their bits (StepWeights; docs/format.md).
  std::vector<int8_t> codes;
  int64_t o = 0, kk = 0;
  if (k.has("w_packed")) {
    if (k.has("w_codes")) c.bad("w_codes and w_packed are both given; a step holds its codes once");
    r.int32("w_bits", 2, 3);
    const StepWeights w(c);
    if (w.shape().size() != 2) c.bad("w_shape must be [O, K]");
    o = w.shape()[0];
    kk = w.shape()[1];
    codes.assign(w.data(), w.data() + o * kk);
  } else {
    const ArrayView& packed = k.array("w_codes", ArrayDtype::kUint8, "uint8");
    if (packed.shape.size() != 2 || packed.shape[0] < 1 || packed.shape[1] < 1) c.bad("w_codes must be 2-D [O, K / 2]");
    o = packed.shape[0];
    kk = 2 * packed.shape[1];
    codes.resize(static_cast<size_t>(o * kk));
    for (int64_t i = 0; i < o * kk / 2; ++i) {  // two's complement nibbles -> int8 in [-8, 7]
      const uint8_t byte = packed.data[i];
      codes[2 * i] = static_cast<int8_t>(((byte & 0x0f) ^ 8) - 8);
      codes[2 * i + 1] = static_cast<int8_t>(((byte >> 4) ^ 8) - 8);
    }
  }
  const int64_t block = r.integer("block_size");
  if (block < 16 || block > 256 || (block & (block - 1)) != 0 || kk % block != 0)
    c.bad("block_size must be a power of two in [16, 256] dividing K = " + std::to_string(kk));
  c.linear_shapes(kk, o);
  auto s = std::make_unique<BlockwiseStep>();
  s->relu = r.flag("relu");
  const ArrayView& scale_view = k.array("w_scales", ArrayDtype::kFloat32, "float32");
  if (scale_view.shape != std::vector<int64_t>{o, kk / block})
    c.bad("w_scales must be [" + std::to_string(o) + ", " + std::to_string(kk / block) + "] (one per row and block)");
  const std::vector<float> scales = values_of<float>(scale_view);
  for (float v : scales)
    if (!std::isfinite(v)) c.bad("w_scales must be finite");
  s->bias = floats(k, "bias", o);
  for (float v : s->bias)
    if (!std::isfinite(v)) c.bad("bias must be finite");
  s->weights = pack_blockwise(codes.data(), scales.data(), o, kk, block);
  return s;
}

}  // namespace eb
