// Runtime layer: int8 convolution (see conv.h).
#include "runtime/conv.h"

#include <algorithm>
#include <cstring>

#include "runtime/dispatch.h"
#include "runtime/gemm.h"
#include "runtime/thread_pool.h"

namespace eb {
namespace {

// Work per thread below which a thread pool wake-up costs more than it saves (multiply-adds or bytes).
constexpr int64_t kMinWorkPerThread = int64_t{1} << 18;

int32_t weight_value(const void* w, bool w_signed, int64_t i) {
  return w_signed ? static_cast<const int8_t*>(w)[i] : static_cast<const uint8_t*>(w)[i];
}

// Copies / fills of a few dozen bytes (a stem's kernel row is 21): inline
// moves, two overlapping ones for the tail, instead of a libc call per run
// (GCC turns plain byte loops into memcpy / memset calls).
inline void copy_run(uint8_t* dst, const uint8_t* src, int64_t n) {
  if (n >= 16) {
    for (int64_t i = 0; i + 16 < n; i += 16) std::memcpy(dst + i, src + i, 16);
    std::memcpy(dst + n - 16, src + n - 16, 16);
  } else if (n >= 8) {
    std::memcpy(dst, src, 8);
    std::memcpy(dst + n - 8, src + n - 8, 8);
  } else if (n >= 4) {
    std::memcpy(dst, src, 4);
    std::memcpy(dst + n - 4, src + n - 4, 4);
  } else if (n >= 2) {
    std::memcpy(dst, src, 2);
    std::memcpy(dst + n - 2, src + n - 2, 2);
  } else if (n == 1) {
    *dst = *src;
  }
}

// The zero point repeated, as the source of fills.
struct FillPattern {
  explicit FillPattern(uint8_t value) { std::memset(bytes, value, sizeof(bytes)); }
  uint8_t bytes[64];
};

inline void fill_run(uint8_t* dst, const FillPattern& pattern, int64_t n) {
  for (; n > 64; n -= 64, dst += 64) std::memcpy(dst, pattern.bytes, 64);
  copy_run(dst, pattern.bytes, n);
}

// One kernel row of one patch: kernel_w taps of group_in_c bytes, those
// outside the input (iw0 + kw * dilation_w out of [0, in_w)) the zero point.
void patch_kernel_row(const ConvGeometry& g, const uint8_t* src_row, int64_t iw0, const FillPattern& zero,
                      uint8_t* dst) {
  const int64_t cg = g.group_in_c();
  for (int64_t kw = 0; kw < g.kernel_w; ++kw, dst += cg) {
    const int64_t iw = iw0 + kw * g.dilation_w;
    if (iw < 0 || iw >= g.in_w)
      fill_run(dst, zero, cg);
    else
      copy_run(dst, src_row + iw * g.in_c, cg);
  }
}

// Rows [r0, r1) of one group's patches, ld bytes apart: row (n, oh, ow)
// holds kernel_h x kernel_w taps of group_in_c bytes; taps outside the input
// hold the zero point.  Walked one output row and one kernel row at a time;
// with one group and dilation_w == 1, a window inside the input horizontally
// copies its kernel_w taps as one run (adjacent pixels).
void im2col_rows(const ConvGeometry& g, const uint8_t* x, uint8_t zero_byte, int64_t group, int64_t r0, int64_t r1,
                 uint8_t* out, int64_t ld) {
  const int64_t oh_n = g.out_h(), ow_n = g.out_w(), cg = g.group_in_c();
  const int64_t kernel_row_bytes = g.kernel_w * cg;
  const bool runs = g.groups == 1 && g.dilation_w == 1;
  const FillPattern zero(zero_byte);
  // Output columns whose windows lie inside [0, in_w): [ow_in0, ow_in1).
  const int64_t span = (g.kernel_w - 1) * g.dilation_w;
  const int64_t ow_in0 = std::min(ow_n, (g.pad_left + g.stride_w - 1) / g.stride_w);
  const int64_t ow_in1 = g.in_w - span + g.pad_left <= 0
                             ? 0
                             : std::clamp<int64_t>((g.in_w - 1 - span + g.pad_left) / g.stride_w + 1, ow_in0, ow_n);
  for (int64_t r = r0; r < r1;) {
    const int64_t n = r / (oh_n * ow_n), oh = (r / ow_n) % oh_n, ow0 = r % ow_n;
    const int64_t ow1 = std::min(ow_n, ow0 + (r1 - r));
    uint8_t* const first = out + (r - r0) * ld;
    for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
      const int64_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
      uint8_t* dst = first + kh * kernel_row_bytes;
      if (ih < 0 || ih >= g.in_h) {
        for (int64_t ow = ow0; ow < ow1; ++ow, dst += ld) fill_run(dst, zero, kernel_row_bytes);
        continue;
      }
      const uint8_t* src_row = x + (n * g.in_h + ih) * g.in_w * g.in_c + group * cg;
      for (int64_t ow = ow0; ow < ow1; ++ow, dst += ld) {
        const int64_t iw0 = ow * g.stride_w - g.pad_left;
        if (runs && ow >= ow_in0 && ow < ow_in1)
          copy_run(dst, src_row + iw0 * g.in_c, kernel_row_bytes);
        else
          patch_kernel_row(g, src_row, iw0, zero, dst);
      }
    }
    r += ow1 - ow0;
  }
}

// One group's patches as a GEMM row source (ARowSource).
struct PatchSource {
  const ConvGeometry* g;
  const uint8_t* x;
  uint8_t zero_byte;
  int64_t group;

