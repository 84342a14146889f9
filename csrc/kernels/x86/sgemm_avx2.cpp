// Kernel layer, avx2: float32 GEMM (kernels/sgemm.h with this unit's flags).
#include "kernels/sgemm.h"

namespace eb {

SgemmFn sgemm_kernel_avx2() { return sgemm_block; }

}  // namespace eb
