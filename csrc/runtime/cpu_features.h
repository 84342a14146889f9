// Runtime layer: what this CPU and its operating system can execute, read
// once from cpuid and xgetbv (x86) or the auxiliary vector (aarch64 Linux).
#pragma once

namespace eb {

struct CpuFeatures {
  bool avx2 = false;        // AVX2 + FMA with OS-saved ymm state
  bool avxvnni = false;     // VEX-encoded vpdpbusd (Alder Lake, Zen 5, ...)
  bool avx512vnni = false;  // AVX-512 F/BW/DQ/VL + VNNI with OS-saved zmm state
  bool amx = false;         // AMX-TILE + AMX-INT8, tile state granted by the OS
  bool avx512popcnt = false;  // AVX-512 with VPOPCNTDQ (binary GEMM)
  // aarch64 (Linux: getauxval(AT_HWCAP / AT_HWCAP2), what the kernel lets user space run)
  bool neon = false;     // Advanced SIMD (every Armv8-A Linux CPU)
  bool dotprod = false;  // Armv8.2 SDOT/UDOT (HWCAP_ASIMDDP)
  bool i8mm = false;     // SMMLA/UMMLA/USMMLA, USDOT/SUDOT (HWCAP2_I8MM)
};

const CpuFeatures& cpu_features();

}  // namespace eb
