// Kernel layer, scalar: the int8 attention loops (kernels/attention.h with the portable flags).
#include "kernels/attention.h"

namespace eb {

AttentionKernels attention_kernels_scalar() { return attention_table(); }

}  // namespace eb
