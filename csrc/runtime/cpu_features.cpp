// Runtime layer: CPU feature detection.  An instruction set counts only when
// the CPU reports it AND the OS saves the register state it needs (XCR0), as
// a hypervisor or kernel may disable AVX-512 on a CPU that has it.
#include "runtime/cpu_features.h"

#include "eightbit/gemm.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#include <cstdint>
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace eb {
namespace {

#if defined(__x86_64__) || defined(_M_X64)
uint64_t read_xcr0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t{edx} << 32) | eax;
}

bool bit(unsigned reg, int b) { return (reg >> b) & 1u; }

CpuFeatures detect() {
  CpuFeatures f;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool fma = bit(ecx, 12), osxsave = bit(ecx, 27), avx = bit(ecx, 28);
  if (!(osxsave && avx)) return f;
  const uint64_t xcr0 = read_xcr0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;      // SSE + AVX
  const bool zmm_state = (xcr0 & 0xE6) == 0xE6;    // + opmask, ZMM_Hi256, Hi16_ZMM
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx2 = bit(ebx, 5);
  const bool avx512 = bit(ebx, 16) && bit(ebx, 17) && bit(ebx, 30) && bit(ebx, 31);  // F, DQ, BW, VL
  const bool vnni512 = bit(ecx, 11);
  unsigned eax1 = 0, ebx1 = 0, ecx1 = 0, edx1 = 0;
  __cpuid_count(7, 1, eax1, ebx1, ecx1, edx1);
  const bool avxvnni = bit(eax1, 4);

  f.avx2 = ymm_state && avx2 && fma;
  f.avxvnni = f.avx2 && avxvnni;
  f.avx512vnni = f.avx2 && zmm_state && avx512 && vnni512;
  f.avx512popcnt = f.avx512vnni && bit(ecx, 14);
  const bool amx_tile = bit(edx, 24), amx_int8 = bit(edx, 25);
  const bool tile_state = (xcr0 & 0x60000) == 0x60000;  // XTILECFG, XTILEDATA
#if defined(EB_HAVE_X86_KERNELS)
  f.amx = f.avx512vnni && amx_tile && amx_int8 && tile_state && amx_usable();
#else
  (void)amx_tile, (void)amx_int8, (void)tile_state;
#endif
  return f;
}
#elif defined(__aarch64__) && defined(__linux__)
// Older C libraries' headers lack the newer bits (values from the kernel's asm/hwcap.h).
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1 << 13)
#endif

CpuFeatures detect() {
  CpuFeatures f;
  const unsigned long hwcap = getauxval(AT_HWCAP), hwcap2 = getauxval(AT_HWCAP2);
  f.neon = (hwcap & HWCAP_ASIMD) != 0;
  f.dotprod = f.neon && (hwcap & HWCAP_ASIMDDP) != 0;
  f.i8mm = f.dotprod && (hwcap2 & HWCAP2_I8MM) != 0;  // the i8mm unit is built with +dotprod too
  return f;
}
#else
CpuFeatures detect() { return {}; }
#endif

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

}  // namespace eb
