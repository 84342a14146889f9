// Kernel layer, avx512vnni: depthwise convolution.
//
// With int8 weights (PackedConv::dw_weights_i8) each vpdpbusd multiplies 4
// taps of 16 channels: the 64-channel rows of 4 taps are byte-interleaved
// (2 unpack rounds) into 4 vectors of [channel][4 taps] dwords, in the order
// the packed weights expect (see DepthwiseCall).  Padding taps read a row of
// the zero point, so every pixel runs the same straight-line code; the sums
// are un-permuted by a 4 x 4 transpose of 128-bit lanes and requantized by
// the shared epilogue, several pixels per call.  Otherwise the int32 kernel of
// kernels/depthwise.h, compiled with this unit's flags.
#include <immintrin.h>

#include "kernels/depthwise.h"

namespace eb {
namespace {

constexpr int kChunkPixels = 8;  // output pixels per epilogue call

// _mm512_shuffle_i32x4 through its masked form: GCC 12's unmasked macro
// starts from an "undefined" vector and warns about it.
template <int kImm>
__m512i shuffle_lanes(__m512i a, __m512i b) {
  return _mm512_mask_shuffle_i32x4(a, static_cast<__mmask16>(0xFFFF), a, b, kImm);
}

// Walks output pixels in order and yields each one's tap pointers: past the
// kernel, and outside the input, the zero-point row.  Pixels whose window is
// inside the input (most of them) take fixed offsets from the window corner.
class TapWalker {
 public:
  TapWalker(const DepthwiseCall& call, int64_t r, int64_t padded_taps)
      : call_(call), g_(call.g), padded_taps_(padded_taps), oh_n_(g_.out_h()), ow_n_(g_.out_w()) {
    n_ = r / (oh_n_ * ow_n_);
    oh_ = (r / ow_n_) % oh_n_;
    ow_ = r % ow_n_;
    int64_t t = 0;
    for (int64_t kh = 0; kh < g_.kernel_h; ++kh)
      for (int64_t kw = 0; kw < g_.kernel_w; ++kw)
        offsets_[t++] = (kh * g_.dilation_h * g_.in_w + kw * g_.dilation_w) * g_.in_c;
  }

  // Fills ptrs[0, padded_taps) for the current pixel and moves to the next.
  void next(const uint8_t** ptrs) {
    const int64_t ih0 = oh_ * g_.stride_h - g_.pad_top, iw0 = ow_ * g_.stride_w - g_.pad_left;
    const uint8_t* x = static_cast<const uint8_t*>(call_.x);
    const int64_t taps = g_.kernel_h * g_.kernel_w;
    if (ih0 >= 0 && ih0 + (g_.kernel_h - 1) * g_.dilation_h < g_.in_h && iw0 >= 0 &&
        iw0 + (g_.kernel_w - 1) * g_.dilation_w < g_.in_w) {
      const uint8_t* corner = x + ((n_ * g_.in_h + ih0) * g_.in_w + iw0) * g_.in_c;
      for (int64_t t = 0; t < taps; ++t) ptrs[t] = corner + offsets_[t];
    } else {
      int64_t t = 0;
      for (int64_t kh = 0; kh < g_.kernel_h; ++kh) {
        const int64_t ih = ih0 + kh * g_.dilation_h;
        const bool row_in = ih >= 0 && ih < g_.in_h;
        for (int64_t kw = 0; kw < g_.kernel_w; ++kw, ++t) {
          const int64_t iw = iw0 + kw * g_.dilation_w;
          ptrs[t] = row_in && iw >= 0 && iw < g_.in_w ? x + ((n_ * g_.in_h + ih) * g_.in_w + iw) * g_.in_c
                                                      : call_.zero_row;
        }
      }
    }
    for (int64_t t = taps; t < padded_taps_; ++t) ptrs[t] = call_.zero_row;
    if (++ow_ == ow_n_) {
      ow_ = 0;
      if (++oh_ == oh_n_) {
        oh_ = 0;
        ++n_;
      }
    }
  }

