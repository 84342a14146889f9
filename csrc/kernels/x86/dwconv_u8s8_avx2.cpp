// Kernel layer, avx2: depthwise convolution (kernels/depthwise.h compiled
// with this unit's instruction-set flags).
#include "kernels/depthwise.h"

namespace eb {

DepthwiseFn depthwise_kernel_avx2() { return depthwise_any; }

}  // namespace eb
