// Model layer: plan tree -> PlanExecutor.  See build.h; the records are those
// python/eightbit/model/lowering.py writes (docs/format.md, "Steps").
#include "model/build.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/cnn_ops.h"
#include "runtime/gemm.h"

namespace eb {
namespace {

using Kind = Value::Kind;
using Pair = std::array<int64_t, 2>;
using Quad = std::array<int64_t, 4>;

[[noreturn]] void bad(const std::string& where, const std::string& what) { throw ModelError(where + ": " + what); }

const char* kind_name(Kind k) {
  static const char* const kNames[] = {"none", "bool", "int", "float", "string", "list", "dict", "array"};
  return kNames[static_cast<int>(k)];
}

// Typed access to a record's fields, each failure naming the record and the key.
class Record {
 public:
  Record(const Value* v, std::string where) : v_(v), where_(std::move(where)) {
    if (v_ == nullptr || v_->kind != Kind::kDict) bad(where_, "expected a dict");
  }
  const std::string& where() const { return where_; }

  const Value* find(const char* key) const { return v_->find(key); }
  const Value& get(const char* key, Kind kind) const {
    const Value* v = v_->find(key);
    if (v == nullptr) bad(where_, std::string("missing '") + key + "'");
    if (v->kind != kind) bad(where_, std::string("'") + key + "' must be a " + kind_name(kind) + ", got a " + kind_name(v->kind));
    return *v;
  }
  bool has(const char* key) const {
    const Value* v = v_->find(key);
    return v != nullptr && v->kind != Kind::kNone;
  }
  Record dict(const char* key) const { return Record(&get(key, Kind::kDict), where_ + "." + key); }
  const std::string& str(const char* key) const { return get(key, Kind::kString).s; }
  bool flag(const char* key) const { return get(key, Kind::kBool).b; }
  int64_t integer(const char* key) const { return get(key, Kind::kInt).i; }
  int32_t int32(const char* key, int64_t lo, int64_t hi) const {
    const int64_t v = integer(key);
    if (v < lo || v > hi) bad(where_, std::string("'") + key + "' = " + std::to_string(v) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return static_cast<int32_t>(v);
  }
  double real(const char* key) const {
    const Value* found = v_->find(key);
    if (found == nullptr) bad(where_, std::string("missing '") + key + "'");
    const Value& v = *found;
    if (v.kind == Kind::kInt) return static_cast<double>(v.i);
    if (v.kind != Kind::kFloat) bad(where_, std::string("'") + key + "' must be a number");
    return v.f;
  }
  std::vector<int64_t> ints(const char* key, size_t n = 0) const {
    const Value& l = get(key, Kind::kList);
    if (n != 0 && l.items.size() != n) bad(where_, std::string("'") + key + "' must hold " + std::to_string(n) + " ints");
    std::vector<int64_t> out;
    for (const Value& v : l.items) {
      if (v.kind != Kind::kInt) bad(where_, std::string("'") + key + "' must hold ints");
      out.push_back(v.i);
    }
    return out;
  }
  Pair pair(const char* key) const {
    const auto v = ints(key, 2);
    return {v[0], v[1]};
  }
  Quad quad(const char* key) const {
    const auto v = ints(key, 4);
    return {v[0], v[1], v[2], v[3]};
  }
  const ArrayView& array(const char* key, ArrayDtype dtype, const char* dtype_name) const {
    const ArrayView& a = *get(key, Kind::kArray).array;
    if (a.dtype != dtype) bad(where_, std::string("'") + key + "' must be a " + dtype_name + " array");
    return a;
  }

 private:
  const Value* v_;
  std::string where_;
};

template <typename T>
std::vector<T> values_of(const ArrayView& a, size_t padded_to = 0) {
  std::vector<T> out(std::max(static_cast<size_t>(a.count), padded_to), T{});
  if (a.count > 0) std::memcpy(out.data(), a.data, static_cast<size_t>(a.nbytes));
  return out;
}

// Per-channel parameters: n values, padded to n + 16 (the kernels read whole panels).
template <typename T>
std::vector<T> per_channel(const Record& r, const char* key, ArrayDtype dtype, const char* dtype_name, int64_t n) {
  const ArrayView& a = r.array(key, dtype, dtype_name);
  if (a.count != n) bad(r.where(), std::string("'") + key + "' must hold " + std::to_string(n) + " values");
  return values_of<T>(a, static_cast<size_t>(n + 16));
}

std::vector<float> floats(const Record& r, const char* key, int64_t count = -1) {
  const ArrayView& a = r.array(key, ArrayDtype::kFloat32, "float32");
  if (count >= 0 && a.count != count) bad(r.where(), std::string("'") + key + "' must hold " + std::to_string(count) + " values");
  return values_of<float>(a);
}

std::vector<float> optional_floats(const Record& r, const char* key) {
  return r.has(key) ? floats(r, key) : std::vector<float>{};
}

// Everything one step's builder needs.
struct StepContext {
  const PlanExecutor& ex;
  std::vector<int> inputs;
  int output;
  std::string label;
  Record consts, lowered;

