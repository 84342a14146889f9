// Binding layer: array conversion and validation shared by the bind_*.cpp
// files.  Errors name the argument: TypeError for a dtype, ValueError for a
// shape or value.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "eightbit/conv.h"
#include "eightbit/gemm.h"

namespace eb::bind {

namespace py = pybind11;

enum class Dt { kU8, kS8, kI32, kF32, kOther };

inline Dt dtype_of(const py::array& a) {
  const py::dtype d = a.dtype();
  const char kind = d.kind();
  const auto size = d.itemsize();
  if (kind == 'u' && size == 1) return Dt::kU8;
  if (kind == 'i' && size == 1) return Dt::kS8;
  if (kind == 'i' && size == 4) return Dt::kI32;
  if (kind == 'f' && size == 4) return Dt::kF32;
  return Dt::kOther;
}

inline std::string dtype_name(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

[[noreturn]] inline void type_error(const char* arg, const char* expected, const py::array& got) {
  throw py::type_error(std::string(arg) + ": expected " + expected + ", got " + dtype_name(got));
}

[[noreturn]] inline void value_error(const std::string& msg) { throw py::value_error(msg); }

// A C-contiguous view (copied only if the caller's array is not).
inline py::array contiguous(const py::handle& h) { return py::array::ensure(h, py::array::c_style); }

inline py::array as_array(const py::handle& h, const char* arg) {
  py::array a = contiguous(h);
  if (!a) value_error(std::string(arg) + ": expected an array");
  return a;
}

// Integer zero points (1 or `count` values) of dtype `want`, widened to
// int32; *per_element tells which (count == 1 counts as one value).
inline std::vector<int32_t> zero_points(const py::object& obj, const char* arg, Dt want, int64_t count,
                                 bool* per_element) {
  *per_element = false;
  if (obj.is_none()) return {0};
  py::array z = as_array(obj, arg);
  if (dtype_of(z) != want) type_error(arg, want == Dt::kU8 ? "uint8 (the dtype of its tensor)" : "int8 (the dtype of its tensor)", z);
  const int64_t n = z.size();
  if (n == 0 && count == 0) return {0};  // per-element zero points of an empty axis
  if (n != 1 && n != count)
    value_error(std::string(arg) + ": expected 1 value or " + std::to_string(count) + ", got " + std::to_string(n));
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    out[i] = want == Dt::kU8 ? static_cast<const uint8_t*>(z.data())[i] : static_cast<const int8_t*>(z.data())[i];
  *per_element = n > 1;
  return out;
}

// Float32 parameters (1 or `count` values) that must be positive and finite,
// broadcast to `padded` entries (the kernels read whole panels).
inline std::vector<float> positive_scales(const py::handle& obj, const char* arg, int64_t count, int64_t padded) {
  py::array s = as_array(obj, arg);
  if (dtype_of(s) != Dt::kF32) type_error(arg, "float32", s);
  const int64_t n = s.size();
  if (n != 1 && n != count)
    value_error(std::string(arg) + ": expected 1 value or " + std::to_string(count) + ", got " + std::to_string(n));
  const float* p = static_cast<const float*>(s.data());
  std::vector<float> out(static_cast<size_t>(std::max(padded, count)), 0.0f);
  for (int64_t i = 0; i < count; ++i) {
    const float v = p[n == 1 ? 0 : i];
    if (!(v > 0.0f) || !std::isfinite(v))
      value_error(std::string(arg) + ": every value must be positive and finite, got " + std::to_string(v));
    out[i] = v;
  }
  return out;
}

inline constexpr const char* kUint8OrInt8 = "uint8 or int8";


// Quantized-output epilogue fields shared by qlinear_matmul and qlinear_conv.
inline Epilogue quant_epilogue(void* out, int64_t ldc, int32_t y_zp, bool y_signed) {
  Epilogue ep;
  ep.out = out;
  ep.ldc = ldc;
  ep.out_zp = y_zp;
  ep.out_signed = y_signed;
  ep.qmin = y_signed ? -128 : 0;
  ep.qmax = y_signed ? 127 : 255;
  if (y_zp < ep.qmin || y_zp > ep.qmax)
    value_error("y_zero_point: " + std::to_string(y_zp) + " is outside the output range");
  return ep;
}

// Per-column int32 parameters (1 or n values) widened to `padded` entries.
inline std::vector<int32_t> per_column_int32(const py::handle& h, const char* arg, int64_t n, int64_t padded) {
  py::array v = as_array(h, arg);
  if (dtype_of(v) != Dt::kI32) type_error(arg, "int32", v);
  if (v.size() != 1 && v.size() != n) value_error(std::string(arg) + ": expected 1 value or " + std::to_string(n));
  std::vector<int32_t> out(static_cast<size_t>(std::max(padded, n)), 0);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<const int32_t*>(v.data())[v.size() == 1 ? 0 : i];
  return out;
}

// Sets g's window after checking each value, then the whole geometry (overflow-safe: extents, the
// kernel against the padded input, the output's size); ValueError naming the argument.
inline void set_checked_window(ConvGeometry* g, const std::array<int64_t, 2>& strides,
                               const std::array<int64_t, 2>& dilations, const std::array<int64_t, 4>& pads) {
  for (int64_t s : strides)
    if (s < 1 || s > ConvGeometry::kMaxWindow) value_error("strides: must be in [1, 2^31)");
  for (int64_t d : dilations)
    if (d < 1 || d > ConvGeometry::kMaxWindow) value_error("dilations: must be in [1, 2^31)");
  for (int64_t p : pads)
    if (p < 0 || p > ConvGeometry::kMaxWindow) value_error("pads: must be in [0, 2^31)");
  g->set_window(strides, dilations, pads);
  if (const char* problem = g->check()) {
    const std::string why = problem;
    value_error((why.find("kernel is larger") != std::string::npos ? "w: " : "x, w and pads: ") + why);
  }
}

// Registers the convolution bindings (bind_conv.cpp).
void bind_conv(py::module_& m);

}  // namespace eb::bind
