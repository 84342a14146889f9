// Kernel layer interface: the packed-B layout, the per-call GEMM description
// and the table of per-ISA entry points.  Everything here is plain data; the
// runtime (csrc/runtime/gemm.cpp) validates user input and fills it, kernels
// (csrc/kernels/*) only compute.
//
// The GEMM computed, for A [M x K] and B [K x N] (ONNX MatMulInteger):
//
//   acc[m][n] = sum_k (a[m][k] - za[m]) * (b[k][n] - zb[n])        (int32, wrapping)
//
// Kernels always multiply unsigned bytes by signed bytes (the VNNI pair): int8
// A is shifted by +128 (a ^ 0x80) and uint8 B by -128 while packing; the zero
// points move with them (za' = za + 128, zb' = zb - 128), which leaves every
// difference (a - za), (b - zb) unchanged.  With S = sum_k au*bs:
//
//   acc = S - za'[m] * colsum[n] - zb'[n] * (rowsum[m] - K * za'[m])
//
// colsum is packed with B; rowsum is computed per call and only when some
// zb' is non-zero.  All of it is exact modulo 2^32, so the order of the terms
// cannot change a single bit.
#pragma once

#include <cstdint>

#include "eightbit/aligned_buffer.h"

namespace eb {

// B packing: panels of 16 columns; inside a panel, K in groups of 4 bytes,
// the 4 k-values of one column adjacent ("k4n16"): one 64-byte line holds 16
// columns x 4 k.  K is padded to a multiple of 4 and N to a multiple of 16
// with zero weights, so kernels never branch on a tail.
constexpr int kPanelCols = 16;
constexpr int kKGroup = 4;
constexpr int64_t kPanelGroupBytes = kPanelCols * kKGroup;  // 64
// Readable bytes after the last panel: an AMX B tile (16 groups) may start
// in the last partial K chunk.
constexpr int64_t kPackedSlack = 16 * kPanelGroupBytes;

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

struct PackedB {
  int64_t K = 0, N = 0;    // logical shape
  int64_t Kp = 0, Np = 0;  // padded to kKGroup / kPanelCols
  bool b_signed = true;    // dtype the user gave (int8 true, uint8 false)
  AlignedBuffer<int8_t> data;        // (Np / 16) panels x (Kp / 4) x 64 bytes, + kPackedSlack
  AlignedBuffer<int32_t> col_sum;    // [Np] sum_k bs[k][n]
  AlignedBuffer<int32_t> zp_shifted; // [Np] zb' = zb (int8 B) or zb - 128 (uint8 B); 0 in padding
  AlignedBuffer<int32_t> zp_user;    // [N] zero points as the user gave them
  bool zp_per_column = false;
  bool any_zp_shifted = false;       // some zb' != 0: the rowsum term is needed

  int64_t panel_stride() const { return Kp / kKGroup * kPanelGroupBytes; }
  const int8_t* panel(int64_t p) const { return data.data() + p * panel_stride(); }
};

// What happens to each int32 accumulator after the zero-point terms.
enum class OutputKind {
  kInt32,       // MatMulInteger: store acc
  kQuantFloat,  // QLinearMatMul, ONNX Runtime semantics: float(acc) * mult[n] -> round -> + zp
  kQuantFixed,  // TFLite semantics: SRDHM(acc, m0[n]) >> shift[n] -> + zp
  kFloat,       // dynamic linear: float(acc) * (row_scale[m] * col_scale[n]) + bias[n], optional relu
};

inline int64_t output_bytes(OutputKind kind) {
  return kind == OutputKind::kQuantFloat || kind == OutputKind::kQuantFixed ? 1 : 4;
}

struct Epilogue {
  OutputKind kind = OutputKind::kInt32;
  // Zero-point terms (see the header comment).  col_comp holds per-column
  // int32 terms added to every row (an int32 bias, and -za' * colsum[n] for a
  // per-tensor za'); row_zp (za'[m]) is set instead of the latter for per-row
  // za; row_comp (rowsum[m] - K * za'[m]) is null when every zb' is 0.
  const int32_t* col_comp = nullptr;  // [Np], filled by the runtime
  const int32_t* bias_i32 = nullptr;  // [N] int32 bias (QLinearConv's B), set by the caller
  const int32_t* row_zp = nullptr;    // [M]
  const int32_t* row_comp = nullptr;  // [M]
  const int32_t* col_sum = nullptr;   // [Np]
  const int32_t* col_zp = nullptr;    // [Np] zb'
  // kQuantFloat / kQuantFixed
  const float* multiplier = nullptr;  // [Np]
  const int32_t* fixed_m0 = nullptr;  // [Np]
  const int32_t* fixed_shift = nullptr;  // [Np]
  int32_t out_zp = 0;
  bool out_signed = false;            // int8 output (else uint8)
  int32_t qmin = 0, qmax = 255;       // clamp range: the dtype's, or narrower for a fused ReLU / clip
  // kFloat
  const float* row_scale = nullptr;   // [M]
  const float* col_scale = nullptr;   // [Np]
  const float* bias = nullptr;        // [Np] or null
  bool relu = false;
  // Output, row-major with leading dimension ldc (elements).
  void* out = nullptr;
  int64_t ldc = 0;
};

// A convolution's patches read in place (direct convolution): GEMM row m is
// output pixel m of an NHWC image whose padding is already part of x, and
// K = taps x cg, ordered (tap, channel) as pack_conv orders B.  Row m's bytes
// for tap t are the cg bytes at pixel(m) + tap_offsets[t], where
// pixel(m) = x + ((n * in_h + oh * stride_h) * in_w + ow * stride_w) * in_c.
struct ConvRows {
  const uint8_t* x = nullptr;  // at the group's first channel
  int64_t in_h = 0, in_w = 0, in_c = 0;
  int64_t out_h = 0, out_w = 0, stride_h = 1, stride_w = 1;
  const int64_t* tap_offsets = nullptr;  // [taps] bytes
  int64_t taps = 0, cg = 0;              // cg: a multiple of 8

