"""eightbit.lowbit (4-bit block-quantized weights) on every kernel path: the packed weights hold exactly
eightbit.reference.quantize_blockwise's codes and scales, and blockwise_linear is bit-identical with
eightbit.reference.blockwise_linear.

Shapes: every M of {1, 2, 3, 5, 7, 16, 33} against every N of {1, 15, 16, 17, 32, 64, 100}, K and
block size cycling through {16, 32, 64, 96, 128, 512} x {16, 32, 64, 128}; every (K, block size) pair,
K = 4096 included, against three small (M, N). Weights carry an all-zero block, exact zeros, blocks
of very different magnitudes and subnormal blocks; inputs carry all-zero rows, rows at float32's max
(the output overflows to +-inf) and subnormal rows (outputs underflow to signed zeros), which a kernel
that flushes denormals, fuses a multiply-add or sums the blocks in another order would get wrong.
"""
import itertools

import numpy as np
import pytest

import eightbit as eb
from eightbit import reference as R

M_LIST = (1, 2, 3, 5, 7, 16, 33, 48, 80)   # 16 and more: AMX's row tiles (pairs, a single, the rest)
N_LIST = (1, 15, 16, 17, 32, 64, 100)
K_LIST = (16, 32, 64, 96, 128, 512)
BLOCKS = (16, 32, 64, 128)
F = np.float32
TINY = float(np.finfo(np.float32).smallest_subnormal)
BIG = float(np.finfo(np.float32).max)


def blocks_for(k):
    return [b for b in BLOCKS if k % b == 0]


def lowbit():
    from eightbit import lowbit as L
    return L


