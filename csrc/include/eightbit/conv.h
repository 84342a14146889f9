// Kernel layer interface for convolution: the geometry (NHWC activations,
// OIHW weights, explicit pads) and the per-ISA depthwise entry point.
#pragma once

#include <cstdint>

#include "eightbit/gemm.h"

namespace eb {

struct ConvGeometry {
  int64_t batch = 0, in_h = 0, in_w = 0, in_c = 0;
  int64_t out_c = 0, kernel_h = 0, kernel_w = 0;
  int64_t stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t groups = 1;

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

// One depthwise convolution (groups == in_c == out_c): every channel its
// own filter.  `weights` is [kernel_h * kernel_w][channels] int32 holding
// w - w_zero_point; the epilogue's col_comp carries the int32 bias.
struct DepthwiseCall {
  ConvGeometry g;
  const void* x = nullptr;  // NHWC bytes
  bool x_signed = false;
  int32_t x_zp = 0;
  const int32_t* weights = nullptr;
  Epilogue ep;
};

// Computes output pixels [r0, r1) (r = (n * out_h + oh) * out_w + ow), all channels.
using DepthwiseFn = void (*)(const DepthwiseCall& call, int64_t r0, int64_t r1);

DepthwiseFn depthwise_kernel_scalar();
DepthwiseFn depthwise_kernel_avx2();
DepthwiseFn depthwise_kernel_avx512vnni();

}  // namespace eb
