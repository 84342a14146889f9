// Runtime layer: float32 linear and convolution (see float_ops.h).
#include "runtime/float_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "runtime/dispatch.h"
#include "runtime/thread_pool.h"

namespace eb {
namespace {

// Multiply-adds per thread below which a thread pool wake-up costs more than it saves.
constexpr int64_t kMinWorkPerThread = int64_t{1} << 18;

int64_t panels(int64_t n) { return (n + kSgemmPanel - 1) / kSgemmPanel; }

// Rows of A x all panels of B, the panels split over the pool (each output is computed by one
// thread, whole: the thread count never changes a bit).
void run_sgemm(const SgemmCall& call) {
  if (call.M == 0 || call.N == 0) return;
  const SgemmFn kernel = active_sgemm();
  parallel_for(panels(call.N), call.M * std::max<int64_t>(call.K, 1) * kSgemmPanel, kMinWorkPerThread,
               [&](int64_t p0, int64_t p1) { kernel(call, 0, call.M, p0, p1); });
}

// One image's and group's im2col columns, packed as B: panel [P / 16][Kc][16]
// with P = out_h * out_w pixels and Kc = (c, kh, kw); padding taps are 0.
void pack_columns(const ConvGeometry& g, const float* x, int64_t group, float* out) {
  const int64_t oh_n = g.out_h(), ow_n = g.out_w(), P = oh_n * ow_n, cg = g.group_in_c();
  for (int64_t panel = 0; panel < panels(P); ++panel) {
    int64_t ih0[kSgemmPanel], iw0[kSgemmPanel];
    for (int j = 0; j < kSgemmPanel; ++j) {
      const int64_t p = std::min(panel * kSgemmPanel + j, P - 1);
      ih0[j] = (p / ow_n) * g.stride_h - g.pad_top;
      iw0[j] = (p % ow_n) * g.stride_w - g.pad_left;
    }
    const int valid = static_cast<int>(std::min<int64_t>(kSgemmPanel, P - panel * kSgemmPanel));
    float* dst = out + panel * cg * g.kernel_h * g.kernel_w * kSgemmPanel;
    for (int64_t c = 0; c < cg; ++c) {
      const float* plane = x + (group * cg + c) * g.in_h * g.in_w;
      for (int64_t kh = 0; kh < g.kernel_h; ++kh)
        for (int64_t kw = 0; kw < g.kernel_w; ++kw, dst += kSgemmPanel)
          for (int j = 0; j < kSgemmPanel; ++j) {
            const int64_t ih = ih0[j] + kh * g.dilation_h, iw = iw0[j] + kw * g.dilation_w;
            const bool inside = j < valid && ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w;
            dst[j] = inside ? plane[ih * g.in_w + iw] : 0.0f;
          }
    }
  }
}

}  // namespace

PackedF32 pack_f32_transposed(const float* w, int64_t N, int64_t K) {
  PackedF32 p;
  p.K = K;
  p.N = N;
  p.data.resize(static_cast<size_t>(panels(N) * K * kSgemmPanel));  // zero-filled: columns past N
  // Panel by panel, k outer: the writes run contiguously, the reads over kSgemmPanel rows of w.
  for (int64_t p0 = 0; p0 < N; p0 += kSgemmPanel) {
    float* dst = p.data.data() + p0 * K;
    const int64_t cols = std::min<int64_t>(kSgemmPanel, N - p0);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < cols; ++j) dst[k * kSgemmPanel + j] = w[(p0 + j) * K + k];
  }
  return p;
}

void float_linear(const float* x, int64_t M, const PackedF32& w, const float* bias, float lo, float hi, float* y) {
  SgemmCall call;
  call.M = M;
  call.N = w.N;
  call.K = w.K;
  call.a = x;
  call.lda = w.K;
  call.set_packed_b(w.data.data());
  call.bias = bias;
  call.lo = lo;
  call.hi = hi;
  call.c = y;
  call.ldc = w.N;
  run_sgemm(call);
}

void float_conv(const FloatConv& conv, int64_t batch, const float* x, float* y) {
  ConvGeometry g = conv.g;
  g.batch = batch;
  const int64_t P = g.out_h() * g.out_w(), cg = g.group_in_c(), og = g.group_out_c();
  const int64_t Kc = cg * g.kernel_h * g.kernel_w;
  thread_local AlignedBuffer<float> columns;
  columns.reserve_discard(static_cast<size_t>(panels(P) * Kc * kSgemmPanel));
  float* const packed = columns.data();  // the pointer: pool threads have their own thread_local
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      pack_columns(g, x + n * g.in_c * g.in_h * g.in_w, grp, packed);
      SgemmCall call;
      call.M = og;
      call.N = P;
      call.K = Kc;
      call.a = conv.w.data() + grp * og * Kc;
      call.lda = Kc;
      call.set_packed_b(packed);
      call.bias = conv.bias.empty() ? nullptr : conv.bias.data() + grp * og;
      call.bias_per_row = true;
      call.lo = conv.lo;
      call.hi = conv.hi;
      call.c = y + (n * g.out_c + grp * og) * P;
      call.ldc = P;
      run_sgemm(call);
    }
}

