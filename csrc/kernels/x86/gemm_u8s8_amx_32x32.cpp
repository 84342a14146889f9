// Kernel layer, AMX-INT8 (Sapphire Rapids and later): u8 x s8 GEMM on tiles.
//
// `tdpbusd` multiplies a 16 x 64 byte A tile by a 16 x (16 x 4) byte B tile
// into 16 x 16 int32 lanes, exact, with no intermediate saturation: 16384
// multiply-adds per instruction, 16x a zmm vpdpbusd.  The k4n16 B layout is
// already AMX's: 16 consecutive 64-byte k-groups of a panel are one B tile
// (64 k x 16 columns, row stride 64 bytes).
//
// Tile use: tmm0-1 = A (rows 0-15, 16-31), tmm2-3 = B (two panels),
// tmm4-7 = C (32 x 32 int32).  A tiles are read in place from rows padded
// with zeros to whole 64-byte chunks, or from zero-padded contiguous 16 x 64
// byte tiles the runtime packs (GemmCall::a_direct_rows); a B tile over the
// last partial K chunk reads padding or the next panel, which meets those
// zero A bytes and adds nothing (PackedB keeps 1 KiB of slack for the last panel).  Blocks of fewer than 8 rows go to the
// AVX-512 VNNI kernels, which waste less of a tile on GEMV-like calls.
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/amx_tile_config.h"
#include "kernels/epilogue.h"