def random_weights(rng, n, k, block):
    """Normal weights scaled per block by 10^-3 .. 10^3, 5% exact zeros, block 0 of row 0 all zero
    and (with room) a block of subnormals in the last row."""
    w = rng.standard_normal((n, k)).astype(np.float32)
    w *= (10.0 ** rng.integers(-3, 4, (n, k // block))).repeat(block, axis=1).astype(np.float32)
    w[rng.random((n, k)) < 0.05] = 0.0
    if k // block > 1:
        w[0, :block] = 0.0
        if n > 1:
            w[-1, block:2 * block] *= F(1e-41)
    return w


def random_x(rng, shape):
    """Normal inputs with 5% zeros; for two or more rows, one row all zero and one 1e4 times larger."""
    x = rng.standard_normal(shape).astype(np.float32)
    x[rng.random(shape) < 0.05] = 0.0
    rows = x.reshape(-1, shape[-1])
    if rows.shape[0] >= 2:
        rows[1] = 0.0
        rows[0] *= F(1e4)
    return x


def assert_same_bits(got, expected):
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert not np.isnan(expected).any()                         # NaN bits are not specified
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def reference_linear(x, packed, bias=None, activation=None):
    return R.blockwise_linear(x, packed.codes, packed.scales, packed.block_size, bias, activation)


def check_packed(packed, w, block, bits=4):
    n, k = w.shape
    assert (packed.n, packed.k, packed.block_size, packed.bits) == (n, k, block, bits)
    codes, scales = R.quantize_blockwise(w, block, bits)
    assert packed.codes.dtype == np.int8 and packed.codes.shape == (n, k)
    np.testing.assert_array_equal(packed.codes, codes)
    assert packed.scales.dtype == np.float32 and packed.scales.shape == (n, k // block)
    np.testing.assert_array_equal(packed.scales.view(np.uint32), scales.view(np.uint32))


def check_everything(rng, m, n, k, block):
    L = lowbit()
    w = random_weights(rng, n, k, block)
    packed = L.pack_int4_weights(w, block_size=block)
    check_packed(packed, w, block)
    x = random_x(rng, (m, k))
    bias = rng.standard_normal(n).astype(np.float32)
    for b, act in ((None, None), (bias, None), (bias, "relu")):
        got = L.blockwise_linear(x, packed, bias=b, activation=act)
        assert_same_bits(got, reference_linear(x, packed, b, act))


GRID = [(m, n, K_LIST[(i + j) % len(K_LIST)], i + 2 * j)
        for (i, m), (j, n) in itertools.product(enumerate(M_LIST), enumerate(N_LIST))]


@pytest.mark.parametrize("m,n,k,pick", GRID)
def test_shape_grid(isa, m, n, k, pick):
    choices = blocks_for(k)
    block = choices[pick % len(choices)]
    check_everything(np.random.default_rng(m * 1_000_003 + n * 1009 + k), m, n, k, block)


KB = [(k, b) for k in K_LIST + (4096,) for b in blocks_for(k)]


@pytest.mark.parametrize("k,block", KB)
@pytest.mark.parametrize("m,n", [(1, 1), (3, 17), (16, 64)])
def test_every_k_and_block_size(isa, m, n, k, block):
    if k == 4096 and m * n > 3 * 17:
        m, n = 2, 15                                           # K = 4096 with small M, N
    check_everything(np.random.default_rng(m * 1_000_003 + n * 1009 + k * 7 + block), m, n, k, block)


@pytest.mark.parametrize("bits", [2, 3])
def test_narrower_codes(isa, bits):
    """2- and 3-bit codes ([-1, 1] and [-3, 3]) packed as nibbles, by pack_int4_weights and from_codes."""
    L = lowbit()
    rng = np.random.default_rng(bits)
    w = random_weights(rng, 17, 128, 32)
    packed = L.pack_int4_weights(w, block_size=32, bits=bits)
    check_packed(packed, w, 32, bits)
    codes, scales = R.quantize_blockwise(w, 32, bits)
    built = L.Int4Weights.from_codes(codes, scales, 32)
    np.testing.assert_array_equal(built.codes, codes)
    x = random_x(rng, (5, 128))
    bias = rng.standard_normal(17).astype(np.float32)
    expected = R.blockwise_linear(x, codes, scales, 32, bias)
    assert_same_bits(L.blockwise_linear(x, packed, bias=bias), expected)
    assert_same_bits(L.blockwise_linear(x, built, bias=bias), expected)


@pytest.mark.parametrize("k,block", [(16, 16), (96, 32), (512, 128), (4096, 64)])
def test_from_codes_full_nibble_range(isa, k, block):
    """Given codes span [-8, 7] (-8 included, which quantization never makes) and given scales span
    subnormal to large."""
    L = lowbit()
    rng = np.random.default_rng(k + block)
    n = 33
    codes = rng.integers(-8, 8, (n, k)).astype(np.int8)
    codes[0] = -8
    codes[1] = 7
    scales = (rng.random((n, k // block)) + 0.5).astype(np.float32)
    scales *= (10.0 ** rng.integers(-30, 30, scales.shape)).astype(np.float32)
    scales[2] = F(TINY * 3)
    packed = L.Int4Weights.from_codes(codes, scales, block)
    assert (packed.n, packed.k, packed.block_size) == (n, k, block)
    np.testing.assert_array_equal(packed.codes, codes)
    np.testing.assert_array_equal(packed.scales.view(np.uint32), scales.view(np.uint32))
    x = random_x(rng, (7, k))
    x[2] = np.where(x[2] < 0, F(-1.0), F(1.0))               # xq = +-127 throughout: extreme dots
    bias = rng.standard_normal(n).astype(np.float32)
    for b, act in ((None, None), (bias, "relu")):
        assert_same_bits(L.blockwise_linear(x, packed, bias=b, activation=act),
                         R.blockwise_linear(x, codes, scales, block, b, act))


@pytest.mark.parametrize("before, after", [(0, 0), (15, 15)])
def test_extreme_inputs(isa, before, after):
    """float32's max (outputs overflow to +-inf), subnormal rows (outputs underflow, signed zeros),
    rows whose scale underflows to 0 (scale 1.0: all codes 0), single nonzero entries; alone (10
    rows) and between ordinary rows (40: across the 16-row tiles of AMX)."""
    L = lowbit()
    rng = np.random.default_rng(13)
    k, n = 128, 17
    w = random_weights(rng, n, k, 32)
    w[3] = BIG * np.sign(w[3])                                   # huge weights
    w[4] = F(-1e-39)                                             # subnormal weights
    w[5, :32] = 3 * TINY                                         # scale underflows: 1.0, codes 0
    packed = L.pack_int4_weights(w, block_size=32)
    check_packed(packed, w, 32)
    x = random_x(rng, (10, k))
    x[0, 5] = BIG
    x[1] = np.where(x[1] < 0, F(-BIG), F(BIG))
    x[2] *= F(1e-40)
    x[3] = F(70 * TINY)                                          # against w[4]: y underflows to -0.0
    x[4] = 30 * TINY * np.sign(x[4])                             # scale 1.0, codes 0
    x[5] = 0.0
    x[5, 77] = -TINY
    x[6] = 0.0
    x[6, 0] = F(-3.0)
    x[7] *= F(1e30)
    x[8] *= F(1e-30)
    x[9] = -0.0
    x = np.concatenate([random_x(rng, (before, k)), x, random_x(rng, (after, k))]) if before else x
    bias = rng.standard_normal(n).astype(np.float32)
    for b, act in ((None, None), (bias, None), (None, "relu"), (bias, "relu")):
        got = L.blockwise_linear(x, packed, bias=b, activation=act)
        expected = reference_linear(x, packed, b, act)
        nan = np.isnan(expected)                                 # huge w times huge x: inf - inf
        assert np.array_equal(np.isnan(got), nan)
        assert_same_bits(np.where(nan, F(0.0), got), np.where(nan, F(0.0), expected))
    assert np.isinf(reference_linear(x, packed)).any()
    y = reference_linear(x, packed)
    assert y[before + 3, 4] == 0 and np.signbit(y[before + 3, 4])


def test_overflowing_accumulator_and_relu_of_nan(isa):
    """Scales near float32's max: a block's term is +-inf, inf - inf is NaN, and relu makes it +0."""
    L = lowbit()
    codes = np.zeros((3, 32), np.int8)
    codes[0, 0], codes[0, 16] = 7, -7
    codes[1, 0] = 7
    codes[2, 0] = -7
    packed = L.Int4Weights.from_codes(codes, np.full((3, 2), BIG / 7, F), 16)
    x = np.ones((2, 32), F)
    y = L.blockwise_linear(x, packed)
    assert np.all(np.isnan(y[:, 0])) and np.all(y[:, 1] == np.inf) and np.all(y[:, 2] == -np.inf)
    relu = L.blockwise_linear(x, packed, activation="relu")
    assert_same_bits(relu, reference_linear(x, packed, activation="relu"))
    assert_same_bits(relu, np.array([[0.0, np.inf, 0.0]] * 2, F))


def test_rounds_twice_not_fused(isa):
    """acc + float32(dot * scale) with the product rounded first (no FMA), blocks summed in order."""
    L = lowbit()
    codes = np.zeros((2, 48), np.int8)
    codes[0, 0], codes[0, 16] = -1, 1                             # dots -127, 127, 0
    codes[1, [0, 16, 32]] = [1, 1, -1]                           # (big + small) - big = 0 in order
    scales = np.array([[1.0, 1.0 + 2.0**-23, 1.0], [2.0**20, 2.0**-10, 2.0**20]], F)
    packed = L.Int4Weights.from_codes(codes, scales, 16)
    x = np.ones((3, 48), F)
    got = L.blockwise_linear(x, packed)
    assert_same_bits(got, reference_linear(x, packed))
    assert got[0, 0] == np.float32(F(2.0**-16) * (F(1.0) / F(127.0)))
    assert got[0, 1] == 0.0


def test_batch_dims_and_1d_input(isa):
    L = lowbit()
    rng = np.random.default_rng(21)
    w = random_weights(rng, 15, 96, 32)
    packed = L.pack_int4_weights(w, block_size=32)
    bias = rng.standard_normal(15).astype(np.float32)
    x = random_x(rng, (2, 3, 96))
    got = L.blockwise_linear(x, packed, bias=bias, activation="relu")
    assert got.shape == (2, 3, 15)
    assert_same_bits(got, reference_linear(x, packed, bias, "relu"))
    one = L.blockwise_linear(x[1, 2], packed, bias=bias, activation="relu")
    assert one.shape == (15,)
    assert_same_bits(one, got[1, 2])
    x4 = random_x(rng, (2, 1, 3, 96))
    assert_same_bits(L.blockwise_linear(x4, packed), reference_linear(x4, packed))


def test_non_contiguous_inputs(isa):
    L = lowbit()
    rng = np.random.default_rng(9)
    w = random_weights(rng, 40, 256, 64)
    packed = L.pack_int4_weights(np.asfortranarray(w), block_size=64)
    check_packed(packed, w, 64)
    x = random_x(rng, (256, 12)).T                             # [12, 256], transposed
    assert_same_bits(L.blockwise_linear(x, packed), reference_linear(np.ascontiguousarray(x), packed))
    assert_same_bits(L.blockwise_linear(x[::3], packed), reference_linear(np.ascontiguousarray(x[::3]), packed))
    built = L.Int4Weights.from_codes(packed.codes.T.copy().T, np.asfortranarray(packed.scales), 64)
    assert_same_bits(L.blockwise_linear(x, built), reference_linear(np.ascontiguousarray(x), packed))


def test_input_dtypes_convert_to_float32(isa):
    L = lowbit()
    rng = np.random.default_rng(2)
    w = rng.standard_normal((16, 64))
    packed = L.pack_int4_weights(w, block_size=16)
    check_packed(packed, w.astype(np.float32), 16)
    x = rng.standard_normal((3, 64))
    assert_same_bits(L.blockwise_linear(x, packed), reference_linear(x.astype(np.float32), packed))


def test_empty_rows(isa):
    L = lowbit()
    packed = L.pack_int4_weights(np.ones((5, 32), F), block_size=16)
    y = L.blockwise_linear(np.zeros((0, 32), F), packed)
    assert y.shape == (0, 5) and y.dtype == np.float32
    y = L.blockwise_linear(np.zeros((0, 3, 32), F), packed)
    assert y.shape == (0, 3, 5) and y.dtype == np.float32


def test_threads_give_identical_results():
    L = lowbit()
    rng = np.random.default_rng(4)
    w = random_weights(rng, 257, 1024, 32)
    packed = L.pack_int4_weights(w, block_size=32)
    x = random_x(rng, (67, 1024))
    expected = reference_linear(x, packed)
    before = eb.cpu_info()["num_threads"]
    try:
        eb.set_num_threads(1)
        one = L.blockwise_linear(x, packed)
        eb.set_num_threads(2)
        two = L.blockwise_linear(x, packed)
    finally:
        eb.set_num_threads(before)
    assert_same_bits(one, expected)
    assert_same_bits(two, expected)


# --- bad input ------------------------------------------------------------------------------------------
# Only the exception type is checked here: the messages are the public API's own.

W64 = np.ones((3, 64), F)
X64 = np.ones((2, 64), F)


def with_value(shape, where, value):
    a = np.ones(shape, F)
    a[where] = value
    return a


def packed64():
    return lowbit().pack_int4_weights(W64, block_size=32)


def codes_with(value):
    c = np.zeros((3, 64), np.int8)
    c[1, 5] = value
    return c


BAD = [
    # pack_int4_weights
    ("block size not dividing K", lambda L: L.pack_int4_weights(np.ones((3, 48), F), block_size=32)),
    ("block size not a power of two", lambda L: L.pack_int4_weights(np.ones((3, 96), F), block_size=48)),
    ("block size below 16", lambda L: L.pack_int4_weights(W64, block_size=8)),
    ("block size above 256", lambda L: L.pack_int4_weights(np.ones((3, 1024), F), block_size=512)),
    ("bits 1", lambda L: L.pack_int4_weights(W64, block_size=32, bits=1)),
    ("bits 9", lambda L: L.pack_int4_weights(W64, block_size=32, bits=9)),
    ("NaN weight", lambda L: L.pack_int4_weights(with_value((3, 64), (1, 2), np.nan), block_size=32)),
    ("inf weight", lambda L: L.pack_int4_weights(with_value((3, 64), (0, 0), np.inf), block_size=32)),
    ("1-D weights", lambda L: L.pack_int4_weights(np.ones(64, F), block_size=32)),
    # Int4Weights.from_codes
    ("code 8", lambda L: L.Int4Weights.from_codes(codes_with(8), np.ones((3, 2), F), 32)),
    ("code -9", lambda L: L.Int4Weights.from_codes(codes_with(-9), np.ones((3, 2), F), 32)),
    ("code 127", lambda L: L.Int4Weights.from_codes(codes_with(127), np.ones((3, 2), F), 32)),
    ("scales of the wrong shape", lambda L: L.Int4Weights.from_codes(codes_with(0), np.ones((3, 4), F), 32)),
    ("scales of the wrong rows", lambda L: L.Int4Weights.from_codes(codes_with(0), np.ones((2, 2), F), 32)),
    ("NaN scale", lambda L: L.Int4Weights.from_codes(codes_with(0), with_value((3, 2), (2, 0), np.nan), 32)),
    ("inf scale", lambda L: L.Int4Weights.from_codes(codes_with(0), with_value((3, 2), (2, 0), np.inf), 32)),
    ("from_codes block size", lambda L: L.Int4Weights.from_codes(codes_with(0), np.ones((3, 3), F), 24)),
    # blockwise_linear
    ("x with K - 1", lambda L: L.blockwise_linear(np.ones((2, 63), F), packed64())),
    ("x with K + 32", lambda L: L.blockwise_linear(np.ones((2, 96), F), packed64())),
    ("NaN in x", lambda L: L.blockwise_linear(with_value((2, 64), (1, 3), np.nan), packed64())),
    ("inf in x", lambda L: L.blockwise_linear(with_value((2, 64), (0, 0), -np.inf), packed64())),
    ("NaN in a later row of x", lambda L: L.blockwise_linear(with_value((9, 64), (6, 63), np.nan), packed64())),
    ("bias too short", lambda L: L.blockwise_linear(X64, packed64(), bias=np.ones(2, F))),
    ("bias too long", lambda L: L.blockwise_linear(X64, packed64(), bias=np.ones(4, F))),
    ("unknown activation", lambda L: L.blockwise_linear(X64, packed64(), activation="gelu")),
]


@pytest.mark.parametrize("call", [c for _, c in BAD], ids=[name for name, _ in BAD])
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call(lowbit())
