// Exhaustive checks of the quantize kernels' division-free quotient (kernels/elementwise.h,
// divide_fma) against the IEEE division x / scale, run once (minutes, not part of the test suite);
// docs/numerics.md, "The quotient x / scale", records the result.
//
//   g++ -std=c++17 -O3 -ffp-contract=off -fno-math-errno -mavx512f -mavx512bw -mavx512dq -mavx512vl
//       -mfma -Icsrc -Icsrc/include tools/check_divide_by_scale.cpp -o /tmp/check_div && /tmp/check_div
//
// The result depends only on the significands of x and scale while every step stays in the normal
// range (the proof), so the checks run significand pairs at a fixed exponent, then repeat a subset
// at the ends of the domain:
//   1. RN(1 / scale) is the correctly rounded reciprocal, every significand.
//   2. every x significand (2^23) against 4096 scale significands (specials + random);
//   3. every scale significand against 4096 x significands;
//   4. every (x, scale) pair whose quotient lies within 16 units of 2^-48 of a midpoint between two
//      floats (the hard cases of the correction: A 2^25 - B M = k, |k| <= 16, solved per B);
//   5. 2 and 3 (256 x 256 subsets) with scale at 2^-126 and 2^123 and x at the band's ends;
//   and counts how often a single correction (q1), or none (x * inv), would differ: the first is
//   what the proof cannot exclude, the second shows the checks see wrong quotients.
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/elementwise.h"

namespace {

using eb::divide_fma;

float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
uint32_t to_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

uint64_t g_pairs = 0, g_bad = 0, g_bad_one_step = 0, g_bad_no_step = 0;

// Every x in xs against one scale: the two-correction quotient and the one-correction one.
__attribute__((noinline)) void check_scale(const std::vector<float>& xs, float scale) {
  const eb::ScaleDivisor d = eb::scale_divisor(scale);
  if (!d.exact) {
    std::printf("scale %a outside the domain\n", scale);
    ++g_bad;
    return;
  }
  const float inv = d.inv, ninv = d.neg_inv;
  uint64_t bad = 0, bad1 = 0, bad0 = 0;
  const size_t n = xs.size();
  const float* x = xs.data();
  for (size_t i = 0; i < n; ++i) {
    const float want = x[i] / scale;
    const float got = divide_fma(x[i], scale, inv, ninv);
    float q = x[i] * inv;
    bad0 += to_bits(q) != to_bits(want);
    const float r = std::fma(q, scale, -x[i]);
    q = std::fma(r, ninv, q);
    bad += to_bits(got) != to_bits(want);
    bad1 += to_bits(q) != to_bits(want);
  }
  if (bad) {
    for (size_t i = 0; i < n; ++i)
      if (to_bits(divide_fma(x[i], scale, inv, ninv)) != to_bits(x[i] / scale)) {
        std::printf("MISMATCH x=%a scale=%a\n", x[i], scale);
        break;
      }
  }
  g_pairs += n;
  g_bad += bad;
  g_bad_one_step += bad1;
  g_bad_no_step += bad0;
}

std::vector<float> significands(int exponent, const std::vector<uint32_t>& mantissas, bool both_signs) {
  std::vector<float> v;
  for (uint32_t m : mantissas) {
    v.push_back(from_bits(static_cast<uint32_t>(127 + exponent) << 23 | m));
    if (both_signs) v.push_back(-v.back());
  }
  return v;
}

std::vector<uint32_t> all_mantissas() {
  std::vector<uint32_t> m(1u << 23);
  for (uint32_t i = 0; i < m.size(); ++i) m[i] = i;
  return m;
}

std::vector<uint32_t> some_mantissas(size_t count, uint32_t seed) {
  std::vector<uint32_t> m = {0, 1, 2, 3, (1u << 22), (1u << 23) - 1, (1u << 23) - 2, (1u << 23) - 3,
                             0x2AAAAA, 0x555555};
  for (uint32_t k = 1; k <= 16; ++k) m.push_back((1u << 23) - (1u << (k + 3)));  // 1 / scale near 1/2 + ...
  std::mt19937 g(seed);
  while (m.size() < count) m.push_back(g() & 0x7FFFFF);
  return m;
}

void report(const char* what) {
  std::printf("%-62s pairs %12" PRIu64 "  wrong %" PRIu64 "  (one correction: %" PRIu64 ", x * inv: %" PRIu64
              ")\n", what, g_pairs, g_bad, g_bad_one_step, g_bad_no_step);
  std::fflush(stdout);
  g_pairs = g_bad = g_bad_one_step = g_bad_no_step = 0;
}

// 1. RN(1 / s): y s - 1 is exact in double (24 x 24 bits); y must be nearer than both neighbours.
void check_reciprocals() {
  uint64_t bad = 0;
  for (uint32_t m = 0; m < (1u << 23); ++m) {
    const float s = from_bits(127u << 23 | m), y = 1.0f / s;
    const double e = std::fabs(double(y) * double(s) - 1.0);
    const double e_up = std::fabs(double(std::nextafter(y, 2.0f)) * double(s) - 1.0);
    const double e_dn = std::fabs(double(std::nextafter(y, 0.0f)) * double(s) - 1.0);
    bad += !(e <= e_up && e <= e_dn);
  }
  std::printf("%-62s scales %" PRIu32 "  not correctly rounded %" PRIu64 "\n", "1. RN(1/scale), every significand",
              1u << 23, bad);
}

// 4. For scale significand B (s = B 2^-23) and x = A 2^-23, the quotient lies near a midpoint when
// A 2^(p) - B M = k for small k (p = 25 when A < B: quotient in [1/2, 1), midpoints M 2^-25;
// p = 24 when A >= B: quotient in [1, 2), midpoints M 2^-24; M odd).  Solve for A per B and k.
void check_near_midpoints(int kmax) {
  std::vector<float> xs;
  for (uint64_t B = 1u << 23; B < (1u << 24); ++B) {
    xs.clear();
    for (int p = 24; p <= 25; ++p)
      for (int k = -kmax; k <= kmax; ++k) {
        if (k == 0) continue;
        // A 2^p = k (mod B): with B = 2^v B', need 2^v | k, then A = (k / 2^v) inv(2^(p-v)) mod B'.
        const int v = __builtin_ctzll(B);
        if (v > p || (k % (1 << v)) != 0) continue;
        const uint64_t Bo = B >> v;
        const int64_t kk = k / (1 << v);
        // inverse of 2^(p - v) modulo the odd Bo
        uint64_t pw = 1, two = 2 % Bo;
        for (int e = 0; e < p - v; ++e) pw = (pw * two) % Bo;
        int64_t t0 = 0, t1 = 1, r0 = static_cast<int64_t>(Bo), r1 = static_cast<int64_t>(pw);
        while (r1 != 0) {
          const int64_t q = r0 / r1;
          int64_t t = t0 - q * t1; t0 = t1; t1 = t;
          t = r0 - q * r1; r0 = r1; r1 = t;
        }
        const int64_t invp = ((t0 % int64_t(Bo)) + int64_t(Bo)) % int64_t(Bo);
        int64_t a0 = ((kk % int64_t(Bo) + int64_t(Bo)) % int64_t(Bo)) * invp % int64_t(Bo);
        // A in [2^23, 2^24) with A < B for p = 25, A >= B for p = 24
        int64_t A = (1ll << 23) + ((a0 - (1ll << 23)) % int64_t(Bo) + int64_t(Bo)) % int64_t(Bo);
        for (; A < (1ll << 24); A += int64_t(Bo)) {
          if ((p == 25) != (A < int64_t(B))) continue;
          // the midpoint M = (A 2^p - k) / B must be odd
          const int64_t num = (A << p) - k;
          if (num % int64_t(B) != 0 || ((num / int64_t(B)) & 1) == 0) continue;
          const float x = from_bits(127u << 23 | static_cast<uint32_t>(A - (1ll << 23)));
          xs.push_back(x);
          xs.push_back(-x);
        }
      }
    if (!xs.empty()) check_scale(xs, from_bits(127u << 23 | static_cast<uint32_t>(B - (1u << 23))));
  }
}

}  // namespace

