// Runtime layer, steps binary_conv / binary_linear: binary (+-1) layers between quantized
// tensors (python/eightbit/model/steps/xnor.py).  The input's codes become sign bits against a
// per-channel count of codes (the record's x_codes: how many of the type's codes, lowest first,
// dequantize below the threshold), the weights' sign bits are packed once at create, the dot
// products come from XOR + popcount (runtime/binary.h), then y = float(dot) * w_scale + bias is
// quantized to the output, clamped to the fused activation's range.  A linear layer runs as a
// 1x1 convolution over [N, rows, 1, K].
#include <cmath>
#include <cstring>

#include "eightbit/cnn_ops.h"
#include "runtime/binary.h"
#include "runtime/dispatch.h"
#include "runtime/steps/steps.h"

namespace eb {
namespace {

struct XnorStep final : Step {
  ConvGeometry geometry;       // batch (and a linear layer's rows) set per run
  bool linear = false;
  bool zero_padding = true;
  PackedBinaryConv weights;
  std::vector<int32_t> x_codes;  // [C]
  std::vector<float> scale, bias;
  int32_t qmin = 0, qmax = 255;

  void run(const StepIO& io) const override {
    const PlanTensor &x = io.in_t(), &y = io.out_t();
    ConvGeometry g = geometry;
    g.batch = io.batch();
    if (linear) g.in_h = product_of_middle(x.shape);
    const int64_t pixels = g.batch * g.in_h * g.in_w, outputs = g.batch * g.out_h() * g.out_w();
    thread_local AlignedBuffer<uint64_t> bits;
    thread_local AlignedBuffer<int32_t> dots;
    thread_local AlignedBuffer<float> real;
    bits.reserve_discard(static_cast<size_t>(std::max<int64_t>(pixels * weights.channel_words, 1)));
    dots.reserve_discard(static_cast<size_t>(std::max<int64_t>(outputs * weights.out_c, 1)));
    real.reserve_discard(static_cast<size_t>(std::max<int64_t>(outputs * weights.out_c, 1)));
    pack_code_signs(static_cast<const uint8_t*>(io.in()), pixels, g.in_c, x.is_signed(), x_codes.data(),
                    bits.data());
    binary_conv_dots(g, bits.data(), weights, zero_padding, dots.data());
    scale_dots(dots.data(), outputs, weights.out_c, scale.data(), bias.data(), real.data());
    const OutputRange range{static_cast<float>(qmin), static_cast<float>(qmax), y.is_signed()};
    active_cnn().quantize(real.data(), outputs * weights.out_c, y.scale, y.zp, range, io.out());
  }

  std::string kernel(const PlanTensor&) const override {
    return std::string("binary xor + popcount, ") + active_binary().name;
  }
  int64_t const_bytes() const override {
    return bytes_of(weights.b.data) + bytes_of(weights.tap_sums) + bytes_of(x_codes) + bytes_of(scale) +
           bytes_of(bias);
  }
};

std::unique_ptr<Step> create_xnor(const StepContext& c, bool linear) {
  const Record &k = c.consts, &r = c.lowered;
  c.arity(1);
  const PlanTensor &x = c.in(), &y = c.out();
  c.require_quantized(x);
  c.require_quantized(y);
  if (linear ? x.shape.size() < 2 || x.shape.size() == 4 : x.shape.size() != 4)
    c.bad(linear ? "a binary linear layer needs an [N, ..., K] input (not 4-D)" : "x must be 4-D NHWC");
  if (!linear && holds_sequence(x.shape, 1, 4)) c.bad("a convolution over the sequence dimension");
  c.rank(y, x.shape.size());
  const ArrayView& w = k.array("w_signs", ArrayDtype::kUint8, "uint8");
  if (w.shape.size() != (linear ? 2u : 4u)) c.bad(linear ? "w_signs must be 2-D [O, K bytes]" : "w_signs must be 4-D");
  const int64_t channels = x.shape.back(), o = w.shape[0];
  const int64_t kh = linear ? 1 : w.shape[1], kw = linear ? 1 : w.shape[2], bytes = w.shape.back();
  if (channels < 1 || o < 1 || kh < 1 || kw < 1 || bytes != (channels + 7) / 8)
    c.bad("w_signs does not fit " + std::to_string(channels) + " input channels");
  auto s = std::make_unique<XnorStep>();
  s->linear = linear;
  ConvGeometry& g = s->geometry;
  g.in_h = linear ? (holds_sequence(x.shape, 1, x.shape.size()) ? 1 : product_of_middle(x.shape)) : x.shape[1];
  g.in_w = linear ? 1 : x.shape[2];
  g.in_c = channels;
  g.out_c = o;
  g.kernel_h = kh;
  g.kernel_w = kw;
  if (!linear) g.set_window(r.pair("strides"), r.pair("dilations"), r.quad("pads"));
  c.window(g);
  c.shape_is(y, linear ? with_last(x.shape, o) : std::vector<int64_t>{0, g.out_h(), g.out_w(), o});
  if (!linear) s->zero_padding = r.flag("zero_padding");

  // Sign bytes -> words per tap; a bit past the channels would be counted by the kernels.
  const int64_t taps = kh * kw, cw = (channels + 63) / 64;
  std::vector<uint64_t> bits(static_cast<size_t>(o * taps * cw), 0);
  const uint8_t pad_mask = channels % 8 == 0 ? 0 : static_cast<uint8_t>(0xff << (channels % 8));
  for (int64_t row = 0; row < o * taps; ++row) {
    const uint8_t* src = w.data + row * bytes;
    if ((src[bytes - 1] & pad_mask) != 0) c.bad("w_signs has bits set past the input channels");
    std::memcpy(bits.data() + row * cw, src, static_cast<size_t>(bytes));  // little-endian words
  }
  if (taps * channels > (int64_t{1} << 31) - 1) c.bad("more than 2^31 - 1 signs per output");
  s->weights = pack_binary_conv(bits.data(), o, channels, kh, kw);

  s->scale = floats(k, "w_scale", o);
  s->bias = floats(k, "bias", o);
  for (int64_t i = 0; i < o; ++i) {
    if (!(s->scale[i] > 0.0f) || !std::isfinite(s->scale[i])) c.bad("w_scale must be positive and finite");
    if (!std::isfinite(s->bias[i])) c.bad("bias must be finite");
  }
  s->x_codes = values_of<int32_t>(r.array("x_codes", ArrayDtype::kInt32, "int32"));
  if (static_cast<int64_t>(s->x_codes.size()) != channels) c.bad("x_codes must hold one count per input channel");
  for (int32_t v : s->x_codes)
    if (v < 0 || v > 256) c.bad("x_codes must be in [0, 256]");
  const int64_t lo = y.is_signed() ? -128 : 0;
  s->qmin = r.int32("qmin", lo, lo + 255);
  s->qmax = r.int32("qmax", s->qmin, lo + 255);
  return s;
}

}  // namespace

std::unique_ptr<Step> create_binary_conv(const StepContext& c) { return create_xnor(c, false); }
std::unique_ptr<Step> create_binary_linear(const StepContext& c) { return create_xnor(c, true); }

}  // namespace eb
