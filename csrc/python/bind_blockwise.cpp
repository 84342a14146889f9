// Binding layer: linear layers with block-quantized low-bit weights (eightbit.lowbit wraps
// these).  Every operand is checked here: codes in [-8, 7], the block size, finite scales (of
// either sign: ONNX Runtime's symmetric quantizer writes negative ones), finite inputs.
#include <cmath>
#include <string>

#include "python/convert.h"
#include "runtime/blockwise.h"

namespace eb::bind {
namespace {

PackedBlockB pack(const py::handle& codes_in, const py::handle& scales_in, int64_t block) {
  py::array codes = as_array(codes_in, "codes");
  if (dtype_of(codes) != Dt::kS8) type_error("codes", "int8", codes);
  if (codes.ndim() != 2) value_error("codes: expected a 2-D array [N, K]");
  const int64_t n = codes.shape(0), k = codes.shape(1);
  if (block < 16 || block > 256 || (block & (block - 1)) != 0)
    value_error("block_size: expected a power of two in [16, 256], got " + std::to_string(block));
  if (k < 1 || k % block != 0)
    value_error("block_size: " + std::to_string(block) + " does not divide K = " + std::to_string(k));
  const auto* c = static_cast<const int8_t*>(codes.data());
  for (py::ssize_t i = 0; i < codes.size(); ++i)
    if (c[i] < -8 || c[i] > 7) value_error("codes: every code must be in [-8, 7] (4 bits), got " + std::to_string(c[i]));
  py::array scales = as_array(scales_in, "scales");
  if (dtype_of(scales) != Dt::kF32) type_error("scales", "float32", scales);
  if (scales.ndim() != 2 || scales.shape(0) != n || scales.shape(1) != k / block)
    value_error("scales: expected [" + std::to_string(n) + ", " + std::to_string(k / block) + "] (one per block)");
  const auto* s = static_cast<const float*>(scales.data());
  for (py::ssize_t i = 0; i < scales.size(); ++i)
    if (!std::isfinite(s[i])) value_error("scales: every value must be finite");
  py::gil_scoped_release release;
  return pack_blockwise(c, s, n, k, block);
}

py::array_t<float> linear(const py::handle& x_in, const PackedBlockB& b, const py::handle& bias_in, bool relu) {
  py::array x = as_array(x_in, "x");
  if (dtype_of(x) != Dt::kF32) type_error("x", "float32", x);
  if (x.ndim() != 2 || x.shape(1) != b.K) value_error("x: expected [rows, " + std::to_string(b.K) + "]");
  const auto* xs = static_cast<const float*>(x.data());
  py::array_t<float> bias;
  if (!bias_in.is_none()) {
    py::array bi = as_array(bias_in, "bias");
    if (dtype_of(bi) != Dt::kF32) type_error("bias", "float32", bi);
    if (bi.size() != b.N) value_error("bias: expected " + std::to_string(b.N) + " values");
    bias = py::array_t<float>(bi);
  }
  const int64_t m = x.shape(0);
  py::array_t<float> y({static_cast<py::ssize_t>(m), static_cast<py::ssize_t>(b.N)});
  const float* bp = bias_in.is_none() ? nullptr : bias.data();
  float* out = y.mutable_data();
  bool finite = false;
  {
    py::gil_scoped_release release;
    finite = blockwise_linear(xs, m, b, bp, relu, out);
  }
  if (!finite) value_error("x: every value must be finite (rows are quantized by their max |x|)");
  return y;
}

}  // namespace

void bind_blockwise(py::module_& m) {
  py::class_<PackedBlockB>(m, "PackedBlockwiseWeights", "Block-quantized low-bit weights packed for the kernels.")
      .def_readonly("n", &PackedBlockB::N)
      .def_readonly("k", &PackedBlockB::K)
      .def_readonly("block_size", &PackedBlockB::block)
      .def_property_readonly("nbytes", [](const PackedBlockB& b) {
        return static_cast<int64_t>(b.nibbles.size() + b.scales.size() * sizeof(float));
      });
  m.def("blockwise_pack", &pack, py::arg("codes"), py::arg("scales"), py::arg("block_size"),
        "codes int8 [N, K] in [-8, 7], scales float32 [N, K / block_size] -> PackedBlockwiseWeights.");
  m.def("blockwise_linear", &linear, py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("relu"),
        "float32 [rows, N]: x's rows quantized to symmetric int8, times the block-quantized weights.");
}

}  // namespace eb::bind