int main() {
  check_reciprocals();

  const std::vector<uint32_t> all = all_mantissas();
  const std::vector<float> all_x = significands(0, all, true);
  for (uint32_t m : some_mantissas(4096, 1)) check_scale(all_x, from_bits(127u << 23 | m));
  report("2. every x significand (both signs) x 4096 scale significands");

  const std::vector<float> some_x = significands(0, some_mantissas(4096, 2), true);
  for (uint32_t m = 0; m < (1u << 23); ++m) check_scale(some_x, from_bits(127u << 23 | m));
  report("3. every scale significand x 4096 x significands (both signs)");

  check_near_midpoints(16);
  report("4. every pair with the quotient within 16 * 2^-48 of a midpoint");

  // 5. The ends of the domain: scales 2^-126 .. and 2^123 .., x at the ends of the band.
  const std::vector<uint32_t> ms = some_mantissas(256, 3);
  for (int se : {-126, -90, 123}) {
    for (uint32_t sm : ms) {
      const float s = from_bits(static_cast<uint32_t>(127 + se) << 23 | sm);
      const eb::ScaleDivisor d = eb::scale_divisor(s);
      const float lo = from_bits(d.lo), hi = from_bits(d.lo + d.span);
      std::vector<float> xs;
      for (float edge : {lo, hi}) {
        const int xe = std::ilogb(edge);
        for (int e : {xe - 1, xe, xe + 1})
          for (float x : significands(e < -126 ? -126 : (e > 127 ? 127 : e), ms, true))
            if (std::fabs(x) >= lo && std::fabs(x) <= hi) xs.push_back(x);
      }
      check_scale(xs, s);
    }
  }
  report("5. scales 2^-126, 2^-90, 2^123 (256 significands) x band ends");
  return g_bad != 0;
}
