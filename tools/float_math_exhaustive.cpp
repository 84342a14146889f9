// Exhaustive check of the float32 math of csrc/kernels/float_math.h: every float32 input (or every
// `stride`-th bit pattern) through exp, erf, tanh, sigmoid, gelu (erf form) against the C
// library's double functions; prints the max error in ulps of the correctly rounded result (ulp of
// the float32 result, subnormal ulp 2^-149 included), where it occurred, and a hash of every
// output bit pattern (the same hash from every build = the same bits on every ISA).
//
//   g++ -O2 -std=c++17 -ffp-contract=off -Icsrc -Icsrc/include tools/float_math_exhaustive.cpp -o /tmp/fm_scalar
//   g++ ... -mavx2 -mfma -o /tmp/fm_avx2;   g++ ... -mavx512f -mavx512bw -mavx512dq -mavx512vl -o /tmp/fm_avx512
//   /tmp/fm_avx512 [stride]          (stride 1: all 2^32 inputs; about a minute per function)
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/float_math.h"

namespace {

double ulp_of(double v) {  // the float32 ulp at v
  const double a = std::fabs(v);
  if (a < std::ldexp(1.0, -126)) return std::ldexp(1.0, -149);
  int e;
  std::frexp(a, &e);  // a = m 2^e, m in [0.5, 1)
  return std::ldexp(1.0, std::min(e, 128) - 24);
}

float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct Stat {
  double max_ulp = 0.0;
  float worst_x = 0.0f;
  uint64_t hash = 1469598103934665603ull, bad_special = 0, count = 0;
};

// ref(x) in double; special values (NaN, inf, zero signs) must match the float32 rounding of ref.
template <typename F, typename R>
Stat check(F f, R ref, uint32_t stride) {
  Stat st;
  constexpr int kChunk = 1 << 16;
  std::vector<float> xs(kChunk), ys(kChunk);
  uint64_t u = 0;
  while (u <= 0xffffffffull) {
    int n = 0;
    for (; n < kChunk && u <= 0xffffffffull; ++n, u += stride) xs[n] = bits_to_float(static_cast<uint32_t>(u));
    eb::map_n(xs.data(), n, ys.data(), f);
    for (int i = 0; i < n; ++i) {
      const float x = xs[i], y = ys[i];
      uint32_t yb;
      std::memcpy(&yb, &y, 4);
      st.hash = (st.hash ^ yb) * 1099511628211ull;
      ++st.count;
      const double r = ref(static_cast<double>(x));
      const float rf = static_cast<float>(r);
      if (std::isnan(r) || std::isinf(rf) || rf == 0.0f) {  // must match exactly (sign of zero included)
        const bool same = std::isnan(r) ? std::isnan(y) : (y == rf && std::signbit(y) == std::signbit(rf));
        // a zero result may be a subnormal-range rounding away from zero by one step
        const bool near_zero = rf == 0.0f && std::fabs(static_cast<double>(y)) <= std::ldexp(1.0, -149);
        if (!same && !near_zero) {
          if (st.bad_special < 5) std::printf("    special mismatch x=%a y=%a ref=%a\n", x, y, r);
          ++st.bad_special;
        }
        continue;
      }
      if (std::isinf(y) || std::isnan(y)) {
        if (st.bad_special < 5) std::printf("    non-finite x=%a y=%a ref=%a\n", x, y, r);
        ++st.bad_special;
        continue;
      }
      const double e = std::fabs(static_cast<double>(y) - r) / ulp_of(r);
      if (e > st.max_ulp) {
        st.max_ulp = e;
        st.worst_x = x;
      }
    }
  }
  return st;
}

double gelu_ref(double x) { return 0.5 * x * std::erfc(-x / std::sqrt(2.0)); }
double sigmoid_ref(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace

int main(int argc, char** argv) {
  const uint32_t stride = argc > 1 ? static_cast<uint32_t>(std::strtoul(argv[1], nullptr, 0)) : 1;
  std::printf("lanes %d, stride %u\n", eb::kFmLanes, stride);
  auto report = [](const char* name, const Stat& s) {
    std::printf("%-8s max %.3f ulp at x=%a (%.9g)  specials wrong: %" PRIu64 "  inputs: %" PRIu64 "  hash %016" PRIx64 "\n",
                name, s.max_ulp, s.worst_x, s.worst_x, s.bad_special, s.count, s.hash);
    std::fflush(stdout);
  };
  report("exp", check(eb::vexp, [](double x) { return std::exp(x); }, stride));
  report("erf", check(eb::verf, [](double x) { return std::erf(x); }, stride));
  report("tanh", check(eb::vtanh, [](double x) { return std::tanh(x); }, stride));
  report("sigmoid", check(eb::vsigmoid, sigmoid_ref, stride));
  report("gelu", check(eb::vgelu, gelu_ref, stride));
  return 0;
}
