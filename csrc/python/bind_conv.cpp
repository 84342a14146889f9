// Binding layer: convolution (PackedConvWeights, NHWC conv entry points).
// Geometry arrives resolved (explicit pads, strides, dilations) from
// eightbit.ops, which owns the ONNX attribute rules; this file validates it
// again so that no call can make the kernels read out of bounds.
#include <pybind11/stl.h>

#include <array>

#include "python/convert.h"
#include "runtime/conv.h"

namespace eb::bind {
namespace {

PackedConv make_packed_conv(const py::handle& w_in, const py::object& zp_obj, int64_t group) {
  py::array w = as_array(w_in, "w");
  const Dt dt = dtype_of(w);
  if (dt != Dt::kU8 && dt != Dt::kS8) type_error("w", kUint8OrInt8, w);
  if (w.ndim() != 4) value_error("w: expected 4-D [C_out, C_in / group, kH, kW] weights, got " + std::to_string(w.ndim()) + "-D");
  if (group < 1) value_error("group: must be >= 1, got " + std::to_string(group));
  const int64_t out_c = w.shape(0), cg = w.shape(1), kh = w.shape(2), kw = w.shape(3);
  if (out_c % group != 0)
    value_error("w: C_out=" + std::to_string(out_c) + " is not divisible by group=" + std::to_string(group));
  if (cg < 1 || kh < 1 || kw < 1) value_error("w: every dimension must be >= 1");
  bool per_channel = false;
  std::vector<int32_t> zp = zero_points(zp_obj, "w_zero_point", dt, out_c, &per_channel);
  py::gil_scoped_release release;
  return pack_conv(w.data(), dt == Dt::kS8, out_c, cg, kh, kw, group, zp.data(), per_channel);
}

struct ConvInput {
  py::array x;
  ConvGeometry g;
  int32_t x_zp = 0;
  bool x_signed = false;
};

ConvInput conv_input(const py::handle& x_in, const py::object& x_zp, const PackedConv& w, std::array<int64_t, 2> strides,
                     std::array<int64_t, 2> dilations, std::array<int64_t, 4> pads) {
  ConvInput in;
  in.x = as_array(x_in, "x");
  const Dt dt = dtype_of(in.x);
  if (dt != Dt::kU8 && dt != Dt::kS8) type_error("x", kUint8OrInt8, in.x);
  if (in.x.ndim() != 4) value_error("x: expected a 4-D NHWC array");
  in.x_signed = dt == Dt::kS8;
  bool per_tensor_only = false;
  std::vector<int32_t> zp = zero_points(x_zp, "x_zero_point", dt, 1, &per_tensor_only);
  in.x_zp = zp[0];
  ConvGeometry& g = in.g;
  g.batch = in.x.shape(0);
  g.in_h = in.x.shape(1);
  g.in_w = in.x.shape(2);
  g.in_c = in.x.shape(3);
  g.out_c = w.out_c;
  g.kernel_h = w.kernel_h;
  g.kernel_w = w.kernel_w;
  g.groups = w.groups;
  if (g.in_c != w.group_in_c * w.groups)
    value_error("x: has " + std::to_string(g.in_c) + " channels, w expects " + std::to_string(w.group_in_c) +
                " per group x " + std::to_string(w.groups) + " groups");
  set_checked_window(&g, strides, dilations, pads);
  return in;
}

std::vector<py::ssize_t> output_shape(const ConvGeometry& g) { return {g.batch, g.out_h(), g.out_w(), g.out_c}; }

py::array_t<int32_t> conv_integer_nhwc(const py::handle& x, const py::object& x_zp, const PackedConv& w,
                                       std::array<int64_t, 2> strides, std::array<int64_t, 2> dilations,
                                       std::array<int64_t, 4> pads) {
  ConvInput in = conv_input(x, x_zp, w, strides, dilations, pads);
  py::array_t<int32_t> y(output_shape(in.g));
  Epilogue ep;
  ep.kind = OutputKind::kInt32;
  ep.out = y.mutable_data();
  ep.ldc = in.g.out_c;
  py::gil_scoped_release release;
  run_conv(in.g, in.x.data(), in.x_signed, in.x_zp, w, ep);
  return y;
}

// QLinearConv: requant = "float" (multiplier) or "fixed" (quantized_multiplier, shift).
py::array qlinear_conv_nhwc(const py::handle& x, const py::object& x_zp, const PackedConv& w,
                            std::array<int64_t, 2> strides, std::array<int64_t, 2> dilations,
                            std::array<int64_t, 4> pads, const py::object& multiplier,
                            const py::object& quantized_multiplier, const py::object& shift, const py::object& bias,
                            int32_t y_zp, bool y_signed, int32_t qmin, int32_t qmax) {
  ConvInput in = conv_input(x, x_zp, w, strides, dilations, pads);
  const int64_t oc = in.g.out_c;
  py::array y = y_signed ? py::array(py::array_t<int8_t>(output_shape(in.g)))
                         : py::array(py::array_t<uint8_t>(output_shape(in.g)));
  Epilogue ep = quant_epilogue(y.mutable_data(), oc, y_zp, y_signed);
  if (qmin < ep.qmin || qmax > ep.qmax || qmin > qmax)
    value_error("activation: clamp range [" + std::to_string(qmin) + ", " + std::to_string(qmax) +
                "] is empty or outside the output type");
  ep.qmin = qmin;
  ep.qmax = qmax;
  std::vector<float> mult;
  std::vector<int32_t> m0, sh, b;
  if (!multiplier.is_none()) {
    mult = positive_scales(multiplier, "multiplier", oc, oc);
    ep.kind = OutputKind::kQuantFloat;
    ep.multiplier = mult.data();
  } else {
    m0 = per_column_int32(quantized_multiplier, "quantized_multiplier", oc, oc);
    sh = per_column_int32(shift, "shift", oc, oc);
    for (int64_t i = 0; i < oc; ++i) {
      if (m0[i] < 0) value_error("quantized_multiplier: must be in [0, 2^31)");
      if (sh[i] > 30 || sh[i] < -31) value_error("shift: must be in [-31, 30]");
    }
    ep.kind = OutputKind::kQuantFixed;
    ep.fixed_m0 = m0.data();
    ep.fixed_shift = sh.data();
  }
  if (!bias.is_none()) {
    py::array bv = as_array(bias, "B");
    if (dtype_of(bv) != Dt::kI32) type_error("B", "int32", bv);
    if (bv.ndim() != 1 || bv.size() != oc)
      value_error("B: expected " + std::to_string(oc) + " values (one per output channel), got " + std::to_string(bv.size()));
    b.assign(static_cast<const int32_t*>(bv.data()), static_cast<const int32_t*>(bv.data()) + oc);
    ep.bias_i32 = b.data();
  }
  py::gil_scoped_release release;
  run_conv(in.g, in.x.data(), in.x_signed, in.x_zp, w, ep);
  return y;
}

}  // namespace

void bind_conv(py::module_& m) {
  py::class_<PackedConv>(m, "PackedConvWeights",
                         "OIHW uint8/int8 convolution weights packed once for the int8 kernels.\n"
                         "Build it with eightbit.pack_conv_weights.")
      .def(py::init(&make_packed_conv), py::arg("w"), py::arg("w_zero_point") = py::none(), py::arg("group") = 1)
      .def_property_readonly("shape", [](const PackedConv& p) {
        return py::make_tuple(p.out_c, p.group_in_c, p.kernel_h, p.kernel_w);
      })
      .def_property_readonly("group", [](const PackedConv& p) { return p.groups; })
      .def_property_readonly("dtype", [](const PackedConv& p) {
        return p.w_signed ? py::dtype::of<int8_t>() : py::dtype::of<uint8_t>();
      })
      .def_property_readonly("per_channel", [](const PackedConv& p) { return p.zp_per_channel; })
      .def_property_readonly("zero_point", [](const PackedConv& p) {
        const auto n = static_cast<py::ssize_t>(p.zp_user.size());
        py::array out = p.w_signed ? py::array(py::array_t<int8_t>(n)) : py::array(py::array_t<uint8_t>(n));
        for (py::ssize_t i = 0; i < n; ++i) {
          if (p.w_signed) static_cast<int8_t*>(out.mutable_data())[i] = static_cast<int8_t>(p.zp_user[i]);
          else static_cast<uint8_t*>(out.mutable_data())[i] = static_cast<uint8_t>(p.zp_user[i]);
        }
        return p.zp_per_channel ? out : out.attr("reshape")(py::tuple()).cast<py::array>();
      })
      .def("__repr__", [](const PackedConv& p) {
        return "PackedConvWeights(shape=(" + std::to_string(p.out_c) + ", " + std::to_string(p.group_in_c) + ", " +
               std::to_string(p.kernel_h) + ", " + std::to_string(p.kernel_w) + "), group=" + std::to_string(p.groups) +
               ", dtype=" + (p.w_signed ? "int8" : "uint8") + ")";
      });
  m.def("conv_integer_nhwc", &conv_integer_nhwc, py::arg("x"), py::arg("x_zero_point"), py::arg("w"),
        py::arg("strides"), py::arg("dilations"), py::arg("pads"));
  m.def("qlinear_conv_nhwc", &qlinear_conv_nhwc, py::arg("x"), py::arg("x_zero_point"), py::arg("w"),
        py::arg("strides"), py::arg("dilations"), py::arg("pads"), py::arg("multiplier"),
        py::arg("quantized_multiplier"), py::arg("shift"), py::arg("B"), py::arg("y_zero_point"), py::arg("y_signed"),
        py::arg("qmin"), py::arg("qmax"));
}

}  // namespace eb::bind
