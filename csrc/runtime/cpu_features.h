// Runtime layer: what this CPU and its operating system can execute, read
// once from cpuid and xgetbv.
#pragma once

namespace eb {

struct CpuFeatures {
  bool avx2 = false;        // AVX2 + FMA with OS-saved ymm state
  bool avxvnni = false;     // VEX-encoded vpdpbusd (Alder Lake, Zen 5, ...)
  bool avx512vnni = false;  // AVX-512 F/BW/DQ/VL + VNNI with OS-saved zmm state
  bool amx = false;         // AMX-TILE + AMX-INT8, tile state granted by the OS
  bool avx512popcnt = false;  // AVX-512 with VPOPCNTDQ (binary GEMM)
};

const CpuFeatures& cpu_features();

}  // namespace eb