  static void fill(const void* ctx, int64_t m0, int64_t m1, uint8_t* dst, int64_t ld) {
    const PatchSource& p = *static_cast<const PatchSource*>(ctx);
    im2col_rows(*p.g, p.x, p.zero_byte, p.group, m0, m1, dst, ld);
  }
};

// The input with its padding written out (rows of the zero point around each
// image), so that every tap of every output pixel is a plain address: the
// direct convolution's source.  Rows [r0, r1) of the batch x padded_h rows,
// row r at out + (r - base) * its bytes.
void pad_rows(const ConvGeometry& g, const uint8_t* x, uint8_t zero_byte, int64_t base, int64_t r0, int64_t r1,
              uint8_t* out) {
  const int64_t ph = g.in_h + g.pad_top + g.pad_bottom, pw = g.in_w + g.pad_left + g.pad_right;
  const int64_t row_bytes = pw * g.in_c, left = g.pad_left * g.in_c, body = g.in_w * g.in_c;
  const FillPattern zero(zero_byte);
  for (int64_t r = r0; r < r1; ++r) {
    uint8_t* dst = out + (r - base) * row_bytes;
    const int64_t n = r / ph, ih = r % ph - g.pad_top;
    if (ih < 0 || ih >= g.in_h) {
      fill_run(dst, zero, row_bytes);
      continue;
    }
    fill_run(dst, zero, left);
    std::memcpy(dst + left, x + (n * g.in_h + ih) * body, static_cast<size_t>(body));
    fill_run(dst + left + body, zero, row_bytes - left - body);
  }
}

// Direct convolution: the GEMM kernel reads each output pixel's taps in place
// (GemmCall::conv) from x, or from a padded copy when the convolution pads.
// It needs uint8 x (no shift), no weight zero point, and either channels in
// whole 8-byte steps per group (each (kh, kw) a tap) or PackedConv::row_b
// (each kernel row a tap of row_k bytes, always from the padded copy: the
// bytes past a row's end, against zero weights, must be readable).
enum class DirectMode { kNone, kTaps, kRows };

DirectMode direct_mode(const ConvGeometry& g, bool x_signed, const PackedConv& w, const GemmKernel& kernel) {
  if (x_signed || g.pointwise() || kernel.conv_block == nullptr) return DirectMode::kNone;
  if (kernel.conv_segment > 0) {
    // Row segments (AMX: 16-pixel A tiles) waste the rest of a tile on a short output row
    // and need the padded copy: only where the convolution pads anyway and its output rows
    // fill at least 7/8 of their segments (56, 28, 14 wide: yes; 7: no).
    const int64_t ow = g.out_w(), seg = kernel.conv_segment, segments = (ow + seg - 1) / seg;
    const bool pads = g.pad_top + g.pad_bottom + g.pad_left + g.pad_right > 0;
    if (!pads || 8 * ow < 7 * seg * segments) return DirectMode::kNone;
  }
  if (g.group_in_c() % kernel.conv_cg_multiple == 0 &&
      std::all_of(w.group_b.begin(), w.group_b.end(), [&](const PackedB& b) { return conv_supported(kernel, b); }))
    return DirectMode::kTaps;
  if (!w.row_b.empty() && w.row_k % kernel.conv_cg_multiple == 0 && g.dilation_w == 1 &&
      conv_supported(kernel, w.row_b[0]))
    return DirectMode::kRows;
  return DirectMode::kNone;
}

// Group grp's slice of the output columns and per-channel parameters, from
// output row m0 on.
Epilogue group_epilogue(const Epilogue& ep, int64_t grp, int64_t group_out_c, int64_t m0) {
  Epilogue e = ep;
  const int64_t off = grp * group_out_c;
  e.out = static_cast<uint8_t*>(ep.out) + (m0 * ep.ldc + off) * output_bytes(ep.kind);
  auto shift = [off](auto* ptr) { return ptr == nullptr ? ptr : ptr + off; };
  e.bias_i32 = shift(ep.bias_i32);
  e.multiplier = shift(ep.multiplier);
  e.fixed_m0 = shift(ep.fixed_m0);
  e.fixed_shift = shift(ep.fixed_shift);
  e.col_scale = shift(ep.col_scale);
  e.bias = shift(ep.bias);
  return e;
}

// Padded input per band of output rows at most this large: the copy and the
// tiles reading it share L2.  A batch whose whole padded input fits is one band.
constexpr int64_t kBandBytes = 256 * 1024;

void run_direct_conv(const ConvGeometry& g, const uint8_t* x, int32_t x_zp, const PackedConv& w, const Epilogue& ep,
                     DirectMode mode, const GemmKernel& kernel) {
  const int64_t ph = g.in_h + g.pad_top + g.pad_bottom, pw = g.in_w + g.pad_left + g.pad_right;
  const int64_t row_bytes = pw * g.in_c, oh_n = g.out_h(), ow_n = g.out_w(), cg = g.group_in_c();
  const bool copy = mode == DirectMode::kRows || kernel.conv_segment > 0 ||
                    g.pad_top + g.pad_bottom + g.pad_left + g.pad_right > 0;
  thread_local AlignedBuffer<uint8_t> padded;
  thread_local std::vector<int64_t> tap_offsets;
  tap_offsets.clear();
  const int64_t taps_w = mode == DirectMode::kRows ? 1 : g.kernel_w;
  for (int64_t kh = 0; kh < g.kernel_h; ++kh)
    for (int64_t kw = 0; kw < taps_w; ++kw)
      tap_offsets.push_back((kh * g.dilation_h * pw + kw * g.dilation_w) * g.in_c);

  // Bands: (first image, images, first output row, output rows).
  const bool whole = !copy || g.batch * ph * row_bytes <= kBandBytes;
  const int64_t window_rows = (g.kernel_h - 1) * g.dilation_h + 1;
  int64_t band_h = std::max<int64_t>((kBandBytes / row_bytes - window_rows) / g.stride_h + 1, 1);
  band_h = std::min(oh_n, std::max(band_h, (96 + ow_n - 1) / ow_n));  // and at least ~96 pixels
  for (int64_t n = 0; n < (whole ? 1 : g.batch); ++n) {
    for (int64_t oh0 = 0; oh0 < oh_n; oh0 += whole ? oh_n : band_h) {
      const int64_t images = whole ? g.batch : 1, out_rows = whole ? oh_n : std::min(band_h, oh_n - oh0);
      ConvRows rows;
      rows.in_c = g.in_c;
      rows.in_w = pw;
      rows.in_h = whole ? ph : (out_rows - 1) * g.stride_h + window_rows;
      rows.out_h = out_rows;
      rows.out_w = ow_n;
      rows.stride_h = g.stride_h;
      rows.stride_w = g.stride_w;
      rows.tap_offsets = tap_offsets.data();
      rows.taps = static_cast<int64_t>(tap_offsets.size());
      rows.cg = mode == DirectMode::kRows ? w.row_k : cg;
      rows.x = x;
      if (copy) {
        // Padded rows [r0, r0 + count) of the batch, then readable zeros: 8 bytes read (against
        // zero weights) past the last kernel row, and the kernel's own slack.
        const int64_t r0 = n * ph + oh0 * g.stride_h, count = images * rows.in_h, bytes = count * row_bytes;
        const int64_t slack = 8 + kernel.conv_segment * g.stride_w * g.in_c + 64;
        padded.reserve_discard(static_cast<size_t>(bytes + slack));
        uint8_t* const out = padded.data();  // the pointer, not the thread_local: pool threads fill it
        parallel_for(count, row_bytes, kMinWorkPerThread, [&](int64_t a, int64_t b) {
          pad_rows(g, x, static_cast<uint8_t>(x_zp), r0, r0 + a, r0 + b, out);
        });
        std::memset(out + bytes, 0, static_cast<size_t>(slack));
        rows.x = out;
      }
      const int64_t m0 = (n * oh_n + oh0) * ow_n;
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        ConvRows group_rows = rows;
        group_rows.x = rows.x + grp * cg;
        AOperand a;
        a.M = images * out_rows * ow_n;
        a.zp = &x_zp;
        a.conv = &group_rows;
        a.conv_kernel = &kernel;
        const PackedB& b = mode == DirectMode::kRows ? w.row_b[0] : w.group_b[grp];
        a.K = b.K;
        run_gemm(a, b, group_epilogue(ep, grp, g.group_out_c(), m0));
      }
    }
  }
}

