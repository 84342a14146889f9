"""eightbit.binary on every kernel path: bit-identical with eightbit.reference.binary and exact
against int64 matrices of +-1 signs.

Shapes: every M of {1, 2, 3, 5, 6, 7, 13, 64} against every N of {1, 7, 8, 9, 16, 31, 32, 33, 100}
(around the 8-column panels), K cycling through the word boundaries 63/64/65 ... 4096; the full K
list against three (M, N) pairs. Inputs carry +-0.0 and +-subnormals, whose signs a kernel that
reads the sign bit, or flushes denormals, would get wrong.
"""
import itertools
import math

import numpy as np
import pytest

import eightbit as eb
from eightbit import binary as B
from eightbit import reference as R

M_LIST = (1, 2, 3, 5, 6, 7, 13, 64)
N_LIST = (1, 7, 8, 9, 16, 31, 32, 33, 100)
K_LIST = (1, 7, 63, 64, 65, 127, 128, 511, 512, 513, 1000, 4096)
F32_TINY = np.float32(np.finfo(np.float32).smallest_subnormal)


def signs(x, threshold=0.0):
    """Independent oracle: +-1 as int64, -1 where x < threshold."""
    return np.where(np.asarray(x) < threshold, -1, 1).astype(np.int64)


def random_values(rng, shape, specials=True):
    """Normal float32 values; with `specials`, +-0.0 and +-smallest subnormal mixed in."""
    x = rng.standard_normal(shape).astype(np.float32)
    if specials:
        mask = rng.random(shape) < 0.1
        x[mask] = rng.choice(np.array([0.0, -0.0, F32_TINY, -F32_TINY], np.float32), int(mask.sum()))
    return x


def float32_layer(dot, scale, bias=None):
    """float32(dot) * scale, then + bias: each step exact in float64, then rounded to float32."""
    y = (np.float32(dot).astype(np.float64) * scale.astype(np.float64)).astype(np.float32)
    if bias is not None:
        y = (y.astype(np.float64) + bias.astype(np.float64)).astype(np.float32)
    return y


def assert_same_bits(got, expected):
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def check_everything(rng, m, n, k):
    """Pack, multiply and run the layer; compare each step with the reference and the oracle."""
    w = random_values(rng, (n, k), specials=False)       # nonzero rows: the default scale is > 0
    x = random_values(rng, (m, k))
    packed = B.pack_binary_weights(w)
    assert packed.k == k and packed.n == n
    assert packed.bits.dtype == np.uint64 and packed.bits.shape == (n, math.ceil(k / 64))
    np.testing.assert_array_equal(packed.bits, R.pack_signs(w))
    assert packed.scale.dtype == np.float32 and packed.scale.shape == (n,)
    np.testing.assert_allclose(packed.scale, np.abs(w.astype(np.float64)).mean(axis=1), rtol=1e-6)

    a_bits = B.pack_signs(x)
    assert a_bits.dtype == np.uint64
    np.testing.assert_array_equal(a_bits, R.pack_signs(x))

    exact = signs(x) @ signs(w).T
    expected = R.binary_matmul(a_bits, packed.bits, k)
    np.testing.assert_array_equal(expected, exact)
    for got in (B.binary_matmul(a_bits, packed), B.binary_matmul(a_bits, packed, k=k),
                B.binary_matmul(a_bits, packed.bits, k)):
        assert got.dtype == np.int32 and got.shape == (m, n)
        np.testing.assert_array_equal(got, exact)

    bias = rng.standard_normal(n).astype(np.float32)
    for b in (None, bias):
        got = B.binary_linear(x, packed, bias=b)
        assert_same_bits(got, R.binary_linear(x, packed.bits, packed.k, packed.scale, 0.0, b))
        assert_same_bits(got, float32_layer(exact, packed.scale, b))


GRID = [(m, n, K_LIST[(i + j) % len(K_LIST)]) for (i, m), (j, n) in itertools.product(enumerate(M_LIST),
                                                                                       enumerate(N_LIST))]


@pytest.mark.parametrize("m,n,k", GRID)
def test_shape_grid(isa, m, n, k):
    check_everything(np.random.default_rng(m * 1_000_003 + n * 1009 + k), m, n, k)


