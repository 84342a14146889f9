// Kernel test: every int8 GEMM, convolution and depthwise path this CPU runs
// (or the one EIGHTBIT_ISA names, beside "scalar"), over a grid of shapes,
// zero points and values, compared bit for bit with
//   - a plain int64 reimplementation written here (the contract of gemm.h /
//     conv.h: sums of (a - za)(b - zb) wrapped to int32, ONNX Runtime
//     requantization), and
//   - the scalar kernels' output for the same call.
// Built with -DEIGHTBIT_BUILD_TESTS=ON; tools/test_aarch64.sh runs it under
// qemu-aarch64 for each aarch64 path, CI on x86 runs it natively.  Prints
// "N passed, N failed" and exits 0 only when nothing failed.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/conv.h"
#include "runtime/dispatch.h"
#include "runtime/gemm.h"

namespace {

using eb::Epilogue;
using eb::OutputKind;

struct Rng {  // xorshift64*: the same values on every machine
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  int32_t in(int32_t lo, int32_t hi) { return lo + static_cast<int32_t>(next() % static_cast<uint64_t>(hi - lo + 1)); }
};

// How the bytes of an operand are drawn.
enum class Fill { kRandom, kExtremes, kNearZeroPoint, kMax, kMin };
const char* fill_name(Fill f) {
  switch (f) {
    case Fill::kRandom: return "random";
    case Fill::kExtremes: return "extremes";
    case Fill::kNearZeroPoint: return "near-zp";
    case Fill::kMax: return "max";
    case Fill::kMin: return "min";
  }
  return "?";
}

// Values of a uint8 / int8 tensor as int32 (its own domain).
std::vector<int32_t> draw(Rng& rng, size_t n, bool is_signed, Fill fill, int32_t zp) {
  const int32_t lo = is_signed ? -128 : 0, hi = is_signed ? 127 : 255;
  std::vector<int32_t> v(n);
  for (auto& x : v) {
    switch (fill) {
      case Fill::kRandom: x = rng.in(lo, hi); break;
      case Fill::kExtremes: x = rng.next() & 1 ? hi : lo; break;
      case Fill::kNearZeroPoint: x = std::clamp(zp + rng.in(-3, 3), lo, hi); break;
      case Fill::kMax: x = hi; break;
      case Fill::kMin: x = lo; break;
    }
  }
  return v;
}

std::vector<uint8_t> bytes_of(const std::vector<int32_t>& v) {
  std::vector<uint8_t> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = static_cast<uint8_t>(v[i]);
  return b;
}

int32_t wrap32(int64_t x) { return static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(x))); }

// ONNX Runtime's QLinear requantization, written independently of core/requantize.h:
// float(acc) * multiplier, clamped to [qmin - zp, qmax - zp], rounded half to even.
int32_t requantize_ref(int32_t acc, float mult, int32_t zp, int32_t qmin, int32_t qmax) {
  float v = static_cast<float>(acc) * mult;
  v = std::min(std::max(v, static_cast<float>(qmin - zp)), static_cast<float>(qmax - zp));
  return static_cast<int32_t>(std::nearbyint(v)) + zp;  // default rounding mode: half to even
}

// The output stage of one case: int32 (MatMulInteger / ConvInteger) or quantized.
struct Output {
  bool quantized = false;
  bool out_signed = false;
  int32_t zp = 0, qmin = 0, qmax = 255;
  std::vector<float> mult;     // [Np]
  std::vector<int32_t> bias;   // [Np] or empty

  Epilogue epilogue(void* out, int64_t ldc) const {
    Epilogue ep;
    ep.kind = quantized ? OutputKind::kQuantFloat : OutputKind::kInt32;
    ep.out = out;
    ep.ldc = ldc;
    ep.multiplier = quantized ? mult.data() : nullptr;
    ep.bias_i32 = bias.empty() ? nullptr : bias.data();
    ep.out_zp = zp;
    ep.out_signed = out_signed;
    ep.qmin = qmin;
    ep.qmax = qmax;
    return ep;
  }
  int64_t element_bytes() const { return quantized ? 1 : 4; }
  // The reference's value of column n for accumulator acc, as the bytes the kernel stores.
  void store(int64_t n, int64_t acc_with_bias, uint8_t* dst) const {
    const int32_t acc = wrap32(acc_with_bias);
    if (!quantized) {
      std::memcpy(dst, &acc, 4);
      return;
    }
    *dst = static_cast<uint8_t>(requantize_ref(acc, mult[n], zp, qmin, qmax));
  }
};

