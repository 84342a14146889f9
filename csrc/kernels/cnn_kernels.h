// Kernel layer: the CNN companion kernel set of one ISA unit (the shared
// elementwise and pooling loops compiled with that unit's flags, plus the
// unit's own table lookup).
#pragma once

#include "kernels/elementwise.h"
#include "kernels/pooling.h"

namespace eb {
namespace {  // internal linkage: see kernels/depthwise.h

inline CnnKernels unit_cnn_kernels(LookupFn lookup) {
  CnnKernels k;
  k.qlinear_add = qlinear_add_any;
  k.qlinear_mul = qlinear_mul_any;
  k.max_pool = max_pool_any;
  k.average_pool = average_pool_any;
  k.sum_pixels = sum_pixels;
  k.lookup = lookup;
  k.quantize = quantize_any;
  k.quantize_bounded = quantize_bounded;
  k.range = range_with_zero;
  k.divide = divide_by_scales;
  return k;
}

}  // namespace
}  // namespace eb
