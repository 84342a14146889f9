// Runtime layer: packing, A preparation, blocking and threading for the
// int8 GEMM (see eightbit/gemm.h for the algebra).
#include "runtime/gemm.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "runtime/dispatch.h"
#include "runtime/quantize.h"
#include "runtime/thread_pool.h"

namespace eb {
namespace {

// Row tiles per block, to bound the A rows reused from L1/L2 per block.
constexpr int64_t kBlockRowTiles = 16;
// Below this many multiply-adds per thread, extra threads cost more than
// they save.
constexpr int64_t kMinMacsPerThread = int64_t{1} << 20;

struct Scratch {
  AlignedBuffer<uint8_t> a8;
  AlignedBuffer<int16_t> a16;
  AlignedBuffer<int32_t> row_sum, row_zp, row_comp, col_comp;
  AlignedBuffer<float> row_scale;
  AlignedBuffer<uint8_t> rows_q;   // run_dynamic_linear's quantized rows (not A's copy: run_gemm may make one)
  AlignedBuffer<int32_t> rows_zp;
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// How the kernel reads A.  A copy is made when it cannot read the caller's
// rows in place: int8 A is shifted to uint8 (a ^ 0x80); the avx2 path wants
// int16; a row must be readable up to Kp (K % 4 != 0 would over-read the
// caller's last row); AMX reads whole 16-row x 64-byte tiles, in place when
// the rows allow it, else in a layout its own packer
// (GemmKernel::pack_a_tiles) writes.
enum class ALayout { kInPlace, kBytes, kWide, kTiles };

struct PreparedA {
  ALayout layout = ALayout::kInPlace;
  int64_t rows = 0;   // rows to fill (M, or M padded to whole tiles)
  int64_t width = 0;  // bytes / elements per copied row
  uint8_t* bytes = nullptr;
  int16_t* wide = nullptr;
  int32_t* row_sum = nullptr;  // null when no zb' != 0
  GemmKernel::PackTilesFn pack_tiles = nullptr;
  int64_t direct_rows = 0;     // kTiles: rows the kernel reads in place
  // What the kernel gets.
  const uint8_t* a = nullptr;
  int64_t lda = 0;
  int64_t lda_tiles = 0;
};

// Tile kernels can read uint8 rows in place when every tile row (a_k_pad
// bytes) is readable and zero past K, and the row stride does not put 16
// rows into a few L1 sets (a multiple of 2 KiB would).
bool tiles_in_place(const AOperand& a, const GemmKernel& kernel) {
  const int64_t k_tiles = round_up(a.K, kernel.a_k_pad);
  return !a.is_signed && a.source.fill == nullptr && a.lda % 2048 != 0 &&
         (a.K == k_tiles || a.zero_padded_to >= k_tiles);
}

PreparedA plan_a(const AOperand& a, int64_t Kp, const GemmKernel& kernel, bool need_row_sum, Scratch& s) {
  PreparedA p;
  p.rows = a.M;
  if (kernel.a_row_pad > 1) {
    p.layout = ALayout::kTiles;
    p.pack_tiles = kernel.pack_a_tiles;
    p.rows = round_up(a.M, kernel.a_row_pad);
    if (tiles_in_place(a, kernel)) {
      p.direct_rows = a.M / kernel.a_row_pad * kernel.a_row_pad;
      p.a = static_cast<const uint8_t*>(a.data);
      p.lda = a.lda;
    }
    const int64_t tile_rows = kernel.a_row_pad / 2;
    p.lda_tiles = round_up(a.K, kernel.a_k_pad) * tile_rows;  // bytes per row of tiles
    s.a8.reserve_discard(static_cast<size_t>((p.rows - p.direct_rows) / tile_rows * p.lda_tiles));
    p.bytes = s.a8.data();
  } else if (kernel.wide_a) {
    p.layout = ALayout::kWide;
    p.width = Kp;
    s.a16.reserve_discard(static_cast<size_t>(a.M * Kp));
    p.wide = s.a16.data();
  } else if (a.is_signed || (a.K % kKGroup != 0 && !a.rows_padded)) {
    p.layout = ALayout::kBytes;
    p.width = Kp;
    s.a8.reserve_discard(static_cast<size_t>(a.M * Kp));
    p.bytes = s.a8.data();
    p.a = p.bytes;
    p.lda = Kp;
  } else {
    p.a = static_cast<const uint8_t*>(a.data);
    p.lda = a.lda;
  }
  if (need_row_sum) {
    s.row_sum.reserve_discard(static_cast<size_t>(a.M));
    p.row_sum = s.row_sum.data();
  }
  return p;
}

// Fills rows [m0, m1) of the prepared A (and their row sums).  Disjoint row
// ranges may be filled by different threads.
void fill_a_rows(const AOperand& a, const PreparedA& p, int64_t m0, int64_t m1) {
  const uint8_t* src = static_cast<const uint8_t*>(a.data);
  const uint8_t flip = a.is_signed ? 0x80 : 0;
  const int64_t d = p.direct_rows;
  if (p.layout == ALayout::kTiles && std::max(m0, d) < m1)
    p.pack_tiles(src + d * a.lda, a.lda, a.M - d, a.K, a.is_signed, p.bytes, std::max(m0, d) - d, m1 - d);
  for (int64_t m = m0; m < m1; ++m) {
    const uint8_t* row = src + m * a.lda;
    const int64_t valid = m < a.M ? a.K : 0;
    switch (p.layout) {
      case ALayout::kInPlace:
        break;
      case ALayout::kBytes:
      case ALayout::kWide:
        for (int64_t k = 0; k < valid; ++k) {
          const uint8_t v = row[k] ^ flip;
          if (p.layout == ALayout::kWide) p.wide[m * p.width + k] = v;
          else p.bytes[m * p.width + k] = v;
        }
        for (int64_t k = valid; k < p.width; ++k) {
          if (p.layout == ALayout::kWide) p.wide[m * p.width + k] = 0;
          else p.bytes[m * p.width + k] = 0;
        }
        break;
      case ALayout::kTiles:
        break;  // done above by the kernel's own packer
    }
    if (p.row_sum != nullptr && m < a.M) {
      uint32_t sum = 0;
      for (int64_t k = 0; k < a.K; ++k) sum += static_cast<uint8_t>(row[k] ^ flip);
      p.row_sum[m] = static_cast<int32_t>(sum);
    }
  }
}

// Prepares A on `threads` threads (the copy is O(M K), but at 2048 x 2048 it
// is 4 MB of single-threaded work otherwise).
void prepare_a(const AOperand& a, const PreparedA& p, int threads) {
  if (p.layout == ALayout::kInPlace && p.row_sum == nullptr) return;
  if (threads <= 1 || p.rows < 2 * threads) {
    fill_a_rows(a, p, 0, p.rows);
    return;
  }
  ThreadPool::instance().run(threads, [&](int t) {
    fill_a_rows(a, p, p.rows * t / threads, p.rows * (t + 1) / threads);
  });
}

// Rows of A per chunk when A comes from a row source.
constexpr int64_t kStreamChunkBytes = 128 * 1024;

int choose_threads(int64_t M, const PackedB& B) {
  const int64_t macs = M * B.Np * B.Kp;
  return static_cast<int>(std::clamp<int64_t>(macs / kMinMacsPerThread, 1, ThreadPool::instance().num_threads()));
}

// Splits rows x panels into blocks and runs them on up to `threads` threads.
void run_blocks(const GemmKernel& kernel, const GemmCall& call, int threads) {
  const GemmBlockFn block = call.conv != nullptr ? kernel.conv_block : kernel.block;
  const int mr = call.conv != nullptr ? kernel.conv_mr : kernel.mr;
  const PackedB& B = *call.b;
  const int64_t M = call.M;
  const int64_t panels = B.Np / kPanelCols;
  const int64_t panel_bytes = std::max<int64_t>(B.panel_stride(), 1);
  int64_t block_panels = std::clamp<int64_t>(kernel.block_b_bytes / panel_bytes, 1, panels);
  if (block_panels > 1) block_panels &= ~int64_t{1};  // kernels take panels in pairs
  int64_t block_rows = std::min<int64_t>(M, mr * kBlockRowTiles);

  auto count_blocks = [&] { return ((M + block_rows - 1) / block_rows) * ((panels + block_panels - 1) / block_panels); };
  // Enough blocks for every thread: shrink the blocks, panels first.
  while (threads > 1 && count_blocks() < 2 * threads && (block_panels > 2 || block_rows > mr)) {
    if (block_panels > 2)
      block_panels = std::max<int64_t>(2, (block_panels / 2) & ~int64_t{1});
    else
      block_rows = std::max<int64_t>(mr, (block_rows / 2 + mr - 1) / mr * mr);
  }
  const int64_t row_blocks = (M + block_rows - 1) / block_rows;
  const int64_t blocks = count_blocks();
  threads = static_cast<int>(std::min<int64_t>(threads, blocks));

  // Blocks ordered panel-block major: consecutive blocks of one thread share
  // the same slice of packed B.
  auto run_range = [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) {
      const int64_t pb = i / row_blocks, rb = i % row_blocks;
      const int64_t m0 = rb * block_rows, p0 = pb * block_panels;
      block(call, m0, std::min(M, m0 + block_rows), p0, std::min(panels, p0 + block_panels));
    }
  };
  if (threads <= 1) {
    run_range(0, blocks);
    return;
  }
  ThreadPool::instance().run(threads, [&](int t) { run_range(blocks * t / threads, blocks * (t + 1) / threads); });
}

}  // namespace

PackedB pack_b(const void* b, bool b_signed, int64_t K, int64_t N, int64_t ldb, const int32_t* zp,
               bool zp_per_column) {
  PackedB p;
  p.K = K;
  p.N = N;
  p.Kp = round_up(K, kKGroup);
  p.Np = round_up(N, kPanelCols);
  p.b_signed = b_signed;
  p.zp_per_column = zp_per_column;
  p.data.resize(static_cast<size_t>(p.Kp * p.Np + kPackedSlack));
  p.col_sum.resize(static_cast<size_t>(p.Np));
  p.zp_shifted.resize(static_cast<size_t>(p.Np));
  p.zp_user.resize(static_cast<size_t>(zp_per_column ? N : 1));
  const uint8_t* src = static_cast<const uint8_t*>(b);
  const uint8_t flip = b_signed ? 0 : 0x80;  // uint8 B -> int8: b - 128
  // Row by row: B is read in order (column order would stride through it, a cache miss per
  // byte on large layers) and each row's writes stay within one K-group of every panel.
  std::vector<uint32_t> sums(static_cast<size_t>(N), 0u);
  for (int64_t k = 0; k < K; ++k) {
    const uint8_t* row = src + k * ldb;
    int8_t* group = p.data.data() + (k / kKGroup) * kPanelGroupBytes + k % kKGroup;
    for (int64_t n = 0; n < N; ++n) {
      const int8_t v = static_cast<int8_t>(row[n] ^ flip);
      group[(n / kPanelCols) * p.panel_stride() + (n % kPanelCols) * kKGroup] = v;
      sums[static_cast<size_t>(n)] += static_cast<uint32_t>(static_cast<int32_t>(v));
    }
  }
  for (int64_t n = 0; n < N; ++n) {
    p.col_sum[n] = static_cast<int32_t>(sums[static_cast<size_t>(n)]);
    const int32_t z = zp[zp_per_column ? n : 0];
    p.zp_shifted[n] = b_signed ? z : z - 128;
    if (p.zp_shifted[n] != 0) p.any_zp_shifted = true;
  }
  for (size_t i = 0; i < p.zp_user.size(); ++i) p.zp_user[i] = zp[i];
  return p;
}

namespace {

void run_gemm_rows(const AOperand& a, const PackedB& b, Epilogue ep, int threads) {
  // The caller's choice for a direct convolution (set_isa may run in another thread meanwhile).
  GemmKernel kernel = a.conv != nullptr ? *a.conv_kernel : active_gemm();
  // Few rows, or K = 0 (no tile to multiply): the few-rows kernel.
  if (a.conv == nullptr && (a.M < kernel.min_rows || b.Kp == 0) && kernel.few_rows != nullptr)
    kernel = kernel.few_rows();
  Scratch& s = scratch();
  // Direct convolution: the kernel reads the patches in place and needs no row sums.
  const PreparedA pa = a.conv != nullptr ? PreparedA{} : plan_a(a, b.Kp, kernel, b.any_zp_shifted, s);
  if (a.conv == nullptr) prepare_a(a, pa, threads);

  // za' = za (+128 for int8 A, which the kernel sees shifted).
  const int32_t za_shift = a.is_signed ? 128 : 0;
  ep.col_comp = nullptr;
  ep.row_zp = nullptr;
  ep.row_comp = nullptr;
  ep.col_sum = b.col_sum.data();
  ep.col_zp = b.zp_shifted.data();
  if (a.zp_per_row) {
    s.row_zp.reserve_discard(static_cast<size_t>(a.M));
    for (int64_t m = 0; m < a.M; ++m) s.row_zp[m] = a.zp[m] + za_shift;
    ep.row_zp = s.row_zp.data();
  }
  // Per-column terms: the int32 bias and, for a per-tensor za', -za' * colsum.
  const uint32_t za = a.zp_per_row ? 0u : static_cast<uint32_t>(a.zp[0] + za_shift);
  if (za != 0 || ep.bias_i32 != nullptr) {
    s.col_comp.reserve_discard(static_cast<size_t>(b.Np));
    for (int64_t n = 0; n < b.Np; ++n) {
      const uint32_t bias = ep.bias_i32 != nullptr && n < b.N ? static_cast<uint32_t>(ep.bias_i32[n]) : 0u;
      s.col_comp[n] = static_cast<int32_t>(bias - za * static_cast<uint32_t>(b.col_sum[n]));
    }
    ep.col_comp = s.col_comp.data();
  }
  if (b.any_zp_shifted) {
    s.row_comp.reserve_discard(static_cast<size_t>(a.M));
    for (int64_t m = 0; m < a.M; ++m) {
      const uint32_t za = static_cast<uint32_t>(a.zp[a.zp_per_row ? m : 0] + za_shift);
      s.row_comp[m] = static_cast<int32_t>(static_cast<uint32_t>(pa.row_sum[m]) - static_cast<uint32_t>(a.K) * za);
    }
    ep.row_comp = s.row_comp.data();
  }

  GemmCall call;
  call.M = a.M;
  call.a = pa.a;
  call.lda = pa.lda;
  call.a_direct_rows = pa.direct_rows;
  call.a_tiles = pa.bytes;
  call.lda_tiles = pa.lda_tiles;
  call.a_wide = pa.wide;
  call.lda_wide = pa.width;
  call.b = &b;
  call.conv = a.conv;
  call.ep = ep;
  run_blocks(kernel, call, threads);
}

// Each chunk of rows is produced into a per-thread buffer and multiplied by
// all of B before the next: A never makes the round trip to memory.
void run_gemm_streamed(const AOperand& a, const PackedB& b, const Epilogue& ep, int threads) {
  // Rows padded with zeros to whole 64-byte tile rows, so AMX reads them in place.
  const int64_t ld = round_up(b.Kp, 64);
  const int64_t chunk_rows = std::max<int64_t>(kStreamChunkBytes / std::max<int64_t>(ld, 1) / 32 * 32, 32);
  const int64_t chunks = (a.M + chunk_rows - 1) / chunk_rows;
  const int64_t out_row_bytes = ep.ldc * output_bytes(ep.kind);
  auto run_chunks = [&](int64_t c0, int64_t c1) {
    thread_local AlignedBuffer<uint8_t> rows;
    rows.reserve_discard(static_cast<size_t>(chunk_rows * ld));
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t m0 = c * chunk_rows, m = std::min(chunk_rows, a.M - m0);
      a.source.fill(a.source.ctx, m0, m0 + m, rows.data(), ld);
      for (int64_t r = 0; r < m; ++r) std::memset(rows.data() + r * ld + a.K, 0, static_cast<size_t>(ld - a.K));
      AOperand sub = a;
      sub.source = {};
      sub.data = rows.data();
      sub.M = m;
      sub.lda = ld;
      sub.rows_padded = true;
      sub.zero_padded_to = ld;
      if (a.zp_per_row) sub.zp += m0;
      Epilogue e = ep;
      e.out = static_cast<uint8_t*>(ep.out) + m0 * out_row_bytes;
      if (e.row_scale != nullptr) e.row_scale += m0;
      run_gemm_rows(sub, b, e, 1);
    }
  };
  threads = static_cast<int>(std::min<int64_t>(threads, chunks));
  if (threads <= 1) {
    run_chunks(0, chunks);
    return;
  }
  ThreadPool::instance().run(threads, [&](int t) { run_chunks(chunks * t / threads, chunks * (t + 1) / threads); });
}

}  // namespace

