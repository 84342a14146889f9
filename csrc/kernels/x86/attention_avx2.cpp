// Kernel layer, avx2: the int8 attention loops (kernels/attention.h with this unit's flags).
#include "kernels/attention.h"

namespace eb {

AttentionKernels attention_kernels_avx2() { return attention_table(); }

}  // namespace eb
