// Binding layer: the CNN companion operators.  eightbit.ops (cnn_ops.py) owns
// the ONNX attribute rules and checks arguments as the reference does; this
// file validates every shape, size and value again, so that no call can make a
// kernel read or write out of bounds.
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>

#include "python/convert.h"
#include "runtime/cnn_ops.h"

namespace eb::bind {
namespace {

constexpr int64_t kMaxGlobalPixels = int64_t{1} << 24;  // the float32 pixel count stays exact

// A uint8 / int8 array, C-contiguous; *is_signed tells which.
py::array quant_array(const py::handle& h, const char* arg, bool* is_signed) {
  py::array a = as_array(h, arg);
  const Dt dt = dtype_of(a);
  if (dt != Dt::kU8 && dt != Dt::kS8) type_error(arg, kUint8OrInt8, a);
  *is_signed = dt == Dt::kS8;
  return a;
}

void require_dtype(const py::array& a, const char* arg, bool is_signed) {
  if (dtype_of(a) != (is_signed ? Dt::kS8 : Dt::kU8)) type_error(arg, is_signed ? "int8" : "uint8", a);
}

float check_scale(float v, const char* arg) {
  if (!(v > 0.0f) || !std::isfinite(v))
    value_error(std::string(arg) + ": must be positive and finite, got " + std::to_string(v));
  return v;
}

int32_t check_zero_point(int64_t v, const char* arg, bool is_signed) {
  const int64_t lo = is_signed ? -128 : 0, hi = is_signed ? 127 : 255;
  if (v < lo || v > hi)
    value_error(std::string(arg) + ": " + std::to_string(v) + " is outside [" + std::to_string(lo) + ", " +
                std::to_string(hi) + "]");
  return static_cast<int32_t>(v);
}

std::vector<int64_t> shape_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

py::array new_quant_array(const std::vector<int64_t>& shape, bool is_signed) {
  const std::vector<py::ssize_t> s(shape.begin(), shape.end());
  return is_signed ? py::array(py::array_t<int8_t>(s)) : py::array(py::array_t<uint8_t>(s));
}

// ------------------------------------------------------------------ QLinearAdd / QLinearMul

struct BinaryInputs {
  py::array a, b;
  QuantTensor ta, tb;
  float c_scale = 1.0f;
  int32_t c_zp = 0;
  bool is_signed = false;
  std::vector<int64_t> out_shape;
};

BinaryInputs binary_inputs(const py::handle& a, float a_scale, int64_t a_zp, const py::handle& b, float b_scale,
                           int64_t b_zp, float c_scale, int64_t c_zp) {
  BinaryInputs in;
  in.a = quant_array(a, "a", &in.is_signed);
  in.b = as_array(b, "b");
  require_dtype(in.b, "b", in.is_signed);
  in.ta = {in.a.data(), shape_of(in.a), check_scale(a_scale, "a_scale"),
           check_zero_point(a_zp, "a_zero_point", in.is_signed)};
  in.tb = {in.b.data(), shape_of(in.b), check_scale(b_scale, "b_scale"),
           check_zero_point(b_zp, "b_zero_point", in.is_signed)};
  in.c_scale = check_scale(c_scale, "c_scale");
  in.c_zp = check_zero_point(c_zp, "c_zero_point", in.is_signed);
  if (!broadcast_shapes(in.ta.shape, in.tb.shape, &in.out_shape)) value_error("a and b: shapes do not broadcast");
  return in;
}

py::array qlinear_add_binding(const py::handle& a, float a_scale, int64_t a_zp, const py::handle& b, float b_scale,
                              int64_t b_zp, float c_scale, int64_t c_zp, bool b_first) {
  BinaryInputs in = binary_inputs(a, a_scale, a_zp, b, b_scale, b_zp, c_scale, c_zp);
  py::array c = new_quant_array(in.out_shape, in.is_signed);
  void* out = c.mutable_data();
  py::gil_scoped_release release;
  qlinear_add(in.ta, in.tb, in.c_scale, in.c_zp, in.is_signed, b_first, out);
  return c;
}

py::array qlinear_mul_binding(const py::handle& a, float a_scale, int64_t a_zp, const py::handle& b, float b_scale,
                              int64_t b_zp, float c_scale, int64_t c_zp) {
  BinaryInputs in = binary_inputs(a, a_scale, a_zp, b, b_scale, b_zp, c_scale, c_zp);
  py::array c = new_quant_array(in.out_shape, in.is_signed);
  void* out = c.mutable_data();
  py::gil_scoped_release release;
  qlinear_mul(in.ta, in.tb, in.c_scale, in.c_zp, in.is_signed, out);
  return c;
}

// -------------------------------------------------------------------------------- pools

using Triple = std::array<int64_t, 3>;

// x: [N, D, H, W, C] (1-D and 2-D pools have D = H = 1, or D = 1).  Checks
// every attribute and fills the output extents.
PoolGeometry pool_geometry(const py::array& x, const Triple& kernel, const Triple& strides, const Triple& dilations,
                           const std::array<int64_t, 6>& pads, bool ceil_mode, Triple* pad_end) {
  if (x.ndim() != 5) value_error("x: expected a 5-D [N, D, H, W, C] array, got " + std::to_string(x.ndim()) + "-D");
  // Bounds every product of extents the kernels form (an empty array may have huge other axes).
  int64_t pixels = 1;
  for (int d = 0; d < 4; ++d) {
    if (x.shape(d) > (int64_t{1} << 40) || (x.shape(d) > 0 && pixels > (int64_t{1} << 40) / x.shape(d)))
      value_error("x: too many pixels");
    pixels *= std::max<int64_t>(x.shape(d), 1);
  }
  PoolGeometry g;
  g.batch = x.shape(0);
  g.channels = x.shape(4);
  auto in_range = [](int64_t v, int64_t lo) { return v >= lo && v <= INT32_MAX; };
  for (int a = 0; a < 3; ++a) {
    g.in[a] = x.shape(1 + a);
    if (!in_range(kernel[a], 1)) value_error("kernel_shape: every entry must be in [1, 2^31)");
    if (!in_range(strides[a], 1)) value_error("strides: every entry must be in [1, 2^31)");
    if (!in_range(dilations[a], 1)) value_error("dilations: every entry must be in [1, 2^31)");
    if (!in_range(pads[a], 0) || !in_range(pads[3 + a], 0)) value_error("pads: every entry must be in [0, 2^31)");
    g.kernel[a] = kernel[a];
    g.stride[a] = strides[a];
    g.dilation[a] = dilations[a];
    g.pad_begin[a] = pads[a];
    (*pad_end)[a] = pads[3 + a];
  }
  if (!resolve_pool_output(&g, pad_end->data(), ceil_mode))
    value_error("kernel_shape: the (dilated) kernel is larger than the padded input x");
  int64_t out_pixels = std::max<int64_t>(g.batch, 1);
  for (int a = 0; a < 3; ++a) {
    if (g.out[a] > (int64_t{1} << 40) / out_pixels) value_error("pads: the output would have too many pixels");
    out_pixels *= g.out[a];
  }
  return g;
}

py::array pool_output(const PoolGeometry& g, bool is_signed) {
  return new_quant_array({g.batch, g.out[0], g.out[1], g.out[2], g.channels}, is_signed);
}

py::array max_pool_binding(const py::handle& x_in, const Triple& kernel, const Triple& strides,
                           const Triple& dilations, const std::array<int64_t, 6>& pads, bool ceil_mode) {
  bool is_signed = false;
  py::array x = quant_array(x_in, "x", &is_signed);
  Triple pad_end{};
  const PoolGeometry g = pool_geometry(x, kernel, strides, dilations, pads, ceil_mode, &pad_end);
  py::array y = pool_output(g, is_signed);
  void* out = y.mutable_data();
  py::gil_scoped_release release;
  max_pool(g, is_signed, x.data(), out);
  return y;
}

py::array average_pool_binding(const py::handle& x_in, float x_scale, int64_t x_zp, float y_scale, int64_t y_zp,
                               const Triple& kernel, const Triple& strides, const std::array<int64_t, 6>& pads,
                               bool ceil_mode, bool count_include_pad) {
  bool is_signed = false;
  py::array x = quant_array(x_in, "x", &is_signed);
  Triple pad_end{};
  const PoolGeometry g = pool_geometry(x, kernel, strides, {1, 1, 1}, pads, ceil_mode, &pad_end);
  AvgPoolParams p;
  p.x_scale = check_scale(x_scale, "x_scale");
  p.y_scale = check_scale(y_scale, "y_scale");
  p.x_zp = check_zero_point(x_zp, "x_zero_point", is_signed);
  const int32_t y_zp_int = check_zero_point(y_zp, "y_zero_point", is_signed);
  p.y_zp = static_cast<float>(y_zp_int);
  p.count_include_pad = count_include_pad;
  p.range = output_range(is_signed);
  bool whole_image = true;  // then the runtime takes the global path, whose pixel count is bounded
  for (int a = 0; a < 3; ++a)
    whole_image = whole_image && g.kernel[a] == g.in[a] && pads[a] == 0 && pads[3 + a] == 0;
  if (whole_image && g.in[0] * g.in[1] * g.in[2] >= kMaxGlobalPixels)
    value_error("x: a window covering the whole image must have fewer than 2^24 pixels");
  py::array y = pool_output(g, is_signed);
  void* out = y.mutable_data();
  py::gil_scoped_release release;
  qlinear_average_pool(g, pad_end.data(), p, y_zp_int, x.data(), out);
  return y;
}

// x: [batch, pixels, channels] -> y: [batch, channels].
py::array global_average_pool_binding(const py::handle& x_in, float x_scale, int64_t x_zp, float y_scale,
                                      int64_t y_zp) {
  bool is_signed = false;
  py::array x = quant_array(x_in, "x", &is_signed);
  if (x.ndim() != 3) value_error("x: expected a 3-D [batch, pixels, channels] array");
  const int64_t batch = x.shape(0), pixels = x.shape(1), channels = x.shape(2);
  if (pixels < 1 || pixels >= kMaxGlobalPixels)
    value_error("x: expected between 1 and 2^24 - 1 spatial elements per channel, got " + std::to_string(pixels));
  const float xs = check_scale(x_scale, "x_scale"), ys = check_scale(y_scale, "y_scale");
  const int32_t xz = check_zero_point(x_zp, "x_zero_point", is_signed);
  const int32_t yz = check_zero_point(y_zp, "y_zero_point", is_signed);
  py::array y = new_quant_array({batch, channels}, is_signed);
  void* out = y.mutable_data();
  py::gil_scoped_release release;
  qlinear_global_average_pool(x.data(), is_signed, batch, pixels, channels, xs, xz, ys, yz, out);
  return y;
}

// ------------------------------------------------------------------------ lookup tables

py::array table_array(const py::handle& h, const char* arg, bool* is_signed) {
  py::array t = quant_array(h, arg, is_signed);
  if (t.ndim() != 1 || t.size() != 256) value_error(std::string(arg) + ": expected 256 entries (one per input byte)");
  return t;
}

py::array lookup_table_binding(const py::handle& x_in, const py::handle& table_in) {
  bool x_signed = false, y_signed = false;
  py::array x = quant_array(x_in, "x", &x_signed);
  py::array table = table_array(table_in, "table", &y_signed);
  py::array y = new_quant_array(shape_of(x), y_signed);
  void* out = y.mutable_data();
  py::gil_scoped_release release;
  lookup_table(static_cast<const uint8_t*>(x.data()), x.size(), static_cast<const uint8_t*>(table.data()),
               static_cast<uint8_t*>(out));
  return y;
}

// inputs: tensors of one dtype and rank, equal except along `axis`; tables:
// one per input, None to copy it as it is.
py::array concat_binding(const py::list& inputs, const py::list& tables, int64_t axis) {
  if (inputs.empty()) value_error("inputs: expected at least one tensor");
  if (tables.size() != inputs.size()) value_error("tables: expected one entry per input");
  std::vector<py::array> arrays, table_arrays;
  bool is_signed = false;
  arrays.push_back(quant_array(inputs[0], "inputs[0]", &is_signed));
  const int64_t rank = arrays[0].ndim();
  if (axis < 0 || axis >= rank) value_error("axis: out of range for inputs of rank " + std::to_string(rank));
  std::vector<int64_t> out_shape = shape_of(arrays[0]);
  out_shape[axis] = 0;
  std::vector<ConcatPart> parts;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string name = "inputs[" + std::to_string(i) + "]";
    if (i > 0) {
      arrays.push_back(as_array(inputs[i], name.c_str()));
      require_dtype(arrays[i], name.c_str(), is_signed);
    }
    const py::array& a = arrays[i];
    if (a.ndim() != rank) value_error(name + ": expected rank " + std::to_string(rank));
    for (int64_t d = 0; d < rank; ++d)
      if (d != axis && a.shape(d) != out_shape[d]) value_error(name + ": shape differs outside the concat axis");
    out_shape[axis] += a.shape(axis);
    ConcatPart part;
    part.data = static_cast<const uint8_t*>(a.data());
    part.axis_len = a.shape(axis);
    if (!tables[i].is_none()) {
      bool t_signed = false;
      table_arrays.push_back(table_array(tables[i], "tables", &t_signed));
      require_dtype(table_arrays.back(), "tables", is_signed);
      part.table = static_cast<const uint8_t*>(table_arrays.back().data());
    }
    parts.push_back(part);
  }
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= out_shape[d];
  for (int64_t d = axis + 1; d < rank; ++d) inner *= out_shape[d];
  py::array y = new_quant_array(out_shape, is_signed);
  auto* out = static_cast<uint8_t*>(y.mutable_data());
  py::gil_scoped_release release;
  concat(parts, outer, inner, out);
  return y;
}

}  // namespace

