// Kernel layer, Armv8.2 dot product: depthwise convolution (kernels/arm/depthwise_arm.h)
// with SDOT on x - 128.
#include "kernels/arm/depthwise_arm.h"

namespace eb {
namespace {

struct DotSdot {
  static constexpr bool kSignedX = true;
  static int32x4_t dot(int32x4_t acc, uint8x16_t x, int8x16_t w) {
    return vdotq_s32(acc, vreinterpretq_s8_u8(x), w);
  }
};

}  // namespace

DepthwiseFn depthwise_kernel_dotprod() { return depthwise_128_any<DotSdot>; }

}  // namespace eb