// Multipliers with exact ties: 0.5 and 0.25 on some columns (odd sums land on .5), others
// scaled so that typical sums fall inside the output range.
Output make_output(Rng& rng, int variant, int64_t N, int64_t K, bool with_bias) {
  Output o;
  o.quantized = variant % 3 != 0;
  o.out_signed = variant % 3 == 2;
  const int64_t Np = eb::round_up(std::max<int64_t>(N, 1), eb::kPanelCols);
  o.mult.assign(static_cast<size_t>(Np), 0.0f);
  for (int64_t n = 0; n < Np; ++n) {
    const int r = rng.in(0, 3);
    o.mult[n] = r == 0 ? 0.5f : r == 1 ? 0.25f : 1.0f / static_cast<float>(rng.in(1, 64) * std::max<int64_t>(K, 1) * 4);
  }
  o.qmin = o.out_signed ? -128 : 0;
  o.qmax = o.out_signed ? 127 : 255;
  o.zp = o.out_signed ? rng.in(-20, 20) : rng.in(100, 150);
  if (variant % 5 == 1) o.qmin = o.zp;  // a fused ReLU clamps at the zero point
  if (with_bias) {
    o.bias.assign(static_cast<size_t>(Np), 0);
    for (auto& b : o.bias) b = rng.in(-3000, 3000);
  }
  return o;
}

struct Tally {
  int64_t passed = 0, failed = 0;
  void check(bool ok, const std::string& what) {
    if (ok) {
      ++passed;
    } else {
      ++failed;
      if (failed <= 20) std::printf("FAILED: %s\n", what.c_str());
    }
  }
};

// Runs `compute` under each ISA; each result must equal `expected`, and the scalar one.
template <typename Compute>
void check_paths(Tally& tally, const std::vector<std::string>& isas, const std::vector<uint8_t>& expected,
                 const std::string& name, Compute&& compute) {
  std::vector<uint8_t> scalar;
  for (const std::string& isa : isas) {
    eb::set_isa(isa);
    tally.check(isa == eb::active_gemm().isa, "set_isa(" + isa + ") runs the " + eb::active_gemm().isa + " GEMM");
    std::vector<uint8_t> got = compute();
    if (isa == "scalar") scalar = got;
    size_t bad = 0;
    while (bad < got.size() && got[bad] == expected[bad]) ++bad;
    tally.check(got.size() == expected.size() && bad == got.size(),
                isa + " vs int64 reference: " + name + (bad < got.size() ? " (first differing byte " +
                                                                            std::to_string(bad) + ")" : ""));
    if (isa != "scalar") tally.check(got == scalar, isa + " vs scalar: " + name);
  }
}

// --- GEMM -------------------------------------------------------------------

struct GemmCase {
  int64_t M, N, K;
  bool a_signed, b_signed;
  int32_t za;           // per tensor
  bool zb_per_column;
  Fill a_fill, b_fill;
  int variant;          // output kind
};