 private:
  const DepthwiseCall& call_;
  const ConvGeometry& g_;
  int64_t padded_taps_, oh_n_, ow_n_;
  int64_t n_ = 0, oh_ = 0, ow_ = 0;
  int64_t offsets_[kDwMaxTaps];
};

template <bool kSigned>
void depthwise_vnni(const DepthwiseCall& call, int64_t r0, int64_t r1) {
  const ConvGeometry& g = call.g;
  const int64_t C = g.in_c, groups = (g.kernel_h * g.kernel_w + 3) / 4;
  const int64_t blocks = (C + kDwBlockChannels - 1) / kDwBlockChannels;
  const int64_t group_stride = blocks * kDwBlockBytes;
  Epilogue ep = call.ep;
  ep.col_comp = call.comp_i8;
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const uint8_t* ptrs[kChunkPixels][kDwMaxTaps];
  alignas(64) int32_t sums[kChunkPixels * kDwBlockChannels];
  TapWalker walker(call, r0, groups * 4);
  for (int64_t r = r0; r < r1; r += kChunkPixels) {
    const int pixels = static_cast<int>(std::min<int64_t>(kChunkPixels, r1 - r));
    for (int p = 0; p < pixels; ++p) walker.next(ptrs[p]);
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t c0 = b * kDwBlockChannels;
      const int cols = static_cast<int>(std::min<int64_t>(kDwBlockChannels, C - c0));
      const __mmask64 mask = cols == 64 ? ~__mmask64{0} : (__mmask64{1} << cols) - 1;
      const int8_t* wb = call.weights_i8 + b * kDwBlockBytes;
      for (int p = 0; p < pixels; ++p) {
        __m512i acc0 = _mm512_setzero_si512(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
        const uint8_t* const* tp = ptrs[p];
        for (int64_t q = 0; q < groups; ++q, tp += 4) {
          __m512i a0 = _mm512_maskz_loadu_epi8(mask, tp[0] + c0);
          __m512i a1 = _mm512_maskz_loadu_epi8(mask, tp[1] + c0);
          __m512i a2 = _mm512_maskz_loadu_epi8(mask, tp[2] + c0);
          __m512i a3 = _mm512_maskz_loadu_epi8(mask, tp[3] + c0);
          if (kSigned) {
            a0 = _mm512_xor_si512(a0, flip);
            a1 = _mm512_xor_si512(a1, flip);
            a2 = _mm512_xor_si512(a2, flip);
            a3 = _mm512_xor_si512(a3, flip);
          }
          const __m512i lo01 = _mm512_unpacklo_epi8(a0, a1), hi01 = _mm512_unpackhi_epi8(a0, a1);
          const __m512i lo23 = _mm512_unpacklo_epi8(a2, a3), hi23 = _mm512_unpackhi_epi8(a2, a3);
          const int8_t* w = wb + q * group_stride;
          acc0 = _mm512_dpbusd_epi32(acc0, _mm512_unpacklo_epi16(lo01, lo23), _mm512_load_si512(w));
          acc1 = _mm512_dpbusd_epi32(acc1, _mm512_unpackhi_epi16(lo01, lo23), _mm512_load_si512(w + 64));
          acc2 = _mm512_dpbusd_epi32(acc2, _mm512_unpacklo_epi16(hi01, hi23), _mm512_load_si512(w + 128));
          acc3 = _mm512_dpbusd_epi32(acc3, _mm512_unpackhi_epi16(hi01, hi23), _mm512_load_si512(w + 192));
        }
        // acc_k lane l holds channels 16 l + 4 k ..: transpose the 4 x 4 lanes.
        const __m512i t0 = shuffle_lanes<0x44>(acc0, acc1), t1 = shuffle_lanes<0xEE>(acc0, acc1);
        const __m512i t2 = shuffle_lanes<0x44>(acc2, acc3), t3 = shuffle_lanes<0xEE>(acc2, acc3);
        int32_t* s = sums + p * kDwBlockChannels;
        _mm512_store_si512(s, shuffle_lanes<0x88>(t0, t2));
        _mm512_store_si512(s + 16, shuffle_lanes<0xDD>(t0, t2));
        _mm512_store_si512(s + 32, shuffle_lanes<0x88>(t1, t3));
        _mm512_store_si512(s + 48, shuffle_lanes<0xDD>(t1, t3));
      }
      apply_epilogue(ep, sums, kDwBlockChannels, r, pixels, c0, cols);
    }
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