// Patches at most this large are written whole before the GEMM (they stay in
// L2 anyway, and every thread can take a share of the panels); larger ones
// are produced chunk by chunk inside it.
constexpr int64_t kWholePatchBytes = 1024 * 1024;

}  // namespace

PackedConv pack_conv(const void* w, bool w_signed, int64_t out_c, int64_t group_in_c, int64_t kernel_h,
                     int64_t kernel_w, int64_t groups, const int32_t* zp, bool zp_per_channel) {
  PackedConv p;
  p.out_c = out_c;
  p.group_in_c = group_in_c;
  p.kernel_h = kernel_h;
  p.kernel_w = kernel_w;
  p.groups = groups;
  p.w_signed = w_signed;
  p.zp_per_channel = zp_per_channel;
  p.zp_user.assign(zp, zp + (zp_per_channel ? out_c : 1));
  const int64_t taps = kernel_h * kernel_w;
  p.depthwise = groups > 1 && group_in_c == 1 && out_c == groups;
  if (p.depthwise) {
    p.dw_weights.resize(static_cast<size_t>(taps * out_c));
    p.dw_weight_sum.resize(static_cast<size_t>(out_c));
    bool fits_i8 = true;
    for (int64_t c = 0; c < out_c; ++c) {
      int32_t sum = 0;
      for (int64_t t = 0; t < taps; ++t) {
        const int32_t v = weight_value(w, w_signed, c * taps + t) - zp[zp_per_channel ? c : 0];
        p.dw_weights[t * out_c + c] = v;
        sum += v;
        fits_i8 = fits_i8 && v >= -128 && v <= 127;
      }
      p.dw_weight_sum[c] = sum;
    }
    if (fits_i8) {
      const int64_t blocks = (out_c + kDwBlockChannels - 1) / kDwBlockChannels;
      p.dw_weights_i8.resize(static_cast<size_t>(kernel_w * dw_row_groups(kernel_h) * blocks * kDwBlockBytes));
      for (int64_t c = 0; c < out_c; ++c)
        for (int64_t kh = 0; kh < kernel_h; ++kh)
          for (int64_t kw = 0; kw < kernel_w; ++kw)
            p.dw_weights_i8[dw_i8_offset(blocks, kernel_h, kh, kw, c)] =
                static_cast<int8_t>(p.dw_weights[(kh * kernel_w + kw) * out_c + c]);
    }
    return p;
  }
  const int64_t group_out_c = out_c / groups, K = taps * group_in_c;
  const int64_t row_bytes = kernel_w * group_in_c, row_k = round_up(row_bytes, 8);
  // Kernel rows as taps: only where the padding to 8 bytes adds at most a third.
  if (groups == 1 && group_in_c % 8 != 0 && 3 * row_k <= 4 * row_bytes) {
    std::vector<uint8_t> rb(static_cast<size_t>(kernel_h * row_k * out_c));
    for (int64_t kh = 0; kh < kernel_h; ++kh)
      for (int64_t j = 0; j < row_k; ++j)
        for (int64_t o = 0; o < out_c; ++o) {
          const int32_t zero = zp[zp_per_channel ? o : 0];  // a weight equal to its zero point counts 0
          const int64_t kw = j / group_in_c, c = j % group_in_c;
          const int64_t at = ((o * group_in_c + c) * kernel_h + kh) * kernel_w + kw;
          const int32_t v = j < row_bytes ? weight_value(w, w_signed, at) : zero;
          rb[static_cast<size_t>((kh * row_k + j) * out_c + o)] = static_cast<uint8_t>(v);
        }
    p.row_b.push_back(pack_b(rb.data(), w_signed, kernel_h * row_k, out_c, out_c, zp, zp_per_channel));
    p.row_k = row_k;
  }
  std::vector<uint8_t> b(static_cast<size_t>(K * group_out_c));
  for (int64_t g = 0; g < groups; ++g) {
    // B[(kh, kw, c)][j] = w[g * group_out_c + j][c][kh][kw], in blocks of 64 output channels:
    // the block's rows of w stay in cache while B is written in order.
    const auto* wg = static_cast<const uint8_t*>(w) + g * group_out_c * K;
    for (int64_t j0 = 0; j0 < group_out_c; j0 += 64) {
      const int64_t j1 = std::min(group_out_c, j0 + 64);
      for (int64_t c = 0; c < group_in_c; ++c)
        for (int64_t t = 0; t < taps; ++t) {
          uint8_t* dst = b.data() + (t * group_in_c + c) * group_out_c;
          for (int64_t j = j0; j < j1; ++j) dst[j] = wg[(j * group_in_c + c) * taps + t];
        }
    }
    p.group_b.push_back(pack_b(b.data(), w_signed, K, group_out_c, group_out_c,
                               zp + (zp_per_channel ? g * group_out_c : 0), zp_per_channel));
  }
  return p;
}

