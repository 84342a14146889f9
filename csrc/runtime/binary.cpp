// Runtime layer: binary GEMM (see binary.h).
#include "runtime/binary.h"

#include <algorithm>
#include <cstring>

#include "runtime/dispatch.h"
#include "runtime/thread_pool.h"

namespace eb {
namespace {

// A block: up to kBlockRows rows x kBlockPanels panels, K in chunks of at most kChunkWords
// words, so that the block's B chunk (4 panels x 128 words x 64 bytes = 32 KB) stays in L1
// while the rows pass, and the rows' chunks (96 x 1 KB) in L2.
constexpr int64_t kBlockRows = 96;
constexpr int64_t kBlockPanels = 4;
constexpr int64_t kChunkWords = 128;
constexpr int64_t kMinWordPairsPerThread = int64_t{1} << 14;

constexpr int64_t kPatchChunkBytes = 512 * 1024;

}  // namespace

// y = float(dot) * scale[n], then + bias[n] (two roundings: the project builds without FMA contraction).
void scale_dots(const int32_t* dots, int64_t rows, int64_t n_cols, const float* scale, const float* bias, float* y) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t n = 0; n < n_cols; ++n) {
      const float v = static_cast<float>(dots[r * n_cols + n]) * scale[n];
      y[r * n_cols + n] = bias != nullptr ? v + bias[n] : v;
    }
}

PackedBinaryB pack_binary_b(const uint64_t* bits, int64_t ldb, int64_t N, int64_t K, int64_t words) {
  PackedBinaryB p;
  p.K = K;
  p.N = N;
  p.words = words;
  p.Np = (N + kBinaryPanelCols - 1) / kBinaryPanelCols * kBinaryPanelCols;
  p.data.reserve_discard(static_cast<size_t>(std::max<int64_t>(p.Np * p.words, 1)));
  std::memset(p.data.data(), 0, static_cast<size_t>(std::max<int64_t>(p.Np * p.words, 1)) * sizeof(uint64_t));
  for (int64_t n = 0; n < N; ++n) {
    uint64_t* panel = p.data.data() + (n / kBinaryPanelCols) * p.words * kBinaryPanelCols;
    for (int64_t w = 0; w < p.words; ++w) panel[w * kBinaryPanelCols + n % kBinaryPanelCols] = bits[n * ldb + w];
  }
  return p;
}

void binary_gemm(const uint64_t* a, int64_t M, int64_t lda, const PackedBinaryB& b, int32_t* c, int64_t ldc) {
  if (M == 0 || b.N == 0) return;
  BinaryGemmCall call;
  call.a = a;
  call.lda = lda;
  call.b = &b;
  call.c = c;
  call.ldc = ldc;
  if (b.words == 0) {  // K = 0 cannot happen (the binding refuses it); an empty sum is 0
    for (int64_t m = 0; m < M; ++m) std::fill(c + m * ldc, c + m * ldc + b.N, 0);
    return;
  }
  const BinaryGemmFn kernel = active_binary().gemm;
  const int64_t panels = b.Np / kBinaryPanelCols;
  const int64_t row_blocks = (M + kBlockRows - 1) / kBlockRows;
  const int64_t panel_blocks = (panels + kBlockPanels - 1) / kBlockPanels;
  const int64_t blocks = row_blocks * panel_blocks;
  auto run_range = [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) {  // panel-block major: a thread's blocks share B
      const int64_t m0 = i % row_blocks * kBlockRows, p0 = i / row_blocks * kBlockPanels;
      const int64_t m1 = std::min(M, m0 + kBlockRows), p1 = std::min(panels, p0 + kBlockPanels);
      for (int64_t w0 = 0; w0 < b.words; w0 += kChunkWords)
        kernel(call, m0, m1, p0, p1, w0, std::min(b.words, w0 + kChunkWords));
    }
  };
  const int64_t work = M * b.Np * b.words;
  const int threads = static_cast<int>(
      std::clamp<int64_t>(std::min(work / kMinWordPairsPerThread, blocks), 1, ThreadPool::instance().num_threads()));
  if (threads <= 1) {
    run_range(0, blocks);
    return;
  }
  ThreadPool::instance().run(threads, [&](int t) { run_range(blocks * t / threads, blocks * (t + 1) / threads); });
}

void pack_signs(const float* x, int64_t rows, int64_t K, const float* threshold, bool per_column, uint64_t* bits) {
  const PackSignsFn pack = active_binary().pack_signs;
  const int64_t words = (K + 63) / 64;
  parallel_for(rows, K, kMinWordPairsPerThread * 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) pack(x + r * K, K, threshold, per_column, bits + r * words);
  });
}

void binary_linear(const float* x, int64_t rows, const float* threshold, bool per_column, const PackedBinaryB& b,
                   const float* scale, const float* bias, float* y) {
  thread_local AlignedBuffer<uint64_t> bits;
  thread_local AlignedBuffer<int32_t> dots;
  bits.reserve_discard(static_cast<size_t>(std::max<int64_t>(rows * b.words, 1)));
  dots.reserve_discard(static_cast<size_t>(std::max<int64_t>(rows * b.N, 1)));
  pack_signs(x, rows, b.K, threshold, per_column, bits.data());
  binary_gemm(bits.data(), rows, b.words, b, dots.data(), b.N);
  scale_dots(dots.data(), rows, b.N, scale, bias, y);
}