void float_bmm(const float* a, const std::vector<int64_t>& a_strides, const float* b,
               const std::vector<int64_t>& b_strides, const std::vector<int64_t>& out, int64_t K, float* y) {
  const size_t lead = out.size() - 2;
  const int64_t M = out[lead], P = out[lead + 1];
  int64_t count = 1;  // matrices in the output
  for (size_t d = 0; d < lead; ++d) count *= out[d];
  if (count == 0 || M == 0 || P == 0) return;
  // Offsets of matrix i's operands, from its multi-index over the leading dims.
  auto offsets = [&](int64_t i, int64_t* oa, int64_t* ob) {
    *oa = *ob = 0;
    for (size_t d = lead; d-- > 0;) {
      const int64_t idx = i % out[d];
      i /= out[d];
      *oa += idx * a_strides[d];
      *ob += idx * b_strides[d];
    }
  };
  // B is read in place (the kernel takes a plain row-major B: packing costs O(K P), as much as
  // the product itself for attention's small matrices).  Many matrices (attention's batch x
  // heads): whole matrices spread over the pool, one kernel call each; few: their panels too.
  const int64_t np = panels(P);
  const SgemmFn kernel = active_sgemm();
  const bool whole = count >= ThreadPool::instance().num_threads() * 4;
  const int64_t items = whole ? count : count * np, per_item = whole ? np : 1;
  parallel_for(items, M * std::max<int64_t>(K, 1) * kSgemmPanel * per_item, kMinWorkPerThread,
               [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t i = t / (whole ? 1 : np), p0 = whole ? 0 : t % np;
      int64_t oa = 0, ob = 0;
      offsets(i, &oa, &ob);
      SgemmCall call;
      call.M = M;
      call.N = P;
      call.K = K;
      call.a = a + oa;
      call.lda = K;
      call.set_plain_b(b + ob, P);
      call.c = y + i * M * P;
      call.ldc = P;
      call.lo = -std::numeric_limits<float>::infinity();  // no clamp: infinities stay, as NumPy's
      call.hi = std::numeric_limits<float>::infinity();
      kernel(call, 0, M, p0, p0 + per_item);
    }
  });
}

namespace {

// Element strides of a C-contiguous tensor of `shape`.
std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> s(shape.size(), 1);
  for (size_t d = shape.size(); d-- > 1;) s[d - 1] = s[d] * shape[d];
  return s;
}

int64_t product(const std::vector<int64_t>& s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to; ++i) p *= s[i];
  return p;
}

}  // namespace

void float_transpose(const float* x, const std::vector<int64_t>& in, const std::vector<int64_t>& perm, float* y) {
  const size_t rank = in.size();
  const std::vector<int64_t> in_strides = contiguous_strides(in);
  std::vector<int64_t> out(rank), strides(rank);  // output extents and their strides in x
  for (size_t d = 0; d < rank; ++d) {
    out[d] = in[static_cast<size_t>(perm[d])];
    strides[d] = in_strides[static_cast<size_t>(perm[d])];
  }
  const int64_t inner = out[rank - 1], rows = product(out, 0, rank - 1), step = strides[rank - 1];
  // The output row's start in x, from its multi-index.
  auto row_offset = [&](int64_t r) {
    int64_t offset = 0;
    for (size_t d = rank - 1; d-- > 0;) {
      offset += (r % out[d]) * strides[d];
      r /= out[d];
    }
    return offset;
  };
  if (step == 1) {  // the last axis stays last (the head split / merge, (0, 2, 1, 3)): contiguous runs
    parallel_for(rows, inner, kMinWorkPerThread, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) std::copy_n(x + row_offset(r), inner, y + r * inner);
    });
    return;
  }
  if (rank >= 3 && strides[rank - 2] == 1) {  // a 2-D transpose of the last two axes ((0, 2, 3, 1))
    const int64_t cols = out[rank - 2];
    parallel_for(rows / cols, cols * inner, kMinWorkPerThread, [&](int64_t b0, int64_t b1) {
      for (int64_t bi = b0; bi < b1; ++bi) {
        const float* xs = x + row_offset(bi * cols);
        float* yb = y + bi * cols * inner;
        for (int64_t i = 0; i < inner; ++i)  // reads contiguous runs of `cols`, writes a column
          for (int64_t j = 0; j < cols; ++j) yb[j * inner + i] = xs[i * step + j];
      }
    });
    return;
  }
  parallel_for(rows, inner, kMinWorkPerThread, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t offset = row_offset(r);
      float* yr = y + r * inner;
      for (int64_t i = 0; i < inner; ++i) yr[i] = x[offset + i * step];
    }
  });
}

