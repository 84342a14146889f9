// Runtime layer: int8 2-D convolution on NHWC activations (ONNX ConvInteger /
// QLinearConv semantics).  Weights are packed once per group into the GEMM's
// packed-B layout with K ordered (kh, kw, c), the order of an NHWC patch.
// Convolutions run as GEMMs.  Where the ISA's kernel has a direct-convolution
// tile (uint8 input, no weight zero point; AVX-512 VNNI and AVX-VNNI: channels
// per group a multiple of 8 or few channels in one group; AMX: a multiple of
// 64, padded, output rows of 14 or more), it reads each output pixel's taps
// (or, with few channels, kernel rows) in place, from a copy of the input
// with its padding written out when the convolution pads.
// Otherwise the GEMM runs over an im2col copy of the input (padding taps hold
// the input zero point, so they contribute nothing).  1x1 stride-1 unpadded
// convolutions read the input in place as a plain GEMM, and depthwise ones
// have their own channel-vectorised kernel.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eightbit/conv.h"

namespace eb {

struct PackedConv {
  int64_t out_c = 0, group_in_c = 0, kernel_h = 0, kernel_w = 0, groups = 1;
  bool w_signed = true;
  bool zp_per_channel = false;
  std::vector<int32_t> zp_user;      // 1 or out_c zero points, in w's domain
  std::vector<PackedB> group_b;      // one GEMM B per group (empty for depthwise)
  // Few channels (one group, group_in_c not a multiple of 8): B again with K ordered
  // (kh, j), j < row_k a kernel row's kernel_w * group_in_c contiguous NHWC bytes, padded
  // with zero weights to row_k, a multiple of 8: a direct convolution's taps are then the
  // kernel rows (see run_conv).  Empty otherwise.
  std::vector<PackedB> row_b;
  int64_t row_k = 0;
  AlignedBuffer<int32_t> dw_weights; // depthwise: [kh * kw][channels], w - zp
  AlignedBuffer<int8_t> dw_weights_i8;  // depthwise, when every w - zp fits int8: see DepthwiseCall
  AlignedBuffer<int32_t> dw_weight_sum; // [channels] sum over taps of w - zp
  bool depthwise = false;
};

// Packs OIHW weights [out_c, group_in_c, kernel_h, kernel_w] (uint8 or int8).
PackedConv pack_conv(const void* w, bool w_signed, int64_t out_c, int64_t group_in_c, int64_t kernel_h,
                     int64_t kernel_w, int64_t groups, const int32_t* zp, bool zp_per_channel);

// The kernel run_conv takes for this geometry, input signedness and weights on the active
// path: depthwise, direct (taps or kernel rows), a 1x1 GEMM on x in place, or im2col + GEMM.
std::string conv_kernel_name(const ConvGeometry& g, bool x_signed, const PackedConv& w);

// y = epilogue(conv(x - x_zp, w - w_zp)).  x is NHWC bytes; the epilogue's
// output is NHWC with ldc = out_c and per-column parameters indexed by
// output channel (ep.bias_i32, ep.multiplier, ... hold out_c entries).
void run_conv(const ConvGeometry& g, const void* x, bool x_signed, int32_t x_zp, const PackedConv& w,
              const Epilogue& ep);

}  // namespace eb