@pytest.mark.parametrize("k", K_LIST)
@pytest.mark.parametrize("m,n", [(1, 1), (6, 33), (64, 100)])
def test_every_k(isa, m, n, k):
    check_everything(np.random.default_rng(m * 1_000_003 + n * 1009 + k + 1), m, n, k)


@pytest.mark.parametrize("k", [1, 63, 64, 65, 513, 4096])
def test_all_ones_and_all_zero_bits(isa, k):
    """All -1 (every bit set up to K) and all +1 (no bit set) operands: products +-K."""
    neg, pos = np.full((5, k), -2.0, np.float32), np.full((9, k), 3.0, np.float32)
    nb, pb = B.pack_signs(neg), B.pack_signs(pos)
    np.testing.assert_array_equal(nb, R.pack_signs(neg))
    np.testing.assert_array_equal(pb, np.zeros((9, math.ceil(k / 64)), np.uint64))
    w_neg, w_pos = B.pack_binary_weights(neg[:3]), B.pack_binary_weights(pos[:4])
    np.testing.assert_array_equal(B.binary_matmul(nb, w_neg), np.full((5, 3), k, np.int32))
    np.testing.assert_array_equal(B.binary_matmul(nb, w_pos), np.full((5, 4), -k, np.int32))
    np.testing.assert_array_equal(B.binary_matmul(pb, w_neg), np.full((9, 3), -k, np.int32))
    np.testing.assert_array_equal(B.binary_matmul(pb, w_pos), np.full((9, 4), k, np.int32))
    np.testing.assert_array_equal(B.binary_matmul(nb, nb, k), np.full((5, 5), k, np.int32))
    assert_same_bits(B.binary_linear(neg, w_pos), np.full((5, 4), np.float32(-k) * np.float32(3.0)))
    assert_same_bits(B.binary_linear(pos, w_neg), np.full((9, 3), np.float32(-k) * np.float32(2.0)))


def test_signed_zeros_subnormals_and_infinities(isa):
    """-0.0 and +0.0 are +1; the smallest subnormals and infinities keep their signs."""
    row = np.array([-0.0, 0.0, -F32_TINY, F32_TINY, -np.inf, np.inf, -1.0, 1.0], np.float32)
    x = np.tile(row, (3, 9))                                   # K = 72: two words
    bits = B.pack_signs(x)
    np.testing.assert_array_equal(bits, R.pack_signs(x))
    assert int(bits[0, 0]) & 0xFF == 0b01010100
    packed = B.pack_binary_weights(x[:2], scale=np.ones(2, np.float32))
    np.testing.assert_array_equal(packed.bits, bits[:2])
    np.testing.assert_array_equal(B.binary_matmul(bits, packed), signs(x) @ signs(x[:2]).T)
    assert_same_bits(B.binary_linear(x, packed), R.binary_linear(x, packed.bits, 72, packed.scale))


@pytest.mark.parametrize("k", [7, 65, 1000])
def test_batch_dims_and_1d_input(isa, k):
    rng = np.random.default_rng(k)
    w = random_values(rng, (9, k), specials=False)
    packed = B.pack_binary_weights(w)
    bias = rng.standard_normal(9).astype(np.float32)
    x = random_values(rng, (2, 3, k))
    got = B.binary_linear(x, packed, bias=bias)
    assert_same_bits(got, R.binary_linear(x, packed.bits, k, packed.scale, 0.0, bias))
    assert got.shape == (2, 3, 9)
    assert_same_bits(got, float32_layer(np.einsum("abk,nk->abn", signs(x), signs(w)), packed.scale, bias))
    assert_same_bits(B.binary_linear(x[1, 2], packed, bias=bias), got[1, 2])
    bits = B.pack_signs(x)
    assert bits.shape == (2, 3, math.ceil(k / 64))
    np.testing.assert_array_equal(bits, R.pack_signs(x))


@pytest.mark.parametrize("k", [1, 64, 65, 513])
def test_threshold_scalar_and_per_channel(isa, k):
    rng = np.random.default_rng(k + 17)
    w = random_values(rng, (33, k), specials=False)
    packed = B.pack_binary_weights(w)
    x = random_values(rng, (7, k))
    per_channel = rng.standard_normal(k).astype(np.float32)
    per_channel[::3] = x[0, ::3]                              # ties: x == threshold is +1
    bias = rng.standard_normal(33).astype(np.float32)
    for thr in (0.25, np.float32(-0.5), per_channel, np.float32(F32_TINY)):
        got = B.binary_linear(x, packed, threshold=thr, bias=bias)
        assert_same_bits(got, R.binary_linear(x, packed.bits, k, packed.scale, thr, bias))
        assert_same_bits(got, float32_layer(signs(x, np.float32(thr)) @ signs(w).T, packed.scale, bias))


