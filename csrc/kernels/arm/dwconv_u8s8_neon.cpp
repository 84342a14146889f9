// Kernel layer, baseline NEON: depthwise convolution (kernels/arm/depthwise_arm.h) with the
// 4-way dot product built from widening multiplies.
#include "kernels/arm/depthwise_arm.h"

namespace eb {
namespace {

// (x - 128) * w products fit int16 (|p| <= 2^14); SMULL(2) forms 16 of them, two pairwise
// adds (SADDLP widening to int32, then ADDP) sum each channel's 4.
struct DotNeon {
  static constexpr bool kSignedX = true;
  static int32x4_t dot(int32x4_t acc, uint8x16_t x, int8x16_t w) {
    const int8x16_t xs = vreinterpretq_s8_u8(x);
    const int32x4_t lo = vpaddlq_s16(vmull_s8(vget_low_s8(xs), vget_low_s8(w)));
    const int32x4_t hi = vpaddlq_s16(vmull_high_s8(xs, w));
    return vaddq_s32(acc, vpaddq_s32(lo, hi));
  }
};

}  // namespace

DepthwiseFn depthwise_kernel_neon() { return depthwise_128_any<DotNeon>; }

}  // namespace eb