  const PlanTensor& in(size_t i = 0) const {
    if (i >= inputs.size()) bad(label, "expected at least " + std::to_string(i + 1) + " input(s)");
    return ex.tensor(inputs[i]);
  }
  const PlanTensor& out() const { return ex.tensor(output); }
};

ConvStep conv_step(const StepContext& c) {
  const Record &k = c.consts, &r = c.lowered;
  const ArrayView& w = k.array("w", ArrayDtype::kInt8, "int8");
  const PlanTensor& x = c.in();
  // A linear layer's w is [O, K] and its x [N, ..., K]: rows run as a 1x1 convolution over [N, rows, 1, K].
  const bool linear = x.shape.size() != 4;
  if (w.shape.size() != (linear ? 2u : 4u)) bad(c.label, linear ? "w must be 2-D [O, K]" : "w must be 4-D OIHW");
  const int64_t oc = w.shape[0], cg = w.shape[1], kh = linear ? 1 : w.shape[2], kw = linear ? 1 : w.shape[3];
  const int64_t group = r.integer("group");
  if (group < 1 || oc < 1 || cg < 1 || kh < 1 || kw < 1 || oc % group != 0)
    bad(c.label, "weights do not fit group " + std::to_string(group));
  ConvStep s;
  ConvGeometry& g = s.geometry;
  g.in_h = linear ? (x.shape.size() >= 2 ? product_of_middle(x.shape) : 0) : x.shape[1];
  g.in_w = linear ? 1 : x.shape[2];
  g.in_c = x.shape.back();
  g.out_c = oc;
  g.kernel_h = kh;
  g.kernel_w = kw;
  g.groups = group;
  g.set_window(r.pair("strides"), r.pair("dilations"), r.quad("pads"));
  s.fixed = r.has("m0");
  if (s.fixed) {
    s.m0 = per_channel<int32_t>(r, "m0", ArrayDtype::kInt32, "int32", oc);
    s.shift = per_channel<int32_t>(r, "shift", ArrayDtype::kInt32, "int32", oc);
    for (int64_t i = 0; i < oc; ++i)
      if (s.m0[i] < 0 || s.shift[i] > 30 || s.shift[i] < -31) bad(c.label, "fixed-point multiplier out of range");
  } else {
    s.multiplier = per_channel<float>(r, "multiplier", ArrayDtype::kFloat32, "float32", oc);
    for (int64_t i = 0; i < oc; ++i)
      if (!(s.multiplier[i] > 0.0f) || !std::isfinite(s.multiplier[i]))
        bad(c.label, "multipliers must be positive and finite");
  }
  s.bias = per_channel<int32_t>(k, "bias", ArrayDtype::kInt32, "int32", oc);
  const int64_t lo = c.out().is_signed() ? -128 : 0;
  s.qmin = r.int32("qmin", lo, lo + 255);
  s.qmax = r.int32("qmax", s.qmin, lo + 255);
  const int32_t zp = 0;
  s.weights = pack_conv(w.data, true, oc, cg, kh, kw, group, &zp, false);
  return s;
}

PoolWindow pool_window(const StepContext& c, const Pair& dilations) {
  const Record& r = c.lowered;
  const PlanTensor& x = c.in();
  const Pair kernel = r.pair("kernel"), strides = r.pair("strides");
  const Quad pads = r.quad("pads");
  PoolWindow w;
  PoolGeometry& g = w.geometry;
  if (x.shape.size() == 4) {
    g.in[1] = x.shape[1];
    g.in[2] = x.shape[2];
    g.channels = x.shape[3];
  }
  for (int a = 0; a < 2; ++a) {
    g.kernel[1 + a] = kernel[a];
    g.stride[1 + a] = strides[a];
    g.dilation[1 + a] = dilations[a];
    g.pad_begin[1 + a] = pads[a];
    w.pad_end[1 + a] = pads[2 + a];
  }
  w.ceil_mode = r.flag("ceil_mode");
  bool sane = true;  // the executor's check reports a bad window by name
  for (int a = 0; a < 3; ++a)
    sane = sane && g.kernel[a] >= 1 && g.stride[a] >= 1 && g.dilation[a] >= 1 && g.pad_begin[a] >= 0 && w.pad_end[a] >= 0;
  if (sane) resolve_pool_output(&g, w.pad_end, w.ceil_mode);
  return w;
}

std::vector<uint8_t> table(const ArrayView& a, const PlanTensor& out, const std::string& label) {
  if (a.count != 256 || a.dtype != (out.is_signed() ? ArrayDtype::kInt8 : ArrayDtype::kUint8))
    bad(label, "a table must be 256 entries of the output's dtype");
  return {a.data, a.data + 256};
}

DynamicLinearStep dynamic_linear_step(const StepContext& c) {
  const ArrayView& w = c.consts.array("w", ArrayDtype::kInt8, "int8");
  if (w.shape.size() != 2 || w.shape[0] < 1) bad(c.label, "w must be 2-D int8 [O, K]");
  const int64_t o = w.shape[0], k = w.shape[1];
  // pack_b packs B [K, O]: the transpose of the PyTorch-layout weights.
  std::vector<int8_t> b(static_cast<size_t>(k * o));
  const auto* src = reinterpret_cast<const int8_t*>(w.data);
  for (int64_t i = 0; i < o; ++i)
    for (int64_t j = 0; j < k; ++j) b[static_cast<size_t>(j * o + i)] = src[i * k + j];
  const int32_t zero = 0;
  DynamicLinearStep s;
  s.weights = pack_b(b.data(), true, k, o, o, &zero, false);
  s.w_scale = per_channel<float>(c.consts, "w_scale", ArrayDtype::kFloat32, "float32", o);
  s.bias = per_channel<float>(c.consts, "bias", ArrayDtype::kFloat32, "float32", o);
  s.w_scale.resize(static_cast<size_t>(s.weights.Np), 0.0f);
  s.bias.resize(static_cast<size_t>(s.weights.Np), 0.0f);
  for (int64_t i = 0; i < o; ++i) {
    if (!(s.w_scale[i] > 0.0f) || !std::isfinite(s.w_scale[i])) bad(c.label, "w_scale must be positive and finite");
    if (!std::isfinite(s.bias[i])) bad(c.label, "bias must be finite");
  }
  s.relu = c.lowered.flag("relu");
  s.per_tensor = c.lowered.flag("per_tensor");
  return s;
}

FloatConvStep float_conv_step(const StepContext& c) {
  const PlanTensor& x = c.in();
  const ArrayView& w = c.consts.array("weight", ArrayDtype::kFloat32, "float32");
  if (w.shape.size() != 4 || x.shape.size() != 4) bad(c.label, "a float convolution needs 4-D NCHW input and OIHW weight");
  FloatConvStep s;
  ConvGeometry& g = s.conv.g;
  g.in_c = x.shape[1];
  g.in_h = x.shape[2];
  g.in_w = x.shape[3];
  g.out_c = w.shape[0];
  g.kernel_h = w.shape[2];
  g.kernel_w = w.shape[3];
  g.groups = c.lowered.integer("group");
  g.set_window(c.lowered.pair("strides"), c.lowered.pair("dilations"), c.lowered.quad("pads"));
  s.conv.w = values_of<float>(w);
  s.conv.bias = optional_floats(c.consts, "bias");
  s.conv.lo = static_cast<float>(c.lowered.real("lo"));
  s.conv.hi = static_cast<float>(c.lowered.real("hi"));
  return s;
}

FloatLinearStep float_linear_step(const StepContext& c) {
  const char* key = c.lowered.str("weight") == "b" ? "b" : "weight";
  const ArrayView& w = c.consts.array(key, ArrayDtype::kFloat32, "float32");
  if (w.shape.size() != 2) bad(c.label, "a float linear layer's weight must be 2-D");
  std::vector<float> values = values_of<float>(w);
  int64_t n = w.shape[0], k = w.shape[1];
  if (c.lowered.flag("transposed")) {  // b [K, N] of a matmul: W = b^T
    std::swap(n, k);
    std::vector<float> t(values.size());
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < n; ++j) t[static_cast<size_t>(j * k + i)] = values[static_cast<size_t>(i * n + j)];
    values.swap(t);
  }
  FloatLinearStep s;
  s.weights = pack_f32_transposed(values.data(), n, k);
  s.bias = optional_floats(c.consts, "bias");
  s.lo = static_cast<float>(c.lowered.real("lo"));
  s.hi = static_cast<float>(c.lowered.real("hi"));
  return s;
}

template <typename E, size_t N>
E lookup(const std::pair<const char*, E> (&table)[N], const std::string& name, const std::string& label, const char* what) {
  for (const auto& [n, e] : table)
    if (name == n) return e;
  bad(label, std::string("unknown ") + what + " '" + name + "'");
}

FloatUnaryStep float_unary_step(const StepContext& c) {
  static const std::pair<const char*, FloatUnary> kKinds[] = {
      {"clip", FloatUnary::kClip},           {"leaky_relu", FloatUnary::kLeakyRelu}, {"sigmoid", FloatUnary::kSigmoid},
      {"tanh", FloatUnary::kTanh},           {"hardswish", FloatUnary::kHardswish},  {"gelu", FloatUnary::kGelu},
      {"gelu_tanh", FloatUnary::kGeluTanh},  {"hardsigmoid", FloatUnary::kHardsigmoid}, {"erf", FloatUnary::kErf}};
  FloatUnaryStep s;
  s.op = FloatUnaryOp{lookup(kKinds, c.lowered.str("fn"), c.label, "float activation"),
                      static_cast<float>(c.lowered.real("a")), static_cast<float>(c.lowered.real("b"))};
  return s;
}

FloatBinaryStep float_binary_step(const StepContext& c) {
  static const std::pair<const char*, FloatBinaryOp> kOps[] = {
      {"add", FloatBinaryOp::kAdd}, {"mul", FloatBinaryOp::kMul}, {"div", FloatBinaryOp::kDiv}};
  FloatBinaryStep s;
  s.op = lookup(kOps, c.lowered.str("fn"), c.label, "float binary op");
  s.lo = static_cast<float>(c.lowered.real("lo"));
  s.hi = static_cast<float>(c.lowered.real("hi"));
  if (c.lowered.has("b")) {
    const ArrayView& b = c.lowered.array("b", ArrayDtype::kFloat32, "float32");
    s.b = values_of<float>(b);
    s.b_shape = b.shape.empty() ? std::vector<int64_t>{1} : b.shape;
  }
  return s;
}

FloatPoolStep float_pool_step(const StepContext& c) {
  const PlanTensor &x = c.in(), &y = c.out();
  if (x.shape.size() != 4 || y.shape.size() != 4) bad(c.label, "pooling needs 4-D NCHW tensors");
  FloatPoolStep s;
  FloatPool& p = s.pool;
  p.average = c.lowered.flag("average");
  p.count_include_pad = c.lowered.flag("count_include_pad");
  p.channels = x.shape[1];
  p.in_h = x.shape[2];
  p.in_w = x.shape[3];
  p.out_h = y.shape[2];
  p.out_w = y.shape[3];
  const Pair kernel = c.lowered.pair("kernel"), stride = c.lowered.pair("strides");
  const Quad pads = c.lowered.quad("pads");
  std::copy(kernel.begin(), kernel.end(), p.kernel);
  std::copy(stride.begin(), stride.end(), p.stride);
  std::copy(pads.begin(), pads.end(), p.pad);
  return s;
}

FloatPadStep float_pad_step(const StepContext& c) {
  static const std::pair<const char*, FloatPadMode> kModes[] = {
      {"constant", FloatPadMode::kConstant}, {"reflect", FloatPadMode::kReflect},
      {"replicate", FloatPadMode::kReplicate}, {"circular", FloatPadMode::kCircular}};
  const std::vector<int64_t> pads = c.lowered.ints("pads");
  if (pads.size() % 2) bad(c.label, "pads must hold the begins, then the ends of every axis");
  FloatPadStep s;
  s.pad.mode = lookup(kModes, c.lowered.str("mode"), c.label, "pad mode");
  s.pad.value = static_cast<float>(c.lowered.real("value"));
  const auto half = static_cast<std::ptrdiff_t>(pads.size() / 2);  // ONNX order: begins, then ends
  s.pad.begin.assign(pads.begin(), pads.begin() + half);
  s.pad.end.assign(pads.begin() + half, pads.end());
  return s;
}

// The executor's parameters of one step, from its "lowered" record.
StepParams step_params(const StepContext& c, const std::string& kind, size_t index, const BuildOptions& options) {
  const Record& r = c.lowered;
  if (kind == "quantize") return QuantizeStep{};
  if (kind == "dequantize") return DequantizeStep{};
  if (kind == "reshape") return ReshapeStep{};
  if (kind == "global_avg_pool") return GlobalAvgPoolStep{};
  if (kind == "conv") return conv_step(c);
  if (kind == "binary") {
    const std::vector<int64_t> order = r.ints("b_first", 2);
    return BinaryStep{r.flag("mul"), order[0] != 0, order[1] != 0};
  }
  if (kind == "max_pool") return MaxPoolStep{pool_window(c, r.pair("dilations"))};
  if (kind == "avg_pool") {
    AvgPoolStep s;
    s.window = pool_window(c, {1, 1});
    const PlanTensor &x = c.in(), &y = c.out();
    s.params.x_scale = x.scale;
    s.params.x_zp = x.zp;
    s.params.y_scale = y.scale;
    s.params.y_zp = static_cast<float>(y.zp);
    s.params.count_include_pad = r.flag("count_include_pad");
    s.params.range = output_range(y.is_signed());
    return s;
  }
  if (kind == "concat") {
    ConcatStep s;
    s.axis = r.integer("axis");
    const Value& tables = r.get("tables", Kind::kList);
    if (tables.items.size() != c.inputs.size()) bad(c.label, "needs one table (or none) per input");
    for (const Value& t : tables.items) {
      if (t.kind == Kind::kNone) s.tables.emplace_back();
      else if (t.kind == Kind::kArray) s.tables.push_back(table(*t.array, c.out(), c.label));
      else bad(c.label, "a table must be an array or none");
    }
    return s;
  }
  if (kind == "lut") {
    LutStep s;
    const std::vector<uint8_t> t = table(*c.consts.get("table", Kind::kArray).array, c.out(), c.label);
    std::copy(t.begin(), t.end(), s.table.begin());
    return s;
  }
  if (kind == "softmax") return SoftmaxStep{r.integer("axis")};
  if (kind == "dynamic_linear") return dynamic_linear_step(c);
  if (kind == "float_conv") return float_conv_step(c);
  if (kind == "float_linear") return float_linear_step(c);
  if (kind == "float_unary") return float_unary_step(c);
  if (kind == "float_affine") return FloatAffineStep{floats(r, "scale"), floats(r, "shift")};
  if (kind == "float_binary") return float_binary_step(c);
  if (kind == "float_bmm") return FloatBmmStep{};
  if (kind == "float_pool") return float_pool_step(c);
  if (kind == "float_concat") return FloatConcatStep{r.integer("axis")};
  if (kind == "float_transpose") return FloatTransposeStep{r.ints("perm")};
  if (kind == "float_pad") return float_pad_step(c);
  if (kind == "float_layer_norm") {
    FloatLayerNormStep s;
    s.axes = r.integer("axes");
    s.eps = r.real("eps");
    s.weight = optional_floats(r, "weight");
    s.bias = optional_floats(r, "bias");
    return s;
  }
  if (kind == "host") {
    if (!options.host) throw UnsupportedStep(c.label + ": a float node this runtime cannot run (it needs Python's float executor)");
    return HostStep{options.host(index, c.ex, c.inputs, c.output, c.label)};
  }
  bad(c.label, "unknown step kind '" + kind + "'");
}

std::vector<int> tensor_ids(const Value& names, const std::unordered_map<std::string, int>& ids, const std::string& where) {
  if (names.kind != Kind::kList) bad(where, "expected a list of tensor names");
  std::vector<int> out;
  for (const Value& n : names.items) {
    if (n.kind != Kind::kString) bad(where, "expected tensor names");
    const auto it = ids.find(n.s);
    if (it == ids.end()) bad(where, "unknown tensor '" + n.s + "'");
    out.push_back(it->second);
  }
  return out;
}

ElemType elem_type(const std::string& name, const std::string& where) {
  if (name == "float32") return ElemType::kFloat32;
  if (name == "uint8") return ElemType::kUint8;
  if (name == "int8") return ElemType::kInt8;
  bad(where, "dtype must be float32, uint8 or int8, got '" + name + "'");
}

}  // namespace

namespace {

std::unique_ptr<PlanExecutor> build(const Value& plan_tree, const BuildOptions& options) {
  const Record model(&plan_tree, "model");
  if (model.str("format") != "eightbit-plan") bad("model", "not an eightbit plan");
  auto ex = std::make_unique<PlanExecutor>();
  std::unordered_map<std::string, int> ids;
  const Value& tensors = model.get("tensors", Kind::kList);
  for (size_t i = 0; i < tensors.items.size(); ++i) {
    const Record t(&tensors.items[i], "tensor " + std::to_string(i));
    PlanTensor spec;
    spec.name = t.str("name");
    spec.type = elem_type(t.str("dtype"), t.where());
    spec.shape = t.ints("shape");
    if (spec.quantized()) {
      const double scale = t.real("scale");
      spec.scale = static_cast<float>(scale);
      if (!(scale > 0.0) || !std::isfinite(spec.scale)) bad(t.where(), "scale must be positive and finite");
      spec.zp = t.int32("zero_point", spec.is_signed() ? -128 : 0, spec.is_signed() ? 127 : 255);
    }
    if (ids.count(spec.name)) bad(t.where(), "tensor name '" + spec.name + "' is used twice");
    const std::string name = spec.name;
    ids[name] = ex->add_tensor(std::move(spec));
  }
  const Value& steps = model.get("steps", Kind::kList);
  for (size_t i = 0; i < steps.items.size(); ++i) {
    const Record s(&steps.items[i], "step " + std::to_string(i));
    const std::string label = "step " + std::to_string(i) + " (" + s.str("op") + ", from " +
                              (s.has("source") ? s.str("source") : std::string("?")) + ")";
    const Value& out = s.get("output", Kind::kString);
    const auto out_it = ids.find(out.s);
    if (out_it == ids.end()) bad(label, "unknown output tensor '" + out.s + "'");
    if (!s.has("lowered")) throw UnsupportedStep(label + ": not lowered for the C++ executor");
    const StepContext c{*ex, tensor_ids(s.get("inputs", Kind::kList), ids, label), out_it->second, label,
                        Record(&s.get("consts", Kind::kDict), label + " consts"),
                        Record(&s.get("lowered", Kind::kDict), label + " lowered")};
    PlanStep step;
    step.params = step_params(c, c.lowered.str("kind"), i, options);
    step.label = label;
    step.inputs = c.inputs;
    step.output = c.output;
    ex->add_step(std::move(step));
  }
  ex->finalize(tensor_ids(model.get("inputs", Kind::kList), ids, "model inputs"),
               tensor_ids(model.get("outputs", Kind::kList), ids, "model outputs"));
  if (ex->arena_bytes_per_sample() > options.max_arena_bytes_per_sample)
    throw ArenaLimitError("the model needs " + std::to_string(ex->arena_bytes_per_sample()) +
                     " bytes of intermediate tensors per batch item, over the limit of " +
                     std::to_string(options.max_arena_bytes_per_sample) + " (raise max_arena_bytes to allow it)");
  return ex;
}

}  // namespace

std::unique_ptr<PlanExecutor> build_executor(const Value& plan_tree, const BuildOptions& options) {
  try {
    return build(plan_tree, options);
  } catch (const ModelError&) {
    throw;
  } catch (const std::invalid_argument& e) {  // the executor's own checks: the file is what is wrong
    throw ModelError(e.what());
  }
}

}  // namespace eb
