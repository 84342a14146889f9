// Kernel layer: throughput probes for benchmarks (DESIGN.md, "Performance": on a CPU with AMX
// the forced avx512vnni path is compared with what the VNNI units can do, timed in one process).
#pragma once

#include <cstdint>

namespace eb {

// int8 ops per second (2 per multiply-add) of `iterations` rounds of 12 independent vpdpbusd on
// zmm registers: the AVX-512 VNNI peak of one core.  Only on a CPU with AVX-512 VNNI.
double vnni_probe_ops_per_second(int64_t iterations);

}  // namespace eb