namespace eb {
namespace {

constexpr int kTileRows = 16;
constexpr int kTileK = 64;  // bytes of A per tile row = 16 k-groups of B
constexpr int kMR = 2 * kTileRows;

TileConfig make_config() {
  TileConfig c;
  for (int t = 0; t < 8; ++t) {
    c.colsb[t] = 64;
    c.rows[t] = kTileRows;
  }
  return c;
}

// Where a 32 x 32 C block starts from or ends in: its four 16 x 16 int32
// tiles (upper-left, upper-right, lower-left, lower-right) and their row
// stride in bytes.  Stride 0 repeats one row: that is how a per-column term
// becomes the starting value of every row of C.
struct CTiles {
  const int32_t* at[4];
  int64_t stride;
};

CTiles c_tiles(const int32_t* c, int64_t row_stride_elems, int64_t lower_offset_elems) {
  return {{c, c + kPanelCols, c + lower_offset_elems, c + lower_offset_elems + kPanelCols},
          static_cast<int64_t>(row_stride_elems * sizeof(int32_t))};
}

// Where the A tiles of a 32-row block start: in place (row stride lda) or
// packed (contiguous 16 x 64 tiles).
struct ATiles {
  const uint8_t* at;
  int64_t stride;      // bytes between rows of a tile
  int64_t chunk_step;  // bytes to the tile of the next 64 k
  int64_t lower_step;  // bytes to the tile of rows 16-31
};

ATiles a_tiles(const GemmCall& call, int64_t m, int64_t k0) {
  if (m < call.a_direct_rows)
    return {call.a + m * call.lda + k0 * kTileK, call.lda, kTileK, kTileRows * call.lda};
  constexpr int64_t kTileBytes = kTileRows * kTileK;
  return {call.a_tiles + ((m - call.a_direct_rows) / kTileRows) * call.lda_tiles + k0 * kTileBytes, kTileK,
          kTileBytes, call.lda_tiles};
}

// One 32 x 32 C block (ATILES = 1: rows 0-15 only) over `chunks` chunks of
// 64 k, starting from `from` (zero when null) and stored to `to`.  a_at(c) is
// where chunk c's upper A tile starts; the lower one is `lower_step` further,
// both `stride` bytes between rows.
template <int ATILES, typename AAt>
void tile_kernel(int64_t chunks, AAt a_at, int64_t stride, int64_t lower_step, const int8_t* b0, const int8_t* b1,
                 const CTiles* from, const CTiles& to) {
  if (from == nullptr) {
    _tile_zero(4);
    _tile_zero(5);
    if (ATILES == 2) {
      _tile_zero(6);
      _tile_zero(7);
    }
  } else {
    _tile_loadd(4, from->at[0], from->stride);
    _tile_loadd(5, from->at[1], from->stride);
    if (ATILES == 2) {
      _tile_loadd(6, from->at[2], from->stride);
      _tile_loadd(7, from->at[3], from->stride);
    }
  }
  for (int64_t c = 0; c < chunks; ++c) {
    _tile_loadd(2, b0 + c * kTileRows * kPanelGroupBytes, kPanelGroupBytes);
    _tile_loadd(3, b1 + c * kTileRows * kPanelGroupBytes, kPanelGroupBytes);
    const uint8_t* a = a_at(c);
    _tile_loadd(0, a, stride);
    _tile_dpbusd(4, 0, 2);
    _tile_dpbusd(5, 0, 3);
    if (ATILES == 2) {
      _tile_loadd(1, a + lower_step, stride);
      _tile_dpbusd(6, 1, 2);
      _tile_dpbusd(7, 1, 3);
    }
  }
  _tile_stored(4, const_cast<int32_t*>(to.at[0]), to.stride);
  _tile_stored(5, const_cast<int32_t*>(to.at[1]), to.stride);
  if (ATILES == 2) {
    _tile_stored(6, const_cast<int32_t*>(to.at[2]), to.stride);
    _tile_stored(7, const_cast<int32_t*>(to.at[3]), to.stride);
  }
}

// K is walked in blocks of kBlockChunks x 64 (2048, as MLAS does), between
// which the 32 x 32 C blocks wait in `partials`.  Measured on Emerald Rapids:
// smaller K blocks (to keep A in L1) lose more to the C round trips than
// they gain.
constexpr int64_t kBlockChunks = 32;
constexpr int64_t kCBlock = kMR * 2 * kPanelCols;  // int32 per 32 x 32 C block
constexpr int64_t kCLower = kTileRows * 2 * kPanelCols;

void block_amx(const GemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  static thread_local const TileConfig config = make_config();
  thread_local AlignedBuffer<int32_t> partials;
  const PackedB& B = *call.b;
  const Epilogue& ep = call.ep;
  // MatMulInteger with per-tensor zero points needs no epilogue at all: the
  // per-column term starts C (a stride-0 tile load) and the tiles are stored
  // straight into the output.  With AMX the epilogue would otherwise cost as
  // much as the multiplication.
  const bool direct = ep.kind == OutputKind::kInt32 && ep.row_zp == nullptr && ep.row_comp == nullptr;
  int32_t* const out = static_cast<int32_t*>(ep.out);
  const int64_t chunks = (B.Kp + kTileK - 1) / kTileK;
  const int64_t row_tiles = (m1 - m0 + kMR - 1) / kMR, pairs = (p1 - p0 + 1) / 2;
  if (chunks > kBlockChunks) partials.reserve_discard(static_cast<size_t>(row_tiles * pairs * kCBlock));
  alignas(64) int32_t tile[kCBlock];
  const CTiles tile_io = c_tiles(tile, 2 * kPanelCols, kCLower);
  _tile_loadconfig(&config);
  for (int64_t k0 = 0; k0 < chunks; k0 += kBlockChunks) {
    const int64_t kc = std::min(kBlockChunks, chunks - k0);
    const bool first = k0 == 0, last = k0 + kc >= chunks;
    for (int64_t t = 0; t < row_tiles; ++t) {
      const int64_t m = m0 + t * kMR;
      const int rows = static_cast<int>(std::min<int64_t>(kMR, m1 - m));
      const ATiles a = a_tiles(call, m, k0);
      for (int64_t i = 0; i < pairs; ++i) {
        const int64_t p = p0 + 2 * i, n0 = p * kPanelCols;
        // An odd last panel pairs with itself; its duplicate columns are not stored.
        const bool pair = p + 1 < p1;
        const int8_t* b0 = B.panel(p) + k0 * kTileRows * kPanelGroupBytes;
        const int8_t* b1 = B.panel(pair ? p + 1 : p) + k0 * kTileRows * kPanelGroupBytes;
        const CTiles keep = c_tiles(partials.data() + (t * pairs + i) * kCBlock, 2 * kPanelCols, kCLower);
        CTiles init{};
        const CTiles* from = nullptr;
        if (!first) {
          from = &keep;
        } else if (direct && ep.col_comp != nullptr) {
          init = c_tiles(ep.col_comp + n0, 0, 0);
          from = &init;
        }
        const int cols = static_cast<int>(std::min<int64_t>((pair ? 2 : 1) * kPanelCols, B.N - n0));
        const bool whole = cols == 2 * kPanelCols && (rows == kMR || rows == kTileRows);
        CTiles to = tile_io;
        if (!last) to = keep;
        else if (direct && whole) to = c_tiles(out + m * ep.ldc + n0, ep.ldc, kTileRows * ep.ldc);
        auto a_at = [&a](int64_t c) { return a.at + c * a.chunk_step; };
        if (rows > kTileRows)
          tile_kernel<2>(kc, a_at, a.stride, a.lower_step, b0, b1, from, to);
        else
          tile_kernel<1>(kc, a_at, a.stride, a.lower_step, b0, b1, from, to);
        if (last && to.at[0] == tile) {
          if (direct) {
            for (int r = 0; r < rows; ++r)
              std::memcpy(out + (m + r) * ep.ldc + n0, tile + r * 2 * kPanelCols, cols * sizeof(int32_t));
          } else {
            apply_epilogue(ep, tile, 2 * kPanelCols, m, rows, n0, cols);
          }
        }
      }
    }
  }
  _tile_release();
}

// Direct convolution (GemmCall::conv, channels per group a multiple of 64).
// The A tile of up to 16 consecutive output pixels of one output row is read
// in place: those pixels sit stride_w * in_c bytes apart in the padded input,
// and chunk c of K (64 bytes) is channel block c % (cg / 64) of tap
// c / (cg / 64).  Rows are cut at output-row ends into segments of at most 16
// and two consecutive segments make a block's upper and lower A tiles.  A
// shorter segment still loads 16 rows: the rest read on into the padded copy
// (GemmKernel::conv_segment) and their sums are never stored.
void conv_block_amx(const GemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  struct Segment {
    int64_t m;
    int rows;
    const uint8_t* pixel;
  };
  static thread_local const TileConfig config = make_config();
  thread_local AlignedBuffer<int32_t> partials;
  thread_local std::vector<int64_t> chunk_offsets;
  thread_local std::vector<Segment> segments;
  const ConvRows& conv = *call.conv;
  const PackedB& B = *call.b;
  const Epilogue& ep = call.ep;
  const int64_t per_tap = conv.cg / kTileK, chunks = conv.taps * per_tap, stride = conv.stride_w * conv.in_c;
  chunk_offsets.resize(static_cast<size_t>(chunks));
  for (int64_t c = 0; c < chunks; ++c) chunk_offsets[c] = conv.tap_offsets[c / per_tap] + (c % per_tap) * kTileK;
  segments.clear();
  ConvRows::Cursor cursor(conv, m0);
  for (int64_t m = m0; m < m1;) {
    const int rows = static_cast<int>(std::min({int64_t{kTileRows}, conv.out_w - cursor.ow(), m1 - m}));
    segments.push_back({m, rows, cursor.pixel()});
    for (int r = 0; r < rows; ++r) cursor.next();
    m += rows;
  }
  const int64_t blocks = (static_cast<int64_t>(segments.size()) + 1) / 2, pairs = (p1 - p0 + 1) / 2;
  if (chunks > kBlockChunks) partials.reserve_discard(static_cast<size_t>(blocks * pairs * kCBlock));
  alignas(64) int32_t tile[kCBlock];
  const CTiles tile_io = c_tiles(tile, 2 * kPanelCols, kCLower);
  const int64_t* const offsets = chunk_offsets.data();  // (each thread_local access is a call)
  _tile_loadconfig(&config);
  for (int64_t k0 = 0; k0 < chunks; k0 += kBlockChunks) {
    const int64_t kc = std::min(kBlockChunks, chunks - k0);
    const bool first = k0 == 0, last = k0 + kc >= chunks;
    for (int64_t t = 0; t < blocks; ++t) {
      const Segment& up = segments[2 * t];
      const Segment* low = 2 * t + 1 < static_cast<int64_t>(segments.size()) ? &segments[2 * t + 1] : nullptr;
      const uint8_t* base = up.pixel;
      const int64_t lower_step = low != nullptr ? low->pixel - up.pixel : 0;
      auto a_at = [base, offsets, k0](int64_t c) { return base + offsets[k0 + c]; };
      for (int64_t i = 0; i < pairs; ++i) {
        const int64_t p = p0 + 2 * i, n0 = p * kPanelCols;
        const bool pair = p + 1 < p1;  // an odd last panel pairs with itself; its copy is not stored
        const int8_t* b0 = B.panel(p) + k0 * kTileRows * kPanelGroupBytes;
        const int8_t* b1 = B.panel(pair ? p + 1 : p) + k0 * kTileRows * kPanelGroupBytes;
        const CTiles keep = c_tiles(partials.data() + (t * pairs + i) * kCBlock, 2 * kPanelCols, kCLower);
        const CTiles& to = last ? tile_io : keep;
        if (low != nullptr)
          tile_kernel<2>(kc, a_at, stride, lower_step, b0, b1, first ? nullptr : &keep, to);
        else
          tile_kernel<1>(kc, a_at, stride, lower_step, b0, b1, first ? nullptr : &keep, to);
        if (last) {
          const int cols = static_cast<int>(std::min<int64_t>((pair ? 2 : 1) * kPanelCols, B.N - n0));
          apply_epilogue(ep, tile, 2 * kPanelCols, up.m, up.rows, n0, cols);
          if (low != nullptr) apply_epilogue(ep, tile + kCLower, 2 * kPanelCols, low->m, low->rows, n0, cols);
        }
      }
    }
  }
  _tile_release();
}

// A into whole zero-padded 16 x 64 byte tiles, each contiguous:
// [row tile][k chunk][16 rows x 64 bytes].  Rows of A strided by a power of
// two would otherwise fall into a handful of L1 sets and evict each other on
// every tile load.  int8 A is shifted to uint8 on the way (flip).
void pack_a_tiles(const uint8_t* a, int64_t lda, int64_t M, int64_t K, bool flip, uint8_t* dst, int64_t m0,
                  int64_t m1) {
  const int64_t chunks = (K + kTileK - 1) / kTileK;
  const int64_t tile_row_bytes = chunks * kTileRows * kTileK;
  const __m512i x = _mm512_set1_epi8(flip ? static_cast<char>(0x80) : 0);
  for (int64_t m = m0; m < m1; ++m) {
    uint8_t* first = dst + (m / kTileRows) * tile_row_bytes + (m % kTileRows) * kTileK;
    const uint8_t* row = a + m * lda;
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t valid = m < M ? std::clamp<int64_t>(K - c * kTileK, 0, kTileK) : 0;
      const __mmask64 mask = valid == kTileK ? ~__mmask64{0} : ((__mmask64{1} << valid) - 1);
      const __m512i v = _mm512_maskz_loadu_epi8(mask, row + c * kTileK);
      // Bytes past K stay zero: only the loaded bytes are flipped.
      _mm512_store_si512(first + c * kTileRows * kTileK, _mm512_xor_si512(v, _mm512_maskz_mov_epi8(mask, x)));
    }
  }
}

}  // namespace

bool amx_usable() {
  // Linux hands out the 8 KiB tile state only on request (arch_prctl
  // ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA); without it the first tile
  // instruction faults.
#if defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

GemmKernel gemm_kernel_amx() {
  GemmKernel k{"amx", false, kMR, block_amx};
  k.a_row_pad = kMR;
  k.a_k_pad = kTileK;
  k.min_rows = 8;
  k.block_b_bytes = 1024 * 1024;  // of a 2 MB L2 (Sapphire / Emerald Rapids); best of 256 KiB .. 1.5 MiB
  k.few_rows = gemm_kernel_avx512vnni;
  k.pack_a_tiles = pack_a_tiles;
  k.conv_block = conv_block_amx;
  k.conv_mr = kMR;
  k.conv_cg_multiple = kTileK;
  k.conv_segment = kTileRows;
  return k;
}

}  // namespace eb
