// Runtime layer: the dispatch table.  Picks, once, the fastest kernel set
// this CPU runs; `set_isa` forces a lower one (tests use it to check that
// every path gives the same bits).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eightbit/attention.h"
#include "eightbit/binary.h"
#include "eightbit/blockwise.h"
#include "eightbit/cnn_ops.h"
#include "eightbit/conv.h"
#include "eightbit/float_math.h"
#include "eightbit/gemm.h"
#include "eightbit/sgemm.h"

namespace eb {

// Names of every path this CPU can run, slowest first ("scalar" always).
std::vector<std::string> available_isas();

// The kernels in use.
const GemmKernel& active_gemm();
DepthwiseFn active_depthwise();
const CnnKernels& active_cnn();
SgemmFn active_sgemm();
FloatMathKernels active_float_math();
AttentionKernels active_attention();
BinaryKernels active_binary();
BlockwiseFn active_blockwise();

// int8 ops per second of one core's AVX-512 VNNI units (kernels/probe.h), 0 where the CPU has
// none: the reference that benchmarks of the forced avx512vnni path quote.
double vnni_peak_ops_per_second(int64_t iterations);

// Forces a path; throws std::invalid_argument naming the choices when `name`
// is unknown or this CPU lacks it.
void set_isa(const std::string& name);

}  // namespace eb