void bind_cnn_ops(py::module_& m) {
  m.def("qlinear_add", &qlinear_add_binding, py::arg("a"), py::arg("a_scale"), py::arg("a_zero_point"), py::arg("b"),
        py::arg("b_scale"), py::arg("b_zero_point"), py::arg("c_scale"), py::arg("c_zero_point"), py::arg("b_first"));
  m.def("qlinear_mul", &qlinear_mul_binding, py::arg("a"), py::arg("a_scale"), py::arg("a_zero_point"), py::arg("b"),
        py::arg("b_scale"), py::arg("b_zero_point"), py::arg("c_scale"), py::arg("c_zero_point"));
  m.def("max_pool_ndhwc", &max_pool_binding, py::arg("x"), py::arg("kernel_shape"), py::arg("strides"),
        py::arg("dilations"), py::arg("pads"), py::arg("ceil_mode"));
  m.def("qlinear_average_pool_ndhwc", &average_pool_binding, py::arg("x"), py::arg("x_scale"),
        py::arg("x_zero_point"), py::arg("y_scale"), py::arg("y_zero_point"), py::arg("kernel_shape"),
        py::arg("strides"), py::arg("pads"), py::arg("ceil_mode"), py::arg("count_include_pad"));
  m.def("qlinear_global_average_pool", &global_average_pool_binding, py::arg("x"), py::arg("x_scale"),
        py::arg("x_zero_point"), py::arg("y_scale"), py::arg("y_zero_point"));
  m.def("lookup_table", &lookup_table_binding, py::arg("x"), py::arg("table"));
  m.def("concat", &concat_binding, py::arg("inputs"), py::arg("tables"), py::arg("axis"));
}

}  // namespace eb::bind
