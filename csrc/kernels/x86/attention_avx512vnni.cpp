// Kernel layer, avx512vnni: the int8 attention loops (kernels/attention.h with this unit's flags).
#include "kernels/attention.h"

namespace eb {

AttentionKernels attention_kernels_avx512() { return attention_table(); }

}  // namespace eb
