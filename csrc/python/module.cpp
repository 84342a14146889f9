// Binding layer: `eightbit._core`.  Converts and validates arrays, releases
// the GIL around compute, maps errors (TypeError for a wrong dtype,
// ValueError for a wrong shape or value).  No numerics here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <stdexcept>
#include <string>

#include "python/convert.h"
#include "runtime/cpu_features.h"
#include "runtime/dispatch.h"
#include "runtime/gemm.h"
#include "runtime/quantize.h"
#include "runtime/thread_pool.h"

namespace py = pybind11;

namespace eb::bind {
void bind_cnn_ops(py::module_& m);  // bind_cnn_ops.cpp
void bind_plan(py::module_& m);     // bind_plan.cpp
void bind_float_math(py::module_& m);  // bind_float_math.cpp
void bind_binary(py::module_& m);      // bind_binary.cpp
void bind_blockwise(py::module_& m);   // bind_blockwise.cpp
}  // namespace eb::bind
using eb::PackedB;
using namespace eb::bind;

namespace {

PackedB make_packed(const py::array& b_in, const py::object& zp_obj) {
  py::array b = as_array(b_in, "b");
  const Dt dt = dtype_of(b);
  if (dt != Dt::kU8 && dt != Dt::kS8) type_error("b", kUint8OrInt8, b);
  if (b.ndim() != 2) value_error("b: expected a 2-D [K, N] matrix, got " + std::to_string(b.ndim()) + "-D");
  const int64_t K = b.shape(0), N = b.shape(1);
  bool per_column = false;
  std::vector<int32_t> zp = zero_points(zp_obj, "b_zero_point", dt, N, &per_column);
  py::gil_scoped_release release;
  return eb::pack_b(b.data(), dt == Dt::kS8, K, N, N, zp.data(), per_column);
}

// The A operand: 2-D uint8/int8 matching B's K; zero point per tensor or per row.
struct AInput {
  py::array a;
  std::vector<int32_t> zp;
  eb::AOperand op;
};

AInput make_a(const py::handle& a_in, const py::object& zp_obj, const PackedB& b) {
  AInput in;
  in.a = as_array(a_in, "a");
  const Dt dt = dtype_of(in.a);
  if (dt != Dt::kU8 && dt != Dt::kS8) type_error("a", kUint8OrInt8, in.a);
  if (in.a.ndim() != 2) value_error("a: expected a 2-D [M, K] matrix, got " + std::to_string(in.a.ndim()) + "-D");
  const int64_t M = in.a.shape(0), K = in.a.shape(1);
  if (K != b.K)
    value_error("a: inner dimension K=" + std::to_string(K) + " does not match b's K=" + std::to_string(b.K));
  bool per_row = false;
  in.zp = zero_points(zp_obj, "a_zero_point", dt, M, &per_row);
  in.op.data = in.a.data();
  in.op.is_signed = dt == Dt::kS8;
  in.op.M = M;
  in.op.K = K;
  in.op.lda = K;
  in.op.zp = in.zp.data();
  in.op.zp_per_row = per_row;
  return in;
}

py::array_t<int32_t> matmul_integer(const py::handle& a_in, const PackedB& b, const py::object& a_zp) {
  AInput a = make_a(a_in, a_zp, b);
  py::array_t<int32_t> out({a.op.M, b.N});
  eb::Epilogue ep;
  ep.kind = eb::OutputKind::kInt32;
  ep.out = out.mutable_data();
  ep.ldc = b.N;
  {
    py::gil_scoped_release release;
    if (b.K == 0)
      std::memset(out.mutable_data(), 0, sizeof(int32_t) * a.op.M * b.N);
    else
      eb::run_gemm(a.op, b, ep);
  }
  return out;
}

py::array qlinear_output(int64_t M, int64_t N, bool y_signed) {
  if (y_signed) return py::array_t<int8_t>({M, N});
  return py::array_t<uint8_t>({M, N});
}

py::array qlinear_matmul(const py::handle& a_in, const py::object& a_zp, const PackedB& b,
                         const py::handle& multiplier, int32_t y_zp, bool y_signed) {
  AInput a = make_a(a_in, a_zp, b);
  std::vector<float> mult = positive_scales(multiplier, "multiplier", b.N, b.Np);
  py::array out = qlinear_output(a.op.M, b.N, y_signed);
  eb::Epilogue ep = quant_epilogue(out.mutable_data(), b.N, y_zp, y_signed);
  ep.kind = eb::OutputKind::kQuantFloat;
  ep.multiplier = mult.data();
  py::gil_scoped_release release;
  eb::run_gemm(a.op, b, ep);
  return out;
}

py::array qlinear_matmul_fixed(const py::handle& a_in, const py::object& a_zp, const PackedB& b,
                               const py::handle& m0_in, const py::handle& shift_in, int32_t y_zp, bool y_signed) {
  AInput a = make_a(a_in, a_zp, b);
  std::vector<int32_t> m0 = per_column_int32(m0_in, "quantized_multiplier", b.N, b.Np);
  std::vector<int32_t> shift = per_column_int32(shift_in, "shift", b.N, b.Np);
  for (int64_t i = 0; i < b.N; ++i) {
    if (m0[i] < 0) value_error("quantized_multiplier: must be in [0, 2^31)");
    if (shift[i] > 30 || shift[i] < -31) value_error("shift: must be in [-31, 30]");
  }
  py::array out = qlinear_output(a.op.M, b.N, y_signed);
  eb::Epilogue ep = quant_epilogue(out.mutable_data(), b.N, y_zp, y_signed);
  ep.kind = eb::OutputKind::kQuantFixed;
  ep.fixed_m0 = m0.data();
  ep.fixed_shift = shift.data();
  py::gil_scoped_release release;
  eb::run_gemm(a.op, b, ep);
  return out;
}

py::array_t<float> quantized_linear(const py::handle& x_in, const PackedB& w, const py::handle& w_scale,
                                    const py::object& bias_obj, bool relu, bool per_tensor) {
  py::array x = as_array(x_in, "x");
  if (dtype_of(x) != Dt::kF32) type_error("x", "float32", x);
  if (x.ndim() != 2) value_error("x: expected a 2-D [batch, in_features] array");
  const int64_t M = x.shape(0), K = x.shape(1);
  if (K != w.K) value_error("x: has " + std::to_string(K) + " features, the layer expects " + std::to_string(w.K));
  if (!w.b_signed || w.any_zp_shifted) value_error("weight: the layer needs symmetric int8 weights");
  std::vector<float> scale = positive_scales(w_scale, "weight_scale", w.N, w.Np);
  std::vector<float> bias;
  if (!bias_obj.is_none()) {
    py::array b = as_array(bias_obj, "bias");
    if (dtype_of(b) != Dt::kF32) type_error("bias", "float32", b);
    if (b.size() != w.N) value_error("bias: expected " + std::to_string(w.N) + " values, got " + std::to_string(b.size()));
    bias.assign(static_cast<size_t>(w.Np), 0.0f);
    std::memcpy(bias.data(), b.data(), sizeof(float) * w.N);
  }
  py::array_t<float> y({M, w.N});
  bool ok;
  {
    py::gil_scoped_release release;
    ok = eb::run_dynamic_linear(static_cast<const float*>(x.data()), M, K, w, scale.data(),
                                bias.empty() ? nullptr : bias.data(), relu, y.mutable_data(), w.N, per_tensor);
  }
  if (!ok) value_error("x: contains NaN or infinity; dynamic quantization needs finite inputs");
  return y;
}

// [outer, channels, inner] view of x around `axis` (per-axis) or flat.
struct AxisView {
  int64_t outer = 1, channels = 1, inner = 1;
};

AxisView axis_view(const py::array& x, int64_t axis, bool per_axis) {
  AxisView v;
  if (!per_axis) {
    v.inner = x.size();
    return v;
  }
  for (int64_t d = 0; d < x.ndim(); ++d) {
    if (d < axis) v.outer *= x.shape(d);
    else if (d == axis) v.channels = x.shape(d);
    else v.inner *= x.shape(d);
  }
  return v;
}

void check_axis(const py::array& x, int64_t axis, bool per_axis) {
  if (per_axis && (axis < 0 || axis >= x.ndim()))
    value_error("axis: " + std::to_string(axis) + " is out of range for a " + std::to_string(x.ndim()) + "-D input");
}

py::array quantize_linear(const py::handle& x_in, const py::handle& scale_in, const py::handle& zp_in,
                          int64_t axis, bool per_axis, bool y_signed) {
  py::array x = as_array(x_in, "x");
  if (dtype_of(x) != Dt::kF32) type_error("x", "float32", x);
  check_axis(x, axis, per_axis);
  const AxisView v = axis_view(x, axis, per_axis);
  std::vector<float> scale = positive_scales(scale_in, "y_scale", v.channels, v.channels);
  py::array zpa = as_array(zp_in, "y_zero_point");
  if (dtype_of(zpa) != Dt::kI32 || zpa.size() != static_cast<py::ssize_t>(scale.size()))
    value_error("y_zero_point: internal: expected int32 of the scale's size");
  std::vector<int32_t> zp(static_cast<const int32_t*>(zpa.data()), static_cast<const int32_t*>(zpa.data()) + zpa.size());
  std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  py::array y = y_signed ? py::array(py::array_t<int8_t>(shape)) : py::array(py::array_t<uint8_t>(shape));
  {
    py::gil_scoped_release release;
    eb::quantize_linear(static_cast<const float*>(x.data()), v.outer, v.channels, v.inner, scale.data(), zp.data(),
                        per_axis, y_signed ? -128 : 0, y_signed ? 127 : 255, y.mutable_data());
  }
  return y;
}

py::array_t<float> dequantize_linear(const py::handle& x_in, const py::handle& scale_in, const py::handle& zp_in,
                                     int64_t axis, bool per_axis) {
  py::array x = as_array(x_in, "x");
  const Dt dt = dtype_of(x);
  if (dt != Dt::kU8 && dt != Dt::kS8 && dt != Dt::kI32) type_error("x", "uint8, int8 or int32", x);
  check_axis(x, axis, per_axis);
  const AxisView v = axis_view(x, axis, per_axis);
  std::vector<float> scale = positive_scales(scale_in, "x_scale", v.channels, v.channels);
  py::array zpa = as_array(zp_in, "x_zero_point");
  if (dtype_of(zpa) != Dt::kI32 || zpa.size() != static_cast<py::ssize_t>(scale.size()))
    value_error("x_zero_point: internal: expected int32 of the scale's size");
  std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  py::array_t<float> y(shape);
  {
    py::gil_scoped_release release;
    eb::dequantize_linear(x.data(), dt == Dt::kI32 ? 4 : 1, dt == Dt::kS8, v.outer, v.channels, v.inner, scale.data(),
                          static_cast<const int32_t*>(zpa.data()), per_axis, y.mutable_data());
  }
  return y;
}

py::tuple dynamic_quantize_linear(const py::handle& x_in) {
  py::array x = as_array(x_in, "x");
  if (dtype_of(x) != Dt::kF32) type_error("x", "float32", x);
  std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  py::array_t<uint8_t> y(shape);
  eb::QuantParams q;
  bool ok;
  {
    py::gil_scoped_release release;
    const float* px = static_cast<const float*>(x.data());
    ok = eb::dynamic_qparams(px, x.size(), &q);
    if (ok) eb::quantize_dynamic(px, x.size(), q, y.mutable_data());
  }
  if (!ok) value_error("x: contains NaN or infinity; dynamic quantization needs finite inputs");
  return py::make_tuple(y, q.scale, q.zero_point);
}

// Per-row DynamicQuantizeLinear: the input quantization of QuantizedLinear.
py::tuple dynamic_quantize_rows(const py::handle& x_in) {
  py::array x = as_array(x_in, "x");
  if (dtype_of(x) != Dt::kF32) type_error("x", "float32", x);
  if (x.ndim() != 2) value_error("x: expected a 2-D [rows, K] array");
  const int64_t M = x.shape(0), K = x.shape(1);
  py::array_t<uint8_t> y({M, K});
  py::array_t<float> scale(M);
  py::array_t<uint8_t> zp(M);
  bool ok = true;
  {
    py::gil_scoped_release release;
    const float* px = static_cast<const float*>(x.data());
    for (int64_t m = 0; m < M && ok; ++m) {
      eb::QuantParams q;
      ok = eb::dynamic_qparams(px + m * K, K, &q);
      if (!ok) break;
      eb::quantize_dynamic(px + m * K, K, q, y.mutable_data() + m * K);
      scale.mutable_data()[m] = q.scale;
      zp.mutable_data()[m] = static_cast<uint8_t>(q.zero_point);
    }
  }
  if (!ok) value_error("x: contains NaN or infinity; dynamic quantization needs finite inputs");
  return py::make_tuple(y, scale, zp);
}

// x / scale elementwise (same shapes, float32), through the active ISA's quantize quotient: a
// test hook for the division-free path (scales need not be valid quantization scales).
py::array_t<float> divide_by_scale(const py::handle& x_in, const py::handle& scale_in) {
  py::array x = as_array(x_in, "x"), s = as_array(scale_in, "scale");
  if (dtype_of(x) != Dt::kF32) type_error("x", "float32", x);
  if (dtype_of(s) != Dt::kF32) type_error("scale", "float32", s);
  if (x.ndim() != 1 || s.ndim() != 1 || x.size() != s.size()) value_error("x, scale: expected 1-D arrays of one size");
  py::array_t<float> y(x.size());
  {
    py::gil_scoped_release release;
    eb::active_cnn().divide(static_cast<const float*>(x.data()), static_cast<const float*>(s.data()), x.size(),
                            y.mutable_data());
  }
  return y;
}

py::dict cpu_info() {
  py::dict d;
  const eb::CpuFeatures& f = eb::cpu_features();
  d["isa"] = std::string(eb::active_gemm().isa);
  d["available"] = eb::available_isas();
  d["num_threads"] = eb::ThreadPool::instance().num_threads();
  py::dict flags;
  flags["avx2"] = f.avx2;
  flags["avxvnni"] = f.avxvnni;
  flags["avx512vnni"] = f.avx512vnni;
  flags["amx"] = f.amx;
  flags["avx512popcnt"] = f.avx512popcnt;
  d["features"] = flags;
  return d;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "eightbit C++ core (internal; use the eightbit package)";

  py::class_<PackedB>(m, "PackedWeights",
                      "A [K, N] uint8/int8 matrix packed once for the int8 GEMM kernels (k4n16 layout,\n"
                      "column sums and zero points folded).  Build it with eightbit.pack_weights.")
      .def(py::init(&make_packed), py::arg("b"), py::arg("b_zero_point") = py::none())
      .def_property_readonly("shape", [](const PackedB& p) { return py::make_tuple(p.K, p.N); })
      .def_property_readonly("dtype", [](const PackedB& p) {
        return p.b_signed ? py::dtype::of<int8_t>() : py::dtype::of<uint8_t>();
      })
      .def_property_readonly("per_column", [](const PackedB& p) { return p.zp_per_column; })
      .def_property_readonly("zero_point", [](const PackedB& p) {
        const int64_t n = p.zp_per_column ? p.N : 1;
        py::array out = p.b_signed ? py::array(py::array_t<int8_t>(n)) : py::array(py::array_t<uint8_t>(n));
        for (int64_t i = 0; i < n; ++i) {
          if (p.b_signed) static_cast<int8_t*>(out.mutable_data())[i] = static_cast<int8_t>(p.zp_user[i]);
          else static_cast<uint8_t*>(out.mutable_data())[i] = static_cast<uint8_t>(p.zp_user[i]);
        }
        return p.zp_per_column ? out : out.attr("reshape")(py::tuple()).cast<py::array>();
      })
      .def_property_readonly("nbytes", [](const PackedB& p) {
        return p.Kp * p.Np + 2 * p.Np * static_cast<int64_t>(sizeof(int32_t));
      })
      .def("__repr__", [](const PackedB& p) {
        return "PackedWeights(shape=(" + std::to_string(p.K) + ", " + std::to_string(p.N) + "), dtype=" +
               (p.b_signed ? "int8" : "uint8") + (p.zp_per_column ? ", per-column zero point)" : ")");
      });

  m.def("cpu_info", &cpu_info);
  m.def(
      "vnni_probe",
      [](int64_t iterations) {
        py::gil_scoped_release release;
        return eb::vnni_peak_ops_per_second(iterations);
      },
      py::arg("iterations"), "int8 ops per second of independent AVX-512 VNNI instructions (0: no VNNI); benchmarks");
  m.def("set_isa", [](const std::string& name) { eb::set_isa(name); }, py::arg("name"));
  m.def(
      "set_num_threads",
      [](int n) {
        // Resizing waits for a job in flight and joins workers: let other Python threads run meanwhile.
        py::gil_scoped_release release;
        eb::ThreadPool::instance().set_num_threads(n);
      },
      py::arg("n"));
  m.def("matmul_integer", &matmul_integer, py::arg("a"), py::arg("b"), py::arg("a_zero_point") = py::none());
  m.def("qlinear_matmul", &qlinear_matmul, py::arg("a"), py::arg("a_zero_point"), py::arg("b"),
        py::arg("multiplier"), py::arg("y_zero_point"), py::arg("y_signed"));
  m.def("qlinear_matmul_fixed", &qlinear_matmul_fixed, py::arg("a"), py::arg("a_zero_point"), py::arg("b"),
        py::arg("quantized_multiplier"), py::arg("shift"), py::arg("y_zero_point"), py::arg("y_signed"));
  m.def("quantized_linear", &quantized_linear, py::arg("x"), py::arg("weight"), py::arg("weight_scale"),
        py::arg("bias") = py::none(), py::arg("relu") = false, py::arg("per_tensor") = false);
  m.def("quantize_linear", &quantize_linear, py::arg("x"), py::arg("y_scale"), py::arg("y_zero_point"),
        py::arg("axis"), py::arg("per_axis"), py::arg("y_signed"));
  m.def("dequantize_linear", &dequantize_linear, py::arg("x"), py::arg("x_scale"), py::arg("x_zero_point"),
        py::arg("axis"), py::arg("per_axis"));
  m.def("dynamic_quantize_linear", &dynamic_quantize_linear, py::arg("x"));
  m.def("dynamic_quantize_rows", &dynamic_quantize_rows, py::arg("x"));
  m.def("divide_by_scale", &divide_by_scale, py::arg("x"), py::arg("scale"));
  bind_conv(m);
  bind_cnn_ops(m);
  bind_plan(m);
  bind_float_math(m);
  bind_binary(m);
  bind_blockwise(m);
}