void float_pad(const FloatPad& p, const float* x, const std::vector<int64_t>& in, float* y) {
  const size_t rank = in.size();
  // Per axis: the input index each output index reads, -1 for the constant fill.
  std::vector<std::vector<int64_t>> source(rank);
  std::vector<int64_t> out(rank);
  for (size_t d = 0; d < rank; ++d) {
    const int64_t n = in[d];
    out[d] = n + p.begin[d] + p.end[d];
    source[d].resize(static_cast<size_t>(out[d]));
    for (int64_t o = 0; o < out[d]; ++o) {
      int64_t i = o - p.begin[d];
      if (i < 0 || i >= n) switch (p.mode) {
          case FloatPadMode::kConstant: i = -1; break;
          case FloatPadMode::kReflect: i = i < 0 ? -i : 2 * (n - 1) - i; break;
          case FloatPadMode::kReplicate: i = i < 0 ? 0 : n - 1; break;
          case FloatPadMode::kCircular: i = i < 0 ? i + n : i - n; break;
        }
      source[d][static_cast<size_t>(o)] = i;
    }
  }
  const std::vector<int64_t> in_strides = contiguous_strides(in);
  const int64_t inner = out[rank - 1], rows = product(out, 0, rank - 1);
  const std::vector<int64_t>& last = source[rank - 1];
  parallel_for(rows, inner, kMinWorkPerThread, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t offset = 0, rest = r;  // the source row's start in x; -1: a row of fill
      for (size_t d = rank - 1; d-- > 0 && offset >= 0;) {
        const int64_t i = source[d][static_cast<size_t>(rest % out[d])];
        rest /= out[d];
        offset = i < 0 ? -1 : offset + i * in_strides[d];
      }
      float* yr = y + r * inner;
      if (offset < 0)
        std::fill(yr, yr + inner, p.value);
      else
        for (int64_t o = 0; o < inner; ++o) {
          const int64_t i = last[static_cast<size_t>(o)];
          yr[o] = i < 0 ? p.value : x[offset + i];
        }
    }
  });
}

void float_pool(const FloatPool& p, int64_t batch, const float* x, float* y) {
  parallel_for(batch * p.channels, p.out_h * p.out_w * p.kernel[0] * p.kernel[1], kMinWorkPerThread,
               [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const float* plane = x + c * p.in_h * p.in_w;
      float* out = y + c * p.out_h * p.out_w;
      for (int64_t oh = 0; oh < p.out_h; ++oh)
        for (int64_t ow = 0; ow < p.out_w; ++ow) {
          const int64_t h0 = oh * p.stride[0] - p.pad[0], w0 = ow * p.stride[1] - p.pad[1];
          float acc = p.average ? 0.0f : -std::numeric_limits<float>::infinity();
          int64_t count = 0, padded = 0;
          for (int64_t kh = 0; kh < p.kernel[0]; ++kh)
            for (int64_t kw = 0; kw < p.kernel[1]; ++kw) {
              const int64_t ih = h0 + kh, iw = w0 + kw;
              if (ih < 0 || ih >= p.in_h || iw < 0 || iw >= p.in_w) {
                // PyTorch's divisor: the window clipped to the padded input (ceil_mode
                // windows may reach past the end padding; those taps are not counted)
                padded += ih < p.in_h + p.pad[2] && iw < p.in_w + p.pad[3];
                continue;
              }
              const float v = plane[ih * p.in_w + iw];
              acc = p.average ? acc + v : std::max(acc, v);
              ++count;
            }
          // A window with nothing to divide by (wholly in the padding, not counting it) gives 0,
          // as graph/float_exec.py does; eightbit's graphs and plans refuse such windows.
          const int64_t divisor = p.count_include_pad ? count + padded : count;
          out[oh * p.out_w + ow] = !p.average ? acc : divisor > 0 ? acc / static_cast<float>(divisor) : 0.0f;
        }
    }
  });
}

}  // namespace eb