void run_gemm(const AOperand& a, const PackedB& b, Epilogue ep) {
  if (a.M == 0 || b.N == 0) return;
  const int threads = choose_threads(a.M, b);
  if (a.source.fill != nullptr)
    run_gemm_streamed(a, b, ep, threads);
  else
    run_gemm_rows(a, b, ep, threads);
}

bool run_dynamic_linear(const float* x, int64_t M, int64_t ldx, const PackedB& w, const float* w_scale,
                        const float* bias, bool relu, float* y, int64_t ldy, bool per_tensor,
                        const int64_t* zero_cols, int64_t n_zero) {
  const int64_t K = w.K;
  Scratch& s = scratch();
  // Per tensor (ONNX DynamicQuantizeLinear over the whole input, as ORT's quantize_dynamic
  // models run): one range for all rows, so the rows must be contiguous.
  QuantParams whole;
  if (per_tensor) {
    if (ldx != K || n_zero > 0)
      throw std::invalid_argument("run_dynamic_linear: per-tensor quantization needs contiguous rows, no zeroed columns");
    if (!dynamic_qparams(x, M * K, &whole)) return false;
  }
  // Quantize rows straight into a Kp-strided buffer (the kernel reads the
  // zero padding against zero weights), recording each row's scale and zp.
  // Reused across calls: a fresh zero-filled buffer per call cost a memset and page faults.
  s.rows_q.reserve_discard(static_cast<size_t>(std::max<int64_t>(M * w.Kp, 1)));
  s.rows_zp.reserve_discard(static_cast<size_t>(std::max<int64_t>(M, 1)));
  uint8_t* xq = s.rows_q.data();
  int32_t* zp = s.rows_zp.data();
  s.row_scale.reserve_discard(static_cast<size_t>(std::max<int64_t>(M, 1)));
  std::vector<float> row(n_zero > 0 ? static_cast<size_t>(K) : 0);  // a row with its zeroed columns
  for (int64_t m = 0; m < M; ++m) {
    const float* xm = x + m * ldx;
    if (n_zero > 0) {
      std::copy(xm, xm + K, row.begin());
      for (int64_t j = 0; j < n_zero; ++j) row[static_cast<size_t>(zero_cols[j])] = 0.0f;
      xm = row.data();
    }
    QuantParams q = whole;
    if (!per_tensor && !dynamic_qparams(xm, K, &q)) return false;
    quantize_dynamic(xm, K, q, xq + m * w.Kp);
    std::memset(xq + m * w.Kp + K, 0, static_cast<size_t>(w.Kp - K));  // the padding the kernel reads
    s.row_scale[m] = q.scale;
    zp[m] = q.zero_point;
  }
  AOperand a;
  a.data = xq;
  a.is_signed = false;
  a.M = M;
  a.K = K;
  a.lda = w.Kp;
  a.zp = zp;
  a.zp_per_row = true;
  a.rows_padded = true;
  Epilogue ep;
  ep.kind = OutputKind::kFloat;
  ep.row_scale = s.row_scale.data();
  ep.col_scale = w_scale;
  ep.bias = bias;
  ep.relu = relu;
  ep.out = y;
  ep.ldc = ldy;
  run_gemm(a, w, ep);
  return true;
}

std::string gemm_kernel_name(const GemmKernel& kernel) {
  std::string name = std::string("int8 gemm ") + kernel.isa + " " + std::to_string(kernel.mr) + "-row tiles";
  if (kernel.few_rows != nullptr)
    name += " (under " + std::to_string(kernel.min_rows) + " rows: " + kernel.few_rows().isa + ")";
  return name;
}

}  // namespace eb
