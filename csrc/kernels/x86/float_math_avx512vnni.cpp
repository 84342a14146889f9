// Kernel layer, avx512vnni: the float32 steps (kernels/float_math.h with this unit's flags).
#include "kernels/float_math.h"

namespace eb {

FloatMathKernels float_math_kernels_avx512() { return float_math_table(); }

}  // namespace eb