def test_explicit_scale_is_kept(isa):
    rng = np.random.default_rng(3)
    w = random_values(rng, (8, 100))                          # zeros allowed: the scale is given
    scale = np.abs(rng.standard_normal(8)).astype(np.float32) + np.float32(0.1)
    packed = B.pack_binary_weights(w, scale=scale)
    np.testing.assert_array_equal(packed.scale, scale)
    assert packed.scale.dtype == np.float32
    np.testing.assert_array_equal(packed.bits, R.pack_signs(w))
    x = random_values(rng, (5, 100))
    assert_same_bits(B.binary_linear(x, packed), float32_layer(signs(x) @ signs(w).T, scale))


def test_non_contiguous_inputs(isa):
    rng = np.random.default_rng(9)
    w = random_values(rng, (40, 300), specials=False)
    packed = B.pack_binary_weights(np.asfortranarray(w))
    np.testing.assert_array_equal(packed.bits, R.pack_signs(w))
    x = random_values(rng, (300, 12)).T                        # [12, 300], transposed
    a_bits = B.pack_signs(x)
    np.testing.assert_array_equal(a_bits, R.pack_signs(np.ascontiguousarray(x)))
    wide = np.zeros((12, 2 * a_bits.shape[1]), np.uint64)
    wide[:, ::2] = a_bits                                       # strided words
    exact = signs(x) @ signs(w).T
    np.testing.assert_array_equal(B.binary_matmul(wide[:, ::2], packed), exact)
    np.testing.assert_array_equal(B.binary_matmul(a_bits[::2], packed.bits[::3], 300), exact[::2, ::3])
    assert_same_bits(B.binary_linear(x, packed), float32_layer(exact, packed.scale))


def test_empty_rows(isa):
    packed = B.pack_binary_weights(np.ones((5, 70), np.float32))
    got = B.binary_matmul(np.zeros((0, 2), np.uint64), packed)
    assert got.shape == (0, 5) and got.dtype == np.int32
    y = B.binary_linear(np.zeros((0, 3, 70), np.float32), packed)
    assert y.shape == (0, 3, 5) and y.dtype == np.float32


def test_threads_give_identical_results():
    rng = np.random.default_rng(4)
    w = random_values(rng, (257, 1000), specials=False)
    x = random_values(rng, (300, 1000))
    packed = B.pack_binary_weights(w)
    exact = signs(x) @ signs(w).T
    before = eb.cpu_info()["num_threads"]
    try:
        eb.set_num_threads(1)
        one = B.binary_linear(x, packed)
        eb.set_num_threads(2)
        two = B.binary_linear(x, packed)
        np.testing.assert_array_equal(B.binary_matmul(B.pack_signs(x), packed), exact)
    finally:
        eb.set_num_threads(before)
    assert_same_bits(one, two)
    assert_same_bits(one, float32_layer(exact, packed.scale))


# --- bad input ----------------------------------------------------------------------------------------

F = np.float32
W70 = np.ones((3, 70), F)
PACKED = B.pack_binary_weights(W70)                            # K = 70: 2 words, 58 padding bits
A70 = np.zeros((2, 2), np.uint64)
X70 = np.ones((2, 70), F)


def with_nan(shape, where):
    a = np.ones(shape, F)
    a[where] = np.nan
    return a


