// Kernel layer, avx512vnni: depthwise convolution.
//
// With int8 weights (PackedConv::dw_weights_i8) each vpdpbusd multiplies 4
// kernel rows of one kernel column for 16 channels.  The kernel walks one
// output row (a run of output pixels) at a time: for every input column the
// run touches, the 64-channel bytes of 4 input rows are byte-interleaved once
// (2 unpack rounds) into 4 vectors of [channel][4 rows] dwords, in the order
// the packed weights expect (see DepthwiseCall).  Each output pixel then adds
// kernel_w of those column vectors times the weights: with stride 1 every
// interleave serves kernel_w pixels.  Rows and columns outside the input read
// the zero point.  The sums are un-permuted by a 4 x 4 transpose of 128-bit
// lanes and requantized by the shared epilogue, a run of pixels per call
// (float requantization is done on the accumulators directly).
// Otherwise the int32 kernel of kernels/depthwise.h, compiled with this unit's
// flags.
#include <immintrin.h>

#include "kernels/depthwise.h"

namespace eb {
namespace {

// The 4 vectors of one interleaved input column: x[k] lane l dword j holds
// the 4 rows' bytes of channel 16 l + 4 k + j.
struct Column {
  __m512i x[4];
};

inline Column interleave(__m512i r0, __m512i r1, __m512i r2, __m512i r3) {
  const __m512i lo01 = _mm512_unpacklo_epi8(r0, r1), hi01 = _mm512_unpackhi_epi8(r0, r1);
  const __m512i lo23 = _mm512_unpacklo_epi8(r2, r3), hi23 = _mm512_unpackhi_epi8(r2, r3);
  return {{_mm512_unpacklo_epi16(lo01, lo23), _mm512_unpackhi_epi16(lo01, lo23), _mm512_unpacklo_epi16(hi01, hi23),
           _mm512_unpackhi_epi16(hi01, hi23)}};
}

// Stores channels in order: acc[k] lane l holds channels 16 l + 4 k ...
inline void store_unpermuted(const __m512i acc[4], int32_t* s) {
  const __m512i t0 = _mm512_shuffle_i32x4(acc[0], acc[1], 0x44), t1 = _mm512_shuffle_i32x4(acc[0], acc[1], 0xEE);
  const __m512i t2 = _mm512_shuffle_i32x4(acc[2], acc[3], 0x44), t3 = _mm512_shuffle_i32x4(acc[2], acc[3], 0xEE);
  _mm512_store_si512(s, _mm512_shuffle_i32x4(t0, t2, 0x88));
  _mm512_store_si512(s + 16, _mm512_shuffle_i32x4(t0, t2, 0xDD));
  _mm512_store_si512(s + 32, _mm512_shuffle_i32x4(t1, t3, 0x88));
  _mm512_store_si512(s + 48, _mm512_shuffle_i32x4(t1, t3, 0xDD));
}

// Float requantization (the kQuantFloat epilogue) of one pixel's 64 channels
// straight from the permuted accumulators: per-channel parameters are loaded
// in the same permuted order, and one dword permute puts the 64 output bytes
// in channel order.  The same IEEE operations as requantize_float_rows.
class PermutedRequantizer {
 public:
  PermutedRequantizer(const Epilogue& ep, const int32_t* comp, int64_t c0, int64_t C) {
    alignas(64) float mult[64];
    alignas(64) int32_t add[64];
    for (int k = 0; k < 4; ++k)
      for (int l = 0; l < 4; ++l)
        for (int j = 0; j < 4; ++j) {
          const int64_t c = c0 + 16 * l + 4 * k + j;
          mult[16 * k + 4 * l + j] = c < C && ep.multiplier != nullptr ? ep.multiplier[c] : 0.0f;
          add[16 * k + 4 * l + j] = c < C ? comp[c] : 0;
        }
    for (int k = 0; k < 4; ++k) {
      mult_[k] = _mm512_load_ps(mult + 16 * k);
      comp_[k] = _mm512_load_si512(add + 16 * k);
    }
    lo_ = _mm512_set1_ps(static_cast<float>(ep.qmin - ep.out_zp));
    hi_ = _mm512_set1_ps(static_cast<float>(ep.qmax - ep.out_zp));
    zp_ = _mm512_set1_epi32(ep.out_zp);
  }

  void store(const __m512i acc[4], void* out, __mmask64 mask) const {
    __m128i q[4];
    for (int k = 0; k < 4; ++k) {
      __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(acc[k], comp_[k])), mult_[k]);
      v = _mm512_min_ps(_mm512_max_ps(v, lo_), hi_);  // maxps(v, lo): lo when v is NaN
      q[k] = _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(v), zp_));
    }
    // Dword 4 k + l of `bytes` holds channels 16 l + 4 k ..; move it to 4 l + k.
    __m512i bytes = _mm512_inserti32x4(_mm512_castsi128_si512(q[0]), q[1], 1);
    bytes = _mm512_inserti32x4(bytes, q[2], 2);
    bytes = _mm512_inserti32x4(bytes, q[3], 3);
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_mask_storeu_epi8(out, mask, _mm512_permutexvar_epi32(order, bytes));
  }

 private:
  __m512 mult_[4], lo_, hi_;
  __m512i comp_[4], zp_;
};

