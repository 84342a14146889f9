// Kernel layer interface for convolution: the geometry (NHWC activations,
// OIHW weights, explicit pads) and the per-ISA depthwise entry point.
#pragma once

#include <array>
#include <cstdint>

#include "eightbit/gemm.h"

namespace eb {

struct ConvGeometry {
  int64_t batch = 0, in_h = 0, in_w = 0, in_c = 0;
  int64_t out_c = 0, kernel_h = 0, kernel_w = 0;
  int64_t stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t groups = 1;

  // strides (h, w), dilations (h, w), pads (top, left, bottom, right), as ONNX and the bindings give them
  void set_window(const std::array<int64_t, 2>& strides, const std::array<int64_t, 2>& dilations,
                  const std::array<int64_t, 4>& pads) {
    stride_h = strides[0];
    stride_w = strides[1];
    dilation_h = dilations[0];
    dilation_w = dilations[1];
    pad_top = pads[0];
    pad_left = pads[1];
    pad_bottom = pads[2];
    pad_right = pads[3];
  }

  // Bounds that keep every expression here and in the kernels inside int64_t:
  // window parameters below 2^31 (so dilation * (kernel - 1) < 2^62), extents
  // and the output's element count at most 2^40.
  static constexpr int64_t kMaxWindow = (int64_t{1} << 31) - 1;
  static constexpr int64_t kMaxExtent = int64_t{1} << 40;

  // nullptr when the geometry is valid and within those bounds, else what is
  // wrong (for a ValueError or a plan error).  Checked without overflowing,
  // before out_h() / out_w() are used: a hostile pad near 2^62 must not wrap.
  const char* check() const {
    const int64_t extents[] = {batch, in_h, in_w, in_c, out_c};
    for (int64_t e : extents)
      if (e < 0 || e > kMaxExtent) return "every extent must be in [0, 2^40]";
    const int64_t window[] = {kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w};
    for (int64_t v : window)
      if (v < 1 || v > kMaxWindow) return "kernel, strides and dilations must be in [1, 2^31)";
    const int64_t pads[] = {pad_top, pad_left, pad_bottom, pad_right};
    for (int64_t p : pads)
      if (p < 0 || p > kMaxWindow) return "pads must be in [0, 2^31)";
    if (groups < 1 || in_c % groups != 0 || out_c % groups != 0) return "groups must divide the channels";
    if (in_h + pad_top + pad_bottom < dilation_h * (kernel_h - 1) + 1 ||
        in_w + pad_left + pad_right < dilation_w * (kernel_w - 1) + 1)
      return "the (dilated) kernel is larger than the padded input";
    // out_h, out_w <= 2^40 + 2^32 here; their product with batch and out_c is
    // bounded one factor at a time
    int64_t elems = 1;
    const int64_t factors[] = {out_h(), out_w(), batch, out_c};
    for (int64_t f : factors) {
      if (f > 0 && elems > kMaxExtent / f) return "the output would have more than 2^40 values";
      elems *= f > 0 ? f : 1;
    }
    return nullptr;
  }

  int64_t out_h() const { return (in_h + pad_top + pad_bottom - dilation_h * (kernel_h - 1) - 1) / stride_h + 1; }
  int64_t out_w() const { return (in_w + pad_left + pad_right - dilation_w * (kernel_w - 1) - 1) / stride_w + 1; }
  int64_t group_in_c() const { return in_c / groups; }
  int64_t group_out_c() const { return out_c / groups; }
  bool depthwise() const { return groups == in_c && groups == out_c && groups > 1; }
  bool pointwise() const {
    return kernel_h == 1 && kernel_w == 1 && stride_h == 1 && stride_w == 1 && pad_top == 0 && pad_left == 0 &&
           pad_bottom == 0 && pad_right == 0;
  }
};

// Depthwise weights for the VNNI kernels: the taps of one kernel column in
// groups of 4 rows (the 4 bytes one vpdpbusd lane multiplies; group
// kw * row_groups + kh / 4, byte kh % 4), channels in blocks of 64, and inside
// a block the order the kernels' byte interleave produces: 16-byte lane l of
// the k-th vector of a (group, block) holds channels 16 l + 4 k .. 16 l + 4 k
// + 3, 4 tap bytes each.  Rows past kernel_h and channels past C have weight 0.
constexpr int kDwBlockChannels = 64;
constexpr int kDwBlockBytes = kDwBlockChannels * 4;  // one (tap group, block)

inline int64_t dw_row_groups(int64_t kernel_h) { return (kernel_h + 3) / 4; }

inline int64_t dw_i8_offset(int64_t blocks, int64_t kernel_h, int64_t kh, int64_t kw, int64_t c) {
  const int64_t group = kw * dw_row_groups(kernel_h) + kh / 4, t = kh % 4;
  const int64_t b = c / kDwBlockChannels, cc = c % kDwBlockChannels;
  const int64_t l = cc / 16, k = (cc % 16) / 4, j = cc % 4;
  return (group * blocks + b) * kDwBlockBytes + k * 64 + l * 16 + j * 4 + t;
}

// One depthwise convolution (groups == in_c == out_c): every channel its
// own filter.  `weights` is [kernel_h * kernel_w][channels] int32 holding
// w - w_zero_point; the epilogue's col_comp carries the int32 bias.
//
// VNNI kernels use `weights_i8` instead when it is set (every w - w_zp fits
// int8): they sum x * w over every tap, padding taps reading x_zp (`zero_row`
// holds C bytes of it), and the epilogue adds `comp_i8` = bias - x_zp' *
// sum_t w (x_zp' = x_zp + 128 for int8 x, which these kernels flip to uint8).
struct DepthwiseCall {
  ConvGeometry g;
  const void* x = nullptr;  // NHWC bytes
  bool x_signed = false;
  int32_t x_zp = 0;
  const int32_t* weights = nullptr;
  const int8_t* weights_i8 = nullptr;
  const int32_t* comp_i8 = nullptr;  // [C]
  const uint8_t* zero_row = nullptr; // [C]
  Epilogue ep;
};

// Computes output pixels [r0, r1) (r = (n * out_h + oh) * out_w + ow), all channels.
using DepthwiseFn = void (*)(const DepthwiseCall& call, int64_t r0, int64_t r1);

DepthwiseFn depthwise_kernel_scalar();
DepthwiseFn depthwise_kernel_avx2();
DepthwiseFn depthwise_kernel_avxvnni();
DepthwiseFn depthwise_kernel_avx512vnni();
DepthwiseFn depthwise_kernel_neon();  // aarch64 (csrc/kernels/arm)
DepthwiseFn depthwise_kernel_dotprod();
DepthwiseFn depthwise_kernel_i8mm();

}  // namespace eb