CASES = [
    # pack_signs
    (lambda: B.pack_signs(with_nan((2, 70), (1, 69))), ValueError, "NaN"),
    (lambda: B.pack_signs(np.zeros((3, 0), F)), ValueError, "K"),
    # pack_binary_weights
    (lambda: B.pack_binary_weights(with_nan((3, 70), (2, 5))), ValueError, "NaN"),
    (lambda: B.pack_binary_weights(np.ones(70, F)), ValueError, "2-D"),
    (lambda: B.pack_binary_weights(np.ones((2, 3, 70), F)), ValueError, "2-D"),
    (lambda: B.pack_binary_weights(W70, scale=np.ones(2, F)), ValueError, "scale"),
    (lambda: B.pack_binary_weights(W70, scale=np.array([1, 0, 1], F)), ValueError, "scale"),
    (lambda: B.pack_binary_weights(W70, scale=np.array([1, -2, 1], F)), ValueError, "scale"),
    (lambda: B.pack_binary_weights(W70, scale=np.array([1, np.nan, 1], F)), ValueError, "scale"),
    (lambda: B.pack_binary_weights(W70, scale=np.array([1, np.inf, 1], F)), ValueError, "scale"),
    # binary_matmul: dtypes
    (lambda: B.binary_matmul(A70.astype(np.float64), PACKED), TypeError, "a_bits"),
    (lambda: B.binary_matmul(A70.astype(np.int32), PACKED), TypeError, "a_bits"),
    (lambda: B.binary_matmul(A70.astype(np.int64), PACKED), TypeError, "a_bits"),
    (lambda: B.binary_matmul(A70, PACKED.bits.astype(np.float32), 70), TypeError, ""),
    (lambda: B.binary_matmul(A70, PACKED.bits.astype(np.int32), 70), TypeError, ""),
    # binary_matmul: shapes, k, padding
    (lambda: B.binary_matmul(A70[0], PACKED), ValueError, "a_bits"),
    (lambda: B.binary_matmul(A70[None], PACKED), ValueError, "a_bits"),
    (lambda: B.binary_matmul(A70, PACKED.bits[None], 70), ValueError, ""),
    (lambda: B.binary_matmul(np.zeros((2, 3), np.uint64), PACKED), ValueError, "a_bits"),
    (lambda: B.binary_matmul(A70, PACKED, k=64), ValueError, "k"),
    (lambda: B.binary_matmul(A70, PACKED, k=71), ValueError, "k"),
    (lambda: B.binary_matmul(A70, PACKED.bits, 64), ValueError, "k"),
    (lambda: B.binary_matmul(A70, PACKED.bits, 129), ValueError, "k"),
    (lambda: B.binary_matmul(A70, PACKED.bits, 0), ValueError, "k"),
    (lambda: B.binary_matmul(A70[:, :0], PACKED.bits[:, :0], 0), ValueError, "k"),
    (lambda: B.binary_matmul(A70, PACKED.bits, -1), ValueError, "k"),
    (lambda: B.binary_matmul(np.array([[0, 1 << 6], [0, 0]], np.uint64), PACKED), ValueError, "padding"),
    (lambda: B.binary_matmul(np.array([[0, 1 << 63], [0, 0]], np.uint64), PACKED.bits, 70), ValueError, "padding"),
    (lambda: B.binary_matmul(A70, np.array([[0, 0], [0, 1 << 40]], np.uint64), 70), ValueError, "padding"),
    (lambda: B.binary_matmul(np.zeros((1, 1), np.uint64) | np.uint64(1 << 7), np.zeros((2, 1), np.uint64), 7),
     ValueError, "padding"),
    # binary_linear
    (lambda: B.binary_linear(with_nan((2, 70), (0, 0)), PACKED), ValueError, "NaN"),
    (lambda: B.binary_linear(np.ones((2, 69), F), PACKED), ValueError, "x"),
    (lambda: B.binary_linear(np.ones((2, 71), F), PACKED), ValueError, "x"),
    (lambda: B.binary_linear(X70, PACKED, bias=np.ones(2, F)), ValueError, "bias"),
    (lambda: B.binary_linear(X70, PACKED, bias=np.ones(4, F)), ValueError, "bias"),
    (lambda: B.binary_linear(X70, PACKED, threshold=np.zeros(69, F)), ValueError, "threshold"),
    (lambda: B.binary_linear(X70, PACKED, threshold=np.zeros(71, F)), ValueError, "threshold"),
]


@pytest.mark.parametrize("call,exc,word", CASES)
def test_bad_input_raises_named_error(call, exc, word):
    with pytest.raises(exc) as info:
        call()
    assert word in str(info.value)


def test_bits_array_without_k_is_refused():
    """A bare bits array does not say K (the padding hides it): k is required."""
    with pytest.raises((TypeError, ValueError), match="k"):
        B.binary_matmul(A70, PACKED.bits)


def test_the_same_k_as_packed_is_accepted():
    np.testing.assert_array_equal(B.binary_matmul(A70, PACKED, k=70), np.full((2, 3), 70, np.int32))