PackedBinaryConv pack_binary_conv(const uint64_t* bits, int64_t out_c, int64_t in_c, int64_t kernel_h,
                                  int64_t kernel_w) {
  PackedBinaryConv p;
  p.out_c = out_c;
  p.in_c = in_c;
  p.kernel_h = kernel_h;
  p.kernel_w = kernel_w;
  p.channel_words = (in_c + 63) / 64;
  const int64_t taps = kernel_h * kernel_w, row_words = taps * p.channel_words;
  p.b = pack_binary_b(bits, row_words, out_c, taps * in_c, row_words);
  p.tap_sums.resize(static_cast<size_t>(taps * out_c));
  for (int64_t o = 0; o < out_c; ++o)
    for (int64_t t = 0; t < taps; ++t) {
      int64_t negative = 0;
      for (int64_t w = 0; w < p.channel_words; ++w)
        negative += __builtin_popcountll(bits[o * row_words + t * p.channel_words + w]);
      p.tap_sums[static_cast<size_t>(t * out_c + o)] = static_cast<int32_t>(in_c - 2 * negative);
    }
  return p;
}

void binary_conv_dots(const ConvGeometry& g, const uint64_t* pixel_bits, const PackedBinaryConv& w,
                      bool zero_padding, int32_t* dots) {
  const int64_t oh_n = g.out_h(), ow_n = g.out_w(), M = g.batch * oh_n * ow_n, O = w.out_c;
  const int64_t cw = w.channel_words, row_words = w.kernel_h * w.kernel_w * cw;
  if (M == 0 || O == 0) return;
  // Output pixels in chunks whose patch rows (row_words each) stay in L2 through the GEMM.
  const int64_t chunk = std::min(M, std::max<int64_t>(kPatchChunkBytes / (row_words * 8), 64));
  thread_local AlignedBuffer<uint64_t> rows;
  rows.reserve_discard(static_cast<size_t>(chunk * row_words));
  uint64_t* patch = rows.data();
  auto in_image = [&](int64_t oh, int64_t ow, int64_t i, int64_t j, int64_t* ih, int64_t* iw) {
    *ih = oh * g.stride_h - g.pad_top + i * g.dilation_h;
    *iw = ow * g.stride_w - g.pad_left + j * g.dilation_w;
    return *ih >= 0 && *ih < g.in_h && *iw >= 0 && *iw < g.in_w;
  };
  for (int64_t m0 = 0; m0 < M; m0 += chunk) {
    const int64_t m1 = std::min(M, m0 + chunk);
    // Patch rows: each tap's channel words, zero (= +1 signs) where the tap is padding.
    parallel_for(m1 - m0, row_words, kMinWordPairsPerThread, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t m = m0 + r, n = m / (oh_n * ow_n), oh = m / ow_n % oh_n, ow = m % ow_n;
        uint64_t* out = patch + r * row_words;
        for (int64_t i = 0; i < w.kernel_h; ++i)
          for (int64_t j = 0; j < w.kernel_w; ++j, out += cw) {
            int64_t ih, iw;
            if (in_image(oh, ow, i, j, &ih, &iw))
              std::copy_n(pixel_bits + ((n * g.in_h + ih) * g.in_w + iw) * cw, cw, out);
            else
              std::fill(out, out + cw, uint64_t{0});
          }
      }
    });
    int32_t* d = dots + m0 * O;
    binary_gemm(patch, m1 - m0, row_words, w.b, d, O);
    if (!zero_padding) continue;
    for (int64_t m = m0; m < m1; ++m) {  // a padded tap read +1 signs: take its sum of weight signs back
      const int64_t oh = m / ow_n % oh_n, ow = m % ow_n;
      for (int64_t i = 0; i < w.kernel_h; ++i)
        for (int64_t j = 0; j < w.kernel_w; ++j) {
          int64_t ih, iw;
          if (in_image(oh, ow, i, j, &ih, &iw)) continue;
          const int32_t* sums = w.tap_sums.data() + (i * w.kernel_w + j) * O;
          int32_t* row = dots + m * O;
          for (int64_t o = 0; o < O; ++o) row[o] -= sums[o];
        }
    }
  }
}

void binary_conv2d(const ConvGeometry& g, const float* x, const float* threshold, bool per_channel,
                   const PackedBinaryConv& w, const float* scale, const float* bias, bool zero_padding, float* y) {
  const int64_t M = g.batch * g.out_h() * g.out_w();
  thread_local AlignedBuffer<uint64_t> pixel_bits;
  thread_local AlignedBuffer<int32_t> dots;
  pixel_bits.reserve_discard(static_cast<size_t>(std::max<int64_t>(g.batch * g.in_h * g.in_w * w.channel_words, 1)));
  dots.reserve_discard(static_cast<size_t>(std::max<int64_t>(M * w.out_c, 1)));
  pack_signs(x, g.batch * g.in_h * g.in_w, g.in_c, threshold, per_channel, pixel_bits.data());
  binary_conv_dots(g, pixel_bits.data(), w, zero_padding, dots.data());
  scale_dots(dots.data(), M, w.out_c, scale, bias, y);
}

void pack_code_signs(const uint8_t* x, int64_t rows, int64_t C, bool is_signed, const int32_t* counts,
                     uint64_t* bits) {
  const int64_t words = (C + 63) / 64;
  const uint8_t flip = is_signed ? 0x80 : 0x00;  // int8 codes in increasing order as 0..255
  parallel_for(rows, C, kMinWordPairsPerThread * 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t w = 0; w < words; ++w) {
        uint64_t word = 0;
        for (int64_t j = 0, k = w * 64; j < 64 && k < C; ++j, ++k)
          word |= static_cast<uint64_t>(int32_t{static_cast<uint8_t>(x[r * C + k] ^ flip)} < counts[k]) << j;
        bits[r * words + w] = word;
      }
  });
}

}  // namespace eb
