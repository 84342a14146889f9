"""Every GEMM kernel path is bit-exact with eightbit.reference and with int64 NumPy math.

Shapes follow ruy's lists (1, 2, 3, around the 16-column panels and the 32-row
tiles, 255, 1024, deep K up to 16384); extreme values are the ones that make a
naive AVX2 `vpmaddubsw` kernel saturate.
"""

import itertools

import numpy as np
import pytest

import eightbit as eb
from eightbit import reference as ref

SIZES = [1, 2, 3, 15, 16, 17, 63, 64, 65, 255]
DTYPE_PAIRS = [(np.uint8, np.int8), (np.int8, np.int8), (np.uint8, np.uint8), (np.int8, np.uint8)]


def int64_matmul(a, b, za, zb):
    """Independent oracle: exact int64 product, wrapped to int32."""
    a64 = a.astype(np.int64) - np.asarray(za, np.int64).reshape(-1, 1)
    b64 = b.astype(np.int64) - np.asarray(zb, np.int64).reshape(1, -1)
    return (a64 @ b64).astype(np.int32)  # int64 -> int32 wraps, as int32 accumulation does


def random_operand(rng, shape, dtype):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape, dtype=dtype)


def random_zero_point(rng, dtype, count=None):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, count, dtype=dtype) if count else dtype(rng.integers(info.min, info.max + 1))


def check_gemm(a, b, za, zb):
    expected = int64_matmul(a, b, za, zb)
    np.testing.assert_array_equal(ref.matmul_integer(a, b, za, zb), expected)
    got_packed = eb.ops.matmul_integer(a, eb.pack_weights(b, zb), za)
    np.testing.assert_array_equal(got_packed, expected)
    got_plain = eb.ops.matmul_integer(a, b, za, zb)
    np.testing.assert_array_equal(got_plain, expected)


# Every M and N of the list, K cycling through it: each size meets every other.
GRID = [(m, n, SIZES[(i + j) % len(SIZES)]) for (i, m), (j, n) in itertools.product(enumerate(SIZES), repeat=2)]


@pytest.mark.parametrize("m,n,k", GRID)
def test_shape_grid_u8s8(isa, rng, m, n, k):
    a = random_operand(rng, (m, k), np.uint8)
    b = random_operand(rng, (k, n), np.int8)
    check_gemm(a, b, random_zero_point(rng, np.uint8), np.int8(0))


@pytest.mark.parametrize("a_dtype,b_dtype", DTYPE_PAIRS)
@pytest.mark.parametrize("m,n,k", [(17, 33, 65), (64, 48, 64), (33, 17, 255), (1, 64, 300)])
def test_dtype_pairs_and_zero_points(isa, rng, a_dtype, b_dtype, m, n, k):
    a = random_operand(rng, (m, k), a_dtype)
    b = random_operand(rng, (k, n), b_dtype)
    # per-tensor, per-row A and per-column B zero points
    check_gemm(a, b, random_zero_point(rng, a_dtype), random_zero_point(rng, b_dtype))
    check_gemm(a, b, random_zero_point(rng, a_dtype, m), random_zero_point(rng, b_dtype, n))


@pytest.mark.parametrize("m,n,k", [(1024, 17, 64), (65, 1024, 33), (3, 5, 1024), (1024, 64, 1024)])
def test_large_dimensions(isa, rng, m, n, k):
    if isa == "scalar" and m * n * k > 1 << 24:
        k = 64  # the portable path is slow; its loops are the same at any K
    a = random_operand(rng, (m, k), np.uint8)
    b = random_operand(rng, (k, n), np.int8)
    check_gemm(a, b, np.uint8(128), np.int8(0))


@pytest.mark.parametrize("k", [4096, 16384])
@pytest.mark.parametrize(
    "a_value,za,b_value,zb",
    [(255, 0, -128, -128 + 0), (255, 0, 127, 0), (0, 255, -128, 127), (255, 0, -128, 127), (0, 0, 127, 0)],
)
def test_extreme_values(isa, a_value, za, b_value, zb, k):
    """All-255 activations against all -128 / 127 weights: pair sums a naive
    vpmaddubsw kernel would saturate, and deep-K sums near the int32 limit."""
    a = np.full((5, k), a_value, np.uint8)
    b = np.full((k, 33), b_value, np.int8)
    check_gemm(a, b, np.uint8(za), np.int8(zb))


