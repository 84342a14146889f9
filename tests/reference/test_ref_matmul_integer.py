"""eightbit.reference.matmul_integer against an independent int64 einsum oracle."""
import itertools

import numpy as np
import pytest

from eightbit.reference import matmul_integer

SIZES = (1, 2, 3, 15, 16, 17, 63, 64, 65, 255)
DTYPES = (np.uint8, np.int8)


def shape_cases():
    """Every size on the diagonal, every size against 1 and 17 on each axis, plus seeded triples."""
    cases = {(s, s, s) for s in SIZES}
    for s in SIZES:
        for t in (1, 17):
            cases |= {(s, t, t), (t, s, t), (t, t, s)}
    rng = np.random.default_rng(2024)
    cases |= {tuple(int(v) for v in rng.choice(SIZES, 3)) for _ in range(20)}
    return sorted(cases)


def wrap32(v):
    return (((np.asarray(v, dtype=np.int64) + 2**31) % 2**32) - 2**31).astype(np.int32)


def oracle(a, b, a_zp, b_zp):
    """a [..., M, K], b [..., K, N] (2-D+ only), a_zp scalar or [M], b_zp scalar or [N]."""
    a64 = a.astype(np.int64) - np.asarray(a_zp, np.int64).reshape(-1, 1)
    b64 = b.astype(np.int64) - np.asarray(b_zp, np.int64).reshape(1, -1)
    return wrap32(np.einsum("...mk,...kn->...mn", a64, b64))


def rand(rng, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=np.int64).astype(dtype)


@pytest.mark.parametrize("a_dtype,b_dtype", list(itertools.product(DTYPES, DTYPES)))
@pytest.mark.parametrize("m,n,k", shape_cases())
def test_random_shapes_with_per_row_and_per_column_zero_points(m, n, k, a_dtype, b_dtype):
    rng = np.random.default_rng(m * 1_000_003 + n * 1009 + k)
    a, b = rand(rng, a_dtype, (m, k)), rand(rng, b_dtype, (k, n))
    a_zp, b_zp = rand(rng, a_dtype, (m,)), rand(rng, b_dtype, (n,))
    y = matmul_integer(a, b, a_zp, b_zp)
    assert y.dtype == np.int32 and y.shape == (m, n)
    np.testing.assert_array_equal(y, oracle(a, b, a_zp, b_zp))
    a_s, b_s = rand(rng, a_dtype, ()), rand(rng, b_dtype, ())
    np.testing.assert_array_equal(matmul_integer(a, b, a_s, b_s), oracle(a, b, a_s, b_s))


@pytest.mark.parametrize("a_dtype,b_dtype", list(itertools.product(DTYPES, DTYPES)))
def test_extreme_values_and_zero_points_at_both_ends(a_dtype, b_dtype):
    ai, bi = np.iinfo(a_dtype), np.iinfo(b_dtype)
    k = 255
    for a_val, b_val, a_zp, b_zp in itertools.product((ai.min, ai.max), (bi.min, bi.max),
                                                      (ai.min, ai.max), (bi.min, bi.max)):
        a = np.full((3, k), a_val, a_dtype)
        b = np.full((k, 4), b_val, b_dtype)
        y = matmul_integer(a, b, np.array(a_zp, a_dtype), np.array(b_zp, b_dtype))
        expected = k * (int(a_val) - int(a_zp)) * (int(b_val) - int(b_zp))
        np.testing.assert_array_equal(y, np.full((3, 4), expected, np.int32))


def test_accumulator_wraps_like_int32():
    k = 40_000        # 40000 * 255 * 255 > 2^31: the exact sum does not fit int32
    a = np.full((1, k), 255, np.uint8)
    b = np.full((k, 2), 255, np.uint8)
    y = matmul_integer(a, b)
    exact = k * 255 * 255
    assert exact > 2**31
    np.testing.assert_array_equal(y, np.full((1, 2), exact - 2**32, np.int32))
    b_neg = np.full((k, 1), -128, np.int8)
    y_neg = matmul_integer(a, b_neg, None, np.array(127, np.int8))
    np.testing.assert_array_equal(y_neg, wrap32([[k * 255 * (-255)]]))


def test_batch_dimensions_broadcast_like_numpy_matmul():
    rng = np.random.default_rng(7)
    a = rand(rng, np.uint8, (2, 1, 5, 9))
    b = rand(rng, np.int8, (3, 9, 4))
    a_zp, b_zp = rand(rng, np.uint8, (5,)), rand(rng, np.int8, (4,))
    y = matmul_integer(a, b, a_zp, b_zp)
    assert y.shape == (2, 3, 5, 4)
    a_b = np.broadcast_to(a, (2, 3, 5, 9))
    b_b = np.broadcast_to(b, (2, 3, 9, 4))
    np.testing.assert_array_equal(y, oracle(a_b, b_b, a_zp, b_zp))


def test_one_dimensional_operands():
    rng = np.random.default_rng(8)
    a1, b1 = rand(rng, np.int8, (17,)), rand(rng, np.uint8, (17,))
    a2, b2 = rand(rng, np.int8, (3, 17)), rand(rng, np.uint8, (2, 17, 5))
    a_zp, b_zp = np.array(-3, np.int8), np.array(200, np.uint8)
    dot = sum((int(x) + 3) * (int(y) - 200) for x, y in zip(a1, b1))
    y = matmul_integer(a1, b1, a_zp, b_zp)
    assert y.shape == () and int(y) == dot
    y = matmul_integer(a1, b2, a_zp, b_zp)                                  # [K] @ [2, K, N]
    assert y.shape == (2, 5)
    np.testing.assert_array_equal(y, oracle(a1.reshape(1, -1), b2, a_zp, b_zp)[:, 0, :])
    y = matmul_integer(a2, b1, a_zp, b_zp)                                  # [M, K] @ [K]
    assert y.shape == (3,)
    np.testing.assert_array_equal(y, oracle(a2, b1.reshape(-1, 1), a_zp, b_zp)[:, 0])


def test_empty_dimensions():
    a = np.zeros((0, 4), np.uint8)
    assert matmul_integer(a, np.ones((4, 3), np.uint8)).shape == (0, 3)
    assert matmul_integer(np.ones((2, 4), np.uint8), np.ones((4, 0), np.int8)).shape == (2, 0)
    y = matmul_integer(np.ones((2, 0), np.uint8), np.ones((0, 3), np.int8),
                       np.array([1, 2], np.uint8), np.array([5, 6, 7], np.int8))
    np.testing.assert_array_equal(y, np.zeros((2, 3), np.int32))


def test_non_contiguous_inputs():
    rng = np.random.default_rng(9)
    a = rand(rng, np.uint8, (16, 40))[::2, 1::3]          # strided view
    b = np.asfortranarray(rand(rng, np.int8, (13, 6)))
    bt = rand(rng, np.int8, (6, 13)).T                      # transposed view
    for bb in (b, bt):
        np.testing.assert_array_equal(matmul_integer(a, bb, np.array(3, np.uint8)),
                                      oracle(np.ascontiguousarray(a), np.ascontiguousarray(bb), 3, 0))
