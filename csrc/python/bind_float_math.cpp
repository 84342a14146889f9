// Binding layer: the float32 step kernels called directly (tests check them against float64
// NumPy on every ISA; bench/float_ops_table.py times them): the active table, the thread pool's
// split, no plan.
#include <pybind11/stl.h>

#include <string>
#include <utility>

#include "python/convert.h"
#include "runtime/dispatch.h"
#include "runtime/float_ops.h"

namespace eb::bind {
namespace {

py::array_t<float> float32_input(const py::handle& h, const char* arg) {
  py::array a = as_array(h, arg);
  if (dtype_of(a) != Dt::kF32) type_error(arg, "float32", a);
  return py::array_t<float>(a);
}

py::array_t<float> like(const py::array_t<float>& x) {
  return py::array_t<float>(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
}

// "exp" or a float_unary kind: y = fn(x) elementwise (a, b: clip's bounds, leaky_relu's slope,
// hardsigmoid's alpha and beta).
py::array_t<float> float_math(const std::string& fn, const py::handle& x_in, float a, float b) {
  static const std::pair<const char*, FloatUnary> kKinds[] = {
      {"clip", FloatUnary::kClip},          {"leaky_relu", FloatUnary::kLeakyRelu},
      {"sigmoid", FloatUnary::kSigmoid},    {"tanh", FloatUnary::kTanh},
      {"hardswish", FloatUnary::kHardswish}, {"gelu", FloatUnary::kGelu},
      {"gelu_tanh", FloatUnary::kGeluTanh}, {"hardsigmoid", FloatUnary::kHardsigmoid},
      {"erf", FloatUnary::kErf}};
  py::array_t<float> x = float32_input(x_in, "x");
  py::array_t<float> y = like(x);
  if (fn == "exp") {
    py::gil_scoped_release release;
    active_float_math().exp(x.data(), x.size(), y.mutable_data());
    return y;
  }
  for (const auto& [name, kind] : kKinds)
    if (fn == name) {
      py::gil_scoped_release release;
      float_unary(FloatUnaryOp{kind, a, b}, x.data(), x.size(), y.mutable_data());
      return y;
    }
  value_error("fn: unknown float function '" + fn + "'");
}

// Softmax over `axis` (negative counts from the end).
py::array_t<float> softmax(const py::handle& x_in, int axis) {
  py::array_t<float> x = float32_input(x_in, "x");
  const int nd = static_cast<int>(x.ndim());
  if (axis < 0) axis += nd;
  if (axis < 0 || axis >= nd) value_error("axis: out of range");
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= x.shape(d);
  for (int d = axis + 1; d < nd; ++d) inner *= x.shape(d);
  py::array_t<float> y = like(x);
  py::gil_scoped_release release;
  float_softmax(x.data(), outer, x.shape(axis), inner, y.mutable_data());
  return y;
}

// Layer norm over the last axis; weight / bias None or one value per element of it.
py::array_t<float> layer_norm(const py::handle& x_in, double eps, const py::object& w_in, const py::object& b_in) {
  py::array_t<float> x = float32_input(x_in, "x");
  if (x.ndim() < 1) value_error("x: expected at least 1 dimension");
  if (!(eps > 0.0)) value_error("eps: must be positive");
  const int64_t inner = x.shape(x.ndim() - 1), rows = inner == 0 ? 0 : x.size() / inner;
  auto optional = [&](const py::object& o, const char* arg) {
    if (o.is_none()) return py::array_t<float>();
    py::array_t<float> v = float32_input(o, arg);
    if (v.size() != inner) value_error(std::string(arg) + ": expected one value per element of the last axis");
    return v;
  };
  const py::array_t<float> w = optional(w_in, "weight"), b = optional(b_in, "bias");
  const float* pw = w_in.is_none() ? nullptr : w.data();
  const float* pb = b_in.is_none() ? nullptr : b.data();
  py::array_t<float> y = like(x);
  py::gil_scoped_release release;
  float_layer_norm(x.data(), rows, inner, eps, pw, pb, y.mutable_data());
  return y;
}

}  // namespace

void bind_float_math(py::module_& m) {
  m.def("float_math", &float_math, py::arg("fn"), py::arg("x"), py::arg("a") = 0.0f, py::arg("b") = 0.0f);
  m.def("float_softmax", &softmax, py::arg("x"), py::arg("axis") = -1);
  m.def("float_layer_norm", &layer_norm, py::arg("x"), py::arg("eps") = 1e-5, py::arg("weight") = py::none(),
        py::arg("bias") = py::none());
}

}  // namespace eb::bind