def test_int32_wraparound(isa):
    """Sums beyond int32 wrap exactly as int32 accumulation does (ONNX: overflow only in 32 bits)."""
    k = 40000  # 255 * 255 * 40000 > 2^31
    a = np.full((2, k), 255, np.uint8)
    b = np.full((k, 16), -128, np.int8)
    check_gemm(a, b, np.uint8(0), np.int8(127))


def test_mixed_extremes_random(isa, rng):
    """Random choices among the extreme byte values only."""
    a = rng.choice(np.array([0, 1, 254, 255], np.uint8), (37, 1000))
    b = rng.choice(np.array([-128, -127, 126, 127], np.int8), (1000, 45))
    check_gemm(a, b, np.uint8(3), np.int8(-128))
    check_gemm(a.view(np.int8), b, np.int8(-128), np.int8(127))


@pytest.mark.parametrize("m,n,k", [(0, 5, 7), (4, 0, 7), (4, 5, 0), (0, 0, 0)])
def test_empty_dimensions(isa, m, n, k):
    a = np.zeros((m, k), np.uint8)
    b = np.ones((k, n), np.int8)
    got = eb.ops.matmul_integer(a, eb.pack_weights(b), np.uint8(9))
    assert got.shape == (m, n) and got.dtype == np.int32
    np.testing.assert_array_equal(got, np.zeros((m, n), np.int32))


def test_threads_give_identical_results(rng):
    a = random_operand(rng, (300, 700), np.uint8)
    b = random_operand(rng, (700, 900), np.int8)
    pw = eb.pack_weights(b)
    before = eb.cpu_info()["num_threads"]
    try:
        eb.set_num_threads(1)
        one = eb.ops.matmul_integer(a, pw, np.uint8(5))
        eb.set_num_threads(2)
        two = eb.ops.matmul_integer(a, pw, np.uint8(5))
    finally:
        eb.set_num_threads(before)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, int64_matmul(a, b, 5, 0))


def test_concurrent_calls_from_python_threads(rng):
    """The GIL is released during compute: calls from several Python threads
    share the pool and their scratch buffers safely."""
    from concurrent.futures import ThreadPoolExecutor

    cases = []
    for i in range(6):
        a = random_operand(rng, (64 + 7 * i, 200), np.uint8 if i % 2 else np.int8)
        b = random_operand(rng, (200, 96), np.int8)
        cases.append((a, eb.pack_weights(b), int64_matmul(a, b, 0, 0)))
    before = eb.cpu_info()["num_threads"]
    try:
        eb.set_num_threads(2)
        with ThreadPoolExecutor(4) as pool:
            for _ in range(5):
                results = list(pool.map(lambda c: eb.ops.matmul_integer(c[0], c[1]), cases))
                for (_, _, expected), got in zip(cases, results):
                    np.testing.assert_array_equal(got, expected)
    finally:
        eb.set_num_threads(before)


@pytest.mark.parametrize("m", [1, 8, 40])
def test_k_zero_every_output_kind(isa, m):
    """K = 0: the product is all zeros, then requantized / dequantized as usual
    (found by the sanitizer run: the AMX path once returned uninitialized memory)."""
    a = np.zeros((m, 0), np.uint8)
    b = np.zeros((0, 20), np.int8)
    np.testing.assert_array_equal(eb.ops.matmul_integer(a, eb.pack_weights(b), np.uint8(3)), np.zeros((m, 20), np.int32))
    for requant in ("float", "fixed"):
        y = eb.ops.qlinear_matmul(a, np.float32(0.1), np.uint8(3), b, np.float32(0.2), np.int8(0), np.float32(0.5),
                                  np.uint8(17), requant=requant)
        np.testing.assert_array_equal(y, np.full((m, 20), 17, np.uint8))


def test_empty_n_with_empty_per_column_zero_point():
    a = np.zeros((2, 3), np.uint8)
    b = np.zeros((3, 0), np.int8)
    got = eb.ops.matmul_integer(a, b, None, np.zeros(0, np.int8))
    assert got.shape == (2, 0)


def test_vnni_probe_reports_a_rate_only_with_avx512_vnni():
    """The benchmarks' VNNI throughput probe (kernels/probe.h): a positive int8 rate where the CPU
    has AVX-512 VNNI, 0 elsewhere (never an illegal instruction)."""
    from eightbit.runtime import core
    rate = core.vnni_probe(1000)
    if eb.cpu_info()["features"]["avx512vnni"]:
        assert rate > 1e9
    else:
        assert rate == 0.0