void run_gemm_case(Tally& tally, const std::vector<std::string>& isas, const GemmCase& c, uint64_t seed) {
  Rng rng(seed);
  const int64_t M = c.M, N = c.N, K = c.K;
  std::vector<int32_t> zb(static_cast<size_t>(c.zb_per_column ? N : 1));
  for (auto& z : zb) z = c.b_signed ? (c.zb_per_column ? rng.in(-128, 127) : 0) : (c.zb_per_column ? rng.in(0, 255) : 128);
  const std::vector<int32_t> a = draw(rng, static_cast<size_t>(M * K), c.a_signed, c.a_fill, c.za);
  const std::vector<int32_t> b = draw(rng, static_cast<size_t>(K * N), c.b_signed, c.b_fill, zb[0]);
  const Output out = make_output(rng, c.variant, N, K, c.variant % 2 == 1);

  const std::vector<uint8_t> a_bytes = bytes_of(a), b_bytes = bytes_of(b);
  std::vector<uint8_t> expected(static_cast<size_t>(M * N * out.element_bytes()));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      int64_t acc = out.bias.empty() ? 0 : out.bias[n];
      const int64_t zbn = zb[c.zb_per_column ? n : 0];
      for (int64_t k = 0; k < K; ++k) acc += int64_t{a[m * K + k] - c.za} * (b[k * N + n] - zbn);
      out.store(n, acc, expected.data() + (m * N + n) * out.element_bytes());
    }

  const eb::PackedB packed = eb::pack_b(b_bytes.data(), c.b_signed, K, N, N, zb.data(), c.zb_per_column);
  char name[256];
  std::snprintf(name, sizeof name, "gemm M=%lld N=%lld K=%lld a %s%s za=%d, b %s%s zb %s, out %s%s%s",
                static_cast<long long>(M), static_cast<long long>(N), static_cast<long long>(K),
                c.a_signed ? "s8 " : "u8 ", fill_name(c.a_fill), c.za, c.b_signed ? "s8 " : "u8 ",
                fill_name(c.b_fill), c.zb_per_column ? "per column" : "per tensor",
                out.quantized ? (out.out_signed ? "s8" : "u8") : "s32", out.bias.empty() ? "" : " +bias",
                out.qmin == out.zp ? " relu" : "");
  check_paths(tally, isas, expected, name, [&] {
    std::vector<uint8_t> got(expected.size(), 0xCD);
    eb::AOperand op;
    op.data = a_bytes.data();
    op.is_signed = c.a_signed;
    op.M = M;
    op.K = K;
    op.lda = K;
    op.zp = &c.za;
    eb::run_gemm(op, packed, out.epilogue(got.data(), N));
    return got;
  });
}

void gemm_grid(Tally& tally, const std::vector<std::string>& isas) {
  const int64_t Ms[] = {1, 2, 3, 4, 5, 7, 9, 17};
  const int64_t Ns[] = {1, 15, 16, 17, 33};
  const int64_t Ks[] = {1, 3, 4, 5, 8, 12, 17, 33, 100};
  const Fill fills[] = {Fill::kRandom, Fill::kExtremes, Fill::kNearZeroPoint, Fill::kRandom, Fill::kMax, Fill::kMin};
  uint64_t seed = 1;
  for (int64_t M : Ms)
    for (int64_t N : Ns)
      for (int64_t K : Ks) {
        const int v = static_cast<int>(seed);
        GemmCase c{M, N, K, v % 4 == 1, v % 3 != 2, 0, v % 5 == 3, fills[v % 6], fills[(v / 6) % 6], v % 7};
        const int32_t u8_zps[] = {0, 128, 255}, s8_zps[] = {-128, 0, 127};
        c.za = c.a_signed ? s8_zps[(v / 3) % 3] : u8_zps[(v / 3) % 3];
        run_gemm_case(tally, isas, c, seed++);
      }
  // Larger shapes, and int32 wrap-around: 40000 x 255 x 255 leaves int32 (the contract wraps).
  run_gemm_case(tally, isas, {64, 80, 300, false, true, 128, false, Fill::kRandom, Fill::kRandom, 1}, 9001);
  run_gemm_case(tally, isas, {37, 70, 515, true, false, -3, true, Fill::kRandom, Fill::kRandom, 2}, 9002);
  run_gemm_case(tally, isas, {2, 17, 40000, false, false, 0, false, Fill::kMax, Fill::kMax, 0}, 9003);
  run_gemm_case(tally, isas, {3, 16, 40000, false, true, 255, false, Fill::kMin, Fill::kMin, 0}, 9004);
}

// --- convolution and depthwise -----------------------------------------------

struct ConvCase {
  int64_t batch, in_h, in_w, in_c, out_c, kh, kw, stride, dilation, pad, groups;
  bool x_signed, w_signed;
  int32_t x_zp;
  bool w_zp_per_channel;
  bool wide_weights;  // uint8 weights with zero point 0: w - zp leaves int8 (depthwise int32 path)
  int variant;
};

