// Kernel layer, scalar: the CNN companion operators (kernels/elementwise.h and
// kernels/pooling.h compiled with the portable flags; std::fma is libm's
// exact fmaf here).
#include "kernels/elementwise.h"
#include "kernels/pooling.h"

namespace eb {

CnnKernels cnn_kernels_scalar() {
  CnnKernels k;
  k.qlinear_add = qlinear_add_any;
  k.qlinear_mul = qlinear_mul_any;
  k.max_pool = max_pool_any;
  k.average_pool = average_pool_any;
  k.sum_pixels = sum_pixels;
  k.lookup = lookup_bytes;
  return k;
}

}  // namespace eb
