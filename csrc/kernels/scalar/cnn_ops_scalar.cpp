// Kernel layer, scalar: the CNN companion operators (kernels/elementwise.h and
// kernels/pooling.h compiled with the portable flags; std::fma is libm's
// exact fmaf here).
#include "kernels/cnn_kernels.h"

namespace eb {

CnnKernels cnn_kernels_scalar() { return unit_cnn_kernels(lookup_bytes); }

}  // namespace eb