template <bool kSigned>
void depthwise_vnni(const DepthwiseCall& call, int64_t r0, int64_t r1) {
  const ConvGeometry& g = call.g;
  const int64_t C = g.in_c;
  const int64_t row_groups = dw_row_groups(g.kernel_h);
  const int64_t blocks = (C + kDwBlockChannels - 1) / kDwBlockChannels;
  const int64_t group_stride = blocks * kDwBlockBytes;
  Epilogue ep = call.ep;
  ep.col_comp = call.comp_i8;
  const bool fused = ep.kind == OutputKind::kQuantFloat && ep.row_zp == nullptr && ep.row_comp == nullptr;
  const __m512i flip = _mm512_set1_epi8(kSigned ? static_cast<char>(0x80) : 0);
  // Per output-row run: its interleaved input columns, and its sums (kept
  // permuted between row groups).
  thread_local AlignedBuffer<Column> columns;
  thread_local AlignedBuffer<int32_t> sums;
  for (int64_t r = r0; r < r1;) {
    const DwRun run(g, r, r1);
    const int64_t n = run.n, oh = run.oh, pixels = run.pixels, iw_first = run.iw_first, span = run.span;
    columns.reserve_discard(static_cast<size_t>(span));
    sums.reserve_discard(static_cast<size_t>(pixels * kDwBlockChannels));
    Column* const column = columns.data();  // (each thread_local access is a call)
    int32_t* const sum = sums.data();
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t c0 = b * kDwBlockChannels;
      const int cols = static_cast<int>(std::min<int64_t>(kDwBlockChannels, C - c0));
      const __mmask64 mask = cols == 64 ? ~__mmask64{0} : (__mmask64{1} << cols) - 1;
      const __m512i zero_point = _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, call.zero_row + c0), flip);
      const int8_t* wb = call.weights_i8 + b * kDwBlockBytes;
      const PermutedRequantizer requant(ep, call.comp_i8, c0, C);
      for (int64_t rg = 0; rg < row_groups; ++rg) {
        const uint8_t* rows[4];
        int64_t steps[4];
        dw_group_rows(call, n, oh, rg, c0, rows, steps);
        auto load = [&](int i, int64_t iw) {
          return _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, rows[i] + iw * steps[i]), flip);
        };
        const Column padding = interleave(zero_point, zero_point, zero_point, zero_point);
        for (int64_t col = 0; col < span; ++col) {
          const int64_t iw = iw_first + col;
          column[col] = iw >= 0 && iw < g.in_w ? interleave(load(0, iw), load(1, iw), load(2, iw), load(3, iw)) : padding;
        }
        const bool first = rg == 0, last = rg + 1 == row_groups;
        for (int64_t p = 0; p < pixels; ++p) {
          int32_t* s = sum + p * kDwBlockChannels;
          __m512i acc[4];
          for (int k = 0; k < 4; ++k) acc[k] = first ? _mm512_setzero_si512() : _mm512_load_si512(s + 16 * k);
          for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
            const Column& xc = column[p * g.stride_w + kw * g.dilation_w];
            const int8_t* w = wb + (kw * row_groups + rg) * group_stride;
            for (int k = 0; k < 4; ++k) acc[k] = _mm512_dpbusd_epi32(acc[k], xc.x[k], _mm512_load_si512(w + 64 * k));
          }
          if (last && fused) {
            requant.store(acc, static_cast<uint8_t*>(ep.out) + (r + p) * ep.ldc + c0, mask);
          } else if (last) {
            store_unpermuted(acc, s);
          } else {
            for (int k = 0; k < 4; ++k) _mm512_store_si512(s + 16 * k, acc[k]);
          }
        }
      }
      if (!fused) apply_epilogue(ep, sum, kDwBlockChannels, r, static_cast<int>(pixels), c0, cols);
    }
    r += pixels;
  }
}

void depthwise_avx512vnni(const DepthwiseCall& call, int64_t r0, int64_t r1) {
  if (call.weights_i8 == nullptr)
    depthwise_any(call, r0, r1);
  else if (call.x_signed)
    depthwise_vnni<true>(call, r0, r1);
  else
    depthwise_vnni<false>(call, r0, r1);
}

}  // namespace

DepthwiseFn depthwise_kernel_avx512vnni() { return depthwise_avx512vnni; }

}  // namespace eb