void run_conv_case(Tally& tally, const std::vector<std::string>& isas, const ConvCase& c, uint64_t seed) {
  Rng rng(seed);
  eb::ConvGeometry g;
  g.batch = c.batch;
  g.in_h = c.in_h;
  g.in_w = c.in_w;
  g.in_c = c.in_c;
  g.out_c = c.out_c;
  g.kernel_h = c.kh;
  g.kernel_w = c.kw;
  g.groups = c.groups;
  g.set_window({c.stride, c.stride}, {c.dilation, c.dilation}, {c.pad, c.pad / 2, c.pad / 2, c.pad});
  if (g.check() != nullptr) {
    std::printf("bad test geometry: %s\n", g.check());
    std::exit(2);
  }
  const int64_t cg = c.in_c / c.groups, og = c.out_c / c.groups, oh_n = g.out_h(), ow_n = g.out_w();
  std::vector<int32_t> w_zp(static_cast<size_t>(c.w_zp_per_channel ? c.out_c : 1));
  for (auto& z : w_zp)
    z = c.wide_weights ? 0 : c.w_signed ? (c.w_zp_per_channel ? rng.in(-5, 5) : 0) : rng.in(120, 136);
  const std::vector<int32_t> x =
      draw(rng, static_cast<size_t>(c.batch * c.in_h * c.in_w * c.in_c), c.x_signed,
           c.variant % 4 == 3 ? Fill::kExtremes : Fill::kRandom, c.x_zp);
  const std::vector<int32_t> w = draw(rng, static_cast<size_t>(c.out_c * cg * c.kh * c.kw), c.w_signed,
                                      c.variant % 5 == 4 ? Fill::kExtremes : Fill::kRandom, w_zp[0]);
  const Output out = make_output(rng, c.variant, c.out_c, cg * c.kh * c.kw, true);

  std::vector<uint8_t> expected(static_cast<size_t>(c.batch * oh_n * ow_n * c.out_c * out.element_bytes()));
  for (int64_t n = 0; n < c.batch; ++n)
    for (int64_t oh = 0; oh < oh_n; ++oh)
      for (int64_t ow = 0; ow < ow_n; ++ow)
        for (int64_t o = 0; o < c.out_c; ++o) {
          const int64_t grp = o / og, wz = w_zp[c.w_zp_per_channel ? o : 0];
          int64_t acc = out.bias[o];
          for (int64_t i = 0; i < cg; ++i)
            for (int64_t kh = 0; kh < c.kh; ++kh)
              for (int64_t kw = 0; kw < c.kw; ++kw) {
                const int64_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
                const int64_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
                if (ih < 0 || ih >= c.in_h || iw < 0 || iw >= c.in_w) continue;  // padding: x = x_zp
                const int64_t xv = x[((n * c.in_h + ih) * c.in_w + iw) * c.in_c + grp * cg + i];
                acc += (xv - c.x_zp) * (w[((o * cg + i) * c.kh + kh) * c.kw + kw] - wz);
              }
          const int64_t at = ((n * oh_n + oh) * ow_n + ow) * c.out_c + o;
          out.store(o, acc, expected.data() + at * out.element_bytes());
        }

  const std::vector<uint8_t> x_bytes = bytes_of(x), w_bytes = bytes_of(w);
  const eb::PackedConv packed =
      eb::pack_conv(w_bytes.data(), c.w_signed, c.out_c, cg, c.kh, c.kw, c.groups, w_zp.data(), c.w_zp_per_channel);
  char name[320];
  std::snprintf(name, sizeof name,
                "%s N=%lld %lldx%lldx%lld -> %lld, kernel %lldx%lld stride %lld dilation %lld pad %lld groups %lld, "
                "x %s zp %d, w %s%s, out %s",
                g.depthwise() ? (packed.dw_weights_i8.size() != 0 ? "depthwise(int8 w)" : "depthwise(int32 w)")
                              : "conv",
                static_cast<long long>(c.batch), static_cast<long long>(c.in_h), static_cast<long long>(c.in_w),
                static_cast<long long>(c.in_c), static_cast<long long>(c.out_c), static_cast<long long>(c.kh),
                static_cast<long long>(c.kw), static_cast<long long>(c.stride), static_cast<long long>(c.dilation),
                static_cast<long long>(c.pad), static_cast<long long>(c.groups), c.x_signed ? "s8" : "u8", c.x_zp,
                c.w_signed ? "s8" : "u8", c.w_zp_per_channel ? " per-channel zp" : "",
                out.quantized ? (out.out_signed ? "s8" : "u8") : "s32");
  check_paths(tally, isas, expected, name, [&] {
    std::vector<uint8_t> got(expected.size(), 0xCD);
    eb::run_conv(g, x_bytes.data(), c.x_signed, c.x_zp, packed, out.epilogue(got.data(), c.out_c));
    return got;
  });
}

