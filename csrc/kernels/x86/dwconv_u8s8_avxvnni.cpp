// Kernel layer, avxvnni: depthwise convolution with VEX vpdpbusd on 256-bit
// registers (kernels/depthwise_256.h).
#include "kernels/depthwise_256.h"
#include "kernels/dot_vnni_256.h"

namespace eb {

DepthwiseFn depthwise_kernel_avxvnni() { return depthwise_256_any<DotVnni>; }

}  // namespace eb