  // Walks the pixels of rows m, m + 1, ... without a division per pixel.
  class Cursor {
   public:
    Cursor(const ConvRows& c, int64_t m)
        : c_(c), n_(m / (c.out_h * c.out_w)), oh_(m / c.out_w % c.out_h), ow_(m % c.out_w) {}
    int64_t ow() const { return ow_; }
    const uint8_t* pixel() const {
      return c_.x + ((n_ * c_.in_h + oh_ * c_.stride_h) * c_.in_w + ow_ * c_.stride_w) * c_.in_c;
    }
    void next() {
      if (++ow_ < c_.out_w) return;
      ow_ = 0;
      if (++oh_ < c_.out_h) return;
      oh_ = 0;
      ++n_;
    }

   private:
    const ConvRows& c_;
    int64_t n_, oh_, ow_;
  };
};

// One GEMM call as the kernels see it.  A is already unsigned (shifted) with
// rows of lda bytes, readable up to Kp (the runtime copies A when K % 4 != 0
// or A was int8).  For the avx2 path A is int16 (a_wide), see its kernel.
struct GemmCall {
  int64_t M = 0;
  const uint8_t* a = nullptr;
  int64_t lda = 0;
  const int16_t* a_wide = nullptr;  // avx2: zero-extended copy of A, lda_wide elements per row
  int64_t lda_wide = 0;
  // Tile kernels (GemmKernel::a_row_pad > 1): rows [0, a_direct_rows) are
  // read in place (a, lda; every row readable and zero up to a_k_pad), the
  // rest from the packed tiles (a_tiles, lda_tiles bytes per row of tiles,
  // the first one holding row a_direct_rows).
  int64_t a_direct_rows = 0;
  const uint8_t* a_tiles = nullptr;
  int64_t lda_tiles = 0;
  const PackedB* b = nullptr;
  const ConvRows* conv = nullptr;  // set: A is these patches (GemmKernel::conv_block), a / lda unused
  Epilogue ep;
};

// Computes rows [m0, m1) x panels [p0, p1) of C.  Called by the runtime from
// several threads on disjoint blocks; must not allocate.
using GemmBlockFn = void (*)(const GemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1);

struct GemmKernel {
  const char* isa;       // "scalar", "avx2", "avxvnni", "avx512vnni", "amx", "neon", "dotprod", "i8mm"
  bool wide_a;           // wants GemmCall::a_wide (int16 A)
  int mr;                // rows per micro-tile (block sizes are multiples of it)
  GemmBlockFn block;
  // Bytes of packed B per block: the block stays in a core's L2 while every
  // row tile of the block streams over it.
  int64_t block_b_bytes = 256 * 1024;
  int a_row_pad = 1;     // A must be readable in whole groups of this many rows
  int a_k_pad = kKGroup; // and this many bytes per row (zero beyond K)
  // Calls with fewer rows than this use `few_rows()` instead (a tile kernel
  // would spend most of each tile on padding).
  int min_rows = 0;
  GemmKernel (*few_rows)() = nullptr;
  // Kernels that read A as tiles (a_row_pad > 1) copy rows [m0, m1) of A
  // (M x K, row stride lda; rows >= M are zero) into their tile layout.
  using PackTilesFn = void (*)(const uint8_t* a, int64_t lda, int64_t M, int64_t K, bool flip, uint8_t* dst,
                               int64_t m0, int64_t m1);
  PackTilesFn pack_a_tiles = nullptr;
  // Direct convolution (GemmCall::conv) in tiles of conv_mr rows, where the ISA has one:
  // channels per group (a tap's bytes) a multiple of conv_cg_multiple.  conv_segment > 0:
  // the tiles take output-row segments of that many pixels and read a whole segment's
  // pixel strides even past a row's end (x is then a padded copy with that much slack).
  GemmBlockFn conv_block = nullptr;
  int conv_mr = 0;
  int conv_cg_multiple = 8;
  int conv_segment = 0;
};

GemmKernel gemm_kernel_scalar();
GemmKernel gemm_kernel_avx2();
GemmKernel gemm_kernel_avxvnni();
GemmKernel gemm_kernel_avx512vnni();
GemmKernel gemm_kernel_amx();
GemmKernel gemm_kernel_neon();     // aarch64 (csrc/kernels/arm)
GemmKernel gemm_kernel_dotprod();
GemmKernel gemm_kernel_i8mm();
bool amx_usable();  // CPU has AMX-INT8 and the OS granted tile state

}  // namespace eb
