"""eightbit.reference.binary against independent oracles: a plain Python bit loop for the packing,
int64 matrices of +-1 for the products, float64 arithmetic rounded to float32 for the layer."""
import math

import numpy as np
import pytest

from eightbit import reference as R

K_LIST = (1, 7, 63, 64, 65, 127, 128, 511, 512, 513, 1000, 4096)
F32_TINY = np.float32(np.finfo(np.float32).smallest_subnormal)


def signs(x, threshold=0.0):
    """Independent oracle: +-1 as int64, -1 where x < threshold."""
    return np.where(np.asarray(x) < threshold, -1, 1).astype(np.int64)


def loop_pack(row):
    """Independent oracle: one row of values -> list of Python ints, bit j of word w for value 64 w + j."""
    out = [0] * math.ceil(len(row) / 64)
    for i, v in enumerate(row):
        if v < 0:
            out[i // 64] |= 1 << (i % 64)
    return out


def random_values(rng, shape):
    """Normal values with exact zeros of both signs and the smallest subnormals of both signs mixed in."""
    x = rng.standard_normal(shape).astype(np.float32)
    specials = np.array([0.0, -0.0, F32_TINY, -F32_TINY], np.float32)
    mask = rng.random(shape) < 0.1
    x[mask] = rng.choice(specials, int(mask.sum()))
    return x


def float32_layer(dot, scale, bias):
    """float32(dot) * scale then + bias, each step done in float64 (exact for a product of two
    float32 values; a float32 sum rounded once from float64 is correctly rounded) then rounded."""
    y = (np.float32(dot).astype(np.float64) * scale.astype(np.float64)).astype(np.float32)
    if bias is not None:
        y = (y.astype(np.float64) + bias.astype(np.float64)).astype(np.float32)
    return y


# --- pack_signs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", K_LIST)
def test_pack_signs_matches_bit_loop(k):
    rng = np.random.default_rng(k)
    x = random_values(rng, (3, k))
    got = R.pack_signs(x)
    assert got.dtype == np.uint64 and got.shape == (3, math.ceil(k / 64))
    for row, words in zip(x, got):
        assert [int(w) for w in words] == loop_pack(row.tolist())


def test_pack_signs_small_hand_cases():
    assert R.pack_signs(np.array([-1.0], np.float32)).tolist() == [1]
    assert R.pack_signs(np.array([1.0], np.float32)).tolist() == [0]
    assert R.pack_signs(np.array([-1.0, 2.0, -0.0, -3.0])).tolist() == [0b1001]
    x = np.ones(65, np.float32)
    x[63] = x[64] = -5.0
    assert R.pack_signs(x).tolist() == [1 << 63, 1]


def test_pack_signs_keeps_leading_dims():
    rng = np.random.default_rng(1)
    x = random_values(rng, (2, 3, 4, 130))
    got = R.pack_signs(x)
    assert got.shape == (2, 3, 4, 3)
    np.testing.assert_array_equal(got.reshape(-1, 3), R.pack_signs(x.reshape(-1, 130)))


@pytest.mark.parametrize("k", K_LIST)
def test_all_negative_sets_exactly_k_bits_and_zero_padding(k):
    got = R.pack_signs(np.full((2, k), -1.0, np.float32))
    full, rest = divmod(k, 64)
    assert np.all(got[:, :full] == np.uint64(2**64 - 1))
    if rest:
        assert np.all(got[:, full] == np.uint64((1 << rest) - 1))  # padding bits past K stay 0
    assert np.bitwise_count(got).sum() == 2 * k


@pytest.mark.parametrize("k", K_LIST)
def test_all_positive_and_zeros_pack_to_zero(k):
    for value in (1.0, 0.0, -0.0, np.inf):
        np.testing.assert_array_equal(R.pack_signs(np.full((2, k), value, np.float32)),
                                      np.zeros((2, math.ceil(k / 64)), np.uint64))


def test_signed_zero_subnormals_and_infinities():
    x = np.array([-0.0, 0.0, -F32_TINY, F32_TINY, -np.inf, np.inf], np.float32)
    assert R.pack_signs(x).tolist() == [0b010100]


def test_input_is_converted_to_float32_first():
    """A float64 -1e-300 becomes float32 -0.0: +1. Integers keep their signs."""
    assert R.pack_signs(np.array([-1e-300, 1e-300, -1e-30])).tolist() == [0b100]
    assert R.pack_signs(np.array([-3, 0, 5, -1], np.int32)).tolist() == [0b1001]
    assert R.pack_signs(np.array([0, 255], np.uint8)).tolist() == [0]


@pytest.mark.parametrize("bad", [np.array([1.0, np.nan], np.float32), np.array([[np.nan]]),
                                 np.array([-np.nan, -1.0])])
def test_nan_raises(bad):
    with pytest.raises(ValueError, match="NaN"):
        R.pack_signs(bad)


@pytest.mark.parametrize("bad,exc", [(np.zeros((3, 0), np.float32), ValueError), (np.float32(1.0), ValueError),
                                     (np.array([True, False]), TypeError), (np.array([1j]), TypeError)])
def test_pack_signs_rejects(bad, exc):
    with pytest.raises(exc):
        R.pack_signs(bad)


# --- binary_matmul ----------------------------------------------------------------------------------


@pytest.mark.parametrize("k", K_LIST)
@pytest.mark.parametrize("m,n", [(1, 1), (3, 7), (13, 33)])
def test_binary_matmul_matches_int64_sign_product(m, n, k):
    rng = np.random.default_rng(m * 10007 + n * 101 + k)
    a, w = random_values(rng, (m, k)), random_values(rng, (n, k))
    got = R.binary_matmul(R.pack_signs(a), R.pack_signs(w), k)
    assert got.dtype == np.int32 and got.shape == (m, n)
    np.testing.assert_array_equal(got, signs(a) @ signs(w).T)


@pytest.mark.parametrize("k", K_LIST)
def test_binary_matmul_extremes(k):
    """All -1 against all -1 / all +1 gives +-k; a row against itself gives k."""
    neg, pos = np.full((2, k), -1.0, np.float32), np.full((3, k), 1.0, np.float32)
    nb, pb = R.pack_signs(neg), R.pack_signs(pos)
    np.testing.assert_array_equal(R.binary_matmul(nb, nb, k), np.full((2, 2), k, np.int32))
    np.testing.assert_array_equal(R.binary_matmul(nb, pb, k), np.full((2, 3), -k, np.int32))
    np.testing.assert_array_equal(R.binary_matmul(pb, pb, k), np.full((3, 3), k, np.int32))
    x = random_values(np.random.default_rng(k), (4, k))
    xb = R.pack_signs(x)
    np.testing.assert_array_equal(np.diag(R.binary_matmul(xb, xb, k)), np.full(4, k, np.int32))


def test_binary_matmul_empty_rows():
    b = R.pack_signs(np.ones((5, 70), np.float32))
    got = R.binary_matmul(np.zeros((0, 2), np.uint64), b, 70)
    assert got.shape == (0, 5) and got.dtype == np.int32


BITS = np.zeros((2, 2), np.uint64)


@pytest.mark.parametrize("call,exc,text", [
    (lambda: R.binary_matmul(BITS.astype(np.float64), BITS, 70), TypeError, "a_bits must have dtype uint64"),
    (lambda: R.binary_matmul(BITS, BITS.astype(np.int32), 70), TypeError, "b_bits must have dtype uint64"),
    (lambda: R.binary_matmul(BITS, BITS.astype(np.int64), 70), TypeError, "b_bits must have dtype uint64"),
    (lambda: R.binary_matmul(BITS[0], BITS, 70), ValueError, "2-D"),
    (lambda: R.binary_matmul(BITS, BITS[None], 70), ValueError, "2-D"),
    (lambda: R.binary_matmul(BITS, BITS, 64), ValueError, "ceil"),
    (lambda: R.binary_matmul(BITS, BITS, 129), ValueError, "ceil"),
    (lambda: R.binary_matmul(BITS, np.zeros((2, 3), np.uint64), 70), ValueError, "b_bits"),
    (lambda: R.binary_matmul(BITS, BITS, 0), ValueError, "k"),
    (lambda: R.binary_matmul(BITS[:, :0], BITS[:, :0], 0), ValueError, "k"),
    (lambda: R.binary_matmul(BITS, BITS, -5), ValueError, "k"),
    (lambda: R.binary_matmul(BITS, BITS, 70.0), TypeError, "k"),
    (lambda: R.binary_matmul(np.array([[0, 1 << 6]], np.uint64), BITS, 70), ValueError, "padding"),
    (lambda: R.binary_matmul(BITS, np.array([[0, 0], [0, 1 << 63]], np.uint64), 70), ValueError, "padding"),
])
def test_binary_matmul_rejects(call, exc, text):
    with pytest.raises(exc, match=text):
        call()


def test_highest_allowed_bit_is_not_padding():
    """Bit k - 1 is data: set, it flips the sign of the last element."""
    a = np.array([[0, 1 << 5]], np.uint64)                     # k = 70: bit 69 is element 69
    got = R.binary_matmul(a, np.zeros((1, 2), np.uint64), 70)
    assert got.tolist() == [[68]]


# --- binary_linear ----------------------------------------------------------------------------------


def random_layer(rng, n, k):
    w = random_values(rng, (n, k))
    scale = np.abs(rng.standard_normal(n)).astype(np.float32) + np.float32(1e-3)
    bias = rng.standard_normal(n).astype(np.float32)
    return w, scale, bias


@pytest.mark.parametrize("k", K_LIST)
@pytest.mark.parametrize("with_bias", [False, True])
def test_binary_linear_matches_float_oracle(k, with_bias):
    rng = np.random.default_rng(k + 7)
    w, scale, bias = random_layer(rng, 9, k)
    bias = bias if with_bias else None
    x = random_values(rng, (5, k))
    got = R.binary_linear(x, R.pack_signs(w), k, scale, bias=bias)
    assert got.dtype == np.float32 and got.shape == (5, 9)
    expected = float32_layer(signs(x) @ signs(w).T, scale, bias)
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_binary_linear_rounds_twice_not_fused():
    """dot * scale + bias where one fused rounding differs from two float32 roundings."""
    k = 3                                                       # x = w = all -1: dot = 3
    scale = np.array([np.float32(1) + np.float32(2.0**-23)], np.float32)   # 3 * scale needs 25 bits
    bias = np.array([np.float32(-3.0)], np.float32)
    ones = -np.ones((1, k), np.float32)
    got = R.binary_linear(ones, R.pack_signs(ones), k, scale, bias=bias)
    product = np.float32(3) * scale[0]                          # rounded to float32 first
    assert got[0, 0] == np.float32(product - np.float32(3.0))
    fused = 3.0 * float(scale[0]) - 3.0                         # what an FMA would keep
    assert got[0, 0] != np.float32(fused)


@pytest.mark.parametrize("k", [1, 65, 513])
def test_binary_linear_threshold_scalar_and_per_channel(k):
    rng = np.random.default_rng(k + 3)
    w, scale, bias = random_layer(rng, 7, k)
    x = random_values(rng, (6, k))
    per_channel = rng.standard_normal(k).astype(np.float32)
    per_channel[::3] = x[0, ::3]                               # ties: x == threshold is +1
    for thr in (np.float32(0.25), np.float32(-0.5), per_channel):
        got = R.binary_linear(x, R.pack_signs(w), k, scale, threshold=thr, bias=bias)
        expected = float32_layer(signs(x, thr) @ signs(w).T, scale, bias)
        np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_binary_linear_zero_threshold_equals_pack_signs_path():
    rng = np.random.default_rng(5)
    w, scale, _ = random_layer(rng, 4, 100)
    x = random_values(rng, (3, 100))
    dot = R.binary_matmul(R.pack_signs(x), R.pack_signs(w), 100)
    np.testing.assert_array_equal(R.binary_linear(x, R.pack_signs(w), 100, scale),
                                  dot.astype(np.float32) * scale)


def test_binary_linear_leading_dims():
    rng = np.random.default_rng(11)
    k = 130
    w, scale, bias = random_layer(rng, 5, k)
    x = random_values(rng, (2, 3, k))
    got = R.binary_linear(x, R.pack_signs(w), k, scale, bias=bias)
    assert got.shape == (2, 3, 5)
    np.testing.assert_array_equal(got.reshape(6, 5),
                                  R.binary_linear(x.reshape(6, k), R.pack_signs(w), k, scale, bias=bias))
    np.testing.assert_array_equal(R.binary_linear(x[0, 0], R.pack_signs(w), k, scale, bias=bias), got[0, 0])


W3 = R.pack_signs(np.ones((3, 70), np.float32))
X = np.ones((2, 70), np.float32)
S3 = np.ones(3, np.float32)


@pytest.mark.parametrize("call,exc,text", [
    (lambda: R.binary_linear(np.where(np.arange(70) == 5, np.nan, X), W3, 70, S3), ValueError, "NaN"),
    (lambda: R.binary_linear(X[:, :69], W3, 70, S3), ValueError, "x must have shape"),
    (lambda: R.binary_linear(X, W3, 71, S3), ValueError, "k"),
    (lambda: R.binary_linear(X, W3.astype(np.int64), 70, S3), TypeError, "w_bits"),
    (lambda: R.binary_linear(X, W3, 70, np.ones(2, np.float32)), ValueError, "scale"),
    (lambda: R.binary_linear(X, W3, 70, np.float32(1.0)), ValueError, "scale"),
    (lambda: R.binary_linear(X, W3, 70, np.array([1, 0, 1], np.float32)), ValueError, "scale"),
    (lambda: R.binary_linear(X, W3, 70, np.array([1, -1, 1], np.float32)), ValueError, "scale"),
    (lambda: R.binary_linear(X, W3, 70, np.array([1, np.inf, 1], np.float32)), ValueError, "scale"),
    (lambda: R.binary_linear(X, W3, 70, np.array([1, np.nan, 1], np.float32)), ValueError, "scale"),
    (lambda: R.binary_linear(X, W3, 70, S3, bias=np.ones(4, np.float32)), ValueError, "bias"),
    (lambda: R.binary_linear(X, W3, 70, S3, threshold=np.ones(69, np.float32)), ValueError, "threshold"),
    (lambda: R.binary_linear(X, W3, 70, S3, threshold=np.float32(np.nan)), ValueError, "threshold"),
    (lambda: R.binary_linear(X, W3 | np.uint64(1 << 63), 70, S3), ValueError, "padding"),
])
def test_binary_linear_rejects(call, exc, text):
    with pytest.raises(exc, match=text):
        call()
