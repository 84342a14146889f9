// Runtime layer: linear layers with block-quantized low-bit weights (eightbit/blockwise.h gives
// the arithmetic) on validated operands: packing, the rows' symmetric int8 quantization, the split
// over the thread pool and the active ISA's kernel.
#pragma once

#include <cstdint>

#include "eightbit/blockwise.h"

namespace eb {

// codes int8 [N][K] in [-8, 7], scales float32 [N][K / block]; block divides K, a multiple of 4.
PackedBlockB pack_blockwise(const int8_t* codes, const float* scales, int64_t N, int64_t K, int64_t block);

// Symmetric int8 rows (row m of q at m * ldq): scale = max |x| / 127 (1 where that is 0), q = clamp(rne(x / scale), -127, 127).
// False (q and scale unspecified) when x holds NaN or infinity.
bool quantize_rows_symmetric(const float* x, int64_t M, int64_t K, int64_t ldq, int8_t* q, float* scale);

// y [M][b.N] of x float32 [M][b.K], bias [b.N] or null, relu.  False (y unspecified) when x
// holds NaN or infinity: its rows are quantized by their max |x|.
bool blockwise_linear(const float* x, int64_t M, const PackedBlockB& b, const float* bias, bool relu, float* y);

}  // namespace eb
