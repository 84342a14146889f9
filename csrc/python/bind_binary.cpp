// Binding layer: binary (+-1) layers (eightbit.binary wraps these): sign bits
// packed 64 per uint64 along K (eightbit/binary.h), B packed once, the active
// ISA's kernel.  Every operand is checked here, padding bits included: the
// kernels count every bit of a word.
#include <pybind11/stl.h>

#include <array>
#include <cmath>
#include <string>

#include "python/convert.h"
#include "runtime/binary.h"

namespace eb::bind {
namespace {

constexpr int64_t kMaxK = (int64_t{1} << 31) - 1;  // dot products and popcounts are int32

// A 2-D uint64 array of rows of `words` words holding k signs each, bits past k zero.
py::array sign_rows(const py::handle& h, const char* arg, int64_t k) {
  py::array a = as_array(h, arg);
  if (a.dtype().kind() != 'u' || a.dtype().itemsize() != 8) type_error(arg, "uint64 (packed sign bits)", a);
  if (a.ndim() != 2) value_error(std::string(arg) + ": expected a 2-D array [rows, words]");
  const int64_t words = (k + 63) / 64;
  if (a.shape(1) != words)
    value_error(std::string(arg) + ": " + std::to_string(k) + " signs take " + std::to_string(words) +
                " words per row, got " + std::to_string(a.shape(1)));
  const auto* bits = static_cast<const uint64_t*>(a.data());
  const uint64_t pad_mask = k % 64 == 0 ? 0 : ~uint64_t{0} << (k % 64);
  for (int64_t r = 0; r < a.shape(0); ++r)
    if ((bits[r * words + words - 1] & pad_mask) != 0)
      value_error(std::string(arg) + ": row " + std::to_string(r) + " has padding bits set past k = " + std::to_string(k) + " (they must be 0)");
  return a;
}

// Whether p[0, n) holds a NaN (a branch-free reduction the compiler vectorises).
bool any_nan(const float* p, int64_t n) {
  bool nan = false;
  for (int64_t i = 0; i < n; ++i) nan |= p[i] != p[i];
  return nan;
}

int64_t checked_k(int64_t k) {
  if (k < 1 || k > kMaxK) value_error("k: expected 1 <= k < 2^31 signs per row, got " + std::to_string(k));
  return k;
}

PackedBinaryB pack_weights(const py::handle& bits_in, int64_t k) {
  py::array bits = sign_rows(bits_in, "bits", checked_k(k));
  const auto* data = static_cast<const uint64_t*>(bits.data());
  const int64_t n = bits.shape(0), words = bits.shape(1);
  py::gil_scoped_release release;
  return pack_binary_b(data, words, n, k, words);
}

py::array_t<int32_t> matmul(const py::handle& a_in, const PackedBinaryB& b) {
  py::array a = sign_rows(a_in, "a_bits", b.K);
  py::array_t<int32_t> c({static_cast<py::ssize_t>(a.shape(0)), static_cast<py::ssize_t>(b.N)});
  const auto* data = static_cast<const uint64_t*>(a.data());
  int32_t* out = c.mutable_data();
  const int64_t m = a.shape(0);
  py::gil_scoped_release release;
  binary_gemm(data, m, b.words, b, out, b.N);
  return c;
}

py::array_t<float> float32_vector(const py::handle& h, const char* arg, int64_t n, bool one_ok) {
  py::array a = as_array(h, arg);
  if (dtype_of(a) != Dt::kF32) type_error(arg, "float32", a);
  if (a.size() != n && !(one_ok && a.size() == 1))
    value_error(std::string(arg) + ": expected " + (one_ok ? "1 value or " : "") + std::to_string(n) + ", got " +
                std::to_string(a.size()));
  py::array_t<float> v(a);
  if (any_nan(v.data(), v.size())) value_error(std::string(arg) + ": NaN");
  return v;
}

// Positive finite float32 scales, one per output channel.
py::array_t<float> checked_scale(const py::handle& h, int64_t n) {
  py::array_t<float> scale = float32_vector(h, "scale", n, false);
  for (py::ssize_t i = 0; i < scale.size(); ++i)
    if (!(scale.data()[i] > 0.0f) || !std::isfinite(scale.data()[i]))
      value_error("scale: every value must be positive and finite");
  return scale;
}

// y [rows, N] = float(dot(x < threshold as signs, b)) * scale (+ bias) for x float32 [rows, K].
py::array_t<float> linear(const py::handle& x_in, const py::handle& threshold_in, const PackedBinaryB& b,
                          const py::handle& scale_in, const py::handle& bias_in) {
  py::array x = as_array(x_in, "x");
  if (dtype_of(x) != Dt::kF32) type_error("x", "float32", x);
  if (x.ndim() != 2 || x.shape(1) != b.K)
    value_error("x: expected [rows, " + std::to_string(b.K) + "] (the weights' k)");
  const auto* xs = static_cast<const float*>(x.data());
  if (any_nan(xs, x.size())) value_error("x: NaN has no sign");
  py::array_t<float> threshold = float32_vector(threshold_in, "threshold", b.K, true);
  py::array_t<float> scale = checked_scale(scale_in, b.N);
  py::array_t<float> bias;
  if (!bias_in.is_none()) bias = float32_vector(bias_in, "bias", b.N, false);
  const int64_t rows = x.shape(0);
  py::array_t<float> y({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(b.N)});
  const float* t = threshold.data();
  const bool per_column = threshold.size() > 1 || b.K == 1;
  const float* s = scale.data();
  const float* bi = bias_in.is_none() ? nullptr : bias.data();
  float* out = y.mutable_data();
  py::gil_scoped_release release;
  binary_linear(xs, rows, t, per_column, b, s, bi, out);
  return y;
}

PackedBinaryConv pack_conv_weights(const py::handle& bits_in, int64_t in_c, int64_t kernel_h, int64_t kernel_w) {
  py::array bits = as_array(bits_in, "bits");
  if (bits.dtype().kind() != 'u' || bits.dtype().itemsize() != 8) type_error("bits", "uint64 (packed sign bits)", bits);
  if (in_c < 1 || kernel_h < 1 || kernel_w < 1 || in_c > ConvGeometry::kMaxWindow ||
      kernel_h > ConvGeometry::kMaxWindow || kernel_w > ConvGeometry::kMaxWindow)
    value_error("in_c, kernel_h and kernel_w must be in [1, 2^31)");
  const int64_t words = (in_c + 63) / 64, taps = kernel_h * kernel_w;
  if (bits.ndim() != 3 || bits.shape(1) != taps || bits.shape(2) != words)
    value_error("bits: expected [out_c, " + std::to_string(taps) + " taps, " + std::to_string(words) + " words]");
  checked_k(taps * in_c);
  const int64_t out_c = bits.shape(0);
  // Each tap's words hold in_c signs: the rows are checked tap by tap.
  sign_rows(bits.reshape({out_c * taps, words}), "bits", in_c);
  const auto* data = static_cast<const uint64_t*>(bits.data());
  py::gil_scoped_release release;
  return pack_binary_conv(data, out_c, in_c, kernel_h, kernel_w);
}

// y NHWC float32 of the binary convolution of x NHWC float32 (see runtime/binary.h).
py::array_t<float> conv2d(const py::handle& x_in, const py::handle& threshold_in, const PackedBinaryConv& w,
                          const py::handle& scale_in, const py::handle& bias_in, std::array<int64_t, 2> strides,
                          std::array<int64_t, 2> dilations, std::array<int64_t, 4> pads, bool zero_padding) {
  py::array x = as_array(x_in, "x");
  if (dtype_of(x) != Dt::kF32) type_error("x", "float32", x);
  if (x.ndim() != 4) value_error("x: expected a 4-D NHWC array");
  ConvGeometry g;
  g.batch = x.shape(0);
  g.in_h = x.shape(1);
  g.in_w = x.shape(2);
  g.in_c = x.shape(3);
  g.out_c = w.out_c;
  g.kernel_h = w.kernel_h;
  g.kernel_w = w.kernel_w;
  if (g.in_c != w.in_c)
    value_error("x: has " + std::to_string(g.in_c) + " channels, the weights expect " + std::to_string(w.in_c));
  set_checked_window(&g, strides, dilations, pads);
  const auto* xs = static_cast<const float*>(x.data());
  if (any_nan(xs, x.size())) value_error("x: NaN has no sign");
  py::array_t<float> threshold = float32_vector(threshold_in, "threshold", w.in_c, true);
  py::array_t<float> scale = checked_scale(scale_in, w.out_c);
  py::array_t<float> bias;
  if (!bias_in.is_none()) bias = float32_vector(bias_in, "bias", w.out_c, false);
  py::array_t<float> y({static_cast<py::ssize_t>(g.batch), static_cast<py::ssize_t>(g.out_h()),
                        static_cast<py::ssize_t>(g.out_w()), static_cast<py::ssize_t>(g.out_c)});
  const float* t = threshold.data();
  const bool per_channel = threshold.size() > 1 || w.in_c == 1;
  const float* s = scale.data();
  const float* bi = bias_in.is_none() ? nullptr : bias.data();
  float* out = y.mutable_data();
  py::gil_scoped_release release;
  binary_conv2d(g, xs, t, per_channel, w, s, bi, zero_padding, out);
  return y;
}

}  // namespace

void bind_binary(py::module_& m) {
  py::class_<PackedBinaryB>(m, "PackedBinaryWeights", "Sign bits of binary weights packed for the kernels.")
      .def_readonly("k", &PackedBinaryB::K)
      .def_readonly("n", &PackedBinaryB::N)
      .def_property_readonly("nbytes", [](const PackedBinaryB& b) { return b.Np * b.words * 8; });
  m.def("binary_pack_weights", &pack_weights, py::arg("bits"), py::arg("k"),
        "bits: uint64 [N, ceil(k/64)] sign rows (bit set = -1, bits past k zero) -> PackedBinaryWeights.");
  m.def("binary_matmul", &matmul, py::arg("a_bits"), py::arg("b"),
        "int32 [M, N]: dot products of the +-1 rows of a_bits (uint64 [M, words]) and of b.");
  py::class_<PackedBinaryConv>(m, "PackedBinaryConvWeights", "Sign bits of binary conv weights packed for the kernels.")
      .def_readonly("out_c", &PackedBinaryConv::out_c)
      .def_readonly("in_c", &PackedBinaryConv::in_c)
      .def_property_readonly("nbytes", [](const PackedBinaryConv& w) { return w.b.Np * w.b.words * 8; });
  m.def("binary_pack_conv_weights", &pack_conv_weights, py::arg("bits"), py::arg("in_c"), py::arg("kernel_h"),
        py::arg("kernel_w"), "bits: uint64 [out_c, kh * kw, ceil(in_c / 64)] -> PackedBinaryConvWeights.");
  m.def("binary_conv2d", &conv2d, py::arg("x"), py::arg("threshold"), py::arg("w"), py::arg("scale"),
        py::arg("bias"), py::arg("strides"), py::arg("dilations"), py::arg("pads"), py::arg("zero_padding"),
        "float32 NHWC binary convolution of x NHWC float32 (see eightbit.binary.binary_conv2d).");
  m.def("binary_linear", &linear, py::arg("x"), py::arg("threshold"), py::arg("b"), py::arg("scale"),
        py::arg("bias"), "float32 [rows, N] = float(dot(sign(x < threshold), b)) * scale (+ bias).");
}

}  // namespace eb::bind
