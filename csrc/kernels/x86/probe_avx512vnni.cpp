// Kernel layer, avx512vnni: the VNNI throughput probe (kernels/probe.h).  Twelve accumulators hide
// vpdpbusd's latency (~4 cycles at 2 per cycle); the inline asm keeps them in registers.
#include <immintrin.h>

#include <chrono>

#include "kernels/probe.h"

namespace eb {

double vnni_probe_ops_per_second(int64_t iterations) {
  __m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(2);
  __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0,
          c9 = c0, c10 = c0, c11 = c0;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < iterations; ++i) {
    asm volatile(
        "vpdpbusd %[a], %[b], %[c0]\n\tvpdpbusd %[a], %[b], %[c1]\n\tvpdpbusd %[a], %[b], %[c2]\n\t"
        "vpdpbusd %[a], %[b], %[c3]\n\tvpdpbusd %[a], %[b], %[c4]\n\tvpdpbusd %[a], %[b], %[c5]\n\t"
        "vpdpbusd %[a], %[b], %[c6]\n\tvpdpbusd %[a], %[b], %[c7]\n\tvpdpbusd %[a], %[b], %[c8]\n\t"
        "vpdpbusd %[a], %[b], %[c9]\n\tvpdpbusd %[a], %[b], %[c10]\n\tvpdpbusd %[a], %[b], %[c11]\n\t"
        : [c0] "+v"(c0), [c1] "+v"(c1), [c2] "+v"(c2), [c3] "+v"(c3), [c4] "+v"(c4), [c5] "+v"(c5),
          [c6] "+v"(c6), [c7] "+v"(c7), [c8] "+v"(c8), [c9] "+v"(c9), [c10] "+v"(c10), [c11] "+v"(c11)
        : [a] "v"(a), [b] "v"(b));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Keep the accumulators observable so the loop is not dropped.
  const __m512i sum = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3)),
                                       _mm512_add_epi32(_mm512_add_epi32(c4, c5), _mm512_add_epi32(c6, c7)));
  const __m512i rest = _mm512_add_epi32(_mm512_add_epi32(c8, c9), _mm512_add_epi32(c10, c11));
  volatile int sink = _mm512_reduce_add_epi32(_mm512_add_epi32(sum, rest));
  (void)sink;
  return seconds > 0 ? static_cast<double>(iterations) * 12 * 64 * 2 / seconds : 0.0;
}

}  // namespace eb
