// Kernel layer, i8mm: depthwise convolution (kernels/arm/depthwise_arm.h) with USDOT,
// unsigned x times signed w directly.
#include "kernels/arm/depthwise_arm.h"

namespace eb {
namespace {

struct DotUsdot {
  static constexpr bool kSignedX = false;
  static int32x4_t dot(int32x4_t acc, uint8x16_t x, int8x16_t w) { return vusdotq_s32(acc, x, w); }
};

}  // namespace

DepthwiseFn depthwise_kernel_i8mm() { return depthwise_128_any<DotUsdot>; }

}  // namespace eb