void run_conv(const ConvGeometry& g, const void* x, bool x_signed, int32_t x_zp, const PackedConv& w,
              const Epilogue& ep) {
  const int64_t M = g.batch * g.out_h() * g.out_w();
  if (M == 0 || g.out_c == 0) return;
  if (w.depthwise) {
    DepthwiseCall call;
    call.g = g;
    call.x = x;
    call.x_signed = x_signed;
    call.x_zp = x_zp;
    call.weights = w.dw_weights.data();
    call.ep = ep;
    call.ep.col_comp = ep.bias_i32;  // the int32 kernels subtract both zero points themselves
    // For the VNNI kernels: the zero-point row and bias - x_zp' * sum_t w.
    thread_local AlignedBuffer<int32_t> comp;
    thread_local AlignedBuffer<uint8_t> zero_row;
    if (w.dw_weights_i8.size() != 0) {
      const uint32_t zp_u = static_cast<uint32_t>(x_zp + (x_signed ? 128 : 0));
      comp.reserve_discard(static_cast<size_t>(g.in_c));
      zero_row.reserve_discard(static_cast<size_t>(g.in_c));
      for (int64_t c = 0; c < g.in_c; ++c) {
        const uint32_t bias = ep.bias_i32 != nullptr ? static_cast<uint32_t>(ep.bias_i32[c]) : 0u;
        comp[c] = static_cast<int32_t>(bias - zp_u * static_cast<uint32_t>(w.dw_weight_sum[c]));
      }
      std::memset(zero_row.data(), static_cast<uint8_t>(x_zp), static_cast<size_t>(g.in_c));
      call.weights_i8 = w.dw_weights_i8.data();
      call.comp_i8 = comp.data();
      call.zero_row = zero_row.data();
    }
    const DepthwiseFn kernel = active_depthwise();
    parallel_for(M, g.in_c * g.kernel_h * g.kernel_w, kMinWorkPerThread,
                 [&](int64_t r0, int64_t r1) { kernel(call, r0, r1); });
    return;
  }
  const int64_t cg = g.group_in_c(), ocg = g.group_out_c();
  const int64_t K = g.kernel_h * g.kernel_w * cg;
  thread_local AlignedBuffer<uint8_t> patches;
  const GemmKernel& kernel = active_gemm();
  const DirectMode direct = direct_mode(g, x_signed, w, kernel);
  if (direct != DirectMode::kNone) {
    run_direct_conv(g, static_cast<const uint8_t*>(x), x_zp, w, ep, direct, kernel);
    return;
  }
  for (int64_t grp = 0; grp < g.groups; ++grp) {
    AOperand a;
    a.is_signed = x_signed;
    a.M = M;
    a.K = K;
    a.zp = &x_zp;
    const PatchSource source{&g, static_cast<const uint8_t*>(x), static_cast<uint8_t>(x_zp), grp};
    if (g.pointwise()) {
      a.data = static_cast<const uint8_t*>(x) + grp * cg;
      a.lda = g.in_c;
    } else if (M * K > kWholePatchBytes) {
      a.source = {PatchSource::fill, &source};
    } else {
      // Rows padded with zeros to whole 64-byte chunks, so that AMX reads them in
      // place; not below 64 bytes, where padding would cost more than packing.
      const int64_t ld = K > 64 ? round_up(K, 64) : K;
      patches.reserve_discard(static_cast<size_t>(M * ld));
      // The pointer, not the thread_local: inside a pool thread `patches` names that thread's own buffer.
      uint8_t* const patch_rows = patches.data();
      parallel_for(M, K, kMinWorkPerThread, [&](int64_t r0, int64_t r1) {
        uint8_t* rows = patch_rows + r0 * ld;
        PatchSource::fill(&source, r0, r1, rows, ld);
        if (ld > K)
          for (int64_t r = 0; r < r1 - r0; ++r) std::memset(rows + r * ld + K, 0, static_cast<size_t>(ld - K));
      });
      a.data = patch_rows;
      a.lda = ld;
      a.rows_padded = ld > K;
      a.zero_padded_to = ld > K ? ld : 0;
    }
    run_gemm(a, w.group_b[grp], group_epilogue(ep, grp, ocg, 0));
  }
}

std::string conv_kernel_name(const ConvGeometry& g, bool x_signed, const PackedConv& w) {
  const GemmKernel& kernel = active_gemm();
  if (w.depthwise)
    return std::string("depthwise conv, ") + kernel.isa + " path" +
           (w.dw_weights_i8.size() != 0 ? "" : " (int32 weights: beyond int8 after the zero point)");
  switch (direct_mode(g, x_signed, w, kernel)) {
    case DirectMode::kTaps:
      return std::string("direct conv ") + kernel.isa + " (each kernel tap read in place)";
    case DirectMode::kRows:
      return std::string("direct conv ") + kernel.isa + " (each kernel row a tap)";
    case DirectMode::kNone:
      break;
  }
  return (g.pointwise() ? "1x1 conv, x read in place: " : "im2col + ") + gemm_kernel_name(kernel);
}

}  // namespace eb
