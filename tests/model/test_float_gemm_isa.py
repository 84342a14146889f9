"""The float32 GEMM behind eb.compile's linear, matmul, bmm and conv steps (csrc/kernels/sgemm.h):
every ISA path returns the same bits as the scalar std::fma path (one fma chain per output, k
ascending, then bias, then clamp), whatever the tile tails, K / M blocking and thread count;
and the result is within float32 rounding of a float64 NumPy product."""
import numpy as np
import pytest

import eightbit as eb

# M, K, N: tails of every tile (12 x 32 AVX-512, 6 x 16 AVX2), K split into blocks (> 384), M
# blocks (> 396 rows), A packed (>= 96 columns) and not, K = 1.
LINEAR_SHAPES = [(1, 1, 1), (5, 3, 7), (13, 17, 33), (25, 64, 100), (37, 385, 31), (12, 800, 96),
                 (420, 40, 70), (7, 1000, 129)]


def _run(m, feeds):
    out = m.run(feeds)
    return next(iter(out.values())) if isinstance(out, dict) else out


def _against_scalar(m, feeds, isa, threads=(1,)):
    """{(path, threads): output}: the scalar path (the reference), then `isa` (the fixture's) on each
    thread count."""
    before = eb.cpu_info()
    got = {}
    try:
        for path in ("scalar", isa):
            eb.set_isa(path)
            for t in threads:
                eb.set_num_threads(t)
                got[path, t] = _run(m, feeds)
    finally:
        eb.set_isa(before["isa"])
        eb.set_num_threads(before["num_threads"])
    return got


def _assert_same_bits(got):
    (ref_key, ref), *rest = got.items()
    for key, y in rest:
        assert y.shape == ref.shape
        np.testing.assert_array_equal(y.view(np.uint32), ref.view(np.uint32), err_msg=f"{key} vs {ref_key}")


