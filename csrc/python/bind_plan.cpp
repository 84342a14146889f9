// Binding layer: the plan executor (runtime/plan.h).  eightbit.model.native
// lowers a Plan through the add_* builder calls with every parameter
// resolved (multipliers, clamp bounds, tables); run() validates the inputs,
// allocates the outputs and runs the whole plan with the GIL released.
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

#include "python/convert.h"
#include "runtime/cnn_ops.h"
#include "runtime/gemm.h"
#include "runtime/plan.h"

namespace eb::bind {
namespace {

ElemType elem_type(const std::string& name) {
  if (name == "float32") return ElemType::kFloat32;
  if (name == "uint8") return ElemType::kUint8;
  if (name == "int8") return ElemType::kInt8;
  value_error("dtype: expected float32, uint8 or int8, got " + name);
}

py::dtype numpy_dtype(ElemType t) {
  if (t == ElemType::kFloat32) return py::dtype::of<float>();
  return t == ElemType::kInt8 ? py::dtype::of<int8_t>() : py::dtype::of<uint8_t>();
}

std::vector<py::ssize_t> shape_with_batch(const PlanTensor& t, int64_t batch) {
  std::vector<py::ssize_t> s(t.shape.begin(), t.shape.end());
  s[0] = batch;
  return s;
}

std::string shape_text(const PlanTensor& t) {
  std::string s = "(";
  for (size_t i = 0; i < t.shape.size(); ++i)
    s += (i ? ", " : "") + (i == 0 && t.shape[0] < 0 ? std::string("N") : std::to_string(t.shape[i]));
  return s + (t.shape.size() == 1 ? ",)" : ")");
}

std::string shape_text(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// Per-channel parameters padded to n + 16 entries (the kernels read whole panels).
template <typename T>
std::vector<T> padded(const py::handle& h, const char* arg, Dt want, int64_t n) {
  py::array a = as_array(h, arg);
  if (dtype_of(a) != want || a.size() != n) value_error(std::string(arg) + ": expected " + std::to_string(n) + " values");
  std::vector<T> out(static_cast<size_t>(n + 16), T{});
  std::memcpy(out.data(), a.data(), sizeof(T) * static_cast<size_t>(n));
  return out;
}

std::vector<uint8_t> table_bytes(const py::handle& h, const PlanTensor& out) {
  py::array t = as_array(h, "table");
  if (t.size() != 256 || t.itemsize() != 1 || dtype_of(t) != (out.is_signed() ? Dt::kS8 : Dt::kU8))
    value_error("table: expected 256 entries of the output's dtype");
  const auto* p = static_cast<const uint8_t*>(t.data());
  return {p, p + 256};
}

// A tensor the builder reads parameters from (ValueError for an unknown id).
const PlanTensor& spec(const PlanExecutor& ex, int id, const std::string& label) {
  if (id < 0 || static_cast<size_t>(id) >= ex.num_tensors()) value_error(label + ": unknown tensor id " + std::to_string(id));
  return ex.tensor(id);
}

using Pair = std::array<int64_t, 2>;
using Quad = std::array<int64_t, 4>;

PlanStep make_step(const std::string& label, std::vector<int> inputs, int output, StepParams params) {
  PlanStep s;
  s.label = label;
  s.inputs = std::move(inputs);
  s.output = output;
  s.params = std::move(params);
  return s;
}

void add_conv(PlanExecutor& ex, int x, int y, const std::string& label, const py::handle& w_in, Pair strides,
              Quad pads, Pair dilations, int64_t group, const py::object& multiplier, const py::object& m0,
              const py::object& shift, const py::handle& bias, int32_t qmin, int32_t qmax) {
  const PlanTensor& xt = spec(ex, x, label);
  py::array w = as_array(w_in, "w");
  if (dtype_of(w) != Dt::kS8 || w.ndim() != 4) value_error(label + ": w must be 4-D int8 (OIHW)");
  const int64_t oc = w.shape(0), cg = w.shape(1), kh = w.shape(2), kw = w.shape(3);
  if (group < 1 || oc < 1 || cg < 1 || kh < 1 || kw < 1 || oc % group != 0)
    value_error(label + ": weights of shape " + shape_text(w) + " do not fit group " + std::to_string(group));
  ConvStep c;
  ConvGeometry& g = c.geometry;
  // A linear layer's x is [N, ..., K]: its rows run as a 1x1 convolution over an [N, rows, 1, K] image.
  const bool linear = xt.shape.size() != 4;
  g.in_h = linear ? (xt.shape.size() >= 2 ? product_of_middle(xt.shape) : 0) : xt.shape[1];
  g.in_w = linear ? 1 : xt.shape[2];
  g.in_c = xt.shape.back();
  g.out_c = oc;
  g.kernel_h = kh;
  g.kernel_w = kw;
  g.groups = group;
  g.set_window(strides, dilations, pads);
  c.fixed = multiplier.is_none();
  if (c.fixed) {
    c.m0 = padded<int32_t>(m0, "quantized_multiplier", Dt::kI32, oc);
    c.shift = padded<int32_t>(shift, "shift", Dt::kI32, oc);
    for (int64_t i = 0; i < oc; ++i)
      if (c.m0[i] < 0 || c.shift[i] > 30 || c.shift[i] < -31) value_error(label + ": fixed-point multiplier out of range");
  } else {
    c.multiplier = padded<float>(multiplier, "multiplier", Dt::kF32, oc);
    for (int64_t i = 0; i < oc; ++i)
      if (!(c.multiplier[i] > 0.0f) || !std::isfinite(c.multiplier[i]))
        value_error(label + ": multipliers must be positive and finite");
  }
  c.bias = padded<int32_t>(bias, "bias", Dt::kI32, oc);
  c.qmin = qmin;
  c.qmax = qmax;
  const int32_t zp = 0;
  {
    py::gil_scoped_release release;
    c.weights = pack_conv(w.data(), true, oc, cg, kh, kw, group, &zp, false);
  }
  ex.add_step(make_step(label, {x}, y, std::move(c)));
}

PoolWindow pool_window(const PlanExecutor& ex, int x, Pair kernel, Pair strides, Quad pads, Pair dilations,
                       bool ceil_mode) {
  const PlanTensor& xt = spec(ex, x, "pool");
  PoolWindow w;
  PoolGeometry& g = w.geometry;
  if (xt.shape.size() == 4) {
    g.in[1] = xt.shape[1];
    g.in[2] = xt.shape[2];
    g.channels = xt.shape[3];
  }
  for (int a = 0; a < 2; ++a) {
    g.kernel[1 + a] = kernel[a];
    g.stride[1 + a] = strides[a];
    g.dilation[1 + a] = dilations[a];
    g.pad_begin[1 + a] = pads[a];
    w.pad_end[1 + a] = pads[2 + a];
  }
  w.ceil_mode = ceil_mode;
  bool sane = true;  // the step's check reports a bad window by name
  for (int a = 0; a < 3; ++a)
    sane = sane && g.kernel[a] >= 1 && g.stride[a] >= 1 && g.dilation[a] >= 1 && g.pad_begin[a] >= 0 && w.pad_end[a] >= 0;
  if (sane) resolve_pool_output(&g, w.pad_end, ceil_mode);
  return w;
}

// Runs a float step in Python: the inputs copied out of the arena, the result
// checked and copied in.
HostFn host_fn(const PlanExecutor* ex, std::vector<int> inputs, int output, py::function fn) {
  return [ex, inputs, output, fn](int64_t batch, const std::vector<const void*>& ins, void* out) {
    py::gil_scoped_acquire acquire;
    py::list args;
    for (size_t i = 0; i < ins.size(); ++i) {
      const PlanTensor& t = ex->tensor(inputs[i]);
      py::array a(numpy_dtype(t.type), shape_with_batch(t, batch));
      std::memcpy(a.mutable_data(), ins[i], static_cast<size_t>(batch * t.sample_bytes()));
      args.append(a);
    }
    const PlanTensor& yt = ex->tensor(output);
    py::array y = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(fn(args));
    const std::vector<py::ssize_t> want = shape_with_batch(yt, batch);
    if (!y || y.ndim() != static_cast<py::ssize_t>(want.size()) || !std::equal(want.begin(), want.end(), y.shape()))
      value_error("float step for '" + yt.name + "': expected a float32 result of shape " + shape_text(yt));
    std::memcpy(out, y.data(), static_cast<size_t>(batch * yt.sample_bytes()));
  };
}

// The plan inputs as C-contiguous float32 arrays of their specs' shapes, one batch.
std::vector<py::array> check_inputs(const PlanExecutor& ex, const py::sequence& feeds, int64_t* batch) {
  const std::vector<int>& ids = ex.inputs();
  if (feeds.size() != ids.size())
    value_error("expected " + std::to_string(ids.size()) + " input(s), got " + std::to_string(feeds.size()));
  std::vector<py::array> arrays;
  for (size_t i = 0; i < ids.size(); ++i) {
    const PlanTensor& t = ex.tensor(ids[i]);
    const std::string name = "input '" + t.name + "'";
    py::object obj = feeds[i];
    py::array a = py::array::ensure(obj);
    if (!a) throw py::type_error(name + ": expected an array");
    const char kind = a.dtype().kind();
    if (kind != 'f' && kind != 'i' && kind != 'u')
      throw py::type_error(name + ": expected float32 data, got " + dtype_name(a));
    a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a);
    bool ok = a.ndim() == static_cast<py::ssize_t>(t.shape.size()) && (t.shape[0] < 0 || a.shape(0) == t.shape[0]);
    for (size_t d = 1; ok && d < t.shape.size(); ++d) ok = a.shape(d) == t.shape[d];
    if (!ok) value_error(name + ": expected shape " + shape_text(t) + ", got " + shape_text(a));
    if (i == 0) *batch = a.shape(0);
    if (a.shape(0) != *batch)
      value_error(name + ": batch size " + std::to_string(a.shape(0)) + " differs from the first input's " +
                  std::to_string(*batch));
    arrays.push_back(std::move(a));
  }
  return arrays;
}

// Runs the plan; with step_seconds, the profiled run that times every step.
py::list run(PlanExecutor& ex, const py::sequence& feeds, std::vector<double>* step_seconds = nullptr) {
  int64_t batch = 0;
  const std::vector<py::array> in = check_inputs(ex, feeds, &batch);
  std::vector<const float*> in_ptr;
  for (const py::array& a : in) in_ptr.push_back(static_cast<const float*>(a.data()));
  py::list out;
  std::vector<float*> out_ptr;
  for (int id : ex.outputs()) {
    py::array_t<float> y(shape_with_batch(ex.tensor(id), batch));
    out_ptr.push_back(y.mutable_data());
    out.append(y);
  }
  py::gil_scoped_release release;
  if (step_seconds == nullptr)
    ex.run(batch, in_ptr, out_ptr);
  else
    ex.run_profiled(batch, in_ptr, out_ptr, step_seconds);
  return out;
}

py::tuple run_profiled(PlanExecutor& ex, const py::sequence& feeds) {
  std::vector<double> seconds;
  py::list out = run(ex, feeds, &seconds);
  return py::make_tuple(out, seconds);
}

// {tensor name: (count, saturated, out_of_range or None)} for every monitored tensor.
py::dict monitor_stats(PlanExecutor& ex) {
  std::vector<TensorStats> stats;
  {
    py::gil_scoped_release release;  // a run in progress may need the GIL (a host step) before it unlocks
    stats = ex.stats();
  }
  py::dict out;
  for (size_t t = 0; t < stats.size(); ++t) {
    const TensorStats& st = stats[t];
    if (!st.monitored) continue;
    out[py::str(ex.tensor(static_cast<int>(t)).name)] =
        py::make_tuple(st.count, st.saturated, st.range_checked ? py::object(py::int_(st.out_of_range)) : py::none());
  }
  return out;
}

// Float32 weights of a float island layer, `rank`-D, as a vector.
std::vector<float> float_values(const py::handle& obj, const char* arg, const std::string& label, py::ssize_t rank) {
  py::array a = as_array(obj, arg);
  if (dtype_of(a) != Dt::kF32 || (rank > 0 && a.ndim() != rank))
    value_error(label + ": " + arg + " must be a float32 array" + (rank > 0 ? " of rank " + std::to_string(rank) : ""));
  a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a);
  const auto* p = static_cast<const float*>(a.data());
  return std::vector<float>(p, p + a.size());
}

void add_float_conv(PlanExecutor& ex, int x, int y, const std::string& label, const py::handle& w_in,
                    const py::object& bias, Pair strides, Quad pads, Pair dilations, int64_t group, float lo, float hi) {
  const PlanTensor& xt = spec(ex, x, label);
  py::array w = as_array(w_in, "w");
  if (w.ndim() != 4 || xt.shape.size() != 4) value_error(label + ": a float convolution needs 4-D NCHW input and OIHW w");
  FloatConvStep s;
  ConvGeometry& g = s.conv.g;
  g.in_c = xt.shape[1];
  g.in_h = xt.shape[2];
  g.in_w = xt.shape[3];
  g.out_c = w.shape(0);
  g.kernel_h = w.shape(2);
  g.kernel_w = w.shape(3);
  g.groups = group;
  g.set_window(strides, dilations, pads);
  s.conv.w = float_values(w, "w", label, 4);
  if (!bias.is_none()) s.conv.bias = float_values(bias, "bias", label, 1);
  s.conv.lo = lo;
  s.conv.hi = hi;
  ex.add_step(make_step(label, {x}, y, std::move(s)));
}

void add_float_linear(PlanExecutor& ex, int x, int y, const std::string& label, const py::handle& w_in,
                      const py::object& bias, float lo, float hi) {
  py::array w = as_array(w_in, "w");
  if (w.ndim() != 2) value_error(label + ": w must be 2-D [out, in]");
  const std::vector<float> values = float_values(w, "w", label, 2);
  FloatLinearStep s;
  s.weights = pack_f32_transposed(values.data(), w.shape(0), w.shape(1));
  if (!bias.is_none()) s.bias = float_values(bias, "bias", label, 1);
  s.lo = lo;
  s.hi = hi;
  ex.add_step(make_step(label, {x}, y, std::move(s)));
}

}  // namespace

