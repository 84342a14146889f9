// Runtime layer: the dispatch table (the one global of the C++ core).
#include "runtime/dispatch.h"

#include <atomic>
#include <stdexcept>

#include "kernels/probe.h"
#include "runtime/cpu_features.h"

namespace eb {
namespace {

struct IsaEntry {
  const char* name;
  bool (*supported)();
  GemmKernel (*gemm)();
  DepthwiseFn (*depthwise)();
  CnnKernels (*cnn)();
  SgemmFn (*sgemm)();
};

// Slowest first.  A build for another architecture has only the scalar entry.
const IsaEntry kIsas[] = {
    {"scalar", [] { return true; }, gemm_kernel_scalar, depthwise_kernel_scalar, cnn_kernels_scalar,
     sgemm_kernel_scalar},
#if defined(EB_HAVE_X86_KERNELS)
    {"avx2", [] { return cpu_features().avx2; }, gemm_kernel_avx2, depthwise_kernel_avx2, cnn_kernels_avx2,
     sgemm_kernel_avx2},
    {"avxvnni", [] { return cpu_features().avxvnni; }, gemm_kernel_avxvnni, depthwise_kernel_avxvnni,
     cnn_kernels_avx2, sgemm_kernel_avx2},
    {"avx512vnni", [] { return cpu_features().avx512vnni; }, gemm_kernel_avx512vnni, depthwise_kernel_avx512vnni,
     cnn_kernels_avx512vnni, sgemm_kernel_avx512},
    {"amx", [] { return cpu_features().amx; }, gemm_kernel_amx, depthwise_kernel_avx512vnni, cnn_kernels_avx512vnni,
     sgemm_kernel_avx512},
#endif
#if defined(EB_HAVE_ARM_KERNELS)
    // int8 GEMM and depthwise per unit; the other kernel sets are the portable ones.
    {"neon", [] { return cpu_features().neon; }, gemm_kernel_neon, depthwise_kernel_neon, cnn_kernels_scalar,
     sgemm_kernel_scalar},
    {"dotprod", [] { return cpu_features().dotprod; }, gemm_kernel_dotprod, depthwise_kernel_dotprod,
     cnn_kernels_scalar, sgemm_kernel_scalar},
    {"i8mm", [] { return cpu_features().i8mm; }, gemm_kernel_i8mm, depthwise_kernel_i8mm, cnn_kernels_scalar,
     sgemm_kernel_scalar},
#endif
};

// The float32 step kernels of each kIsas entry, in kIsas order (AVX-VNNI runs the AVX2 unit, AMX
// the AVX-512 one).
FloatMathKernels (*const kFloatMath[])() = {
    float_math_kernels_scalar,
#if defined(EB_HAVE_X86_KERNELS)
    float_math_kernels_avx2, float_math_kernels_avx2, float_math_kernels_avx512, float_math_kernels_avx512,
#endif
#if defined(EB_HAVE_ARM_KERNELS)
    float_math_kernels_scalar, float_math_kernels_scalar, float_math_kernels_scalar,
#endif
};
static_assert(sizeof(kFloatMath) / sizeof(kFloatMath[0]) == sizeof(kIsas) / sizeof(kIsas[0]),
              "one float math table per ISA entry");

// The int8 attention loops of each kIsas entry, in kIsas order (as kFloatMath).
AttentionKernels (*const kAttention[])() = {
    attention_kernels_scalar,
#if defined(EB_HAVE_X86_KERNELS)
    attention_kernels_avx2, attention_kernels_avx2, attention_kernels_avx512, attention_kernels_avx512,
#endif
#if defined(EB_HAVE_ARM_KERNELS)
    attention_kernels_scalar, attention_kernels_scalar, attention_kernels_scalar,
#endif
};
static_assert(sizeof(kAttention) / sizeof(kAttention[0]) == sizeof(kIsas) / sizeof(kIsas[0]),
              "one attention table per ISA entry");

// The binary kernels of each kIsas entry, in kIsas order: the AVX-512 ones need VPOPCNTDQ,
// which some AVX-512 VNNI CPUs (Cascade Lake) lack; they run the AVX2 ones.
#if defined(EB_HAVE_X86_KERNELS)
BinaryKernels binary_kernels_avx512_or_avx2() {
  return cpu_features().avx512popcnt ? binary_kernels_avx512() : binary_kernels_avx2();
}
#endif
BinaryKernels (*const kBinary[])() = {
    binary_kernels_scalar,
#if defined(EB_HAVE_X86_KERNELS)
    binary_kernels_avx2, binary_kernels_avx2, binary_kernels_avx512_or_avx2, binary_kernels_avx512_or_avx2,
#endif
#if defined(EB_HAVE_ARM_KERNELS)
    binary_kernels_scalar, binary_kernels_scalar, binary_kernels_scalar,
#endif
};
static_assert(sizeof(kBinary) / sizeof(kBinary[0]) == sizeof(kIsas) / sizeof(kIsas[0]),
              "one binary kernel set per ISA entry");

// The block-quantized linear kernel of each kIsas entry, in kIsas order.
BlockwiseFn (*const kBlockwise[])() = {
    blockwise_kernel_scalar,
#if defined(EB_HAVE_X86_KERNELS)
    blockwise_kernel_avx2, blockwise_kernel_avxvnni, blockwise_kernel_avx512, blockwise_kernel_amx,
#endif
#if defined(EB_HAVE_ARM_KERNELS)
    blockwise_kernel_scalar, blockwise_kernel_scalar, blockwise_kernel_scalar,
#endif
};
static_assert(sizeof(kBlockwise) / sizeof(kBlockwise[0]) == sizeof(kIsas) / sizeof(kIsas[0]),
              "one blockwise kernel per ISA entry");

struct Table {
  GemmKernel kernels[sizeof(kIsas) / sizeof(kIsas[0])];
  DepthwiseFn depthwise[sizeof(kIsas) / sizeof(kIsas[0])];
  CnnKernels cnn[sizeof(kIsas) / sizeof(kIsas[0])];
  SgemmFn sgemm[sizeof(kIsas) / sizeof(kIsas[0])];
  std::atomic<int> active{0};
  Table() {
    for (size_t i = 0; i < sizeof(kIsas) / sizeof(kIsas[0]); ++i) {
      kernels[i] = kIsas[i].gemm();
      depthwise[i] = kIsas[i].depthwise();
      cnn[i] = kIsas[i].cnn();
      sgemm[i] = kIsas[i].sgemm();
      if (kIsas[i].supported()) active = static_cast<int>(i);
    }
  }
};

Table& table() {
  static Table t;
  return t;
}

}  // namespace

std::vector<std::string> available_isas() {
  std::vector<std::string> names;
  for (const IsaEntry& e : kIsas)
    if (e.supported()) names.emplace_back(e.name);
  return names;
}

FloatMathKernels active_float_math() {  // a table of plain function pointers: cheap to return
  return kFloatMath[table().active.load(std::memory_order_relaxed)]();
}

BlockwiseFn active_blockwise() { return kBlockwise[table().active.load(std::memory_order_relaxed)](); }

BinaryKernels active_binary() { return kBinary[table().active.load(std::memory_order_relaxed)](); }

AttentionKernels active_attention() {
  return kAttention[table().active.load(std::memory_order_relaxed)]();
}

const GemmKernel& active_gemm() {
  Table& t = table();
  return t.kernels[t.active.load(std::memory_order_relaxed)];
}

DepthwiseFn active_depthwise() {
  Table& t = table();
  return t.depthwise[t.active.load(std::memory_order_relaxed)];
}

SgemmFn active_sgemm() {
  Table& t = table();
  return t.sgemm[t.active.load(std::memory_order_relaxed)];
}

const CnnKernels& active_cnn() {
  Table& t = table();
  return t.cnn[t.active.load(std::memory_order_relaxed)];
}

double vnni_peak_ops_per_second(int64_t iterations) {
#if defined(EB_HAVE_X86_KERNELS)
  if (cpu_features().avx512vnni) return vnni_probe_ops_per_second(iterations);
#endif
  (void)iterations;
  return 0.0;
}

void set_isa(const std::string& name) {
  Table& t = table();
  for (size_t i = 0; i < sizeof(kIsas) / sizeof(kIsas[0]); ++i) {
    if (name == kIsas[i].name) {
      if (!kIsas[i].supported())
        throw std::invalid_argument("isa '" + name + "' is not supported by this CPU; available: " +
                                    [] {
                                      std::string s;
                                      for (const auto& n : available_isas()) s += (s.empty() ? "" : ", ") + n;
                                      return s;
                                    }());
      t.active = static_cast<int>(i);
      return;
    }
  }
  std::string known;
  for (const IsaEntry& e : kIsas) known += (known.empty() ? "" : ", ") + std::string(e.name);
  throw std::invalid_argument("unknown isa '" + name + "'; expected one of: " + known);
}

}  // namespace eb
