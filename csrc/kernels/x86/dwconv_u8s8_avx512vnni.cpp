// Kernel layer, avx512vnni: depthwise convolution (kernels/depthwise.h compiled
// with this unit's instruction-set flags).
#include "kernels/depthwise.h"

namespace eb {

DepthwiseFn depthwise_kernel_avx512vnni() { return depthwise_any; }

}  // namespace eb
