// Kernel layer, scalar: the float32 steps (kernels/float_math.h with the portable flags).
#include "kernels/float_math.h"

namespace eb {

FloatMathKernels float_math_kernels_scalar() { return float_math_table(); }

}  // namespace eb