void bind_plan(py::module_& m) {
  py::class_<PlanExecutor>(m, "PlanExecutor",
                           "A quantized execution plan run by the C++ core in one call (internal: build it with\n"
                           "eightbit.model.native.build_executor).")
      .def(py::init<>())
      .def("add_tensor",
           [](PlanExecutor& ex, const std::string& name, const std::string& dtype, std::vector<int64_t> shape,
              float scale, int32_t zero_point) {
             PlanTensor t;
             t.name = name;
             t.type = elem_type(dtype);
             t.shape = std::move(shape);
             t.scale = scale;
             t.zp = zero_point;
             return ex.add_tensor(std::move(t));
           },
           py::arg("name"), py::arg("dtype"), py::arg("shape"), py::arg("scale") = 1.0f, py::arg("zero_point") = 0)
      .def("add_quantize", [](PlanExecutor& ex, int x, int y, const std::string& label) {
        ex.add_step(make_step(label, {x}, y, QuantizeStep{}));
      })
      .def("add_dequantize", [](PlanExecutor& ex, int x, int y, const std::string& label) {
        ex.add_step(make_step(label, {x}, y, DequantizeStep{}));
      })
      .def("add_conv", &add_conv, py::arg("x"), py::arg("y"), py::arg("label"), py::arg("w"), py::arg("strides"),
           py::arg("pads"), py::arg("dilations"), py::arg("group"), py::arg("multiplier"),
           py::arg("quantized_multiplier"), py::arg("shift"), py::arg("bias"), py::arg("qmin"), py::arg("qmax"))
      .def("add_binary",
           [](PlanExecutor& ex, int a, int b, int y, const std::string& label, bool mul, bool b_first_batch_le1,
              bool b_first_batch_gt1) {
             ex.add_step(make_step(label, {a, b}, y, BinaryStep{mul, b_first_batch_le1, b_first_batch_gt1}));
           },
           py::arg("a"), py::arg("b"), py::arg("y"), py::arg("label"), py::arg("mul"), py::arg("b_first_batch_le1"),
           py::arg("b_first_batch_gt1"))
      .def("add_max_pool",
           [](PlanExecutor& ex, int x, int y, const std::string& label, Pair kernel, Pair strides, Quad pads,
              Pair dilations, bool ceil_mode) {
             ex.add_step(make_step(label, {x}, y, MaxPoolStep{pool_window(ex, x, kernel, strides, pads, dilations, ceil_mode)}));
           },
           py::arg("x"), py::arg("y"), py::arg("label"), py::arg("kernel"), py::arg("strides"), py::arg("pads"),
           py::arg("dilations"), py::arg("ceil_mode"))
      .def("add_avg_pool",
           [](PlanExecutor& ex, int x, int y, const std::string& label, Pair kernel, Pair strides, Quad pads,
              bool ceil_mode, bool count_include_pad) {
             AvgPoolStep s;
             s.window = pool_window(ex, x, kernel, strides, pads, {1, 1}, ceil_mode);
             const PlanTensor &xt = spec(ex, x, label), &yt = spec(ex, y, label);
             s.params.x_scale = xt.scale;
             s.params.x_zp = xt.zp;
             s.params.y_scale = yt.scale;
             s.params.y_zp = static_cast<float>(yt.zp);
             s.params.count_include_pad = count_include_pad;
             s.params.range = output_range(yt.is_signed());
             ex.add_step(make_step(label, {x}, y, std::move(s)));
           },
           py::arg("x"), py::arg("y"), py::arg("label"), py::arg("kernel"), py::arg("strides"), py::arg("pads"),
           py::arg("ceil_mode"), py::arg("count_include_pad"))
      .def("add_global_avg_pool", [](PlanExecutor& ex, int x, int y, const std::string& label) {
        ex.add_step(make_step(label, {x}, y, GlobalAvgPoolStep{}));
      })
      .def("add_concat",
           [](PlanExecutor& ex, std::vector<int> xs, int y, const std::string& label, int64_t axis,
              const py::list& tables) {
             ConcatStep s;
             s.axis = axis;
             for (const py::handle& t : tables)
               s.tables.push_back(t.is_none() ? std::vector<uint8_t>{} : table_bytes(t, spec(ex, y, label)));
             ex.add_step(make_step(label, std::move(xs), y, std::move(s)));
           },
           py::arg("xs"), py::arg("y"), py::arg("label"), py::arg("axis"), py::arg("tables"))
      .def("add_lut",
           [](PlanExecutor& ex, int x, int y, const std::string& label, const py::handle& table) {
             LutStep s;
             const std::vector<uint8_t> bytes = table_bytes(table, spec(ex, y, label));
             std::copy(bytes.begin(), bytes.end(), s.table.begin());
             ex.add_step(make_step(label, {x}, y, s));
           },
           py::arg("x"), py::arg("y"), py::arg("label"), py::arg("table"))
      .def("add_reshape", [](PlanExecutor& ex, int x, int y, const std::string& label) {
        ex.add_step(make_step(label, {x}, y, ReshapeStep{}));
      })
      .def("add_softmax", [](PlanExecutor& ex, int x, int y, const std::string& label, int64_t axis) {
        ex.add_step(make_step(label, {x}, y, SoftmaxStep{axis}));
      })
      .def("add_dynamic_linear",
           [](PlanExecutor& ex, int x, int y, const std::string& label, const py::handle& w_in,
              const py::handle& w_scale, const py::handle& bias_in, bool relu, bool per_tensor) {
             py::array w = as_array(w_in, "w");
             if (dtype_of(w) != Dt::kS8 || w.ndim() != 2) value_error(label + ": w must be 2-D int8 [O, K]");
             const int64_t o = w.shape(0), k = w.shape(1);
             // PackedB packs B [K, O]: the transpose of the PyTorch-layout weights.
             std::vector<int8_t> b(static_cast<size_t>(k * o));
             const auto* src = static_cast<const int8_t*>(w.data());
             for (int64_t i = 0; i < o; ++i)
               for (int64_t j = 0; j < k; ++j) b[static_cast<size_t>(j * o + i)] = src[i * k + j];
             const int32_t zero = 0;
             DynamicLinearStep s;
             s.weights = pack_b(b.data(), true, k, o, o, &zero, false);
             s.w_scale = positive_scales(w_scale, "w_scale", o, s.weights.Np);
             py::array bias = as_array(bias_in, "bias");
             if (dtype_of(bias) != Dt::kF32 || bias.size() != o) value_error(label + ": bias must be " + std::to_string(o) + " float32 values");
             s.bias.assign(static_cast<size_t>(s.weights.Np), 0.0f);
             std::memcpy(s.bias.data(), bias.data(), sizeof(float) * static_cast<size_t>(o));
             s.relu = relu;
             s.per_tensor = per_tensor;
             ex.add_step(make_step(label, {x}, y, std::move(s)));
           },
           py::arg("x"), py::arg("y"), py::arg("label"), py::arg("w"), py::arg("w_scale"), py::arg("bias"),
           py::arg("relu"), py::arg("per_tensor") = false)
      .def("add_float_conv", &add_float_conv, py::arg("x"), py::arg("y"), py::arg("label"), py::arg("w"),
           py::arg("bias"), py::arg("strides"), py::arg("pads"), py::arg("dilations"), py::arg("group"), py::arg("lo"),
           py::arg("hi"))
      .def("add_float_linear", &add_float_linear, py::arg("x"), py::arg("y"), py::arg("label"), py::arg("w"),
           py::arg("bias"), py::arg("lo"), py::arg("hi"))
      .def("add_float_unary",
           [](PlanExecutor& ex, int x, int y, const std::string& label, const std::string& kind, float a, float b) {
             static const std::pair<const char*, FloatUnary> kKinds[] = {
                 {"clip", FloatUnary::kClip},       {"leaky_relu", FloatUnary::kLeakyRelu},
                 {"sigmoid", FloatUnary::kSigmoid}, {"tanh", FloatUnary::kTanh},
                 {"hardswish", FloatUnary::kHardswish}, {"gelu", FloatUnary::kGelu},
                 {"gelu_tanh", FloatUnary::kGeluTanh}, {"hardsigmoid", FloatUnary::kHardsigmoid},
                 {"erf", FloatUnary::kErf}};
             FloatUnaryStep s;
             const auto* it = std::find_if(std::begin(kKinds), std::end(kKinds),
                                           [&](const auto& k) { return kind == k.first; });
             if (it == std::end(kKinds)) value_error(label + ": unknown float activation '" + kind + "'");
             s.op = FloatUnaryOp{it->second, a, b};
             ex.add_step(make_step(label, {x}, y, std::move(s)));
           },
           py::arg("x"), py::arg("y"), py::arg("label"), py::arg("kind"), py::arg("a"), py::arg("b"))
      .def("add_float_affine",
           [](PlanExecutor& ex, int x, int y, const std::string& label, const py::handle& scale,
              const py::handle& shift) {
             FloatAffineStep s{float_values(scale, "scale", label, 1), float_values(shift, "shift", label, 1)};
             ex.add_step(make_step(label, {x}, y, std::move(s)));
           },
           py::arg("x"), py::arg("y"), py::arg("label"), py::arg("scale"), py::arg("shift"))
      .def("add_float_binary",
           [](PlanExecutor& ex, std::vector<int> xs, int y, const std::string& label, const std::string& op,
              const py::object& b, float lo, float hi) {
             FloatBinaryStep s;
             if (op == "add")
               s.op = FloatBinaryOp::kAdd;
             else if (op == "mul")
               s.op = FloatBinaryOp::kMul;
             else if (op == "div")
               s.op = FloatBinaryOp::kDiv;
             else
               value_error(label + ": unknown float binary op '" + op + "' (expected add, mul or div)");
             s.lo = lo;
             s.hi = hi;
             if (!b.is_none()) {
               py::array arr = as_array(b, "b");
               s.b = float_values(arr, "b", label, 0);
               for (py::ssize_t d = 0; d < arr.ndim(); ++d) s.b_shape.push_back(arr.shape(d));
               if (s.b_shape.empty()) s.b_shape.push_back(1);
             }
             ex.add_step(make_step(label, std::move(xs), y, std::move(s)));
           },
           py::arg("xs"), py::arg("y"), py::arg("label"), py::arg("op"), py::arg("b"),
           py::arg("lo") = -std::numeric_limits<float>::infinity(),
           py::arg("hi") = std::numeric_limits<float>::infinity())
      .def("add_float_bmm",
           [](PlanExecutor& ex, int a, int b, int y, const std::string& label) {
             ex.add_step(make_step(label, {a, b}, y, FloatBmmStep{}));
           },
           py::arg("a"), py::arg("b"), py::arg("y"), py::arg("label"))
      .def("add_float_pool",
           [](PlanExecutor& ex, int x, int y, const std::string& label, bool average, bool count_include_pad,
              Pair kernel, Pair stride, Quad pads) {
             const PlanTensor& xt = spec(ex, x, label);
             const PlanTensor& yt = spec(ex, y, label);
             if (xt.shape.size() != 4 || yt.shape.size() != 4) value_error(label + ": pooling needs 4-D NCHW tensors");
             FloatPoolStep s;
             FloatPool& p = s.pool;
             p.average = average;
             p.count_include_pad = count_include_pad;
             p.channels = xt.shape[1];
             p.in_h = xt.shape[2];
             p.in_w = xt.shape[3];
             p.out_h = yt.shape[2];
             p.out_w = yt.shape[3];
             std::copy(kernel.begin(), kernel.end(), p.kernel);
             std::copy(stride.begin(), stride.end(), p.stride);
             std::copy(pads.begin(), pads.end(), p.pad);
             ex.add_step(make_step(label, {x}, y, std::move(s)));
           },
           py::arg("x"), py::arg("y"), py::arg("label"), py::arg("average"), py::arg("count_include_pad"),
           py::arg("kernel"), py::arg("stride"), py::arg("pads"))
      .def("add_float_concat",
           [](PlanExecutor& ex, std::vector<int> xs, int y, const std::string& label, int64_t axis) {
             ex.add_step(make_step(label, std::move(xs), y, FloatConcatStep{axis}));
           },
           py::arg("xs"), py::arg("y"), py::arg("label"), py::arg("axis"))
      .def("add_float_transpose",
           [](PlanExecutor& ex, int x, int y, const std::string& label, std::vector<int64_t> perm) {
             ex.add_step(make_step(label, {x}, y, FloatTransposeStep{std::move(perm)}));
           },
           py::arg("x"), py::arg("y"), py::arg("label"), py::arg("perm"))
      .def("add_float_pad",
           [](PlanExecutor& ex, int x, int y, const std::string& label, const std::vector<int64_t>& pads,
              const std::string& mode, float value) {
             static const std::pair<const char*, FloatPadMode> kModes[] = {
                 {"constant", FloatPadMode::kConstant}, {"reflect", FloatPadMode::kReflect},
                 {"replicate", FloatPadMode::kReplicate}, {"circular", FloatPadMode::kCircular}};
             const auto* it = std::find_if(std::begin(kModes), std::end(kModes),
                                           [&](const auto& m) { return mode == m.first; });
             if (it == std::end(kModes)) value_error(label + ": unknown pad mode '" + mode + "'");
             if (pads.size() % 2) value_error(label + ": pads must hold the begins, then the ends of every axis");
             FloatPadStep s;
             s.pad.mode = it->second;
             s.pad.value = value;
             const auto half = static_cast<std::ptrdiff_t>(pads.size() / 2);  // ONNX order: begins, then ends
             s.pad.begin.assign(pads.begin(), pads.begin() + half);
             s.pad.end.assign(pads.begin() + half, pads.end());
             ex.add_step(make_step(label, {x}, y, std::move(s)));
           },
           py::arg("x"), py::arg("y"), py::arg("label"), py::arg("pads"), py::arg("mode"), py::arg("value"))
      .def("add_float_layer_norm",
           [](PlanExecutor& ex, int x, int y, const std::string& label, int64_t axes, double eps,
              const py::object& weight, const py::object& bias) {
             FloatLayerNormStep s;
             s.axes = axes;
             s.eps = eps;
             if (!weight.is_none()) s.weight = float_values(weight, "weight", label, 0);
             if (!bias.is_none()) s.bias = float_values(bias, "bias", label, 0);
             ex.add_step(make_step(label, {x}, y, std::move(s)));
           },
           py::arg("x"), py::arg("y"), py::arg("label"), py::arg("axes"), py::arg("eps"), py::arg("weight"),
           py::arg("bias"))
      .def("add_host",
           [](PlanExecutor& ex, std::vector<int> xs, int y, const std::string& label, py::function fn) {
             HostStep s{host_fn(&ex, xs, y, std::move(fn))};
             ex.add_step(make_step(label, std::move(xs), y, std::move(s)));
           },
           py::arg("xs"), py::arg("y"), py::arg("label"), py::arg("fn"))
      .def("finalize", &PlanExecutor::finalize, py::arg("inputs"), py::arg("outputs"))
      .def("run", [](PlanExecutor& ex, const py::sequence& feeds) { return run(ex, feeds); }, py::arg("inputs"),
           "Runs the plan on a sequence of float32 arrays (one per plan input); returns the outputs as a list.")
      .def("run_profiled", &run_profiled, py::arg("inputs"),
           "run() timing every step: returns (outputs, [seconds per step]).")
      .def("set_monitoring", &PlanExecutor::set_monitoring, py::arg("on"), py::call_guard<py::gil_scoped_release>(),
           "Counts saturation and out-of-range values of every quantized tensor on each run while on.")
      .def_property_readonly("monitoring", [](PlanExecutor& ex) {
        py::gil_scoped_release release;
        return ex.monitoring();
      })
      .def("reset_stats", &PlanExecutor::reset_stats, py::call_guard<py::gil_scoped_release>())
      .def("stats", &monitor_stats,
           "{tensor name: (elements, saturated codes, float inputs out of range or None)} since the last reset.")
      .def_property_readonly("const_bytes", &PlanExecutor::const_bytes)
      .def_property_readonly("num_steps", &PlanExecutor::num_steps)
      .def_property_readonly("arena_bytes", &PlanExecutor::arena_bytes)
      .def_property_readonly("arena_bytes_per_sample", &PlanExecutor::arena_bytes_per_sample)
      .def_property_readonly("last_run_seconds", &PlanExecutor::last_run_seconds);
}

}  // namespace eb::bind