def _assert_near_float64(y, a, b, bias=None):
    """|y - exact| <= (K + 2) u (|a| |b| + |bias|): K fused roundings, the bias and some slack."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    exact, bound = a64 @ b64, np.abs(a64) @ np.abs(b64)
    if bias is not None:
        exact = exact + bias
        bound = bound + np.abs(bias)
    k = a.shape[-1]
    assert np.all(np.abs(y - exact) <= (k + 2) * 2.0 ** -24 * bound + 1e-30)


@pytest.mark.parametrize("M,K,N", LINEAR_SHAPES)
def test_linear_same_bits_on_every_isa_and_thread_count(M, K, N, isa):
    rng = np.random.default_rng(M * 1000 + K + N)
    w = rng.standard_normal((N, K)).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    g = eb.Graph()
    g.output(g.linear(g.input("x", (None, K)), w, bias))
    x = rng.standard_normal((M, K)).astype(np.float32)
    got = _against_scalar(eb.compile(g), {"x": x}, isa, threads=(1, 2))
    _assert_same_bits(got)
    _assert_near_float64(next(iter(got.values())), x, w.T, bias)


@pytest.mark.parametrize("M,K,N", [(5, 3, 7), (25, 385, 100), (420, 40, 33)])
def test_matmul_and_relu_same_bits(M, K, N, isa):
    rng = np.random.default_rng(7)
    b = rng.standard_normal((K, N)).astype(np.float32)
    g = eb.Graph()
    g.output(g.relu(g.matmul(g.input("x", (None, K)), b)))
    x = rng.standard_normal((M, K)).astype(np.float32)
    got = _against_scalar(eb.compile(g), {"x": x}, isa)
    _assert_same_bits(got)
    y = next(iter(got.values()))
    np.testing.assert_array_equal(y, np.maximum(_run_relu_free(b, x), 0))


def _run_relu_free(b, x):
    """The same product without the fused clamp (the clamp only maps negatives to 0)."""
    g = eb.Graph()
    g.output(g.matmul(g.input("x", (None, b.shape[0])), b))
    return _run(eb.compile(g), {"x": x})


# Attention's shapes (Q K^T: [N, 12, T, 32] x [N, 12, 32, T]; P V: [N, 12, T, T] x [N, 12, T, 32])
# and odd ones; b broadcast over a leading dim.
BMM_SHAPES = [((2, 3, 25, 32), (2, 3, 32, 25)), ((2, 3, 25, 25), (2, 3, 25, 32)), ((1, 2, 7, 5), (1, 2, 5, 33)),
              ((3, 1, 13, 40), (3, 1, 40, 65)), ((2, 4, 9, 16), (2, 1, 16, 3))]


@pytest.mark.parametrize("sa,sb", BMM_SHAPES)
def test_bmm_same_bits_on_every_isa(sa, sb, isa):
    rng = np.random.default_rng(sum(sa) + sum(sb))
    g = eb.Graph()
    g.output(g.bmm(g.input("a", (None,) + sa[1:]), g.input("b", (None,) + sb[1:])))
    a = rng.standard_normal(sa).astype(np.float32)
    b = rng.standard_normal(sb).astype(np.float32)
    got = _against_scalar(eb.compile(g), {"a": a, "b": b}, isa, threads=(1, 2))
    _assert_same_bits(got)
    _assert_near_float64(next(iter(got.values())), a, b)


@pytest.mark.parametrize("groups,k,stride,pad", [(1, 3, 1, 1), (2, 3, 2, 0), (1, 1, 1, 0)])
def test_conv_same_bits_on_every_isa(groups, k, stride, pad, isa):
    rng = np.random.default_rng(groups * 10 + k)
    w = rng.standard_normal((6, 4 // groups, k, k)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    g = eb.Graph()
    g.output(g.conv2d(g.input("x", (None, 4, 11, 13)), w, bias, stride=stride, padding=pad, groups=groups))
    x = rng.standard_normal((2, 4, 11, 13)).astype(np.float32)
    m = eb.compile(g)
    got = _against_scalar(m, {"x": x}, isa)
    _assert_same_bits(got)
    want = g.run({"x": x})
    want = next(iter(want.values())) if isinstance(want, dict) else want
    np.testing.assert_allclose(next(iter(got.values())), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("perm", [(0, 2, 1, 3), (0, 2, 3, 1), (0, 3, 1, 2), (0, 1, 3, 2)])
def test_transpose_matches_numpy(perm):
    rng = np.random.default_rng(3)
    g = eb.Graph()
    g.output(g.transpose(g.input("x", (None, 5, 3, 7)), perm))
    x = rng.standard_normal((2, 5, 3, 7)).astype(np.float32)
    np.testing.assert_array_equal(_run(eb.compile(g), {"x": x}), np.transpose(x, perm))


def test_linear_special_values_same_on_every_isa(isa):
    """Infinities, NaN, subnormals and signed zeros: the same bits (NaN: the same positions; which
    NaN's payload survives two NaN operands is the instruction's operand order, unspecified)."""
    rng = np.random.default_rng(11)
    K, N = 40, 70
    w = rng.standard_normal((N, K)).astype(np.float32)
    w[3, :] = 0.0
    w[5, 7] = np.float32(1e-40)
    g = eb.Graph()
    g.output(g.linear(g.input("x", (None, K)), w, rng.standard_normal(N).astype(np.float32)))
    x = rng.standard_normal((30, K)).astype(np.float32)
    x[0, 0], x[1, 5], x[2, 9], x[3, :] = np.inf, -np.inf, np.nan, -0.0
    x[4, :] = np.float32(1e-39)  # subnormal
    x[5, 3] = np.float32(3e38)   # overflows to inf in the sum
    got = _against_scalar(eb.compile(g), {"x": x}, isa)
    (ref_key, ref), *rest = got.items()
    for key, y in rest:
        nan = np.isnan(ref)
        np.testing.assert_array_equal(np.isnan(y), nan, err_msg=f"{key} vs {ref_key}")
        np.testing.assert_array_equal(y[~nan].view(np.uint32), ref[~nan].view(np.uint32), err_msg=f"{key} vs {ref_key}")
