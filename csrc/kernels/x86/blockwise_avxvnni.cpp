// Kernel layer, AVX-VNNI: block-quantized linear layer (kernels/blockwise_256.h) with VEX vpdpbusd.
#include "kernels/blockwise_256.h"
#include "kernels/dot_vnni_256.h"

namespace eb {

BlockwiseFn blockwise_kernel_avxvnni() { return blockwise_256<DotVnni>; }

}  // namespace eb