void conv_grid(Tally& tally, const std::vector<std::string>& isas) {
  uint64_t seed = 100000;
  // batch, h, w, c_in, c_out, kh, kw, stride, dilation, pad, groups, x signed, w signed, x_zp, per-channel, wide, variant
  const ConvCase convs[] = {
      {1, 5, 6, 8, 16, 1, 1, 1, 1, 0, 1, false, true, 128, false, false, 1},   // pointwise: a plain GEMM
      {2, 8, 8, 1, 16, 3, 3, 1, 1, 1, 1, false, true, 0, false, false, 2},     // the digits CNN's first layer
      {1, 7, 9, 3, 5, 3, 3, 1, 1, 1, 1, true, true, -7, true, false, 3},
      {1, 9, 7, 16, 33, 3, 3, 2, 1, 2, 1, false, true, 255, false, false, 4},
      {1, 6, 6, 8, 6, 3, 3, 1, 1, 1, 2, false, false, 3, true, false, 5},       // grouped, uint8 weights
      {1, 11, 10, 5, 7, 5, 5, 1, 2, 3, 1, true, true, 127, false, false, 7},   // dilated
      {1, 4, 4, 64, 24, 3, 3, 1, 1, 1, 1, false, true, 100, true, false, 8},
  };
  for (const ConvCase& c : convs) run_conv_case(tally, isas, c, seed++);
  // Depthwise: channel counts around the 16 / 64-channel blocks, several windows.
  const int64_t channels[] = {1, 7, 16, 24, 64, 70, 130};
  const int64_t windows[][4] = {{3, 3, 1, 1}, {3, 3, 2, 1}, {5, 5, 1, 1}, {1, 7, 1, 1}, {7, 1, 1, 1}, {3, 3, 1, 2}};
  int v = 0;
  for (int64_t C : channels)
    for (const auto& win : windows) {
      ++v;
      const bool x_signed = v % 3 == 1, w_signed = v % 4 != 2, wide = v % 7 == 3 && !w_signed;
      const int32_t zps[] = {0, 128, 255, 17};
      const int32_t x_zp = x_signed ? zps[v % 4] - 128 : zps[v % 4];
      ConvCase c{1 + v % 2, 6 + v % 4, 5 + v % 5, C, C, win[0], win[1], win[2], win[3], std::max(win[0], win[1]) / 2 + v % 2, C,
                 x_signed, w_signed, x_zp, v % 2 == 0, wide, v};
      if (C == 1) c.groups = 1, c.out_c = 1;  // groups == 1 is a plain convolution
      run_conv_case(tally, isas, c, seed++);
    }
  // uint8 weights with zero point 0 and values up to 255: w - zp leaves int8 (int32 depthwise kernel)
  run_conv_case(tally, isas, {1, 6, 6, 40, 40, 3, 3, 1, 1, 1, 40, false, false, 9, false, true, 2}, seed++);
  run_conv_case(tally, isas, {2, 5, 7, 17, 17, 3, 3, 2, 1, 1, 17, true, false, -100, true, true, 4}, seed++);
}

}  // namespace

int main() {
  std::vector<std::string> isas = eb::available_isas();  // slowest first, "scalar" always
  if (const char* forced = std::getenv("EIGHTBIT_ISA"); forced != nullptr && *forced != '\0') {
    if (std::find(isas.begin(), isas.end(), forced) == isas.end()) {
      std::string known;
      for (const auto& n : isas) known += " " + n;
      std::printf("EIGHTBIT_ISA=%s is not available on this CPU (available:%s)\n", forced, known.c_str());
      return 2;
    }
    isas = {"scalar"};
    if (std::string(forced) != "scalar") isas.emplace_back(forced);
  }
  std::string list;
  for (const auto& n : isas) list += " " + n;
  std::printf("kernel_test: paths%s\n", list.c_str());
  Tally gemm, conv;
  gemm_grid(gemm, isas);
  conv_grid(conv, isas);
  std::printf("gemm: %lld passed, %lld failed\n", static_cast<long long>(gemm.passed), static_cast<long long>(gemm.failed));
  std::printf("conv and depthwise: %lld passed, %lld failed\n", static_cast<long long>(conv.passed),
              static_cast<long long>(conv.failed));
  const int64_t passed = gemm.passed + conv.passed, failed = gemm.failed + conv.failed;
  std::printf("%lld passed, %lld failed\n", static_cast<long long>(passed), static_cast<long long>(failed));
  return failed == 0 && passed > 0 ? 0 : 1;
}
