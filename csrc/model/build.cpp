// Model layer: plan tree -> PlanExecutor.  See build.h; the records are those
// python/eightbit/model/lowering.py writes (docs/format.md, "Steps").
#include "model/build.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "model/record.h"
#include "runtime/steps/steps.h"

namespace eb {
namespace {

using Kind = Value::Kind;

[[noreturn]] void bad(const std::string& where, const std::string& what) { throw ModelError(where + ": " + what); }

// The step registry: each record's "kind" -> the create function of runtime/steps/ that makes it.
struct StepKind {
  const char* name;
  CreateStep create;
};

#define EB_STEP_KIND_ENTRY(kind) {#kind, &create_##kind},
constexpr StepKind kStepKinds[] = {EB_STEP_KINDS(EB_STEP_KIND_ENTRY)};
#undef EB_STEP_KIND_ENTRY

CreateStep find_step_kind(const std::string& kind) {
  for (const StepKind& k : kStepKinds)
    if (kind == k.name) return k.create;
  return nullptr;
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

// Whether a plan op may run as an executor kind: the record says how a step runs, never what it
// computes (a transpose may not run as a byte copy, an add not as a multiplication).
bool lowers_to(const std::string& op, const std::string& kind, const Record& step, const Record& lowered) {
  if (op == "float") {  // by the float node's own op (graph/ir.py names)
    static const std::pair<const char*, const char*> kFloat[] = {
        {"conv2d", "float_conv"}, {"linear", "float_linear"}, {"matmul", "float_linear"},
        {"relu", "float_unary"}, {"relu6", "float_unary"}, {"clip", "float_unary"}, {"leaky_relu", "float_unary"},
        {"sigmoid", "float_unary"}, {"tanh", "float_unary"}, {"hardswish", "float_unary"}, {"gelu", "float_unary"},
        {"hardsigmoid", "float_unary"}, {"erf", "float_unary"}, {"flatten", "reshape"}, {"reshape", "reshape"},
        {"identity", "reshape"}, {"dropout", "reshape"}, {"batch_norm2d", "float_affine"}, {"add", "float_binary"},
        {"mul", "float_binary"}, {"div", "float_binary"}, {"bmm", "float_bmm"}, {"max_pool2d", "float_pool"},
        {"avg_pool2d", "float_pool"}, {"global_avg_pool2d", "float_pool"}, {"concat", "float_concat"},
        {"transpose", "float_transpose"}, {"pad", "float_pad"}, {"layer_norm", "float_layer_norm"},
        {"softmax", "softmax"}, {"additive_mask", "additive_mask"}, {"select", "float_select"},
        {"padded_positions", "padded_positions"}, {"reduce", "float_reduce"}};
    if (kind == "host") return true;
    const std::string& node_op = step.dict("attrs").str("op");
    for (const auto& [n, k] : kFloat)
      if (node_op == n) return kind == k && (kind != "float_binary" || lowered.str("fn") == node_op);
    return false;
  }
  if (op == "linear") return kind == "conv";
  if (op == "add" || op == "mul") return kind == "binary" && lowered.flag("mul") == (op == "mul");
  return op == kind;
}

// The kinds whose create functions check shapes holding kSequenceDim symbolically and whose
// runs read every extent from their StepIO.
bool takes_sequence(const std::string& kind) {
  static const std::unordered_set<std::string> kKinds = {
      "quantize", "dequantize", "conv", "dynamic_linear", "binary", "lut", "reshape", "softmax", "float_linear", "float_bmm",
      "float_layer_norm", "float_unary", "float_binary", "float_transpose", "float_concat", "float_select",
      "float_reduce", "embedding", "additive_mask", "padded_positions", "dynamic_bmm", "softmax_bmm"};
  return kKinds.count(kind) > 0;
}

bool holds_sequence(const PlanExecutor& ex, const StepContext& c) {
  auto has = [&](int id) {
    const std::vector<int64_t>& s = ex.tensor(id).shape;
    return std::find(s.begin(), s.end(), kSequenceDim) != s.end();
  };
  return has(c.output) || std::any_of(c.inputs.begin(), c.inputs.end(), has);
}

std::unique_ptr<PlanExecutor> build(const Value& plan_tree, const BuildOptions& options) {
  const Record model(&plan_tree, "model");
  if (model.str("format") != "eightbit-plan") bad("model", "not an eightbit plan");
  auto ex = std::make_unique<PlanExecutor>();
  if (model.has("sequence")) {
    const std::vector<int64_t> range = model.ints("sequence");
    if (range.size() != 2) bad("model", "'sequence' must be [lo, hi]");
    ex->set_sequence(range[0], range[1]);
  }
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
                        Record(&s.get("lowered", Kind::kDict), label + " lowered"), i, options};
    const std::string& kind = c.lowered.str("kind");
    const CreateStep create = find_step_kind(kind);
    if (create == nullptr) bad(label, "unknown step kind '" + kind + "'");
    if (!lowers_to(s.str("op"), kind, s, c.lowered)) bad(label, "a '" + s.str("op") + "' step cannot run as '" + kind + "'");
    if (holds_sequence(*ex, c) && !takes_sequence(kind)) bad(label, "a '" + kind + "' step does not take the sequence dimension");
    PlanStep step;
    step.impl = create(c);
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
