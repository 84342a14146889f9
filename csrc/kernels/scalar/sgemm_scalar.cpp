// Kernel layer, scalar: float32 GEMM (kernels/sgemm.h with the portable flags).
#include "kernels/sgemm.h"

namespace eb {

SgemmFn sgemm_kernel_scalar() { return sgemm_block; }

}  // namespace eb
